"""Architecture rules that a review would otherwise have to re-check by hand: small functions everywhere in the
grader (radon cyclomatic complexity at most C, the developers' standard)."""
from __future__ import annotations

from pathlib import Path

import pytest

from radon.complexity import cc_rank, cc_visit

PACKAGE = Path(__file__).resolve().parents[1] / "autograder"
#: the worst rank allowed: C is complexity 11..20
WORST_ALLOWED = "C"


def complex_functions(root: Path = PACKAGE) -> list[str]:
    """``path:line name rank(complexity)`` of each function, method or class of ``root`` above
    :data:`WORST_ALLOWED` (what ``radon cc -n D`` lists: a closure counts in its enclosing function)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for block in cc_visit(path.read_text(encoding="utf-8")):
            rank = cc_rank(block.complexity)
            if rank > WORST_ALLOWED:
                found.append(f"{path.relative_to(root.parent)}:{block.lineno} {block.fullname} "
                             f"{rank}({block.complexity})")
    return found


def test_no_function_in_the_grader_is_above_complexity_c():
    assert complex_functions() == []


def test_the_complexity_check_sees_a_complex_function(tmp_path):
    """The rule can fail: a function with 21 branches is rank D and named."""
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(21))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "tangled.py").write_text(f"def tangled(x):\n{branches}    return -1\n")
    assert complex_functions(tmp_path / "pkg") == ["pkg/tangled.py:1 tangled D(22)"]


# --- errors are visible: a broken integration is not silently dropped from the command line ----------------------
def _integrations(tmp_path, monkeypatch, **modules) -> str:
    """A package of integration modules (name -> source), importable under a name of its own."""
    package = tmp_path / f"fake_integrations_{abs(hash(str(tmp_path)))}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in modules.items():
        (package / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    return package.name


HOOK = "def add_command(sub, add_common, options):\n    sub.add_parser('{name}')\n"


def test_an_integration_adds_its_command(tmp_path, monkeypatch):
    import argparse

    from autograder.cli import _integration_commands

    sub = argparse.ArgumentParser().add_subparsers()
    _integration_commands(sub, _integrations(tmp_path, monkeypatch, works=HOOK.format(name="works")))
    assert "works" in sub.choices


def test_a_broken_integration_import_is_raised_not_hidden(tmp_path, monkeypatch):
    import argparse

    from autograder.cli import _integration_commands

    broken = "from .works import no_such_name\n" + HOOK.format(name="broken")
    name = _integrations(tmp_path, monkeypatch, works=HOOK.format(name="works"), broken=broken)
    with pytest.raises(ImportError, match="no_such_name"):
        _integration_commands(argparse.ArgumentParser().add_subparsers(), name)


def test_an_integration_missing_a_third_party_package_is_named(tmp_path, monkeypatch, capsys):
    import argparse

    from autograder.cli import _integration_commands

    optional = "import convlab_absent_package\n" + HOOK.format(name="optional")
    name = _integrations(tmp_path, monkeypatch, works=HOOK.format(name="works"), optional=optional)
    sub = argparse.ArgumentParser().add_subparsers()
    _integration_commands(sub, name)
    assert "works" in sub.choices and "optional" not in sub.choices
    assert "needs 'convlab_absent_package', which is not installed" in capsys.readouterr().err


# --- one place for each policy --------------------------------------------------------------------------------
#: modules that run inside the sandbox and import nothing of the grader on purpose (their own copies are documented)
SANDBOX_SIDE = {"autograder/isolation/worker.py", "autograder/isolation/protocol.py", "autograder/module_codec.py"}


def _modules_with(text: str) -> set[str]:
    return {str(p.relative_to(PACKAGE.parent)) for p in PACKAGE.rglob("*.py") if text in p.read_text("utf-8")}


def test_torch_threads_are_pinned_in_one_place():
    assert _modules_with(".set_num_threads(") == {"autograder/oracle.py"}


def test_one_thread_pins_and_restores():
    import torch

    from autograder.oracle import one_thread

    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_numpy_scalars_are_normalised_in_one_place():
    assert _modules_with("isinstance(value, np.integer)") - SANDBOX_SIDE == {"autograder/compare.py"}


def test_numpy_scalars_become_plain_python_scalars_on_both_sides():
    import numpy as np
    import torch

    from autograder.compare import plain_scalar, to_plain
    from autograder.oracle import from_torch

    for scalar, plain in ((np.bool_(True), True), (np.int32(3), 3), (np.uint8(7), 7), (np.float32(0.5), 0.5)):
        for normalise in (plain_scalar, to_plain, from_torch):
            got = normalise(scalar)
            assert type(got) is type(plain) and got == plain, (normalise.__name__, scalar)
    assert from_torch(torch.tensor(True)) is True and type(from_torch(torch.tensor(4))) is int


def test_the_zero_result_is_built_in_one_place():
    from autograder import engine
    from autograder.isolation import grader, jobs

    assert _modules_with("def zero_result(") == {"autograder/engine.py"}
    assert grader.zero_result is engine.zero_result and jobs.zero_result is engine.zero_result


def test_the_command_line_defaults_are_the_dataclass_defaults():
    from autograder.cli import _options, build_parser
    from autograder.isolation.grader import Options

    options, default = _options(build_parser().parse_args(["grade", "a.ipynb", "--out", "r.json"])), Options()
    assert (options.settings, options.case_factor, options.device) == \
        (default.settings, default.case_factor, default.device)

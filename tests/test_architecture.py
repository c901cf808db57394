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

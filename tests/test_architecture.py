"""Architecture rules that a review would otherwise have to re-check by hand: small functions everywhere in the
grader (radon cyclomatic complexity at most C, the developers' standard), no import cycle between its modules."""
from __future__ import annotations

import ast
import graphlib
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


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(node, module: str, is_package: bool, modules: set) -> set:
    """The modules of ``modules`` a module-level import statement loads (``from . import x``: the module x)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names} & modules
    package = module.split(".") if is_package else module.split(".")[:-1]
    base = ".".join((package[:len(package) - node.level + 1] if node.level else []) + [node.module or ""]).strip(".")
    submodules = {f"{base}.{a.name}" for a in node.names} & modules
    return submodules if submodules else {base} & modules


def import_cycles(root: Path = PACKAGE) -> list[tuple]:
    """Cycles among the module-level imports of the package at ``root`` (imports inside functions are lazy on
    purpose and do not count)."""
    paths = {_module_name(p, root): p for p in root.rglob("*.py")}
    graph = {}
    for name, path in paths.items():
        body = ast.parse(path.read_text(encoding="utf-8")).body
        graph[name] = set().union(*(_imported(n, name, path.name == "__init__.py", set(paths)) for n in body
                                    if isinstance(n, (ast.Import, ast.ImportFrom)))) - {name}
    try:
        tuple(graphlib.TopologicalSorter(graph).static_order())
    except graphlib.CycleError as exc:
        return [tuple(exc.args[1])]
    return []


def test_no_import_cycle_in_the_grader():
    assert import_cycles() == []


def test_the_cycle_check_sees_a_cycle(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from . import b\n")
    (package / "b.py").write_text("from .a import thing\n")
    (package / "c.py").write_text("def lazy():\n    from . import a\n")
    assert sorted(set(import_cycles(package)[0])) == ["pkg.a", "pkg.b"]


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


# --- exercises as data ---------------------------------------------------------------------------------------------
EXERCISES = PACKAGE / "exercises"


def test_every_exercise_declares_its_parameters_once():
    """No exercise module draws its own parameters or restates their minima: both come from ``params``."""
    from autograder import registry
    from autograder.params import ParamsDraw

    for path in sorted(EXERCISES.glob("a0*.py")):
        source = path.read_text("utf-8")
        assert "draw_params=" not in source and "params_min=" not in source, path.name
    for exercises in registry.assignments().values():
        for ex in exercises:
            assert isinstance(ex.draw_params, ParamsDraw), ex.name


def test_shared_pieces_live_in_one_place():
    """The output-size formula, the call forms and the shape text are written once, in autograder/shapes.py."""
    assert _modules_with("def call_form(") == {"autograder/shapes.py"}
    for repeated in ("+ 2 * p - k) // s + 1", "def _pair(", "def _pads(", "def _shape(", "def _call_with_defaults("):
        assert not {m for m in _modules_with(repeated) if m.startswith("autograder/exercises/")}, repeated


def test_param_draws_inside_its_domain_and_from_the_given_rng_only():
    import numpy as np

    from autograder.params import Param, ParamsDraw, ParamsText, flag, minimums

    params = [Param("H", 1, 9), Param("kH", 1, lambda p: p["H"]), Param("n", 1, 512, mostly=40, chance=0.9),
              Param("G", 1, 32, mostly=(1, 1, 2, 4), chance=0.8), flag("bias", 0.8),
              Param("L", 1, 5, smallest=0, label="layers"), Param("eps", 0, 3, shrink=False, label="")]
    draw = ParamsDraw(params)
    values = [draw(np.random.default_rng(seed)) for seed in range(400)]
    assert values[:5] == [draw(np.random.default_rng(seed)) for seed in range(5)]   # reproducible from the seed
    assert all(1 <= v["kH"] <= v["H"] <= 9 and 1 <= v["n"] <= 512 and 1 <= v["G"] <= 32 for v in values)
    assert {v["bias"] for v in values} == {0, 1} and 1 <= min(v["L"] for v in values)
    assert 0.8 < sum(v["n"] <= 40 for v in values) / len(values) < 0.97             # favoured, not only
    assert any(v["G"] not in (1, 2, 4) for v in values)
    assert minimums(params) == {"H": 1, "kH": 1, "n": 1, "G": 1, "bias": 0, "L": 0}
    assert ParamsText(params)({"H": 3, "kH": 2, "n": 5, "G": 1, "bias": 1, "L": 2, "eps": 0}) == \
        "H=3, kH=2, n=5, G=1, layers=2"


def _authoring_example() -> str:
    """The first Python block of docs/AUTHORING.md: a whole exercise, as data."""
    text = (PACKAGE.parent / "docs" / "AUTHORING.md").read_text("utf-8")
    return text.split("## A new exercise, as data", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


def test_the_authoring_example_is_an_exercise_that_grades(monkeypatch):
    """The worked example of docs/AUTHORING.md runs as written: a correct answer passes, a flipped kernel fails
    with the misconception named."""
    import numpy as np

    from autograder import registry
    from autograder.answers import local_answer
    from autograder.cases import hidden_cases, visible_cases
    from autograder.engine import grade_exercise

    registered = []
    monkeypatch.setattr(registry, "register", lambda *exercises: registered.extend(exercises))
    namespace = {"__name__": "authoring_example"}
    exec(_authoring_example(), namespace)  # noqa: S102 - our own documentation
    (ex,) = registered
    cases = visible_cases(ex) + hidden_cases(ex, 1, count=6)

    def answer(x, w, b, stride=1, flip=False):
        import torch
        import torch.nn.functional as F

        w = w[:, :, ::-1, ::-1].copy() if flip else w
        b = None if b is None else torch.from_numpy(b)
        return F.conv2d(torch.from_numpy(x), torch.from_numpy(w), b, stride=stride).numpy()

    right = grade_exercise(ex, local_answer(answer), cases, "cpu", shrink_budget=0)
    assert right.score == right.max_score, right.text
    wrong = grade_exercise(ex, local_answer(lambda *a, **k: answer(*a, **k, flip=True)), cases, "cpu",
                           shrink_budget=0)
    assert wrong.score < wrong.max_score and "flipped kernel" in wrong.text, wrong.text
    assert np.all([ex.valid(c.params) for c in cases])


def test_fixed_cases_name_exactly_the_declared_parameters():
    """A fixed (adversarial) case gives every declared parameter and nothing else, at or above its minimum."""
    from autograder import registry

    for exercises in registry.assignments().values():
        for ex in exercises:
            declared = {p.name for p in ex.params}
            for fixed in ex.fixed_params:
                assert set(fixed) == declared, (ex.name, sorted(set(fixed) ^ declared))
                assert all(fixed[k] >= low for k, low in ex.params_min.items()), (ex.name, fixed)
                assert ex.valid(fixed), (ex.name, fixed)

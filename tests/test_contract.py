"""The curriculum contract holds: every graded function registered, with its exact signature and nbgrader ids,
in the solution notebook and in the release."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from autograder import registry
from autograder.curriculum import find_contract, parse

ROOT = Path(__file__).resolve().parents[1]
COPY = ROOT / "docs" / "CURRICULUM.md"
ENTRIES = parse(COPY.read_text())


def test_the_repository_copy_holds_every_row_of_the_shared_contract():
    """The shared contract takes new rows over once they exist here, so this copy may hold more, never fewer."""
    shared = find_contract()
    if shared is None or shared == COPY:
        pytest.skip("shared/CURRICULUM.md is not beside this checkout")
    rows = lambda text: {line.strip() for line in text.splitlines() if line.startswith("| `")}  # noqa: E731
    missing = rows(shared.read_text()) - rows(COPY.read_text())
    assert not missing, f"docs/CURRICULUM.md lacks rows of shared/CURRICULUM.md: {sorted(missing)}"
    assert set(parse(shared.read_text())) <= set(ENTRIES)


def test_contract_lists_every_assignment():
    assert len(ENTRIES) == 37
    assert sorted({e.assignment for e in ENTRIES}) == [
        "01-single-channel", "02-channels-batch", "03-stride-padding", "04-backprop", "05-transposed-conv",
        "06-conv-bn-fusion", "07-efficient-conv"]


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_exercise_is_registered_with_the_contract_signature(entry):
    ex = registry.get(entry.name)
    assert ex.assignment == entry.assignment
    assert ex.signature == entry.signature


def _cells(path: Path) -> dict:
    nb = json.loads(path.read_text())
    out = {}
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader")
        if meta and meta.get("grade_id"):
            assert meta["grade_id"] not in out, f"duplicate grade_id {meta['grade_id']} in {path}"
            out[meta["grade_id"]] = (cell, meta)
    return out


def _signature_of(source: str, name: str) -> str:
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == name:
            args = node.args
            defaults = [None] * (len(args.args) - len(args.defaults)) + list(args.defaults)
            parts = [a.arg + ("" if d is None else "=" + ast.unparse(d)) for a, d in zip(args.args, defaults)]
            return f"{name}({', '.join(parts)})"
    raise AssertionError(f"no def {name} in the answer cell")


def _same_signature(a: str, b: str) -> bool:
    norm = lambda s: s.replace(" ", "").replace("1e-05", "1e-5")  # noqa: E731
    return norm(a) == norm(b)


@pytest.mark.parametrize("entry", ENTRIES, ids=lambda e: e.name)
def test_notebooks_carry_the_exercise(entry):
    ex = registry.get(entry.name)
    source = ROOT / "solutions" / entry.assignment / f"{entry.assignment}.ipynb"
    release = ROOT / "assignments" / entry.assignment / f"{entry.assignment}.ipynb"
    for path in (source, release):
        assert path.is_file(), f"missing {path.relative_to(ROOT)}"
        cells = _cells(path)
        answer, answer_meta = cells[entry.name]
        assert answer_meta.get("solution") is True and not answer_meta.get("grade")
        assert _same_signature(_signature_of("".join(answer["source"]), entry.name), entry.signature)
        test, test_meta = cells[f"test_{entry.name}"]
        assert test_meta.get("grade") is True and test_meta.get("locked") is True
        assert test_meta.get("points") == ex.total_points
        text = "".join(test["source"])
        assert f'check("{entry.name}", {entry.name})' in text
        assert text.rstrip().splitlines()[-1].startswith("float(")

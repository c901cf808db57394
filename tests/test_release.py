"""The student release is exactly what nbgrader generates from solutions/, and it hides every answer."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from autograder.release import assignment_ids
from tests.coursecopy import ROOT, make_course, nbgrader

IDS = assignment_ids()
MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


def _release(aid: str, root: Path = ROOT) -> Path:
    return root / "assignments" / aid / f"{aid}.ipynb"


def test_every_solution_has_a_release():
    assert IDS, "no assignments in solutions/"
    released = sorted(p.name for p in (ROOT / "assignments").iterdir() if p.is_dir())
    assert released == IDS


@pytest.mark.parametrize("aid", IDS)
def test_release_holds_no_solutions_hidden_tests_or_outputs(aid):
    nb = json.loads(_release(aid).read_text())
    text = _release(aid).read_text()
    for marker in MARKERS:
        assert marker not in text, f"{marker} leaked into the release of {aid}"
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert not cell.get("outputs") and cell.get("execution_count") is None
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            assert "raise NotImplementedError()" in "".join(cell["source"])


@pytest.mark.slow
def test_release_is_regenerated_identically(tmp_path):
    course = make_course(tmp_path / "course")
    for aid in IDS:
        nbgrader(course, "generate_assignment", aid, "--force")
    for aid in IDS:
        fresh, committed = json.loads(_release(aid, course).read_text()), json.loads(_release(aid).read_text())
        assert fresh == committed, (f"assignments/{aid} is stale: run `make release` and commit "
                                    "(never edit assignments/ by hand)")

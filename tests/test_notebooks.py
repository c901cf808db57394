"""Every solution notebook executes top to bottom in a real Jupyter kernel: no error, nothing on stderr
(nbgrader zeroes a test cell that writes to stderr), and every test cell awards its full points."""
from __future__ import annotations

import json
import time

import nbformat
import pytest
from nbclient import NotebookClient

from autograder import registry
from autograder.release import assignment_ids
from tests.coursecopy import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("aid", assignment_ids())
def test_solution_notebook_executes_cleanly(aid, tmp_path, record_property):
    nb = nbformat.read(ROOT / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    start = time.perf_counter()
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
                   allow_errors=True).execute()
    record_property("seconds", round(time.perf_counter() - start, 1))
    points = {ex.test_id: ex.total_points for ex in registry.assignments()[aid]}
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "?")
        for out in cell.outputs:
            assert out.output_type != "error", f"{aid}/{gid} raised {out.ename}: {out.evalue}"
            assert not (out.output_type == "stream" and out.name == "stderr"), \
                f"{aid}/{gid} wrote to stderr: {out.text[:500]}"
        if gid in points:
            results = [o for o in cell.outputs if o.output_type == "execute_result"]
            assert results, f"{aid}/{gid} has no score"
            assert float(results[0].data["text/plain"]) == points[gid], json.dumps(cell.outputs)[:2000]

"""Every solution notebook executes top to bottom in a real Jupyter kernel: no error, nothing on stderr
(nbgrader zeroes a test cell that writes to stderr), and every test cell awards its full points."""
from __future__ import annotations

import json
import time

import nbformat
import pytest

from autograder import registry
from autograder.kernel_run import NotebookRunner
from autograder.release import assignment_ids
from tests.coursecopy import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("aid", assignment_ids())
def test_solution_notebook_executes_cleanly(aid, tmp_path, record_property):
    nb = nbformat.read(ROOT / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    start = time.perf_counter()
    NotebookRunner(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}},
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


def _cells(aid: str, root=ROOT) -> dict:
    nb = nbformat.read(root / "solutions" / aid / f"{aid}.ipynb", as_version=4)
    return {c.get("id"): c for c in nb.cells}


def test_a_hanging_answer_stops_in_a_real_kernel_with_one_short_message(tmp_path):
    """The notebook check's per-call time limit works inside a Jupyter kernel (SIGALRM in the main thread): the
    cell finishes, prints one short verdict and no traceback, and nothing reaches stderr."""
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("from autograder import check\n"
                                          "def corr2d(x, k):\n    while True:\n        pass\n"),
                nbformat.v4.new_code_cell("result = check('corr2d', corr2d, call_seconds=1)\nfloat(result)")]
    start = time.perf_counter()
    NotebookRunner(nb, timeout=60, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert time.perf_counter() - start < 45
    outputs = nb.cells[1].outputs
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert all(o.output_type != "error" and o.get("name") != "stderr" for o in outputs), outputs
    assert "stopped after 1 s" in text and len(text.strip().splitlines()) <= 3 and "Traceback" not in text, text
    assert [o.data["text/plain"] for o in outputs if o.output_type == "execute_result"] == ["0.0"]


def test_key_figures_are_embedded_and_survive_the_release():
    """Static viewers (GitHub, nbviewer) show the key figures: PNG attachments of markdown cells, referenced in the
    cell's text, in the solutions and in the release that nbgrader generated from them."""
    from autograder.figures.attach import KEY_FIGURES

    for figure in KEY_FIGURES:
        for folder in ("solutions", "assignments"):
            path = ROOT / folder / figure.assignment / f"{figure.assignment}.ipynb"
            cells = {c.get("id"): c for c in nbformat.read(path, as_version=4).cells}
            cell = cells[figure.cell_id]
            assert f"(attachment:{figure.name})" in cell.source, (folder, figure.name)
            png = (cell.get("attachments") or {}).get(figure.name, {}).get("image/png", "")
            assert png.startswith("iVBORw0KGgo"), (folder, figure.name)      # base64 of the PNG signature


#: the assignments whose sections end with reflection questions (issue 15): all of them
REFLECTED = ("01-single-channel", "02-channels-batch", "03-stride-padding", "04-backprop", "05-transposed-conv",
             "06-conv-bn-fusion", "07-efficient-conv")


def test_every_section_ends_with_reflection_questions():
    for aid in REFLECTED:
        nb = nbformat.read(ROOT / "solutions" / aid / f"{aid}.ipynb", as_version=4)
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        sections = [line for line in text.splitlines() if line.startswith("## ") and line != "## Summary"]
        assert text.count("**Reflect** (not graded)") >= len(sections), aid


def test_answers_are_not_given_away_before_the_exercise():
    """02: neither the prose nor the summary writes out the parameter or FLOP count; 03: no notebook cell computes
    the ceil-mode last-window rule (the figures ask PyTorch); 06: neither the prose before the exercises nor the
    docstring spells out the folded weights and bias (the summary may)."""
    prose02 = "\n".join(c.source for c in _cells("02-channels-batch").values() if c.cell_type == "markdown")
    assert "\\text{params} =" not in prose02 and "\\text{FLOPs} =" not in prose02
    assert "(C_in/G)·kH·kW" not in prose02 and "(C_in / G)·kH·kW" not in prose02
    flops_doc = _cells("02-channels-batch")
    flops_doc = next(c.source for c in flops_doc.values() if c.metadata.get("nbgrader", {}).get("grade_id") ==
                     "conv2d_flops").split("### BEGIN SOLUTION")[0]
    assert "(c_in // groups) * kh * kw" not in flops_doc
    cells03 = _cells("03-stride-padding").values()
    code03 = "\n".join(c.source for c in cells03 if c.cell_type == "code"
                       and c.metadata.get("nbgrader", {}).get("grade_id") != "pool_output_size")
    assert "-(-" not in code03 and ">= n + p" not in code03 and "window_starts" not in code03
    assert "minus 1 if" not in "\n".join(c.source for c in cells03 if c.cell_type == "markdown")
    cells06 = _cells("06-conv-bn-fusion")
    order = list(cells06)
    before = order[:order.index("3cc050b0")]                    # everything a student reads before Exercise 2
    prose = "\n".join(cells06[i].source for i in before if cells06[i].cell_type == "markdown")
    assert "W'_{" not in prose and "underbrace" not in prose and "\\beta - a" not in prose
    assert "d_c = " not in prose and "a_c = " not in prose
    docstring = cells06["3cc050b0"].source.split("### BEGIN SOLUTION")[0]
    assert "scale[o]" not in docstring and "sqrt" not in docstring


def test_the_timing_table_hands_answers_the_dtype_the_speed_part_uses():
    """The notebook's timing table and the conv2d_im2col speed part measure the same thing: the answer gets the
    speed part's dtype, F.conv2d runs in float32."""
    import numpy as np
    import torch

    from autograder.exercises.a02_channels_batch import _speed_case

    seen = []

    def record(x, w, b):
        seen.append((x.dtype, w.dtype))
        return np.zeros(1)

    namespace = {"np": np, "torch": torch, "time": time, "conv2d_batch": record, "conv2d_im2col": record}
    exec(_cells("02-channels-batch")["f6022c26"].source.replace("import torch", ""), namespace)  # noqa: S102
    speed_args = _speed_case(np.random.default_rng(0)).args
    assert seen and set(seen) == {(speed_args[0].dtype, speed_args[1].dtype)}

"""Provisional feedback where only the student edition exists (a student's GitHub repository, a laptop).

``python -m autograder.selfcheck NOTEBOOK [...] --out-dir DIR`` runs each notebook top to bottom in a fresh Jupyter
kernel, exactly as the student would, and adds up what its test cells award (``float(result)`` of the visible
checks, nbgrader's partial-credit rule). Nothing here is trusted or secret: the student's own code grades itself on
the public cases, so every point is *provisional*; the grade that counts is computed on the instructor's side
(``python -m autograder github-collect`` then ``batch``, docs/DEPLOYMENT.md).

Writes ``DIR/results.json`` (Gradescope's schema, ``extra_data.provisional``), ``DIR/summary.md``, appends the
summary to ``$GITHUB_STEP_SUMMARY`` and ``points=X/Y`` to ``$GITHUB_OUTPUT`` when those are set. With no notebook
it still writes a summary (and 0/0 points). Needs the ``lab`` extra (a kernel, nbclient and nbformat).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

#: how long one cell may run before the notebook's remaining cells are abandoned (seconds)
CELL_TIMEOUT = 120


@dataclass
class TestCell:
    """One test cell's verdict: ``score`` of ``max_score`` points and what the check printed."""

    name: str
    score: float
    max_score: float
    output: str


def _text(outputs: list) -> str:
    """What a cell printed (stdout) and any error it raised, as plain text."""
    parts = [o.get("text", "") for o in outputs if o.get("output_type") == "stream" and o.get("name") == "stdout"]
    parts += [f"{o.get('ename')}: {o.get('evalue')}" for o in outputs if o.get("output_type") == "error"]
    return "".join(parts).strip()[:4000]


def _awarded(outputs: list, max_score: float) -> float:
    """nbgrader's rule: no error and a float ``execute_result`` in [0, max] is the score; an error is 0."""
    if any(o.get("output_type") == "error" for o in outputs):
        return 0.0
    for o in outputs:
        if o.get("output_type") == "execute_result":
            try:
                value = float(o.get("data", {}).get("text/plain", ""))
            except ValueError:
                return max_score
            return min(max(value, 0.0), max_score)
    return max_score


def test_cells(nb) -> list[TestCell]:
    """The graded cells of an executed notebook (nbgrader ``grade: true``), in notebook order."""
    cells = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and meta.get("grade"):
            points = float(meta.get("points", 0))
            name = str(meta.get("grade_id", "test")).removeprefix("test_")
            outputs = cell.get("outputs", [])
            cells.append(TestCell(name, _awarded(outputs, points), points, _text(outputs)))
    return cells


def run_notebook(path: Path, timeout: int = CELL_TIMEOUT) -> list[TestCell]:
    """Execute ``path`` in a fresh ``python3`` kernel (its folder as working directory); the test cells' verdicts.
    A notebook that cannot be read or run gives one zero-point entry that says why."""
    import nbformat

    from .kernel_run import NotebookRunner

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is reported, not raised
        return [TestCell(path.name, 0.0, 0.0, f"could not read the notebook: {exc}")]
    client = NotebookRunner(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute()
    except Exception as exc:  # noqa: BLE001 - a dead kernel or a timeout: the cells run so far still count
        print(f"{path}: stopped early: {type(exc).__name__}: {exc}", file=sys.stderr)
    return test_cells(nb)


def summary_markdown(per_notebook: dict[str, list[TestCell]]) -> str:
    """A Markdown table per notebook, headed by the provisional total."""
    if not per_notebook:
        return "## convlab feedback (provisional)\n\nPoints 0/0: no notebook found in this push, nothing to check yet.\n"
    score, total = _totals(per_notebook)
    lines = ["## convlab feedback (provisional)", "",
             f"Provisional points: **{score:g}/{total:g}** on the visible checks. Your instructor's grade also "
             "uses hidden cases.", ""]
    for name, cells in per_notebook.items():
        lines += [f"### {name}", "", "| exercise | points |", "|---|---|"]
        lines += [f"| {c.name} | {c.score:g}/{c.max_score:g} |" for c in cells]
        lines.append("")
    return "\n".join(lines)


def _totals(per_notebook: dict[str, list[TestCell]]) -> tuple[float, float]:
    cells = [c for cs in per_notebook.values() for c in cs]
    return round(sum(c.score for c in cells), 4), sum(c.max_score for c in cells)


def write_outputs(per_notebook: dict[str, list[TestCell]], out_dir: Path) -> str:
    """results.json and summary.md in ``out_dir``; the GitHub step summary and output when set. Returns X/Y."""
    out_dir.mkdir(parents=True, exist_ok=True)
    score, total = _totals(per_notebook)
    tests = [dict(asdict(c), name=f"{nb}: {c.name}") for nb, cs in per_notebook.items() for c in cs]
    results = {"score": score, "tests": tests, "extra_data": {"provisional": True}}
    (out_dir / "results.json").write_text(json.dumps(results, indent=1))
    summary = summary_markdown(per_notebook)
    (out_dir / "summary.md").write_text(summary)
    points = f"{score:g}/{total:g}"
    for var, text in (("GITHUB_STEP_SUMMARY", summary + "\n"), ("GITHUB_OUTPUT", f"points={points}\n")):
        if os.environ.get(var):
            with open(os.environ[var], "a", encoding="utf-8") as fh:
                fh.write(text)
    return points


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m autograder.selfcheck", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--out-dir", type=Path, default=Path("grading"))
    parser.add_argument("--timeout", type=int, default=CELL_TIMEOUT, help="seconds per cell")
    args = parser.parse_args(argv)
    per_notebook = {str(p): run_notebook(p, args.timeout) for p in args.notebooks}
    print(f"Points {write_outputs(per_notebook, args.out_dir)} (provisional)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

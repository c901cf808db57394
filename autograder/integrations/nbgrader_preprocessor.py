"""nbgrader's own autograde, tamper-proof: a preprocessor that grades the notebook with the isolated grader.

``nbgrader_config.py`` puts :class:`IsolatedAutograde` in place of nbgrader's ``Execute`` in
``Autograde.autograde_preprocessors``, so ``nbgrader autograde`` (and formgrader's Autograde button) never runs a
student's code in nbgrader's kernel. For each notebook the preprocessor grades it in the sandbox (the course seed
of the assignment, :mod:`autograder.seeds`) and writes into every test cell ``test_<exercise>`` the isolated
feedback (stdout) and the exercise's score as the cell's ``execute_result``; nbgrader's ``SaveAutoGrades`` then
records exactly that score (partial credit) in the gradebook, and formgrader, ``generate_feedback`` and ``export``
work unchanged. The instructor's record (seed, integrity flags, sandbox output) goes to
``<course>/.convlab-records/nbgrader/<assignment>/<student>.json`` (readable by the owner only).

Settings (``c.IsolatedAutograde.<name>`` or ``--IsolatedAutograde.<name>=...``): ``seed`` (default: the course
seed), ``cases_factor``, ``partial_credit``, ``isolation``, ``allow_reduced_isolation``.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Int, List, Unicode

RECORDS = Path(".convlab-records") / "nbgrader"


def test_cell_exercise(cell) -> str | None:
    """The exercise a test cell grades (``test_<exercise>``), or None for any other cell."""
    gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
    if cell.get("cell_type") == "code" and gid.startswith("test_"):
        return gid[len("test_"):]
    return None


def scored_outputs(text: str, score: float) -> list[dict]:
    """A test cell's outputs as nbgrader reads them: feedback on stdout, then the score as the result."""
    from nbformat import from_dict

    return [from_dict({"output_type": "stream", "name": "stdout", "text": text + "\n"}),
            from_dict({"output_type": "execute_result", "execution_count": None, "metadata": {},
                       "data": {"text/plain": repr(float(score))}})]


class IsolatedAutograde(NbGraderPreprocessor):
    """Grade in the sandbox; write each exercise's feedback and score into its test cell."""

    seed = Int(None, allow_none=True, help="hidden-case seed (default: the course seed)").tag(config=True)
    cases_factor = Int(10, help="hidden cases: this many times the notebook check's count").tag(config=True)
    partial_credit = List(Unicode(), [], help="proportional | all-or-nothing | EXERCISE=MODE").tag(config=True)
    isolation = Unicode("", help="auto | bwrap | reduced (default: auto)").tag(config=True)
    allow_reduced_isolation = Bool(False, help="accept reduced isolation explicitly").tag(config=True)
    course_root = Unicode("", help="course root (default: CourseDirectory.root)").tag(config=True)

    def _course(self) -> Path:
        root = self.course_root or self.config.get("CourseDirectory", {}).get("root") or os.getcwd()
        return Path(root).resolve()

    def _grade(self, nb, assignment: str, notebook: str):
        from ..isolation.grader import Options, grade
        from ..isolation.guard import check

        check(self.isolation or None, strict=True, allow_reduced=self.allow_reduced_isolation)
        options = Options(seed=self.seed, seed_origin="--seed" if self.seed is not None else "",
                          case_factor=self.cases_factor, course=self._course(), isolation=self.isolation or None,
                          partial_credit=tuple(self.partial_credit))
        with tempfile.TemporaryDirectory(prefix="convlab-nbgrader-") as tmp:
            path = Path(tmp) / f"{notebook}.ipynb"
            path.write_text(json.dumps(nb), encoding="utf-8")
            return grade([path], options, assignment=assignment)

    def _record(self, result, assignment: str, student: str) -> None:
        from ..isolation import report

        folder = self._course() / RECORDS / assignment
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(self._course() / RECORDS.parent, 0o700)
        report.atomic_write(folder / f"{student}.json", json.dumps(report.instructor_record(
            result, command="nbgrader autograde", student=student, assignment=assignment), indent=2) + "\n")

    def preprocess(self, nb, resources):
        info = resources["nbgrader"]
        result = self._grade(nb, info["assignment"], info["notebook"])
        scores = {ex.exercise: (ex.score, ex.text) for n in result.notebooks for ex in n.exercises}
        for cell in nb.cells:
            exercise = test_cell_exercise(cell)
            if exercise is not None:
                score, text = scores.get(exercise, (0.0, f"{exercise}: not graded (no isolated result)"))
                points = float(cell.metadata.get("nbgrader", {}).get("points", score))
                cell.outputs = scored_outputs(text, min(score, points))   # above max fails the whole notebook
        self._record(result, info["assignment"], info["student"])
        self.log.info("isolated grade of %s/%s: %g/%g", info["student"], info["assignment"], result.score,
                      result.max_score)
        return nb, resources


#: nbgrader's stock autograde pipeline (student code executed in nbgrader's kernel): for benchmarks only
IN_KERNEL = ("nbgrader.preprocessors.Execute", "nbgrader.preprocessors.IgnorePattern",
             "nbconvert.preprocessors.ClearMetadataPreprocessor", "nbgrader.preprocessors.LimitOutput",
             "nbgrader.preprocessors.SaveAutoGrades", "nbgrader.preprocessors.AssignLatePenalties",
             "nbgrader.preprocessors.CheckCellMetadata")


def in_kernel_arguments() -> list[str]:
    """``nbgrader autograde`` arguments that restore in-kernel execution (to measure it; never to grade)."""
    return [f"--Autograde.autograde_preprocessors={name}" for name in IN_KERNEL]

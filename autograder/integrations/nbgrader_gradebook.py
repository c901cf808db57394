"""nbgrader with tamper-proof scores: grade ``submitted/`` in isolation, then record the scores in the gradebook.

``python -m autograder nbgrader ASSIGNMENT [--course DIR]``:

1. every ``submitted/<student>/<ASSIGNMENT>/<ASSIGNMENT>.ipynb`` is graded by the isolated grader first (the
   student's code never runs in nbgrader's kernel);
2. ``nbgrader autograde ASSIGNMENT --no-execute`` then makes nbgrader's own records and ``autograded/`` copies
   (test cells restored from the gradebook, timestamps, checksums) without running anything;
3. each test cell's ``auto_score`` is set, through nbgrader's ``Gradebook`` API, to the isolated score of its
   exercise, and the isolated feedback is written into the test cell's output in ``autograded/``.

Formgrader, manual grading, ``generate_feedback`` (hidden tests cleared) and ``export`` then work unchanged. A
student whose isolated grading is missing gets 0 on every cell, never nbgrader's default of full marks for a
cell that was not executed.
"""
from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..isolation.grader import Options, SubmissionResult, grade
from ..release import nbgrader_env


@dataclass
class GradebookRun:
    scores: dict[str, float] = field(default_factory=dict)  # student -> total
    errors: list[str] = field(default_factory=list)


def _submissions(course: Path, assignment: str) -> dict[str, Path]:
    root = course / "submitted"
    out = {}
    for student in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")) \
            if root.is_dir() else []:
        nb = student / assignment / f"{assignment}.ipynb"
        if nb.is_file():
            out[student.name] = nb
    return out


def _exercise_scores(result: SubmissionResult | None) -> tuple[dict[str, float], dict[str, str]]:
    scores, feedback = {}, {}
    if result is not None:
        for nb in result.notebooks:
            for ex in nb.exercises:
                scores[ex.exercise] = ex.score
                feedback[ex.exercise] = ex.text
    return scores, feedback


def _write_feedback(autograded: Path, scores: dict[str, float], feedback: dict[str, str]) -> None:
    """Put the isolated feedback and score into each test cell of the autograded notebook."""
    nb = json.loads(autograded.read_text())
    for cell in nb.get("cells", []):
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id", "")
        if cell.get("cell_type") == "code" and gid.startswith("test_"):
            name = gid[len("test_"):]
            text = feedback.get(name, f"{name}: not graded (no isolated result)")
            cell["outputs"] = [
                {"output_type": "stream", "name": "stdout", "text": text + "\n"},
                {"output_type": "execute_result", "execution_count": None, "metadata": {},
                 "data": {"text/plain": repr(float(scores.get(name, 0.0)))}},
            ]
    autograded.write_text(json.dumps(nb, indent=1))


def run(assignment: str, course: Path, options: Options) -> GradebookRun:
    from nbgrader.api import Gradebook

    course = Path(course).resolve()
    options.course = course
    run_result = GradebookRun()
    results: dict[str, SubmissionResult | None] = {}
    for student, nb in _submissions(course, assignment).items():
        try:
            results[student] = grade([nb], options, assignment=assignment)
        except Exception as exc:  # noqa: BLE001 - one student's failure must not cost the others
            results[student] = None
            run_result.errors.append(f"{student}: isolated grading failed: {exc}")
    if not results:
        raise ValueError(f"no submissions of {assignment} in {course / 'submitted'}")
    proc = subprocess.run([sys.executable, "-m", "nbgrader", "autograde", assignment, "--no-execute", "--force"],
                          cwd=course, env=nbgrader_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"nbgrader autograde --no-execute failed:\n{proc.stdout}\n{proc.stderr}")
    db_url = f"sqlite:///{course / 'gradebook.db'}?timeout=60"
    with Gradebook(db_url) as gb:
        for student, result in results.items():
            scores, feedback = _exercise_scores(result)
            submission = gb.find_submission_notebook(assignment, assignment, student)
            for grade_row in submission.grades:
                cell = grade_row.cell
                if cell.cell_type != "code" or not cell.name.startswith("test_"):
                    continue
                exercise = cell.name[len("test_"):]
                grade_row.auto_score = min(float(scores.get(exercise, 0.0)), float(cell.max_score))
                grade_row.needs_manual_grade = False
            gb.db.commit()
            run_result.scores[student] = sum(scores.values())
            autograded = course / "autograded" / student / assignment / f"{assignment}.ipynb"
            if autograded.is_file():
                _write_feedback(autograded, scores, feedback)
    return run_result


def add_command(sub, add_common, options_from_args) -> None:
    p = sub.add_parser("nbgrader", help="grade nbgrader's submitted/ in isolation and write the scores into its "
                                        "gradebook")
    p.add_argument("assignment", metavar="ASSIGNMENT")
    add_common(p)

    def cmd(args) -> int:
        from ..course import course_root

        course = course_root(args.course)
        outcome = run(args.assignment, course, options_from_args(args))
        for student, score in sorted(outcome.scores.items()):
            print(f"{student}: {score:g}")
        for line in outcome.errors:
            print(f"grader error: {line}", file=sys.stderr)
        print(f"gradebook updated for {len(outcome.scores)} student(s); nbgrader export / formgrader / "
              "generate_feedback now use these scores")
        return 1 if outcome.errors else 0

    p.set_defaults(func=cmd)

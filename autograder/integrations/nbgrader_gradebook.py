"""nbgrader with tamper-proof scores: ``python -m autograder nbgrader ASSIGNMENT [--student S]``.

The course's ``nbgrader_config.py`` makes nbgrader's own autograde use the isolated grader
(:mod:`.nbgrader_preprocessor`), so this command is ``nbgrader autograde ASSIGNMENT --force`` with this
command line's grading options passed through (``--seed``/``--new-seed``, ``--cases-factor``,
``--partial-credit``, ``--isolation``, ``--allow-reduced-isolation``); ``--student S`` regrades one late
submission. Formgrader's Autograde button gives the same score. Afterwards it reads the gradebook and prints each
student's total.
"""
from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..isolation.grader import Options
from ..release import nbgrader_env


@dataclass
class GradebookRun:
    scores: dict[str, float] = field(default_factory=dict)  # student -> total
    errors: list[str] = field(default_factory=list)


def configured(course: Path) -> bool:
    """Whether the course's nbgrader_config.py routes autograde through the isolated grader."""
    config = Path(course) / "nbgrader_config.py"
    return config.is_file() and "IsolatedAutograde" in config.read_text(encoding="utf-8", errors="replace")


def autograde_command(assignment: str, options: Options, student: str | None = None,
                      allow_reduced: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "nbgrader", "autograde", assignment, "--force",
           f"--IsolatedAutograde.cases_factor={options.case_factor}"]
    if student:
        cmd.append(f"--student={student}")
    if options.seed is not None:
        cmd.append(f"--IsolatedAutograde.seed={options.seed}")
    if options.isolation:
        cmd.append(f"--IsolatedAutograde.isolation={options.isolation}")
    if allow_reduced:
        cmd.append("--IsolatedAutograde.allow_reduced_isolation=True")
    cmd += [f"--IsolatedAutograde.partial_credit={spec}" for spec in options.partial_credit]
    return cmd


def run(assignment: str, course: Path, options: Options, student: str | None = None,
        allow_reduced: bool = False) -> GradebookRun:
    from nbgrader.api import Gradebook

    course = Path(course).resolve()
    if not configured(course):
        raise RuntimeError(f"{course / 'nbgrader_config.py'} does not use the isolated grader: add "
                           "IsolatedAutograde to c.Autograde.autograde_preprocessors (see this course's config)")
    proc = subprocess.run(autograde_command(assignment, options, student, allow_reduced), cwd=course,
                          env=nbgrader_env(), capture_output=True, text=True)
    outcome = GradebookRun()
    if proc.returncode != 0:
        outcome.errors.append(f"nbgrader autograde failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}")
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}?timeout=60") as gb:
        for sub in gb.assignment_submissions(assignment):
            if student is None or sub.student.id == student:
                outcome.scores[sub.student.id] = float(sub.score)
    return outcome


def add_command(sub, add_common, options_from_args) -> None:
    p = sub.add_parser("nbgrader", help="nbgrader autograde through the isolated grader (scores in the gradebook)")
    p.add_argument("assignment", metavar="ASSIGNMENT")
    p.add_argument("--student", default=None, help="grade only this student's submission (e.g. a late one)")
    add_common(p)

    def cmd(args) -> int:
        from ..course import course_root

        course = course_root(args.course)
        outcome = run(args.assignment, course, options_from_args(args), args.student, args.allow_reduced_isolation)
        for student, score in sorted(outcome.scores.items()):
            print(f"{student}: {score:g}")
        for line in outcome.errors:
            print(f"grader error: {line}", file=sys.stderr)
        print(f"gradebook updated for {len(outcome.scores)} student(s); nbgrader export / formgrader / "
              "generate_feedback use these scores")
        return 1 if outcome.errors else 0

    p.set_defaults(func=cmd)

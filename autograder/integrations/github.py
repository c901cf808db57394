"""GitHub Actions (GitHub Classroom style): grade a student repository's notebooks once, then report everywhere.

``python -m autograder github NOTEBOOK [...] --out-dir DIR`` writes ``DIR/results.json`` (Gradescope schema),
``DIR/junit.xml`` and ``DIR/summary.md``; appends the Markdown to ``$GITHUB_STEP_SUMMARY`` and ``points=X/Y`` to
``$GITHUB_OUTPUT`` when those are set (they are, inside Actions), and prints ``Points X/Y``. The seed and logs go to
``DIR/instructor.json``: do not upload that one to a student-visible artifact if you pin ``--seed``.
The ready workflow is ``templates/github-classroom/.github/workflows/convlab.yml``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ..isolation import report
from ..isolation.grader import Options, SubmissionResult, grade


def _append(env_var: str, text: str) -> None:
    target = os.environ.get(env_var)
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")


def points_line(result: SubmissionResult) -> str:
    return f"{result.score:g}/{result.max_score:g}"


def run(notebooks: list[Path], out_dir: Path, options: Options, assignment: str | None = None) -> SubmissionResult:
    result = grade(notebooks, options, assignment=assignment)
    out_dir = Path(out_dir)
    report.atomic_write(out_dir / "results.json", report.render(result, "json"))
    report.atomic_write(out_dir / "junit.xml", report.render(result, "junit"))
    summary = report.render(result, "md")
    report.atomic_write(out_dir / "summary.md", summary)
    report.atomic_write(out_dir / "instructor.json",
                        json.dumps(report.instructor_record(result, command="github"), indent=2) + "\n")
    _append("GITHUB_STEP_SUMMARY", summary)
    _append("GITHUB_OUTPUT", f"points={points_line(result)}")
    print(f"Points {points_line(result)}")
    return result


def add_command(sub, add_common, options_from_args) -> None:
    p = sub.add_parser("github", help="grade in GitHub Actions: JSON, JUnit and Markdown reports, job summary, points")
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    p.add_argument("--out-dir", required=True, type=Path, metavar="DIR")
    p.add_argument("--assignment", default=None, help="assignment id (default: recognised from the notebook)")
    add_common(p)

    def cmd(args) -> int:
        missing = [n for n in args.notebooks if not Path(n).is_file()]
        if missing:
            raise ValueError(f"no such notebook: {', '.join(missing)}")
        result = run([Path(n) for n in args.notebooks], args.out_dir, options_from_args(args), args.assignment)
        return 1 if result.grader_failed else 0

    p.set_defaults(func=cmd)

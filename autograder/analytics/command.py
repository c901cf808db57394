"""``python -m autograder report OUT_DIR --out FILE [--format html|md|json|canvas|moodle] [--compare-to OLD]``.

Reads a ``batch`` output, never writes into it. Similar answers need the submitted notebooks: by default the
folder the batch graded (recorded in ``OUT_DIR/.instructor/batch.state``), else ``--submitted``; without them the
report says so and lists no pairs.
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

from . import aggregate, changes, lms, render, similarity
from .load import load_batch

FORMATS = render.FORMATS + lms.FORMATS


def add_command(sub) -> None:
    r = sub.add_parser("report", help="class analytics over a batch output: misconceptions, needs a look, "
                                      "similar answers, LMS export")
    r.add_argument("out_dir", metavar="OUT_DIR", help="the --out folder of `python -m autograder batch`")
    r.add_argument("--out", required=True, metavar="FILE")
    r.add_argument("--format", choices=FORMATS, default="html",
                   help="html (default), md, json; canvas or moodle: gradebook CSV for import")
    r.add_argument("--compare-to", type=Path, default=None, metavar="OLD_OUT_DIR",
                   help="an earlier batch output: list who changed score, by how much, on which exercise")
    r.add_argument("--submitted", type=Path, default=None, metavar="SUBMITTED_DIR",
                   help="the submissions, for similar answers (default: the folder the batch graded)")
    r.add_argument("--course", type=Path, default=None,
                   help="course root with solutions/ and assignments/ (default: $CONVLAB_COURSE or nbgrader's "
                        "course directory)")
    r.add_argument("--similarity", type=float, default=similarity.THRESHOLD, metavar="T",
                   help=f"list answer pairs at least this similar, 0..1 (default {similarity.THRESHOLD})")
    r.set_defaults(func=cmd_report)


def _similar(run, args, report: dict) -> None:
    from ..course import CourseNotFound, course_root

    submitted = args.submitted or run.submitted
    if submitted is None or not Path(submitted).is_dir():
        report["notes"].append(f"similar answers not checked: the submissions were not found at {submitted} "
                               "(use --submitted)")
        return
    try:
        course = course_root(args.course)
    except CourseNotFound as exc:
        report["notes"].append(f"similar answers not checked: {exc}")
        return
    exercises = {aid: list(a["exercises"]) for aid, a in report["assignments"].items()}
    found = similarity.similar_answers(run, course, submitted, exercises, args.similarity)
    for aid, sim in found.items():
        report["assignments"][aid]["similar_answers"] = sim


def build_report(args) -> dict:
    """The report dict every format renders (see :mod:`.aggregate`)."""
    run = load_batch(Path(args.out_dir))
    report = aggregate.summarise(run)
    report["source"] = f"{Path(args.out_dir).resolve()}, {time.strftime('%Y-%m-%d %H:%M')}"
    report["notes"] = []
    _similar(run, args, report)
    if args.compare_to is not None:
        report["changes"] = changes.score_changes(run, load_batch(args.compare_to))
    return report


def cmd_report(args) -> int:
    from ..isolation.report import atomic_write

    out = Path(args.out)
    if args.format in lms.FORMATS:
        text = lms.export(load_batch(Path(args.out_dir)), args.format)
    else:
        report = build_report(args)
        text = render.render(report, args.format, Path(args.out_dir).resolve(), out.resolve().parent)
        for note in report["notes"]:
            print(f"note: {note}", file=sys.stderr)
    atomic_write(out, text)
    print(f"wrote {out} ({args.format})")
    return 0

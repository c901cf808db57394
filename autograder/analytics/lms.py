"""Grade export for learning management systems: one CSV row per student, one column per assignment.

Canvas (Grades > Import): the columns of Canvas's own gradebook export, ``Student, ID, SIS User ID,
SIS Login ID, Section``, then one column per assignment, and a ``Points Possible`` row under the header.
Canvas matches students by ``ID``, ``SIS User ID`` or ``SIS Login ID``; a column whose header is not an existing
assignment ``Name (id)`` becomes a new assignment. The nbgrader student id (the folder name) goes to
``SIS Login ID`` and ``Student``; leave ``ID`` empty.

Moodle (Grades > Import > CSV file): any columns; at import, ``Username`` is mapped to the user field
"username" and each assignment column to a grade item. The nbgrader student id goes to ``Username``.

Points are the grader's, unrounded beyond 4 decimals; a submission without a report counts 0.
"""
from __future__ import annotations

import csv
import io

from .load import ClassRun

CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
MOODLE_HEADER = ["Username"]
FORMATS = ("canvas", "moodle")


def _points(value: float) -> str:
    return f"{round(value, 4):g}"


def _table(run: ClassRun) -> tuple[list[str], list[str], dict[str, dict[str, float]], dict[str, float]]:
    assignments = run.assignments()
    students = sorted({s.student for s in run.submissions})
    scores: dict[str, dict[str, float]] = {s: {} for s in students}
    possible = {a: 0.0 for a in assignments}
    for sub in run.submissions:
        scores[sub.student][sub.assignment] = sub.score
        possible[sub.assignment] = max(possible[sub.assignment], sub.max_score)
    return assignments, students, scores, possible


def canvas_csv(run: ClassRun) -> str:
    assignments, students, scores, possible = _table(run)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CANVAS_HEADER + assignments)
    writer.writerow(["Points Possible", "", "", "", ""] + [_points(possible[a]) for a in assignments])
    for student in students:
        writer.writerow([student, "", "", student, ""] + [_points(scores[student].get(a, 0.0)) for a in assignments])
    return buf.getvalue()


def moodle_csv(run: ClassRun) -> str:
    assignments, students, scores, _ = _table(run)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MOODLE_HEADER + assignments)
    for student in students:
        writer.writerow([student] + [_points(scores[student].get(a, 0.0)) for a in assignments])
    return buf.getvalue()


def export(run: ClassRun, fmt: str) -> str:
    if fmt == "canvas":
        return canvas_csv(run)
    if fmt == "moodle":
        return moodle_csv(run)
    raise ValueError(f"unknown LMS format {fmt!r}; choose from {', '.join(FORMATS)}")

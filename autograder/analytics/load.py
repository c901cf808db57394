"""Read a ``batch`` output folder (:mod:`autograder.isolation.batch`) as plain records.

Layout read: ``OUT_DIR/<student>/<assignment>.json`` (Gradescope ``results.json``, one per submission),
``OUT_DIR/grades.csv`` (its ``status`` and, where present, ``flags`` columns),
``OUT_DIR/.instructor/<student>/<assignment>.json`` (the instructor's record: notebooks graded, grader errors,
integrity ``flags`` where the grader records them) and ``OUT_DIR/.instructor/batch.state`` (where the submissions
were). Nothing here trusts a file to be well formed: an unreadable report is a submission without
tests, flagged by the aggregation.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..isolation import resume


@dataclass
class Test:
    """One test line of a report: ``exercise`` is the test name before ``": "`` (``conv2d_im2col: speed`` ->
    ``conv2d_im2col``); ``extra`` is its ``extra_data`` (:func:`autograder.outcome.part_record`)."""

    name: str
    score: float
    max_score: float
    extra: dict

    @property
    def exercise(self) -> str:
        return self.name.split(": ", 1)[0]

    @property
    def failure(self) -> str | None:
        return self.extra.get("failure") if self.score < self.max_score else None

    @property
    def misconception(self) -> dict | None:
        m = self.extra.get("misconception")
        return m if isinstance(m, dict) and isinstance(m.get("name"), str) else None


@dataclass
class Submission:
    student: str
    assignment: str
    report: Path                                   # OUT_DIR/<student>/<assignment>.json
    score: float = 0.0
    max_score: float = 0.0
    status: str = "graded"                         # grades.csv's status
    has_report: bool = True
    flags: list[str] = field(default_factory=list)  # integrity flags (instructor record, grades.csv)
    tests: list[Test] = field(default_factory=list)
    extra: dict = field(default_factory=dict)      # the report's top-level extra_data (isolation...)
    record: dict = field(default_factory=dict)     # the instructor's record

    def exercise_scores(self) -> dict[str, tuple[float, float]]:
        """exercise -> (points, max points), summed over its parts, in report order."""
        out: dict[str, tuple[float, float]] = {}
        for t in self.tests:
            got, most = out.get(t.exercise, (0.0, 0.0))
            out[t.exercise] = (got + t.score, most + t.max_score)
        return out


@dataclass
class ClassRun:
    out: Path
    submissions: list[Submission]
    state: dict

    def assignments(self) -> list[str]:
        return sorted({s.assignment for s in self.submissions})

    def of(self, assignment: str) -> list[Submission]:
        return [s for s in self.submissions if s.assignment == assignment]

    @property
    def submitted(self) -> Path | None:
        where = self.state.get("submitted")
        return Path(where) if isinstance(where, str) else None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _tests(report: dict) -> list[Test]:
    tests = []
    for t in report.get("tests") or []:
        if isinstance(t, dict) and isinstance(t.get("name"), str):
            extra = t.get("extra_data") if isinstance(t.get("extra_data"), dict) else {}
            tests.append(Test(t["name"], _number(t.get("score")), _number(t.get("max_score")), extra))
    return tests


def _rows(out: Path) -> dict[tuple[str, str], dict]:
    """(student, assignment) -> its grades.csv row."""
    try:
        with open(out / "grades.csv", newline="", encoding="utf-8") as fh:
            return {(r.get("student") or "", r.get("assignment") or ""): r for r in csv.DictReader(fh)}
    except (OSError, csv.Error):
        return {}


def _flags(record: dict, row: dict) -> list[str]:
    listed = record.get("flags") if isinstance(record.get("flags"), list) else []
    column = [f.strip() for f in (row.get("flags") or "").split(";")]
    return list(dict.fromkeys(str(f) for f in [*listed, *column] if f))


def _submission(out: Path, student: str, assignment: str, rows: dict) -> Submission:
    path = resume.result_path(out, student, assignment)
    row = rows.get((student, assignment), {})
    sub = Submission(student, assignment, path, status=row.get("status") or "graded")
    record = resume.load_json(resume.record_path(out, student, assignment))
    sub.record = record if isinstance(record, dict) else {}
    sub.flags = _flags(sub.record, row)
    report = resume.load_json(path)
    if not isinstance(report, dict):
        sub.has_report = False
        return sub
    sub.extra = report.get("extra_data") if isinstance(report.get("extra_data"), dict) else {}
    sub.score, sub.max_score = _number(report.get("score")), _number(sub.extra.get("max_score"))
    sub.tests = _tests(report)
    return sub


def load_batch(out: Path) -> ClassRun:
    """Every submission of a ``batch`` output (reports, and rows of grades.csv whose report is missing)."""
    out = Path(out)
    if not out.is_dir():
        raise ValueError(f"{out} is not a folder (expected the OUT_DIR of `python -m autograder batch`)")
    rows = _rows(out)
    keys = {(p.parent.name, p.stem) for p in out.glob("*/*.json") if not p.parent.name.startswith(".")}
    keys |= set(rows)
    state = resume.read_state(out)
    subs = [_submission(out, student, assignment, rows) for student, assignment in sorted(keys)]
    return ClassRun(out, subs, state)


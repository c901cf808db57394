"""Aggregate a class run: per assignment the scores, per exercise the mean, the full marks, the misconceptions
ranked by how many students hit them, the failure categories, and who needs a look.

The result is the report's JSON form (more keys than the contract, never fewer)::

    {"assignments": {ID: {"students": n, "max_score": m, "mean": x, "scores": {student: points},
                          "reports": {student: "student/ID.json"},
                          "exercises": {EX: {"mean": x, "max_score": m, "full_marks": k,
                                             "misconceptions": [{"id", "name", "count", "students": [...]}, ...],
                                             "failures": {category: [students]}}},
                          "needs_a_look": [{"student": s, "reasons": {kind: [details]}}]}}}

Misconceptions are most frequent first (ties by name); students are sorted by name everywhere.
"""
from __future__ import annotations

from statistics import fmean

from .. import outcome
from .load import ClassRun, Submission

REDUCED_ISOLATION = "reduced isolation"
INTEGRITY = "integrity"
NO_REPORT = "no report"
# failure categories that put a student on the "needs a look" list (kind -> the exercises concerned)
LOOK_CATEGORIES = (outcome.FORBIDDEN_API, outcome.TIMEOUT, outcome.NOTEBOOK_UNREADABLE, outcome.NOTEBOOK_MISSING,
                   outcome.GRADER_ERROR)
# grades.csv statuses already said by a failure category or a reason (others, e.g. "other assignment", are flags)
PLAIN_STATUSES = ("graded", "missing", "unreadable", "grader error", "no result", "")


def exercise_order(subs: list[Submission]) -> list[str]:
    """Exercises in the order the reports list them."""
    seen: dict[str, None] = {}
    for s in subs:
        for t in s.tests:
            seen.setdefault(t.exercise, None)
    return list(seen)


def _ranked(hits: dict[str, dict]) -> list[dict]:
    rows = [dict(v, count=len(v["students"]), students=sorted(v["students"])) for v in hits.values()]
    return sorted(rows, key=lambda r: (-r["count"], r["name"]))


def _hits(exercise: str, subs: list[Submission]) -> tuple[dict[str, dict], dict[str, set]]:
    """Who hit which misconception (by id) and which failure category in ``exercise``."""
    misconceptions: dict[str, dict] = {}
    failures: dict[str, set] = {}
    for s in subs:
        for t in (t for t in s.tests if t.exercise == exercise):
            m = t.misconception
            if m:
                key = m.get("id") or outcome.slug(m["name"])
                misconceptions.setdefault(key, {"id": key, "name": m["name"], "students": set()})["students"].add(
                    s.student)
            if t.failure:
                failures.setdefault(t.failure, set()).add(s.student)
    return misconceptions, failures


def exercise_summary(exercise: str, subs: list[Submission]) -> dict:
    """Mean points, full marks, misconceptions and failure categories of one exercise over ``subs``."""
    points = [s.exercise_scores().get(exercise, (0.0, 0.0)) for s in subs]
    most = max((m for _, m in points), default=0.0)
    misconceptions, failures = _hits(exercise, subs)
    return {
        "mean": round(fmean(p for p, _ in points), 4) if points else 0.0,
        "max_score": most,
        "full_marks": sum(1 for p, m in points if m > 0 and p >= m),
        "misconceptions": _ranked(misconceptions),
        "failures": {k: sorted(v) for k, v in sorted(failures.items(), key=lambda kv: (-len(kv[1]), kv[0]))},
    }


def _flags(sub: Submission) -> list[str]:
    """Integrity flags: the grader's (instructor record, grades.csv) and a grades.csv status other than the plain
    ones; reduced isolation is a reason of its own."""
    found = [f"status: {sub.status}"] if sub.status not in PLAIN_STATUSES else []
    return found + [f for f in sub.flags if f != REDUCED_ISOLATION]


def look_reasons(sub: Submission) -> dict[str, list[str]]:
    """Why an instructor should look at this submission: kind -> details (exercises, flags); empty if none."""
    reasons: dict[str, list[str]] = {}
    if not sub.has_report:
        reasons[NO_REPORT] = ["the batch wrote no result for this submission"]
    for t in sub.tests:
        if t.failure in LOOK_CATEGORIES and t.exercise not in reasons.get(t.failure, []):
            reasons.setdefault(t.failure, []).append(t.exercise)
    if sub.record.get("errors") and outcome.GRADER_ERROR not in reasons:
        reasons[outcome.GRADER_ERROR] = [str(e) for e in sub.record["errors"]][:3]
    if sub.extra.get("isolation") == "reduced" or REDUCED_ISOLATION in sub.flags:
        reasons[REDUCED_ISOLATION] = ["student code ran without the bubblewrap sandbox"]
    flags = _flags(sub)
    if flags:
        reasons[INTEGRITY] = flags
    return reasons


def assignment_summary(subs: list[Submission], run: ClassRun) -> dict:
    look = [{"student": s.student, "reasons": r} for s in subs if (r := look_reasons(s))]
    return {
        "students": len(subs),
        "max_score": max((s.max_score for s in subs), default=0.0),
        "mean": round(fmean(s.score for s in subs), 4) if subs else 0.0,
        "scores": {s.student: s.score for s in subs},
        "reports": {s.student: s.report.relative_to(run.out).as_posix() for s in subs},
        "exercises": {ex: exercise_summary(ex, subs) for ex in exercise_order(subs)},
        "needs_a_look": sorted(look, key=lambda r: r["student"]),
    }


def summarise(run: ClassRun) -> dict:
    """The report's JSON form (see the module docstring)."""
    return {"assignments": {aid: assignment_summary(run.of(aid), run) for aid in run.assignments()}}

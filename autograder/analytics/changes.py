"""After a regrade: who changed score, by how much, on which exercise (``report --compare-to OLD_OUT_DIR``)."""
from __future__ import annotations

from .load import ClassRun, Submission

EPSILON = 1e-9


def _exercise_changes(new: Submission | None, old: Submission | None) -> list[dict]:
    now = new.exercise_scores() if new else {}
    before = old.exercise_scores() if old else {}
    rows = []
    for ex in list(now) + [e for e in before if e not in now]:
        a, b = before.get(ex, (0.0, 0.0))[0], now.get(ex, (0.0, 0.0))[0]
        if abs(b - a) > EPSILON:
            rows.append({"exercise": ex, "old": a, "new": b, "delta": round(b - a, 4)})
    return rows


def score_changes(new: ClassRun, old: ClassRun) -> dict:
    """``{"changed": [{"student", "assignment", "old", "new", "delta", "exercises": [...]}], "unchanged": n}``;
    a submission present in one run only counts 0 points in the other. Largest changes first."""
    before = {(s.student, s.assignment): s for s in old.submissions}
    now = {(s.student, s.assignment): s for s in new.submissions}
    changed, unchanged = [], 0
    for key in sorted(set(before) | set(now)):
        b, n = before.get(key), now.get(key)
        exercises = _exercise_changes(n, b)
        old_score, new_score = (b.score if b else 0.0), (n.score if n else 0.0)
        if not exercises and abs(new_score - old_score) <= EPSILON:
            unchanged += 1
            continue
        changed.append({"student": key[0], "assignment": key[1], "old": old_score, "new": new_score,
                        "delta": round(new_score - old_score, 4), "exercises": exercises})
    changed.sort(key=lambda r: (-abs(r["delta"]), r["student"], r["assignment"]))
    return {"changed": changed, "unchanged": unchanged}

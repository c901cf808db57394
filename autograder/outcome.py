"""The machine-readable outcome of one graded part: what class analytics count (``autograder.analytics``).

One policy lives here: the names of the failure categories, the stable id of a misconception (a slug of its
name), and :func:`part_record`, the plain dict a report attaches to each test (Gradescope's ``extra_data``)::

    {"passed": 3, "cases": 40, "failure": "wrong values" | None,
     "misconception": {"id": "kernel-not-flipped", "name": "kernel not flipped"} | None}

``failure`` is None for a part with full marks. Categories are set where they are known (the engine, the
isolated grader, the batch); this module only names them and turns a result into plain data.
"""
from __future__ import annotations

import re
from typing import Any, Iterable

WRONG_VALUES = "wrong values"
EXCEPTION = "exception"
TIMEOUT = "timeout"
FORBIDDEN_API = "forbidden API"
NOT_IMPLEMENTED = "not implemented"
NOTEBOOK_UNREADABLE = "notebook unreadable"
NOTEBOOK_MISSING = "notebook missing"
NEEDS_CORRECT_ANSWER = "needs a correct answer first"
GRADER_ERROR = "grader error"
OTHER = "other"

CATEGORIES = (WRONG_VALUES, EXCEPTION, TIMEOUT, FORBIDDEN_API, NOT_IMPLEMENTED, NOTEBOOK_UNREADABLE,
              NOTEBOOK_MISSING, NEEDS_CORRECT_ANSWER, GRADER_ERROR, OTHER)


def slug(name: str) -> str:
    """A stable id from a human name: ``"kernel flipped along one axis only"`` -> ``"kernel-flipped-along-one-
    axis-only"``. Misconceptions that share a name (one per direction) share the id: they are one mistake."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def failure_of(outcomes: Iterable[Any]) -> str:
    """The category of a part whose failing calls produced ``outcomes`` (:class:`autograder.answers.Outcome`):
    a timeout anywhere wins, then an error (exception, crash, unreadable value), else wrong values."""
    outcomes = list(outcomes)
    if any(getattr(o, "timed_out", False) for o in outcomes):
        return TIMEOUT
    if any(not o.ok for o in outcomes):
        return EXCEPTION
    return WRONG_VALUES


def part_record(part: Any) -> dict:
    """The plain dict of one :class:`autograder.engine.PartResult` (see the module docstring)."""
    full = part.score >= part.max_score
    failure = None if full else (part.failure or OTHER)
    misconception = None
    if part.misconception and not full:
        misconception = {"id": part.misconception_id or slug(part.misconception), "name": part.misconception}
    return {"passed": part.passed, "cases": part.total, "failure": failure, "misconception": misconception}

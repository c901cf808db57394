"""Which notebook of a submission counts, and what ``grades.csv`` says about each submission.

Order (:func:`order`): the notebook named exactly like the assignment (``<id>.ipynb``) first, then names that
contain the assignment id, then the rest; within each, copies (``-Copy1``, ``(1)``, ``copy``) last, then by name.
The grader grades them in this order and counts the first notebook of each assignment.

Status (:func:`status`), one per ``<student>/<assignment>/`` folder:
``graded`` | ``unreadable`` (not a notebook, corrupt, too large) | ``other assignment`` (the notebook is another
assignment's) | ``missing`` (no notebook submitted) | ``grader error`` (the grader failed: rerun the batch).
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

GRADED, UNREADABLE, OTHER, MISSING, GRADER_ERROR = "graded", "unreadable", "other assignment", "missing", \
    "grader error"
STATUSES = (GRADED, UNREADABLE, OTHER, MISSING, GRADER_ERROR)
_COPY = re.compile(r"(-copy\d*|\bcopy\b|\(\d+\)|\s\d+$)", re.IGNORECASE)


def _rank(path: Path, assignment: str | None, known: Sequence[str]) -> tuple:
    stem = Path(path).stem
    ids = [assignment] if assignment else list(known)
    exact = stem in ids
    related = any(i and i in stem for i in ids)
    return (not exact, not related, bool(_COPY.search(stem)), Path(path).name)


def order(paths: Sequence[Path], assignment: str | None = None) -> list[Path]:
    """``paths`` with the notebook that should count for ``assignment`` (or any known assignment) first."""
    from .. import registry

    known = tuple(registry.assignments())
    return sorted((Path(p) for p in paths), key=lambda p: _rank(p, assignment, known))


def status(assignment: str, notebooks: Sequence[Path], counted, grader_failed: bool) -> str:
    """The ``grades.csv`` status of one submission folder for ``assignment``; ``counted`` is the
    :class:`~.grader.NotebookResult` that counted (or None)."""
    if grader_failed:
        return GRADER_ERROR
    if not notebooks:
        return MISSING
    if counted is None or getattr(counted, "unreadable", False):
        return UNREADABLE
    if getattr(counted, "recognised", None) not in (None, assignment):
        return OTHER
    return GRADED


def content_assignment(nb: dict | None, sources: dict[str, dict], exercises: dict[str, list[str]]) -> str | None:
    """The assignment a notebook's *content* belongs to (its grade_ids and functions), whatever its name or folder."""
    from .submission import recognise

    return recognise(nb, Path("/"), sources, exercises) if nb is not None else None

"""The curriculum contract (``shared/CURRICULUM.md``) read as data: assignment -> graded functions.

The contract is the fixed interface between notebooks, the grader and everyone grading with them; the tests
check the registry and the notebooks against it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .course import find_course


@dataclass(frozen=True)
class Entry:
    assignment: str
    name: str
    signature: str  # e.g. "corr2d(x, k)"


def find_contract() -> Path | None:
    """``shared/CURRICULUM.md`` beside the course root (or inside it), if there is one."""
    root = find_course()
    candidates = (root.parent / "shared" / "CURRICULUM.md", root / "shared" / "CURRICULUM.md") if root else ()
    return next((p for p in candidates if p.is_file()), None)


def parse(text: str) -> list[Entry]:
    entries, assignment = [], None
    for line in text.splitlines():
        head = re.match(r"^## (\d\d-[a-z0-9-]+)", line)
        if head:
            assignment = head.group(1)
            continue
        row = re.match(r"^\|\s*`(\w+)`\s*\|\s*(?:torch:\s*)?`([^`]+)`", line)
        if row and assignment:
            name, sig = row.groups()
            sig = sig.split(" with ")[0].strip()
            if sig.startswith(name + "("):
                entries.append(Entry(assignment, name, sig))
    return entries

"""Whether this grading process has a core to spare: the one place that decides how much a notebook's sandboxes
may overlap.

A grading process keeps about one core busy (the oracle, the comparison, the protocol) while its sandbox runs the
student's code. Launching a notebook's second sandbox early (:func:`autograder.isolation.sandbox.prestarted`: the
torch sandbox imports torch while the NumPy exercises are graded) shortens one notebook's wall time only when a
core is idle for it; where every core already grades a notebook (``batch --workers`` = cores), it would only
compete with the others. So it is done where this machine has at least two cores per grading process.
"""
from __future__ import annotations

import os

_GRADERS = {"count": 1}


def graders_here(count: int) -> None:
    """Say how many grading processes run on this machine at once (a local pool sets it in each process)."""
    _GRADERS["count"] = max(1, int(count))


def available() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def spare() -> bool:
    """Whether each grading process on this machine has a second core (for a sandbox launched ahead)."""
    return available() >= 2 * _GRADERS["count"]

"""The cyclic garbage collector's setting for the grader's own processes (the command line's, set by
``python -m autograder``, and every grading process's, set by ``executors.grade_task``: forked, spawned or on a
Dask worker; never a sandbox's, never a student's kernel).

A grading process builds data that lives as long as the run (torch's modules, the drawn cases, their expected
values, the encoded messages): hundreds of thousands of objects that all survive. With Python's default thresholds
``(700, 10, 10)`` the collector examines them again and again: ``grade`` of 06 spent 0.7 s of its 6 there (six full
passes over ~400,000 objects), a batch's preparation ~0.5 s. A first threshold of :data:`YOUNG` lets short-lived
objects die before a young collection looks at them, so far fewer of them pile up into the old generation and
full passes become rare. Cyclic garbage is still collected; full passes still follow Python's own rule (a quarter
more long-lived objects than at the last one). Measured (benchmarks/REPORT.md, session 8): ``grade`` of 06
5.05-5.28 -> 4.49-4.94 s, a batch of eight 06 notebooks 14.3-14.4 -> 13.6-13.7 s, the same peak memory; inside a
sandbox it changes nothing measurable, so the student's process keeps Python's defaults.
"""
from __future__ import annotations

import gc

#: allocations (less deallocations) of tracked objects between two young collections (Python's default: 700)
YOUNG = 10_000


def tune() -> None:
    """Set the grader's first threshold (the older generations' thresholds stay Python's)."""
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(YOUNG, young), middle, old)

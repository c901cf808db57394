"""The in-notebook check: ``check("corr2d", corr2d)`` in a test cell.

It prints short teaching feedback and returns an :class:`~autograder.engine.ExerciseResult`; the test cell ends
with ``float(result)`` so nbgrader awards partial credit. Nothing is written to stderr on an honest answer.

``hidden=True`` (inside ``### BEGIN HIDDEN TESTS``) grades the visible and the hidden cases together; the hidden
ones come from the course secret (see :mod:`autograder.seeds`).

Each call of the student's function may take at most :data:`CALL_SECONDS` (an endless loop ends the check with one
line instead of hanging the kernel), and when the answer calls another exercise's function that fails its own
check, the feedback blames that helper (:mod:`autograder.attribution`).
"""
from __future__ import annotations

import warnings
from typing import Callable

from . import registry
from .answers import local_answer
from .attribution import blame_helper, failed, helpers_called
from .cases import hidden_cases, visible_cases
from .engine import ExerciseResult, grade_exercise
from .forbidden import scan_function
from .oracle import resolve_device
from .seeds import hidden_seed

#: the time limit of one call of the student's function in the notebook check (the cases are small)
CALL_SECONDS = 10.0


def check(name: str, fn: Callable, *, hidden: bool = False, device: str = "auto", seed: int | None = None,
          show: bool = True, call_seconds: float | None = CALL_SECONDS) -> ExerciseResult:
    """Grade ``fn`` as exercise ``name`` against the torch oracle; print feedback unless ``show=False``."""
    ex = registry.get(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dev = resolve_device(device)
        cases = visible_cases(ex)
        label = ""
        if hidden:
            secret, _source = (seed, "seed") if seed is not None else hidden_seed()
            cases = cases + hidden_cases(ex, secret)
            label = "visible+hidden "
        violations = scan_function(fn, ex.forbidden_names)
        result = grade_exercise(ex, local_answer(fn, ex.encode, dev, call_seconds), cases, dev, violations,
                                label=label)
        if not violations and result.score < result.max_score:
            result = _blame_failing_helper(ex.name, fn, result, dev, call_seconds)
    if show:
        print(result.text)
    return result


def _blame_failing_helper(name: str, fn: Callable, result: ExerciseResult, dev: str,
                          call_seconds: float | None) -> ExerciseResult:
    """Check, on its visible cases, each other exercise of the assignment that ``fn`` calls; the first that fails
    is named as the real cause."""
    ex = registry.get(name)
    siblings = [e.name for e in registry.assignments().get(ex.assignment, []) if e.name != name]
    for helper, helper_fn in helpers_called(fn, siblings).items():
        helper_ex = registry.get(helper)
        own = grade_exercise(helper_ex, local_answer(helper_fn, helper_ex.encode, dev, call_seconds),
                             visible_cases(helper_ex), dev, scan_function(helper_fn, helper_ex.forbidden_names),
                             shrink_budget=0)
        if failed(own.parts[0]):
            return blame_helper(result, helper, own.parts[0])
    return result

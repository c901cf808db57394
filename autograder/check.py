"""The in-notebook check: ``check("corr2d", corr2d)`` in a test cell.

It prints short teaching feedback and returns an :class:`~autograder.engine.ExerciseResult`; the test cell ends
with ``float(result)`` so nbgrader awards partial credit. Nothing is written to stderr on an honest answer.

``hidden=True`` (inside ``### BEGIN HIDDEN TESTS``) grades the visible and the hidden cases together; the hidden
ones come from the course secret (see :mod:`autograder.seeds`).
"""
from __future__ import annotations

import warnings
from typing import Callable

from . import registry
from .answers import local_answer
from .cases import hidden_cases, visible_cases
from .engine import ExerciseResult, grade_exercise
from .forbidden import scan_function
from .oracle import resolve_device
from .seeds import hidden_seed


def check(name: str, fn: Callable, *, hidden: bool = False, device: str = "auto", seed: int | None = None,
          show: bool = True) -> ExerciseResult:
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
        result = grade_exercise(ex, local_answer(fn, ex.encode, dev), cases, dev, violations, label=label)
    if show:
        print(result.text)
    return result

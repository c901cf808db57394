"""The in-notebook check: ``check("corr2d", corr2d)`` in a test cell.

It prints short teaching feedback and returns an :class:`~autograder.engine.ExerciseResult`; the test cell ends
with ``float(result)`` so nbgrader awards partial credit. Nothing is written to stderr on an honest answer.

With ``hidden`` set (in the hidden part of a test cell, which students never see) it grades the visible and the
hidden cases together; the hidden ones come from the course secret (:mod:`autograder.seeds`, not in the student
edition).

This module is also an IPython extension (the student edition's kernels load it): after a kernel restart, a cell
that needs the setup cell says "run the setup cell first" in one line instead of a ``NameError`` traceback.

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
            cases = cases + hidden_cases(ex, seed if seed is not None else _hidden_seed())
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


def _hidden_seed() -> int:
    try:
        from .seeds import hidden_seed
    except ImportError:  # the student edition: hidden cases exist only where the course is
        raise RuntimeError("hidden cases are graded by your instructor; check(name, fn) runs the visible ones") \
            from None
    return hidden_seed()[0]


# ------------------------------------------------------------------------------------------ after a restart

RUN_SETUP_FIRST = ("{error}: run the setup cell first (the first code cell; after a kernel restart: "
                   "Run > Run All Above Selected Cell)")


class SetupNotRun(NameError):
    """A ``NameError`` in a kernel whose setup cell has not run: shown as one line."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]


def _name_error(shell, etype, value, tb, tb_offset=None):
    """IPython custom exception handler: a ``NameError`` before the setup cell ran (no ``check`` in the user's
    namespace) is shown as one line; any other ``NameError`` as usual."""
    if "check" not in shell.user_ns:
        value = SetupNotRun(RUN_SETUP_FIRST.format(error=f"{etype.__name__}: {value}"))
        etype = SetupNotRun
    shell.showtraceback((etype, value, tb), tb_offset=tb_offset)


def load_ipython_extension(ipython) -> None:
    """``%load_ext autograder.check``; the student edition loads it in every kernel of its environment."""
    ipython.set_custom_exc((NameError,), _name_error)

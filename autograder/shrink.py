"""Find the smallest failing input: a greedy shrink over a case's integer parameters, then its values.

Like hypothesis' shrinking, but deterministic and bounded so that it also works through the isolated grader's
process boundary: every probe is one call of the student's function. Starting from a failing case, each
integer parameter is lowered (to its minimum, halfway, by one valid step) while the answer still fails; values are
replaced by small integers when that still fails, so the case can be printed and worked out by hand.
"""
from __future__ import annotations

from typing import Callable

from .cases import Case, build_case, stable_seed
from .spec import Exercise


def _candidates(value: int, low: int, allowed: Callable[[int], bool] = lambda v: True) -> list[int]:
    """Lower values to try, in order: the minimum, halfway, and the next allowed value below ``value`` (one
    step, or more where the values in between are not ``allowed``: a hole in the valid parameters is no wall)."""
    step = next((v for v in range(value - 1, low - 1, -1) if allowed(v)), None)
    out = []
    for v in (low, (value + low) // 2, step):
        if v is not None and low <= v < value and v not in out:
            out.append(v)
    return out


def shrink(ex: Exercise, start: Case, fails: Callable[[Case], bool], budget: int = 80) -> Case:
    """The smallest case found that still ``fails``, within ``budget`` calls (``start`` must fail)."""
    calls = 0

    def probe(params: dict, simple: bool, attempt: int = 0) -> Case | None:
        nonlocal calls
        if calls >= budget or not ex.valid(params):
            return None
        calls += 1
        case = build_case(ex, params, stable_seed("shrink", ex.name, sorted(params.items()), attempt), simple)
        return case if fails(case) else None

    best = start
    # simple integer values are much easier to read: prefer them when they reproduce the failure
    for attempt in range(2):
        found = probe(best.params, True, attempt)
        if found:
            best = found
            break
    simple = best.simple
    improved = True
    while improved and calls < budget:
        improved = False
        for key in sorted(ex.params_min):
            if key not in best.params:
                continue
            params = best.params
            for value in _candidates(params[key], ex.params_min[key], lambda v: ex.valid({**params, key: v})):
                found = probe({**best.params, key: value}, simple)
                if found:
                    best, improved = found, True
                    break
    return best

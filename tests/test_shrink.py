"""The shrinker (autograder.shrink): from a failing case to the smallest failing one it can find, within budget.

A synthetic exercise with two sizes (``rows``, ``cols``) and a flag: each property is checked on failures that
depend on the sizes in a known way, so the smallest failing case is known exactly.
"""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.cases import build_case
from autograder.shrink import _candidates, shrink
from autograder.spec import Call, Exercise

MINIMUM = {"rows": 1, "cols": 2, "flag": 0}

GRID = Exercise(
    name="grid", assignment="00-synthetic", points=1, signature="grid(x)",
    draw_params=lambda rng: {"rows": int(rng.integers(1, 40)), "cols": int(rng.integers(2, 40)), "flag": 1},
    build=lambda p, draw: Call((draw.array(p["rows"], p["cols"]),)),
    oracle=lambda x: x,
    describe=lambda p: f"x ({p['rows']}, {p['cols']})",
    params_min=MINIMUM,
    valid=lambda p: p["cols"] >= 2 and p["rows"] >= 1 and p["cols"] != 7,   # 7 columns never make sense here
)

sizes = st.fixed_dictionaries({"rows": st.integers(1, 60), "cols": st.integers(2, 60), "flag": st.integers(0, 1)})


def start(params: dict):
    return build_case(GRID, params, value_seed=1)


class Counting:
    """A ``fails`` predicate on the parameters that counts its calls and records every case it saw."""

    def __init__(self, rule):
        self.rule, self.seen = rule, []

    def __call__(self, case) -> bool:
        self.seen.append(case)
        return self.rule(case.params)


@settings(max_examples=60, deadline=None)
@given(sizes, st.integers(1, 60), st.integers(2, 60))
def test_a_size_threshold_is_found_exactly(params, min_rows, min_cols):
    """Failing from ``min_rows`` rows and ``min_cols`` columns on: the smallest failing case is exactly there."""
    params = {**params, "rows": max(params["rows"], min_rows), "cols": max(params["cols"], min_cols)}
    params["cols"] += params["cols"] == 7                       # start from a valid case
    fails = Counting(lambda p: p["rows"] >= min_rows and p["cols"] >= min_cols)
    small = shrink(GRID, start(params), fails, budget=200)
    assert small.params["rows"] == min_rows
    assert small.params["cols"] == min_cols or (min_cols == 7 and small.params["cols"] == 8)   # 7 is not valid
    assert small.params["flag"] == 0


@settings(max_examples=60, deadline=None)
@given(sizes, st.integers(0, 80), st.data())
def test_the_result_still_fails_is_never_larger_and_the_budget_holds(params, budget, data):
    failing = data.draw(st.sets(st.integers(1, 60), min_size=1), label="rows that fail")
    failing.add(params["rows"])
    fails = Counting(lambda p: p["rows"] in failing)
    first = start(params)
    small = shrink(GRID, first, fails, budget=budget)
    assert fails.rule(small.params)
    assert all(small.params[k] <= params[k] for k in params)
    assert len(fails.seen) <= budget
    assert all(GRID.valid(case.params) for case in fails.seen)     # only valid parameters are proposed


def test_the_start_comes_back_unchanged_when_nothing_smaller_fails():
    first = start({"rows": 5, "cols": 5, "flag": 1})
    assert shrink(GRID, first, lambda case: case is first) is first


def test_simple_values_are_preferred_when_they_still_fail():
    small = shrink(GRID, start({"rows": 3, "cols": 4, "flag": 1}), lambda case: case.params["rows"] >= 2)
    assert small.simple and small.params == {"rows": 2, "cols": 2, "flag": 0}
    x = small.call.args[0]
    assert np.array_equal(x, np.round(x)) and np.abs(x).max() <= 3     # small integers, to work out by hand


def test_random_values_are_kept_when_only_they_fail():
    """A failure that needs non-integer values (e.g. a rounding mistake) is shrunk on random values."""
    small = shrink(GRID, start({"rows": 6, "cols": 6, "flag": 1}),
                   lambda case: not np.array_equal(case.call.args[0], np.round(case.call.args[0])))
    assert not small.simple and small.params == MINIMUM


def test_shrinking_is_deterministic():
    def rule(case):
        return case.params["rows"] * case.params["cols"] >= 12

    first = start({"rows": 9, "cols": 9, "flag": 1})
    a, b = shrink(GRID, first, rule), shrink(GRID, first, rule)
    assert a.params == b.params and a.value_seed == b.value_seed
    assert np.array_equal(a.call.args[0], b.call.args[0])


def test_a_zero_budget_makes_no_call():
    fails = Counting(lambda p: True)
    first = start({"rows": 9, "cols": 9, "flag": 1})
    assert shrink(GRID, first, fails, budget=0) is first and fails.seen == []


@given(st.integers(0, 100), st.integers(0, 100))
def test_candidates_are_smaller_distinct_and_not_below_the_minimum(value, low):
    found = _candidates(value, low)
    assert len(found) == len(set(found))
    assert all(low <= v < value for v in found)
    assert (found == []) == (value <= low)
    if value > low:
        assert found[0] == low and found[-1] == value - 1


@given(st.integers(0, 60), st.integers(0, 60), st.sets(st.integers(0, 60)))
def test_the_one_step_candidate_steps_over_values_that_are_not_allowed(value, low, holes):
    found = _candidates(value, low, lambda v: v not in holes)
    below = [v for v in range(low, value) if v not in holes]
    if below:
        assert max(below) in found              # the next allowed value down, however far
    assert all(low <= v < value for v in found)


def test_declared_parameters_shrink_to_their_smallest_and_kept_ones_stay():
    """With ``params`` the shrinker's minima come from the declaration: ``smallest`` below the drawn domain is
    reached, a ``shrink=False`` parameter (a value that makes the mistake visible) is never lowered."""
    from autograder.params import Param

    layered = Exercise(
        name="layers", assignment="00-synthetic", points=1, signature="layers(x, n)",
        params=[Param("n", 1, 5, smallest=0), Param("size", 2, 9), Param("eps", 0, 3, shrink=False)],
        build=lambda p, draw: Call((draw.array(p["size"]), p["n"])), oracle=lambda x, n: x)
    assert layered.params_min == {"n": 0, "size": 2}
    small = shrink(layered, build_case(layered, {"n": 4, "size": 9, "eps": 3}, 1), lambda case: True, budget=50)
    assert small.params == {"n": 0, "size": 2, "eps": 3}

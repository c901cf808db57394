"""Case parameters (``autograder.params``): drawing is a pure function of the generator's stream."""
from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.params import Param, ParamsDraw, _pick


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.integers(-5, 70), min_size=1, max_size=12).map(tuple))
def test_pick_is_numpys_choice_on_the_same_stream(seed, values):
    """The hidden cases were drawn with ``rng.choice``; ``_pick`` gives the same values and leaves the generator in
    the same state, so the cases a seed gives do not change."""
    ours, numpys = np.random.default_rng(seed), np.random.default_rng(seed)
    assert [_pick(ours, values) for _ in range(4)] == [int(numpys.choice(values)) for _ in range(4)]
    assert ours.random() == numpys.random()


def test_favoured_values_are_drawn_as_declared():
    draw = ParamsDraw([Param("k", 1, 7, mostly=(3, 3, 5), chance=0.9), Param("n", 1, lambda p: p["k"])])
    rng = np.random.default_rng(0)
    cases = [draw(rng) for _ in range(400)]
    assert all(1 <= c["k"] <= 7 and 1 <= c["n"] <= c["k"] for c in cases)
    favoured = sum(c["k"] in (3, 5) for c in cases) / len(cases)
    assert 0.85 < favoured < 0.97
    assert sum(c["k"] == 3 for c in cases) > sum(c["k"] == 5 for c in cases)   # 3 is listed twice

"""The comparison engine: correct answers of either float dtype pass, wrong ones never do (property-based)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from autograder.compare import NotPlainData, compare, to_plain

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False)
arrays = hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=4, max_side=5), elements=finite)


@settings(max_examples=60, deadline=None)
@given(arrays)
def test_exact_and_float32_answers_pass(expected):
    assert compare(expected, expected.copy())
    assert compare(expected, expected.astype(np.float32))


@settings(max_examples=60, deadline=None)
@given(arrays, st.data())
def test_a_changed_entry_fails(expected, data):
    got = expected.copy()
    idx = data.draw(st.tuples(*[st.integers(0, s - 1) for s in expected.shape]))
    scale = max(1.0, float(np.abs(expected).max()))
    got[idx] += data.draw(st.sampled_from([1e-4, -1e-3, 0.5])) * scale
    verdict = compare(expected, got)
    assert not verdict and "differ" in verdict.reason
    assert not compare(expected, got.astype(np.float32))


def test_float32_rounding_of_a_real_convolution_passes():
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(4, 64, 16, 16, generator=g, dtype=torch.float64), torch.randn(32, 64, 3, 3, generator=g,
                                                                                        dtype=torch.float64)
    expected = F.conv2d(x, w).numpy()
    got32 = F.conv2d(x.float(), w.float()).numpy()
    assert got32.dtype == np.float32 and compare(expected, got32)


@pytest.mark.parametrize("got, reason", [
    (np.zeros((3, 4)), "shape"),
    (np.zeros((1, 3, 3)), "shape"),
    (np.zeros(3), "shape"),
    (np.full((3, 3), np.nan), "NaN"),
    (np.full((3, 3), np.inf), "NaN or Inf"),
    (np.zeros((3, 3), dtype=np.float16), "float32 or float64"),
    (np.zeros((3, 3), dtype=np.int64), "float32 or float64"),
    (3.0, "expected an array"),
    ((np.zeros((3, 3)),), "expected an array"),
])
def test_wrong_form_fails_with_a_reason(got, reason):
    verdict = compare(np.zeros((3, 3)), got)
    assert not verdict and reason in verdict.reason


def test_broadcastable_shapes_do_not_pass():
    assert not compare(np.ones((2, 3)), np.ones((1, 3)))
    assert not compare(np.ones((1, 3)), np.ones((3,)))


def test_integers_and_bools_are_exact_and_typed():
    assert compare(5, 5) and not compare(5, 6)
    assert not compare(5, 5.0) and "expected an int" in compare(5, 5.0).reason
    assert not compare(1, True)
    assert compare(True, True) and not compare(True, 1) and not compare(False, True)
    ints = np.arange(6).reshape(2, 3)
    assert compare(ints, ints.astype(np.int32))
    assert not compare(ints, ints.astype(np.float64))
    assert not compare(ints, ints + (ints == 5))


def test_tuples_are_compared_by_name():
    exp = (np.ones(2), np.zeros(3))
    assert compare(exp, (np.ones(2), np.zeros(3)), names=("dx", "dw"))
    verdict = compare(exp, (np.ones(2), np.ones(3)), names=("dx", "dw"))
    assert not verdict and verdict.reason.startswith("dw:")
    assert not compare(exp, (np.ones(2),))


def test_to_plain_strips_subclasses_and_rejects_objects():
    class Liar(np.ndarray):
        def __eq__(self, other):
            return True

    liar = np.zeros(3).view(Liar)
    plain = to_plain(liar)
    assert type(plain) is np.ndarray and not compare(np.ones(3), plain)

    class AlwaysEqual:
        def __eq__(self, other):
            return True

    with pytest.raises(NotPlainData):
        to_plain(AlwaysEqual())
    with pytest.raises(NotPlainData):
        to_plain({"a": 1})
    with pytest.raises(NotPlainData):
        to_plain(np.array(["a"]))
    assert to_plain(np.int64(3)) == 3 and type(to_plain(np.int64(3))) is int
    assert to_plain(np.bool_(True)) is True
    assert to_plain([1, np.float32(2.0)]) == (1, 2.0)


def test_plain_copy_is_independent_of_the_answer():
    a = np.ones(4)
    plain = to_plain(a)
    a[:] = 0
    assert plain.sum() == 4

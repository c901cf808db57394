"""03-stride-padding: the notebook's reference solutions and other correct answers pass; plausible bugs fail with
feedback that names the case and the mistake; the size rules that decide which cases are graded agree with torch.

The reference solutions are executed from the solution notebook's answer cells, not copied here.
"""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tests.harness import answer_tests, reference_answers

from autograder import registry
from autograder.exercises.a03_stride_padding import torch_accepts_conv, torch_accepts_pool
from autograder.spec import RAISES

swv = np.lib.stride_tricks.sliding_window_view




REF = reference_answers("03-stride-padding")


# --- conv_output_size -------------------------------------------------------------------------------------------

def conv_size_count_starts(n, k, stride=1, padding=0, dilation=1):
    """Count the window starts directly."""
    last_start = n + 2 * padding - dilation * (k - 1) - 1
    if last_start < 0:
        raise ValueError("no window fits")
    return len(range(0, last_start + 1, stride))


def conv_size_math_floor(n, k, stride=1, padding=0, dilation=1):
    out = math.floor((n + 2 * padding - dilation * (k - 1) - 1) / stride) + 1
    assert out >= 1, "the kernel does not fit"  # any exception counts
    return out


def conv_size_ceil(n, k, stride=1, padding=0, dilation=1):
    return math.ceil((n + 2 * padding - dilation * (k - 1) - 1) / stride) + 1


def conv_size_one_side(n, k, stride=1, padding=0, dilation=1):
    return (n + padding - dilation * (k - 1) - 1) // stride + 1


def conv_size_no_dilation(n, k, stride=1, padding=0, dilation=1):
    return (n + 2 * padding - k) // stride + 1


def conv_size_no_plus_one(n, k, stride=1, padding=0, dilation=1):
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride


def conv_size_true_division(n, k, stride=1, padding=0, dilation=1):
    return (n + 2 * padding - dilation * (k - 1) - 1) / stride + 1


def conv_size_wrong_default(n, k, stride=2, padding=0, dilation=1):
    return (n + 2 * padding - dilation * (k - 1) - 1) // stride + 1


# --- pool_output_size -------------------------------------------------------------------------------------------

def pool_size_enumerate(n, k, stride=None, padding=0, dilation=1, ceil_mode=False):
    """Enumerate the window starts t = -p, -p + s, ...: in floor mode a window must end inside the padded input;
    in ceil mode it may stick out by less than a stride, but must start inside the input or the left padding."""
    s = k if stride is None else stride
    span = dilation * (k - 1) + 1
    if padding > k // 2:
        raise ValueError("pad should be at most half of the kernel")
    count, t = 0, -padding
    while t + span <= n + padding or (ceil_mode and t + span < n + padding + s and t < n):
        count += 1
        t += s
    if count == 0:
        raise ValueError("the output would be empty")
    return count


def pool_size_math(n, k, stride=None, padding=0, dilation=1, ceil_mode=False):
    s = stride or k
    x = (n + 2 * padding - dilation * (k - 1) - 1) / s
    out = (math.ceil(x) if ceil_mode else math.floor(x)) + 1
    if ceil_mode and (out - 1) * s >= n + padding:
        out -= 1
    if padding * 2 > k or out < 1:
        raise RuntimeError("PyTorch rejects this")
    return int(out)


def pool_size_no_ceil(n, k, stride=None, padding=0, dilation=1, ceil_mode=False):
    s = k if stride is None else stride
    return (n + 2 * padding - dilation * (k - 1) - 1) // s + 1


def pool_size_plain_ceil(n, k, stride=None, padding=0, dilation=1, ceil_mode=False):
    s = k if stride is None else stride
    steps = n + 2 * padding - dilation * (k - 1) - 1
    return (-(-steps // s) if ceil_mode else steps // s) + 1


def pool_size_stride_one(n, k, stride=None, padding=0, dilation=1, ceil_mode=False):
    return pool_size_math(n, k, stride or 1, padding, dilation, ceil_mode)


def pool_size_no_dilation(n, k, stride=None, padding=0, dilation=1, ceil_mode=False):
    return pool_size_math(n, k, stride, padding, 1, ceil_mode)


# --- same_padding -----------------------------------------------------------------------------------------------

def same_divmod(k, dilation=1):
    half, odd = divmod(dilation * (k - 1), 2)
    return (half, half + odd)


def same_math(k, dilation=1):
    total = dilation * (k - 1)
    return [math.floor(total / 2), math.ceil(total / 2)]          # a list is accepted like a tuple


def same_extra_before(k, dilation=1):
    total = dilation * (k - 1)
    return total - total // 2, total // 2


def same_no_dilation(k, dilation=1):
    return (k - 1) // 2, k - 1 - (k - 1) // 2


def same_half_kernel(k, dilation=1):
    return dilation * (k // 2), dilation * (k // 2)


def same_symmetric(k, dilation=1):
    return dilation * (k - 1) // 2, dilation * (k - 1) // 2


# --- pad2d ------------------------------------------------------------------------------------------------------

def _pair(v):
    return (v, v) if np.ndim(v) == 0 else tuple(v)


def pad_np_pad(x, padding):
    ph, pw = _pair(padding)
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def pad_concatenate(x, padding):
    ph, pw = _pair(padding)
    n, c, h, w = x.shape
    rows = np.zeros((n, c, ph, w))
    x = np.concatenate([rows, x, rows], axis=2)
    cols = np.zeros((n, c, h + 2 * ph, pw))
    return np.concatenate([cols, x, cols], axis=3)


def pad_float32(x, padding):
    return pad_np_pad(x.astype(np.float32), padding)


def pad_end_only(x, padding):
    ph, pw = _pair(padding)
    return np.pad(x, ((0, 0), (0, 0), (0, 2 * ph), (0, 2 * pw)))


def pad_swapped(x, padding):
    ph, pw = _pair(padding)
    return np.pad(x, ((0, 0), (0, 0), (pw, pw), (ph, ph)))


def pad_edge(x, padding):
    ph, pw = _pair(padding)
    return np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), mode="edge")


def pad_int_only(x, padding):
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


# --- conv2d -----------------------------------------------------------------------------------------------------

def conv_loops(x, w, b=None, stride=1, padding=0, dilation=1):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    xp = pad_np_pad(x, (ph, pw))
    n, c_out = x.shape[0], w.shape[0]
    kh, kw = w.shape[2:]
    ho = (xp.shape[2] - dh * (kh - 1) - 1) // sh + 1
    wo = (xp.shape[3] - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, c_out, ho, wo))
    for i in range(ho):
        for j in range(wo):
            window = xp[:, :, i * sh:i * sh + dh * (kh - 1) + 1:dh, j * sw:j * sw + dw * (kw - 1) + 1:dw]
            y[:, :, i, j] = np.tensordot(window, w, axes=([1, 2, 3], [1, 2, 3]))
    return y if b is None else y + b[:, None, None]


def conv_dilated_kernel(x, w, b=None, stride=1, padding=0, dilation=1):
    """Insert zeros into the kernel (a dilated kernel is a sparse larger kernel), convolve with stride 1, then keep
    every s-th output."""
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    c_out, c_in, kh, kw = w.shape
    big = np.zeros((c_out, c_in, dh * (kh - 1) + 1, dw * (kw - 1) + 1))
    big[:, :, ::dh, ::dw] = w
    xp = pad_np_pad(x, padding)
    full = np.einsum("ncijae,ocae->noij", swv(xp, big.shape[2:], axis=(2, 3)), big)
    y = full[:, :, ::sh, ::sw]
    return y if b is None else y + b[:, None, None]


def conv_float32(x, w, b=None, stride=1, padding=0, dilation=1):
    return REF["conv2d"](x.astype(np.float32), w.astype(np.float32), None if b is None else b.astype(np.float32),
                         stride, padding, dilation)


def conv_no_dilation(x, w, b=None, stride=1, padding=0, dilation=1):
    return conv_loops(x, w, b, stride, padding, 1)


def conv_one_side(x, w, b=None, stride=1, padding=0, dilation=1):
    ph, pw = _pair(padding)
    xp = np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)))
    return conv_loops(xp, w, b, stride, 0, dilation)


def conv_swapped_pairs(x, w, b=None, stride=1, padding=0, dilation=1):
    return conv_loops(x, w, b, _pair(stride)[::-1], _pair(padding)[::-1], _pair(dilation)[::-1])


def conv_no_bias(x, w, b=None, stride=1, padding=0, dilation=1):
    return conv_loops(x, w, None, stride, padding, dilation)


def conv_torch(x, w, b=None, stride=1, padding=0, dilation=1):
    return F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b),
                    stride, padding, dilation).numpy()


# --- receptive_field --------------------------------------------------------------------------------------------

def rf_backwards(layers):
    """From the top down: one unit needs s(r - 1) + d(k - 1) + 1 units of the layer below."""
    size = 1
    for k, s, d in reversed(layers):
        size = s * (size - 1) + d * (k - 1) + 1
    return size, math.prod(s for _, s, _ in layers)


def rf_lists(layers):
    jumps = [1]
    for _, s, _ in layers:
        jumps.append(jumps[-1] * s)
    return 1 + sum(d * (k - 1) * j for (k, _, d), j in zip(layers, jumps)), jumps[-1]


def rf_no_dilation(layers):
    return REF["receptive_field"]([(k, s, 1) for k, s, _ in layers])


def rf_unscaled(layers):
    size, jump = 1, 1
    for k, s, d in layers:
        size += d * (k - 1)
        jump *= s
    return size, jump


def rf_jump_first(layers):
    size, jump = 1, 1
    for k, s, d in layers:
        jump *= s
        size += d * (k - 1) * jump
    return size, jump


def rf_product(layers):
    return math.prod(d * (k - 1) + 1 for k, _, d in layers), math.prod(s for _, s, _ in layers)


def rf_last_stride_left_out(layers):
    size, jump = REF["receptive_field"](layers)
    return size, jump // layers[-1][1] if layers else 1


# --- the tests --------------------------------------------------------------------------------------------------

CORRECT = [
    ("conv_output_size", REF["conv_output_size"]),
    ("conv_output_size", conv_size_count_starts),
    ("conv_output_size", conv_size_math_floor),
    ("pool_output_size", REF["pool_output_size"]),
    ("pool_output_size", pool_size_enumerate),
    ("pool_output_size", pool_size_math),
    ("same_padding", REF["same_padding"]),
    ("same_padding", same_divmod),
    ("same_padding", same_math),
    ("pad2d", REF["pad2d"]),
    ("pad2d", pad_np_pad),
    ("pad2d", pad_concatenate),
    ("pad2d", pad_float32),
    ("conv2d", REF["conv2d"]),
    ("conv2d", conv_loops),
    ("conv2d", conv_dilated_kernel),
    ("conv2d", conv_float32),
    ("receptive_field", REF["receptive_field"]),
    ("receptive_field", rf_backwards),
    ("receptive_field", rf_lists),
]

BUGGY = [  # (exercise, answer, what the feedback must say)
    ("conv_output_size", conv_size_ceil, ("ceil instead of floor",)),
    ("conv_output_size", conv_size_one_side, ("padding on one side only",)),
    ("conv_output_size", conv_size_no_dilation, ("dilation ignored",)),
    ("conv_output_size", conv_size_no_plus_one, ("missing + 1",)),
    ("conv_output_size", conv_size_true_division, ("true division",)),
    ("conv_output_size", conv_size_wrong_default, ()),
    ("pool_output_size", pool_size_no_ceil, ("ceil_mode ignored",)),
    ("pool_output_size", pool_size_plain_ceil, ("ceil mode without PyTorch's last-window rule",)),
    ("pool_output_size", pool_size_stride_one, ("stride=None taken as 1",)),
    ("pool_output_size", pool_size_no_dilation, ("dilation ignored",)),
    ("same_padding", same_extra_before, ("extra padding on the wrong side",)),
    ("same_padding", same_no_dilation, ("dilation ignored",)),
    ("same_padding", same_half_kernel, ("k // 2 on both sides",)),
    ("same_padding", same_symmetric, ("(k - 1) // 2 on both sides",)),
    ("pad2d", pad_end_only, ("all the padding on one side",)),
    ("pad2d", pad_swapped, ("pair read the wrong way round",)),
    ("pad2d", pad_edge, ("edge values instead of zeros",)),
    ("pad2d", pad_int_only, ("padding (2, 1)", "ValueError")),
    ("conv2d", conv_no_dilation, ("dilation ignored",)),
    ("conv2d", conv_one_side, ("padding on one side only",)),
    ("conv2d", conv_swapped_pairs, ("pair read the wrong way round",)),
    ("conv2d", conv_no_bias, ("bias missing",)),
    ("conv2d", conv_torch, ("from scratch", "torch")),
    ("receptive_field", rf_no_dilation, ("dilation ignored",)),
    ("receptive_field", rf_unscaled, ("growth not scaled by the jump",)),
    ("receptive_field", rf_jump_first, ("jump updated before the growth",)),
    ("receptive_field", rf_product, ("kernel sizes multiplied",)),
    ("receptive_field", rf_last_stride_left_out, ("last stride left out of the jump",)),
]


test_correct_answer_passes, test_buggy_answer_fails_with_named_mistake = answer_tests(CORRECT, BUGGY, REF)


def _torch_raises(fn) -> bool:
    try:
        fn()
    except RuntimeError:
        return True
    return False


GRID = list(itertools.product(range(1, 10), range(1, 6), range(1, 4), range(0, 3), range(1, 3)))


def test_conv_sizes_must_raise_exactly_where_torch_rejects_them():
    """The closed-form rule :func:`torch_accepts_conv` agrees with torch; the graded oracle expects an exception
    exactly there (every drawn case is graded, the rejected ones included); the reference solution raises there."""
    oracle = registry.get("conv_output_size").oracle
    for n, k, s, p, d in GRID:
        raises = _torch_raises(lambda: F.conv2d(torch.zeros(1, 1, n, 1), torch.zeros(1, 1, k, 1), stride=(s, 1),
                                                padding=(p, 0), dilation=(d, 1)))
        assert torch_accepts_conv(n, k, s, p, d) == (not raises), (n, k, s, p, d)
        assert (oracle(n, k, s, p, d) is RAISES) == raises, (n, k, s, p, d)
        if raises:
            with pytest.raises(ValueError):
                REF["conv_output_size"](n, k, s, p, d)


def test_pool_sizes_must_raise_exactly_where_torch_rejects_them():
    """As for convolutions: closed-form rule, graded oracle and reference solution agree with torch."""
    oracle = registry.get("pool_output_size").oracle
    for (n, k, s, p, d), ceil in itertools.product(GRID, (False, True)):
        raises = _torch_raises(lambda: F.max_pool2d(torch.zeros(1, 1, n, 1), (k, 1), (s, 1), (p, 0), (d, 1),
                                                    ceil_mode=ceil))
        assert torch_accepts_pool(n, k, s, p, d, ceil) == (not raises), (n, k, s, p, d, ceil)
        assert (oracle(n, k, s, p, d, ceil) is RAISES) == raises, (n, k, s, p, d, ceil)
        if raises:
            with pytest.raises(ValueError):
                REF["pool_output_size"](n, k, s, p, d, ceil)


def test_size_checks_cover_hundreds_of_combinations():
    from autograder import registry
    from autograder.cases import visible_cases

    for name in ("conv_output_size", "pool_output_size"):
        cases = visible_cases(registry.get(name))
        distinct = {tuple(sorted(c.params.items())) for c in cases}
        assert len(cases) >= 150 and len(distinct) >= 120, (name, len(cases), len(distinct))

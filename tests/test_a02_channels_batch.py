"""02-channels-batch: the notebook's reference solutions and other correct answers pass (the speed part of
conv2d_im2col included); plausible bugs fail with feedback that names the case and the mistake.

The reference solutions are executed from the solution notebook's answer cells, not copied here.
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tests.harness import answer_tests, assert_fails, reference_answers

swv = np.lib.stride_tricks.sliding_window_view




REF = reference_answers("02-channels-batch")


def _bias(y, b):
    return y if b is None else y + b.reshape((1,) * (y.ndim - 3) + (-1, 1, 1))


# --- conv2d_multi -----------------------------------------------------------------------------------------------

def multi_loops(x, w, b):
    c_out, _, kh, kw = w.shape
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    y = np.zeros((c_out, ho, wo))
    for o in range(c_out):
        for i in range(ho):
            for j in range(wo):
                y[o, i, j] = np.sum(x[:, i:i + kh, j:j + kw] * w[o]) + (0.0 if b is None else b[o])
    return y


def multi_channel_sums(x, w, b):
    """Sum over input channels of single-channel correlations, written as shifted slices."""
    c_out, c_in, kh, kw = w.shape
    ho, wo = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    y = np.zeros((c_out, ho, wo))
    for o in range(c_out):
        for c in range(c_in):
            for a in range(kh):
                for e in range(kw):
                    y[o] += w[o, c, a, e] * x[c, a:a + ho, e:e + wo]
    return _bias(y, b)


def multi_float32(x, w, b):
    win = swv(x.astype(np.float32), w.shape[2:], axis=(1, 2))
    y = np.tensordot(w.astype(np.float32), win, axes=([1, 2, 3], [0, 3, 4]))
    return y if b is None else y + b.astype(np.float32)[:, None, None]


def multi_no_bias(x, w, b):
    return multi_loops(x, w, None)


def multi_bias_per_channel(x, w, b):
    y = multi_loops(x, w, None)
    return y if b is None else y + x.shape[0] * b[:, None, None]


def multi_first_channel(x, w, b):
    return multi_loops(x[:1], w[:, :1], b)


def multi_swapped_axes(x, w, b):
    return multi_loops(x, w.transpose(1, 0, 2, 3), b)


def multi_none_bias_crash(x, w, b):
    return multi_loops(x, w, None) + b[:, None, None]


def multi_flipped(x, w, b):
    return multi_loops(x, w[:, :, ::-1, ::-1], b)


# --- conv2d_batch -----------------------------------------------------------------------------------------------

def batch_loops(x, w, b):
    return np.array([multi_loops(image, w, b) for image in x])


def batch_einsum(x, w, b):
    return _bias(np.einsum("ncijae,ocae->noij", swv(x, w.shape[2:], axis=(2, 3)), w), b)


def batch_float32(x, w, b):
    y = np.einsum("ncijae,ocae->noij", swv(x.astype(np.float32), w.shape[2:], axis=(2, 3)), w.astype(np.float32),
                  optimize=True)
    return y if b is None else y + b.astype(np.float32)[:, None, None]


def batch_first_image(x, w, b):
    y0 = multi_loops(x[0], w, b)
    return np.stack([y0] * x.shape[0])


def batch_no_bias(x, w, b):
    return batch_einsum(x, w, None)


def batch_axes_swapped(x, w, b):
    return batch_einsum(x, w, b).transpose(1, 0, 2, 3)


def batch_flipped(x, w, b):
    return batch_einsum(x, w[:, :, ::-1, ::-1], b)


# --- conv2d_grouped ---------------------------------------------------------------------------------------------

def grouped_reshape(x, w, b, groups):
    """All groups at once: split the channel axes into (groups, per group) and contract with einsum."""
    n, c_in, h, wd = x.shape
    c_out, gi, kh, kw = w.shape
    win = swv(x.reshape(n, groups, gi, h, wd), (kh, kw), axis=(3, 4))       # (N, G, gi, H', W', kH, kW)
    y = np.einsum("ngcijae,gocae->ngoij", win, w.reshape(groups, c_out // groups, gi, kh, kw))
    return _bias(y.reshape(n, c_out, *y.shape[3:]), b)


def grouped_per_channel(x, w, b, groups):
    c_out, gi = w.shape[:2]
    go = c_out // groups
    chans = [batch_einsum(x[:, (o // go) * gi:(o // go + 1) * gi], w[o:o + 1], None if b is None else b[o:o + 1])
             for o in range(c_out)]
    return np.concatenate(chans, axis=1)


def grouped_float32(x, w, b, groups):
    return grouped_reshape(x.astype(np.float32), w.astype(np.float32), None if b is None else b.astype(np.float32),
                           groups)


def grouped_ignore_groups(x, w, b, groups):
    return batch_einsum(x[:, :w.shape[1]], w, b)


def grouped_round_robin(x, w, b, groups):
    gi = w.shape[1]
    chans = [batch_einsum(x[:, (o % groups) * gi:(o % groups + 1) * gi], w[o:o + 1],
                          None if b is None else b[o:o + 1]) for o in range(w.shape[0])]
    return np.concatenate(chans, axis=1)


def grouped_strided_inputs(x, w, b, groups):
    return grouped_reshape(np.ascontiguousarray(x.reshape(x.shape[0], -1, groups, *x.shape[2:])
                                                .transpose(0, 2, 1, 3, 4).reshape(x.shape)), w, b, groups)


def grouped_no_bias(x, w, b, groups):
    return grouped_reshape(x, w, None, groups)


# --- conv2d_im2col ----------------------------------------------------------------------------------------------

def im2col_rows(x, w, b):
    """One row per output pixel: (N*H'*W', C*kH*kW) @ (C*kH*kW, C_out), then back to (N, C_out, H', W')."""
    n = x.shape[0]
    c_out, c_in, kh, kw = w.shape
    win = swv(x, (kh, kw), axis=(2, 3))
    ho, wo = win.shape[2:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, -1)
    return _bias((cols @ w.reshape(c_out, -1).T).reshape(n, ho, wo, c_out).transpose(0, 3, 1, 2), b)


def im2col_einsum(x, w, b):
    return _bias(np.einsum("ncijae,ocae->noij", swv(x, w.shape[2:], axis=(2, 3)), w), b)


def im2col_offsets(x, w, b):
    """A loop over the kH*kW kernel offsets (not over pixels): vectorised enough."""
    c_out, c_in, kh, kw = w.shape
    ho, wo = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    y = np.zeros((x.shape[0], c_out, ho, wo))
    for a in range(kh):
        for e in range(kw):
            y += np.einsum("nchw,oc->nohw", x[:, :, a:a + ho, e:e + wo], w[:, :, a, e])
    return _bias(y, b)


def im2col_float32(x, w, b):
    return REF["conv2d_im2col"](x.astype(np.float32), w.astype(np.float32),
                                None if b is None else b.astype(np.float32))


def im2col_pixel_loop(x, w, b):
    """Correct, but a Python loop over output pixels: fails the speed part."""
    n = x.shape[0]
    c_out, c_in, kh, kw = w.shape
    ho, wo = x.shape[2] - kh + 1, x.shape[3] - kw + 1
    y = np.empty((n, c_out, ho, wo))
    w2 = w.reshape(c_out, -1).T
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = x[:, :, i:i + kh, j:j + kw].reshape(n, -1) @ w2
    return _bias(y, b)


def im2col_orders_differ(x, w, b):
    n = x.shape[0]
    c_out, c_in, kh, kw = w.shape
    win = swv(x, (kh, kw), axis=(2, 3))
    ho, wo = win.shape[2:4]
    cols = win.transpose(0, 2, 3, 4, 5, 1).reshape(n * ho * wo, -1)        # patches as (kH, kW, C)
    return _bias((cols @ w.reshape(c_out, -1).T).reshape(n, ho, wo, c_out).transpose(0, 3, 1, 2), b)


def im2col_no_transpose(x, w, b):
    n = x.shape[0]
    c_out, c_in, kh, kw = w.shape
    win = swv(x, (kh, kw), axis=(2, 3))
    ho, wo = win.shape[2:4]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, -1)
    return _bias((cols @ w.reshape(c_out, -1).T).reshape(n, c_out, ho, wo), b)


def im2col_no_bias(x, w, b):
    return im2col_rows(x, w, None)


def im2col_torch(x, w, b):
    return F.conv2d(torch.from_numpy(x), torch.from_numpy(w), None if b is None else torch.from_numpy(b)).numpy()


# --- conv2d_param_count -----------------------------------------------------------------------------------------

def params_numpy(c_in, c_out, kh, kw, groups=1, bias=True):
    weight_shape = (c_out, c_in // groups, kh, kw)
    return np.prod(weight_shape) + (np.int64(c_out) if bias else 0)     # NumPy integers are accepted as ints


def params_by_filter(c_in, c_out, kh, kw, groups=1, bias=True):
    total = 0
    for _ in range(c_out):
        total += (c_in // groups) * kh * kw + int(bool(bias))
    return total


def params_ignore_groups(c_in, c_out, kh, kw, groups=1, bias=True):
    return c_out * c_in * kh * kw + (c_out if bias else 0)


def params_bias_per_group(c_in, c_out, kh, kw, groups=1, bias=True):
    return c_out * (c_in // groups) * kh * kw + (groups if bias else 0)


def params_one_bias(c_in, c_out, kh, kw, groups=1, bias=True):
    return c_out * (c_in // groups) * kh * kw + (1 if bias else 0)


def params_true_division(c_in, c_out, kh, kw, groups=1, bias=True):
    return c_out * (c_in / groups) * kh * kw + (c_out if bias else 0)


def params_always_bias(c_in, c_out, kh, kw, groups=1, bias=True):
    return c_out * (c_in // groups) * kh * kw + c_out


# --- conv2d_flops -----------------------------------------------------------------------------------------------

def _size(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def flops_macs_doubled(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1):
    macs_per_output = (c_in // groups) * kh * kw
    outputs = n * c_out * _size(h, kh, stride, padding) * _size(w, kw, stride, padding)
    return int(np.int64(outputs) * macs_per_output * 2)


def flops_floor(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1):
    ho = math.floor((h + 2 * padding - kh) / stride) + 1
    wo = math.floor((w + 2 * padding - kw) / stride) + 1
    return 2 * n * c_out * ho * wo * c_in * kh * kw // groups


def flops_macs(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1):
    return flops_macs_doubled(n, c_in, h, w, c_out, kh, kw, stride, padding, groups) // 2


def flops_with_bias(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1):
    outputs = n * c_out * _size(h, kh, stride, padding) * _size(w, kw, stride, padding)
    return outputs * (2 * (c_in // groups) * kh * kw + 1)


def flops_ignore_groups(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1):
    return 2 * n * c_out * _size(h, kh, stride, padding) * _size(w, kw, stride, padding) * c_in * kh * kw


def flops_true_division(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1):
    ho, wo = (h + 2 * padding - kh) / stride + 1, (w + 2 * padding - kw) / stride + 1
    return 2 * n * c_out * ho * wo * (c_in // groups) * kh * kw


def flops_stride_ignored(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1):
    return 2 * n * c_out * _size(h, kh, 1, padding) * _size(w, kw, 1, padding) * (c_in // groups) * kh * kw


# --- the tests --------------------------------------------------------------------------------------------------

CORRECT = [
    ("conv2d_multi", REF["conv2d_multi"]),
    ("conv2d_multi", multi_loops),
    ("conv2d_multi", multi_channel_sums),
    ("conv2d_multi", multi_float32),
    ("conv2d_batch", REF["conv2d_batch"]),
    ("conv2d_batch", batch_loops),
    ("conv2d_batch", batch_einsum),
    ("conv2d_batch", batch_float32),
    ("conv2d_grouped", REF["conv2d_grouped"]),
    ("conv2d_grouped", grouped_reshape),
    ("conv2d_grouped", grouped_per_channel),
    ("conv2d_grouped", grouped_float32),
    ("conv2d_im2col", REF["conv2d_im2col"]),
    ("conv2d_im2col", im2col_rows),
    ("conv2d_im2col", im2col_einsum),
    ("conv2d_im2col", im2col_offsets),
    ("conv2d_im2col", im2col_float32),
    ("conv2d_param_count", REF["conv2d_param_count"]),
    ("conv2d_param_count", params_numpy),
    ("conv2d_param_count", params_by_filter),
    ("conv2d_flops", REF["conv2d_flops"]),
    ("conv2d_flops", flops_macs_doubled),
    ("conv2d_flops", flops_floor),
]

BUGGY = [  # (exercise, answer, what the feedback must say)
    ("conv2d_multi", multi_no_bias, ("bias missing",)),
    ("conv2d_multi", multi_bias_per_channel, ("bias added once per input channel",)),
    ("conv2d_multi", multi_first_channel, ("only the first input channel",)),
    ("conv2d_multi", multi_swapped_axes, ()),
    ("conv2d_multi", multi_none_bias_crash, ("b None", "NoneType")),
    ("conv2d_multi", multi_flipped, ("flipped kernel",)),
    ("conv2d_batch", batch_first_image, ("every image gets the first image's output",)),
    ("conv2d_batch", batch_no_bias, ("bias missing",)),
    ("conv2d_batch", batch_axes_swapped, ("batch and channel axes swapped",)),
    ("conv2d_batch", batch_flipped, ("flipped kernel",)),
    ("conv2d_grouped", grouped_ignore_groups, ("groups ignored",)),
    ("conv2d_grouped", grouped_round_robin, ("output channels assigned to groups round-robin",)),
    ("conv2d_grouped", grouped_strided_inputs, ("input channels of a group taken with a stride",)),
    ("conv2d_grouped", grouped_no_bias, ("bias missing",)),
    ("conv2d_im2col", im2col_orders_differ, ("patches and weights flattened in different orders",)),
    ("conv2d_im2col", im2col_no_transpose, ("output reshaped without moving the channel axis",)),
    ("conv2d_im2col", im2col_no_bias, ("bias missing",)),
    ("conv2d_im2col", im2col_pixel_loop, ("conv2d_im2col: speed", "speed shape", "Python loop over output pixels")),
    ("conv2d_im2col", im2col_torch, ("from scratch", "torch")),
    ("conv2d_param_count", params_ignore_groups, ("groups ignored",)),
    ("conv2d_param_count", params_bias_per_group, ("bias counted per group",)),
    ("conv2d_param_count", params_one_bias, ("a single bias",)),
    ("conv2d_param_count", params_always_bias, ("bias counted although bias=False",)),
    ("conv2d_param_count", params_true_division, ("expected an int",)),
    ("conv2d_flops", flops_macs, ("MACs instead of FLOPs",)),
    ("conv2d_flops", flops_with_bias, ("bias counted",)),
    ("conv2d_flops", flops_ignore_groups, ("groups ignored",)),
    ("conv2d_flops", flops_true_division, ("true division in the output size",)),
    ("conv2d_flops", flops_stride_ignored, ("stride ignored",)),
]


def _speed_part_reported(name, result):
    if name == "conv2d_im2col":
        assert "conv2d_im2col: speed" in result.text and "x the time of F.conv2d" in result.text


test_correct_answer_passes, test_buggy_answer_fails_with_named_mistake = answer_tests(
    CORRECT, BUGGY, REF, on_pass=_speed_part_reported)


def test_slow_but_correct_im2col_keeps_the_correctness_points():
    result = assert_fails("conv2d_im2col", im2col_pixel_loop, "conv2d_im2col: speed")
    correctness, speed = result.parts
    assert correctness.score == correctness.max_score and speed.score == 0

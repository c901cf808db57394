"""07-efficient-conv: the reference answers (exec'd from the solution notebook) pass, correct alternatives pass
(float32, no zero padding, conjugate spectra, loops, other factor scalings), and plausible bugs fail with feedback
that names the mistake (unflipped kernel, wrong crop, wrap-around, the convolution formula on the transposed output,
singular value dropped, factors swapped, depthwise summing channels, biases ignored in the cost...). The speed part
of ``conv2d_fft`` is checked for its verdicts (a direct sum is too slow, a memoising answer gains nothing), never for
a time."""
from __future__ import annotations

import numpy as np

from tests.harness import answer_tests, as_float32, assert_fails, named, reference_answers

REF = reference_answers("07-efficient-conv")
windows = np.lib.stride_tricks.sliding_window_view


def _bias(y, b):
    return y if b is None else y + b[None, :, None, None]


# --- conv2d_fft ---------------------------------------------------------------------------------------------------
def fft_unpadded(x, w, b=None):
    """Spectra at the image size: the valid part is free of wrap-around (only the first kH-1 rows wrap)."""
    H, W = x.shape[2:]
    kH, kW = w.shape[2:]
    Y = np.einsum("nihw,oihw->nohw", np.fft.rfft2(x), np.fft.rfft2(w[:, :, ::-1, ::-1], s=(H, W)))
    return _bias(np.fft.irfft2(Y, s=(H, W))[:, :, kH - 1:, kW - 1:], b)


def fft_conjugate_loops(x, w, b=None):
    """Correlation theorem with the conjugate spectrum, a loop over images and output channels, full complex FFT."""
    N, _, H, W = x.shape
    C_out, _, kH, kW = w.shape
    size = (H + kH - 1, W + kW - 1)
    out = np.empty((N, C_out, H - kH + 1, W - kW + 1))
    for n in range(N):
        X = np.fft.fft2(x[n], s=size)
        for o in range(C_out):
            full = np.fft.ifft2((X * np.conj(np.fft.fft2(w[o], s=size))).sum(0)).real
            out[n, o] = full[:H - kH + 1, :W - kW + 1] + (0 if b is None else b[o])
    return out


def fft_wrong(flip=True, crop=None, pad=True, bias=True):
    def answer(x, w, b=None):
        H, W = x.shape[2:]
        kH, kW = w.shape[2:]
        size = (H + kH - 1, W + kW - 1) if pad else (H, W)
        k = w[:, :, ::-1, ::-1] if flip else w
        Y = np.einsum("nihw,oihw->nohw", np.fft.rfft2(x, s=size), np.fft.rfft2(k, s=size))
        full = np.fft.irfft2(Y, s=size)
        top, left = (kH - 1, kW - 1) if crop is None else crop(kH, kW)
        y = full[:, :, top:top + H - kH + 1, left:left + W - kW + 1]
        return _bias(y, b) if bias else y
    return answer


def fft_direct_sum(x, w, b=None):
    """Correct, but a direct sum over sliding windows: too slow for a 31x31 kernel."""
    kH, kW = w.shape[2:]
    return _bias(np.einsum("nihwab,oiab->nohw", windows(x, (kH, kW), axis=(2, 3)), w), b)


_memo: dict = {}


def fft_memoising(x, w, b=None):
    """Remembers its first result on the speed shape and returns it again: caught by the fresh inputs."""
    if x.shape != (1, 1, 256, 256):
        return REF["conv2d_fft"](x, w, b)
    if "y" not in _memo:
        _memo["y"] = REF["conv2d_fft"](x, w, b)
    return _memo["y"]


def fft_with_scipy(x, w, b=None):
    from scipy.signal import fftconvolve

    return _bias(np.stack([np.stack([sum(fftconvolve(xi, wi[::-1, ::-1], mode="valid") for xi, wi in zip(xn, wo))
                                     for wo in w]) for xn in x]), b)


# --- conv_transpose2d_flops ---------------------------------------------------------------------------------------
def ct_flops_per_output(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, output_padding=0, groups=1):
    """The same count seen from the zero-inserted convolution: per output pixel, only the non-zero taps."""
    return 2 * n * c_in * (c_out // groups) * h * w * kh * kw


def ct_flops_conv_formula(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, output_padding=0, groups=1):
    ho = (h - 1) * stride - 2 * padding + kh + output_padding
    wo = (w - 1) * stride - 2 * padding + kw + output_padding
    return 2 * n * c_out * ho * wo * (c_in // groups) * kh * kw


def ct_flops_macs(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, output_padding=0, groups=1):
    return n * h * w * c_in * (c_out // groups) * kh * kw


def ct_flops_float(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, output_padding=0, groups=1):
    return 2.0 * n * h * w * c_in * c_out / groups * kh * kw


# --- separable_factors --------------------------------------------------------------------------------------------
def factors_sqrt_split_float32(k):
    """sqrt(s) in each factor, float32, rank by a relative threshold."""
    u, s, vt = np.linalg.svd(k.astype(np.float32))
    if len(s) > 1 and s[1] > 1e-5 * s[0]:
        raise ValueError("not separable")
    return (u[:, 0] * np.sqrt(s[0])).astype(np.float32), (vt[0] * np.sqrt(s[0])).astype(np.float32)


def factors_pivot(k):
    """No SVD: the largest entry's column and row (k = k[:, j] k[i, :] / k[i, j] for rank 1), rank checked."""
    i, j = np.unravel_index(np.argmax(np.abs(k)), k.shape)
    col, row = k[:, j] / k[i, j], k[i, :].copy()
    if np.abs(np.outer(col, row) - k).max() > 1e-9 * np.abs(k).max():
        raise ValueError("rank > 1")
    return col, row


def factors_dropped(k):
    u, s, vt = np.linalg.svd(k)
    if np.linalg.matrix_rank(k) > 1:
        raise ValueError("rank > 1")
    return u[:, 0], vt[0]


def factors_swapped(k):
    u, s, vt = np.linalg.svd(k)
    if np.linalg.matrix_rank(k) > 1:
        raise ValueError("rank > 1")
    return vt[0] * s[0], u[:, 0]


def factors_no_rank_test(k):
    u, s, vt = np.linalg.svd(k)
    return u[:, 0] * s[0], vt[0]


def factors_vt_column(k):
    u, s, vt = np.linalg.svd(k)
    if np.linalg.matrix_rank(k) > 1:
        raise ValueError("rank > 1")
    return u[:, 0] * s[0], vt[:, 0]


# --- conv2d_separable ---------------------------------------------------------------------------------------------
def separable_loops(x, col, row):
    """Row pass first, then the column pass, with loops over the kernel taps."""
    kH, kW = len(col), len(row)
    H, W = x.shape[2:]
    across = sum(row[b] * x[:, :, :, b:b + W - kW + 1] for b in range(kW))
    return sum(col[a] * across[:, :, a:a + H - kH + 1] for a in range(kH))


def separable_swapped(x, col, row):
    return REF["conv2d_separable"](x, row, col)


def separable_flipped(x, col, row):
    return REF["conv2d_separable"](x, col[::-1], row[::-1])


def separable_one_pass(x, col, row):
    return windows(x, len(col), axis=2) @ col


def separable_channels_summed(x, col, row):
    return REF["conv2d_separable"](x, col, row).sum(1, keepdims=True)


# --- depthwise_separable_conv2d -----------------------------------------------------------------------------------
def dw_loops(x, w_dw, w_pw, b_dw=None, b_pw=None):
    """Channel by channel through the from-scratch FFT route, then a matrix product over channels."""
    C = x.shape[1]
    d = np.concatenate([REF["conv2d_fft"](x[:, c:c + 1], w_dw[c:c + 1]) for c in range(C)], axis=1)
    d = _bias(d, b_dw)
    N, _, H, W = d.shape
    y = (w_pw[:, :, 0, 0] @ d.transpose(1, 0, 2, 3).reshape(C, -1)).reshape(-1, N, H, W).transpose(1, 0, 2, 3)
    return _bias(y, b_pw)


def dw_summing_channels(x, w_dw, w_pw, b_dw=None, b_pw=None):
    kH, kW = w_dw.shape[2:]
    d = np.einsum("nihwab,cab->nchw", windows(x, (kH, kW), axis=(2, 3)), w_dw[:, 0])
    return _bias(np.einsum("nchw,oc->nohw", _bias(d, b_dw), w_pw[:, :, 0, 0]), b_pw)


def dw_no_depthwise_bias(x, w_dw, w_pw, b_dw=None, b_pw=None):
    return REF["depthwise_separable_conv2d"](x, w_dw, w_pw, None, b_pw)


def dw_pointwise_first(x, w_dw, w_pw, b_dw=None, b_pw=None):
    y = _bias(np.einsum("nchw,oc->nohw", x, w_pw[:, :, 0, 0]), b_pw)
    kH, kW = w_dw.shape[2:]
    if y.shape[1] != w_dw.shape[0]:
        raise ValueError("shapes do not fit")
    return _bias(np.einsum("nchwab,cab->nchw", windows(y, (kH, kW), axis=(2, 3)), w_dw[:, 0]), b_dw)


# --- separable_cost -----------------------------------------------------------------------------------------------
def cost_by_layers(c_in, c_out, k, h, w):
    """Layer by layer, as (weights, biases, multiply-adds per pixel) rows."""
    layers = {"standard": [(c_out * c_in * k * k, c_out)], "separable": [(c_in * k * k, c_in), (c_out * c_in, c_out)]}
    params = {name: sum(wt + bs for wt, bs in rows) for name, rows in layers.items()}
    flops = {name: 2 * h * w * sum(wt for wt, _ in rows) for name, rows in layers.items()}
    return params["standard"], params["separable"], flops["standard"], flops["separable"]


def cost_no_biases(c_in, c_out, k, h, w):
    p, s, f, fs = REF["separable_cost"](c_in, c_out, k, h, w)
    return p - c_out, s - c_in - c_out, f, fs


def cost_depthwise_full(c_in, c_out, k, h, w):
    return (c_out * c_in * k * k + c_out, c_in * c_in * k * k + c_in + c_out * c_in + c_out,
            2 * h * w * c_out * c_in * k * k, 2 * h * w * (c_in * c_in * k * k + c_out * c_in))


def cost_macs(c_in, c_out, k, h, w):
    p, s, f, fs = REF["separable_cost"](c_in, c_out, k, h, w)
    return p, s, f // 2, fs // 2


CORRECT = [
    ("conv2d_fft", REF["conv2d_fft"]),
    ("conv2d_fft", as_float32(REF["conv2d_fft"])),
    ("conv2d_fft", named(fft_unpadded, "fft_unpadded")),
    ("conv2d_fft", fft_conjugate_loops),
    ("conv_transpose2d_flops", REF["conv_transpose2d_flops"]),
    ("conv_transpose2d_flops", ct_flops_per_output),
    ("separable_factors", REF["separable_factors"]),
    ("separable_factors", factors_sqrt_split_float32),
    ("separable_factors", factors_pivot),
    ("conv2d_separable", REF["conv2d_separable"]),
    ("conv2d_separable", as_float32(REF["conv2d_separable"])),
    ("conv2d_separable", separable_loops),
    ("depthwise_separable_conv2d", REF["depthwise_separable_conv2d"]),
    ("depthwise_separable_conv2d", as_float32(REF["depthwise_separable_conv2d"])),
    ("depthwise_separable_conv2d", dw_loops),
    ("separable_cost", REF["separable_cost"]),
    ("separable_cost", cost_by_layers),
]

BUGGY = [  # (exercise, answer, what the feedback must say)
    ("conv2d_fft", named(fft_wrong(flip=False), "fft_unflipped"), ("kernel not flipped in the FFT product",)),
    ("conv2d_fft", named(fft_wrong(crop=lambda kh, kw: (0, 0)), "fft_crop_top_left"), ("wrong crop",)),
    ("conv2d_fft", named(fft_wrong(crop=lambda kh, kw: (kh // 2, kw // 2)), "fft_crop_centre"), ("wrong crop",)),
    ("conv2d_fft", named(fft_wrong(pad=False, crop=lambda kh, kw: (0, 0)), "fft_wrap_around"),
     ("wrap-around (circular convolution)",)),
    ("conv2d_fft", named(fft_wrong(bias=False), "fft_no_bias"), ("bias missing",)),
    ("conv2d_fft", fft_direct_sum, ("conv2d_fft: speed", "x the time of F.conv2d", "Likely mistake")),
    ("conv2d_fft", fft_with_scipy, ("from scratch", "scipy.signal")),
    ("conv_transpose2d_flops", ct_flops_conv_formula, ("convolution formula on the transposed output",)),
    ("conv_transpose2d_flops", ct_flops_macs, ("MACs instead of FLOPs",)),
    ("conv_transpose2d_flops", ct_flops_float, ("expected an int",)),
    ("separable_factors", factors_dropped, ("singular value dropped",)),
    ("separable_factors", factors_swapped, ("factors swapped",)),
    ("separable_factors", factors_vt_column, ("a column of Vt instead of a row",)),
    ("separable_factors", factors_no_rank_test, ("not separable, should raise ValueError",
                                                 "should raise an exception")),
    ("conv2d_separable", separable_swapped, ("factors swapped",)),
    ("conv2d_separable", separable_flipped, ("kernel flipped",)),
    ("conv2d_separable", separable_one_pass, ("only one pass",)),
    ("conv2d_separable", separable_channels_summed, ("channels summed",)),
    ("depthwise_separable_conv2d", dw_summing_channels, ("depthwise summing channels",)),
    ("depthwise_separable_conv2d", dw_no_depthwise_bias, ("depthwise bias missing",)),
    ("depthwise_separable_conv2d", dw_pointwise_first, ("pointwise before depthwise",)),
    ("separable_cost", cost_no_biases, ("biases ignored in the cost",)),
    ("separable_cost", cost_depthwise_full, ("depthwise summing channels",)),
    ("separable_cost", cost_macs, ("MACs instead of FLOPs",)),
]


def _speed_part_reported(name, result):
    if name == "conv2d_fft":
        assert "conv2d_fft: speed" in result.text and "a fresh random input each run" in result.text


test_correct_answer_passes, test_buggy_answer_fails_with_named_mistake = answer_tests(
    CORRECT, BUGGY, REF, on_pass=_speed_part_reported)


def test_a_memoising_answer_fails_the_speed_part():
    """Correct on every case (each case has its own shapes), but the timed runs draw fresh inputs of one shape."""
    _memo.clear()
    result = assert_fails("conv2d_fft", fft_memoising, "the timed result is wrong")
    correctness, speed = result.parts
    assert correctness.score == correctness.max_score and speed.score == 0


def test_a_direct_sum_keeps_the_correctness_points():
    result = assert_fails("conv2d_fft", fft_direct_sum, "conv2d_fft: speed")
    correctness, speed = result.parts
    assert correctness.score == correctness.max_score and speed.score == 0

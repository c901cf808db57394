"""05-transposed-conv: upsampling and checkerboards.

``conv_transpose_output_size``, ``conv_transpose2d``, ``overlap_counts``, ``has_checkerboard``, ``resize_conv2d``.
Oracles: the shape and values of ``F.conv_transpose2d`` (C_in != C_out, strides 1 to 3, padding, output_padding
up to stride - 1), overlap counts as the transposed convolution of ones with a ones kernel (integer arrays,
compared exactly), and ``F.interpolate(mode="nearest")`` followed by ``F.conv2d`` for the resize-convolution.
"""
from __future__ import annotations

from ..oracle import line_output
from ..params import Param, flag
from ..registry import register
from ..shapes import conv_case, transposed_out
from ..spec import Call, Exercise, Misconception, unless_torch_rejects
from ._torch import F, torch

ASSIGNMENT = "05-transposed-conv"


# --------------------------------------------------------------------------------------------------------------
# conv_transpose_output_size
# --------------------------------------------------------------------------------------------------------------
def _torch_size(n, k, stride=1, padding=0, output_padding=0, dilation=1):
    """The height of F.conv_transpose2d's output for an n x 1 input and a k x 1 kernel."""
    return line_output(n, k, stride, padding, dilation, output_padding, transposed=True)


_SIZE_PARAMS = [Param("n", 1, 10), Param("k", 1, 6), Param("stride", 1, 4), Param("padding", 0, 3),
                Param("output_padding", 0, 3), Param("dilation", 1, 3)]


def _valid_size(p) -> bool:
    return (p["output_padding"] < max(p["stride"], p["dilation"])
            and transposed_out(p["n"], p["k"], p["stride"], p["padding"], p["output_padding"], p["dilation"]) >= 1)


def _size_misconception(name, explanation, formula):
    return Misconception(name, explanation,
                         lambda n, k, stride=1, padding=0, output_padding=0, dilation=1:
                         formula(n, k, stride, padding, output_padding, dilation))


conv_transpose_output_size = Exercise(
    name="conv_transpose_output_size",
    assignment=ASSIGNMENT,
    points=1,
    signature="conv_transpose_output_size(n, k, stride=1, padding=0, output_padding=0, dilation=1)",
    oracle=_torch_size,
    params=_SIZE_PARAMS,
    build=lambda p, draw: Call((p["n"], p["k"]), {"stride": p["stride"], "padding": p["padding"],
                                                  "output_padding": p["output_padding"],
                                                  "dilation": p["dilation"]}),
    valid=_valid_size,
    fixed_params=[
        {"n": 4, "k": 4, "stride": 2, "padding": 1, "output_padding": 0, "dilation": 1},   # DCGAN: doubles
        {"n": 3, "k": 3, "stride": 2, "padding": 1, "output_padding": 1, "dilation": 1},   # 3 -> 6
        {"n": 5, "k": 3, "stride": 1, "padding": 0, "output_padding": 0, "dilation": 1},   # grows by k - 1
        {"n": 2, "k": 3, "stride": 3, "padding": 0, "output_padding": 2, "dilation": 1},   # op = stride - 1
        {"n": 3, "k": 3, "stride": 1, "padding": 1, "output_padding": 1, "dilation": 2},   # op < dilation
        {"n": 1, "k": 1, "stride": 1, "padding": 0, "output_padding": 0, "dilation": 1},
    ],
    misconceptions=[
        _size_misconception("output_padding ignored", "output_padding adds that many rows at the end: "
                            "(n - 1)*s - 2p + d(k - 1) + output_padding + 1.",
                            lambda n, k, s, p, op, d: transposed_out(n, k, s, p, 0, d)),
        _size_misconception("padding subtracted once", "padding p crops p rows at *each* end of the output: "
                            "subtract 2p.", lambda n, k, s, p, op, d: transposed_out(n, k, s, p, op, d) + p),
        _size_misconception("dilation ignored", "a kernel of size k with dilation d spans d(k - 1) + 1 pixels.",
                            lambda n, k, s, p, op, d: transposed_out(n, k, s, p, op, 1)),
        _size_misconception("forward convolution formula", "that is the output size of a convolution, "
                            "floor((n + 2p - d(k - 1) - 1) / s) + 1; a transposed convolution inverts it: "
                            "(n - 1)*s - 2p + d(k - 1) + output_padding + 1.",
                            lambda n, k, s, p, op, d: (n + 2 * p - d * (k - 1) - 1) // s + 1),
        _size_misconception("a float instead of an int", "sizes are whole numbers: return an int (use // for "
                            "divisions, or int(...)).",
                            lambda n, k, s, p, op, d: float(transposed_out(n, k, s, p, op, d))),
        _size_misconception("stride multiplies n instead of n - 1", "the n input pixels are n - 1 strides "
                            "apart: (n - 1)*s, not n*s.",
                            lambda n, k, s, p, op, d: transposed_out(n, k, s, p, op, d) + s),
    ],
)


# --------------------------------------------------------------------------------------------------------------
# conv_transpose2d
# --------------------------------------------------------------------------------------------------------------
def _ct(x, w, b=None, stride=1, padding=0, output_padding=0):
    return F().conv_transpose2d(x, w, b, stride=stride, padding=padding, output_padding=output_padding)


_CT_PARAMS = [Param("N", 1, 2), Param("C_in", 1, 3), Param("C_out", 1, 3), Param("H", 1, 6), Param("W", 1, 6),
              Param("kH", 1, 4), Param("kW", 1, 4), Param("stride", 1, 3), Param("padding", 0, 2),
              Param("output_padding", 0, 2), flag("bias")]


def _valid_ct(p) -> bool:
    return (p["output_padding"] < p["stride"]
            and transposed_out(p["H"], p["kH"], p["stride"], p["padding"], p["output_padding"]) >= 1
            and transposed_out(p["W"], p["kW"], p["stride"], p["padding"], p["output_padding"]) >= 1)


def _build_ct(p, draw) -> Call:
    return Call(conv_case(p, transposed=True).arrays(draw),
                {"stride": p["stride"], "padding": p["padding"], "output_padding": p["output_padding"]})


def _describe_ct(p) -> str:
    ho = transposed_out(p["H"], p["kH"], p["stride"], p["padding"], p["output_padding"])
    wo = transposed_out(p["W"], p["kW"], p["stride"], p["padding"], p["output_padding"])
    return (f"{conv_case(p, transposed=True).text()}, stride {p['stride']}, padding {p['padding']}, "
            f"output_padding {p['output_padding']} -> ({p['N']}, {p['C_out']}, {ho}, {wo})")


def _full(x, w, stride, output_padding):
    """The uncropped scatter-add result (no padding), with output_padding zero rows/columns at the end."""
    return _ct(x, w, None, stride, 0, output_padding)


def _add_bias(y, b):
    return y if b is None else y + b[None, :, None, None]


def _crop_misconception(name, explanation, crop):
    def compute(x, w, b=None, stride=1, padding=0, output_padding=0):
        full = _full(x, w, stride, output_padding)
        p = padding
        ho, wo = full.shape[2] - 2 * p, full.shape[3] - 2 * p
        return _add_bias(crop(full, p, ho, wo), b)
    return Misconception(name, explanation, compute)


def _zero_rows_output_padding(x, w, b=None, stride=1, padding=0, output_padding=0):
    y = _ct(x, w, None, stride, padding, 0)
    op = output_padding
    return _add_bias(F().pad(y, (0, op, 0, op)), b)


_CROP_EXPLANATION = ("the transposed convolution first scatters every input pixel, giving a 'full' output of "
                     "(n - 1)*s + k (+ output_padding) rows; padding p then removes p rows and columns at *each* "
                     "border: y = full[:, :, p:p + H_out, p:p + W_out].")

conv_transpose2d = Exercise(
    name="conv_transpose2d",
    assignment=ASSIGNMENT,
    points=3,
    signature="conv_transpose2d(x, w, b=None, stride=1, padding=0, output_padding=0)",
    oracle=_ct,
    params=_CT_PARAMS,
    build=_build_ct,
    describe=_describe_ct,
    valid=_valid_ct,
    fixed_params=[
        # C_in == C_out first: the only shape where a swapped weight layout runs at all (and is then named)
        {"N": 2, "C_in": 2, "C_out": 2, "H": 3, "W": 4, "kH": 3, "kW": 3, "stride": 2, "padding": 1,
         "output_padding": 1, "bias": 1},
        {"N": 1, "C_in": 3, "C_out": 2, "H": 4, "W": 4, "kH": 4, "kW": 4, "stride": 2, "padding": 1,
         "output_padding": 0, "bias": 1},   # DCGAN's upsampling layer: doubles the size
        {"N": 2, "C_in": 1, "C_out": 3, "H": 3, "W": 2, "kH": 3, "kW": 2, "stride": 3, "padding": 0,
         "output_padding": 2, "bias": 0},   # output_padding = stride - 1, non-square kernel
        {"N": 1, "C_in": 2, "C_out": 3, "H": 2, "W": 3, "kH": 2, "kW": 3, "stride": 1, "padding": 0,
         "output_padding": 0, "bias": 1},   # stride 1: a full convolution
        {"N": 1, "C_in": 2, "C_out": 1, "H": 3, "W": 3, "kH": 1, "kW": 1, "stride": 3, "padding": 0,
         "output_padding": 0, "bias": 0},   # 1x1 kernel, stride > k: zeros between the pixels
        {"N": 1, "C_in": 3, "C_out": 2, "H": 4, "W": 3, "kH": 3, "kW": 3, "stride": 2, "padding": 2,
         "output_padding": 1, "bias": 1},   # padding beyond k // 2, output_padding reaching real values
    ],
    misconceptions=[
        Misconception(
            "weight layout swapped",
            "a transposed convolution's weight is laid out (C_in, C_out, kH, kW), the transpose of a "
            "convolution's (C_out, C_in, kH, kW): output channel o receives x[:, i] * w[i, o].",
            unless_torch_rejects(lambda x, w, b=None, stride=1, padding=0, output_padding=0:
                                 _ct(x, w.transpose(0, 1), b, stride, padding, output_padding))),
        Misconception(
            "kernel flipped",
            "in the scatter view every input pixel adds x * w[:, :, a, b] at offset (a, b), without a flip; the "
            "flip appears only in the equivalent zero-insertion + convolution form, where the kernel is flipped "
            "(w[:, :, ::-1, ::-1]) *because* a sliding window reads it backwards.",
            lambda x, w, b=None, stride=1, padding=0, output_padding=0:
            _ct(x, w.flip(2, 3), b, stride, padding, output_padding)),
        _crop_misconception("padding not cropped", _CROP_EXPLANATION,
                            lambda full, p, ho, wo: full),
        _crop_misconception("padding cropped on one side", _CROP_EXPLANATION,
                            lambda full, p, ho, wo: full[:, :, p:, p:]),
        _crop_misconception("padding cropped on one side", _CROP_EXPLANATION,
                            lambda full, p, ho, wo: full[:, :, :ho, :wo]),
        _crop_misconception("padding cropped on one side", _CROP_EXPLANATION,
                            lambda full, p, ho, wo: full[:, :, 2 * p:, 2 * p:]),
        Misconception(
            "output_padding ignored",
            "output_padding adds that many rows and columns at the bottom and right of the output "
            "(it resolves which of several input sizes a strided convolution came from).",
            unless_torch_rejects(lambda x, w, b=None, stride=1, padding=0, output_padding=0:
                                 _ct(x, w, b, stride, padding, 0))),
        Misconception(
            "output_padding appended as zeros",
            "output_padding extends the *uncropped* output before the padding is removed: the extra rows can "
            "hold real values (the full output is cropped to full[p : p + H_out], and H_out counts the "
            "output_padding rows), they are not simply zeros.",
            unless_torch_rejects(_zero_rows_output_padding)),
    ],
)


# --------------------------------------------------------------------------------------------------------------
# overlap_counts and has_checkerboard
# --------------------------------------------------------------------------------------------------------------
def _overlap(n, k, stride):
    t = torch()
    ones = t.ones(1, 1, n, n, dtype=t.float64)
    kernel = t.ones(1, 1, k, k, dtype=t.float64)
    return F().conv_transpose2d(ones, kernel, stride=stride)[0, 0].round().to(t.int64)


def _overlap_1d(n, k, stride):
    """The 1-D counts: the 2-D map is their outer product with themselves."""
    t = torch()
    ones, kernel = t.ones(1, 1, n, dtype=t.float64), t.ones(1, 1, k, dtype=t.float64)
    return F().conv_transpose1d(ones, kernel, stride=stride)[0, 0].round().to(t.int64)


overlap_counts = Exercise(
    name="overlap_counts",
    assignment=ASSIGNMENT,
    points=2,
    signature="overlap_counts(n, k, stride)",
    oracle=_overlap,
    params=[Param("n", 1, 6), Param("k", 1, 6), Param("stride", 1, 4)],
    build=lambda p, draw: Call((p["n"], p["k"], p["stride"])),
    describe=lambda p: (f"n={p['n']}, k={p['k']}, stride={p['stride']} -> "
                        + " x ".join([str(transposed_out(p["n"], p["k"], p["stride"]))] * 2)),
    fixed_params=[
        {"n": 4, "k": 3, "stride": 2},   # the classic checkerboard
        {"n": 4, "k": 4, "stride": 2},   # even overlap inside
        {"n": 3, "k": 2, "stride": 3},   # k < stride: holes
        {"n": 4, "k": 5, "stride": 3},
        {"n": 3, "k": 1, "stride": 1},
        {"n": 1, "k": 3, "stride": 2},   # one pixel: one stamp of the kernel
    ],
    misconceptions=[
        # named first: the counts are symmetric, so the generic "transposed" hint would otherwise fire
        Misconception("counts as floats", "the right numbers, but counts are integers: return an integer array "
                      "(np.zeros(..., dtype=int), or .astype(int)).",
                      lambda n, k, s: _overlap(n, k, s).to(torch().float64)),
        Misconception("row and column counts added", "an output pixel (r, c) receives one product for every "
                      "pair (a row window covering r, a column window covering c): the 2-D count is the *product* "
                      "of the 1-D counts, np.outer(counts, counts).",
                      lambda n, k, s: _overlap_1d(n, k, s)[:, None] + _overlap_1d(n, k, s)[None, :]),
        Misconception("stride ignored", "input pixel (i, j) stamps its kernel at (i*stride, j*stride).",
                      lambda n, k, s: _overlap(n, k, 1)),
        Misconception("one axis only", "return the 2-D map, shape ((n-1)*stride + k, (n-1)*stride + k): the "
                      "outer product of the 1-D counts with themselves.",
                      lambda n, k, s: _overlap_1d(n, k, s)),
        Misconception("output size n * stride", "the last stamp starts at (n - 1)*stride and is k wide: "
                      "the output has (n - 1)*stride + k rows.",
                      lambda n, k, s: _overlap(n, k, s)[: n * s, : n * s]),
    ],
)


def _checkerboard(k, stride):
    n = k + 3
    row = _overlap_1d(n, k, stride)
    interior = row[k - 1:(n - 1) * stride + 1]   # every position that all its potential windows can reach
    return bool((interior != interior[0]).any())


has_checkerboard = Exercise(
    name="has_checkerboard",
    assignment=ASSIGNMENT,
    points=1,
    signature="has_checkerboard(k, stride)",
    oracle=_checkerboard,
    params=[Param("k", 1, 9), Param("stride", 1, 4)],
    build=lambda p, draw: Call((p["k"], p["stride"])),
    fixed_params=[{"k": 3, "stride": 2}, {"k": 4, "stride": 2}, {"k": 2, "stride": 3}, {"k": 1, "stride": 1},
                  {"k": 5, "stride": 1}, {"k": 6, "stride": 3}, {"k": 5, "stride": 4}, {"k": 1, "stride": 2}],
    # a bool answer matches any wrong rule on half of the cases: naming a "recognised" mistake would mislead,
    # so failures show the case, the expected and the returned value only.
)


# --------------------------------------------------------------------------------------------------------------
# resize_conv2d
# --------------------------------------------------------------------------------------------------------------
def _same_conv(x, w, b):
    return F().conv2d(x, w, b, padding=(w.shape[2] // 2, w.shape[3] // 2))


def _resize_conv(x, w, b, scale):
    return _same_conv(F().interpolate(x, scale_factor=scale, mode="nearest"), w, b)


def _zero_insert(x, scale):
    t = torch()
    n, c, h, w = x.shape
    up = t.zeros(n, c, h * scale, w * scale, dtype=x.dtype, device=x.device)
    up[:, :, ::scale, ::scale] = x
    return up


#: odd kernels, 2 * rh + 1 by 2 * rw + 1
_RESIZE_PARAMS = [Param("N", 1, 2), Param("C_in", 1, 3), Param("C_out", 1, 3), Param("H", 1, 5), Param("W", 1, 5),
                  Param("rh", 0, 2), Param("rw", 0, 2), Param("scale", 1, 3), flag("bias")]


def _resize_case(p):
    return conv_case({**p, "kH": 2 * p["rh"] + 1, "kW": 2 * p["rw"] + 1})


def _build_resize(p, draw) -> Call:
    return Call(_resize_case(p).arrays(draw) + (p["scale"],))


def _describe_resize(p) -> str:
    return (f"{_resize_case(p).text()}, scale {p['scale']} -> "
            f"({p['N']}, {p['C_out']}, {p['H'] * p['scale']}, {p['W'] * p['scale']})")


resize_conv2d = Exercise(
    name="resize_conv2d",
    assignment=ASSIGNMENT,
    points=2,
    signature="resize_conv2d(x, w, b, scale)",
    oracle=_resize_conv,
    params=_RESIZE_PARAMS,
    build=_build_resize,
    describe=_describe_resize,
    fixed_params=[
        {"N": 2, "C_in": 2, "C_out": 3, "H": 3, "W": 4, "rh": 1, "rw": 1, "scale": 2, "bias": 1},
        {"N": 1, "C_in": 1, "C_out": 2, "H": 2, "W": 2, "rh": 2, "rw": 1, "scale": 3, "bias": 0},  # 5x3 kernel
        {"N": 1, "C_in": 3, "C_out": 1, "H": 4, "W": 3, "rh": 0, "rw": 0, "scale": 2, "bias": 1},  # 1x1 kernel
        {"N": 1, "C_in": 2, "C_out": 2, "H": 3, "W": 3, "rh": 1, "rw": 1, "scale": 1, "bias": 1},  # plain conv
    ],
    misconceptions=[
        Misconception("convolved before upsampling", "resize first (nearest neighbour), then convolve: the "
                      "kernel must see the upsampled image.",
                      lambda x, w, b, s: F().interpolate(_same_conv(x, w, b), scale_factor=s, mode="nearest")),
        Misconception("no padding", "pad by (kH // 2, kW // 2) so that the convolution keeps the upsampled size "
                      "(H * scale, W * scale).",
                      unless_torch_rejects(
                          lambda x, w, b, s: F().conv2d(F().interpolate(x, scale_factor=s, mode="nearest"), w, b))),
        Misconception("zero insertion instead of nearest neighbour", "inserting zeros between pixels is what a "
                      "transposed convolution does (and what causes its checkerboards); nearest-neighbour "
                      "upsampling *repeats* each pixel scale x scale times (np.repeat on both axes).",
                      lambda x, w, b, s: _same_conv(_zero_insert(x, s), w, b)),
        Misconception("bilinear instead of nearest neighbour", "upsample by repeating pixels (nearest neighbour).",
                      lambda x, w, b, s: _same_conv(F().interpolate(x, scale_factor=s, mode="bilinear",
                                                                    align_corners=False), w, b)),
        Misconception("kernel flipped", "deep learning's convolution is a cross-correlation: no flip.",
                      lambda x, w, b, s: _same_conv(F().interpolate(x, scale_factor=s, mode="nearest"),
                                                    w.flip(2, 3), b)),
    ],
)

register(conv_transpose_output_size, conv_transpose2d, overlap_counts, has_checkerboard, resize_conv2d)

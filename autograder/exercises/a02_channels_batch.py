"""02-channels-batch: channels, batches, groups, im2col and the cost of a convolution.

``conv2d_multi``, ``conv2d_batch``, ``conv2d_grouped``, ``conv2d_im2col`` (correctness plus a graded speed part),
``conv2d_param_count``, ``conv2d_flops``. Layouts follow PyTorch: ``x (N, C_in, H, W)``,
``w (C_out, C_in // groups, kH, kW)``, ``b (C_out,)`` or ``None``; stride 1 and no padding throughout.

The speed part of ``conv2d_im2col`` (report line ``conv2d_im2col: speed``) times the answer by wall clock around
the answer proxy, on the grader's side (a time reported by student code is never used), against
``F.conv2d`` in float32 on **one** CPU thread, on a fixed shape (:data:`SPEED_SHAPE`: a 256 x 256 greyscale
image through a pair of 3x3 filters), both measured in the same run, interleaved, best of several runs, each run
on a fresh random input whose result is checked (a cache of earlier results earns nothing). The part is awarded
when the ratio is at most :data:`SPEED_BOUND`. Why these choices (measured on a shared 2-core machine,
quiet and with one core taken by a runaway process, answers called through ``local_answer`` so that the argument
and result copies are included; "a-b" is the range over repeated gradings, both conditions together; on the quiet
machine alone, vectorised answers measured 1-10x and the pixel loop 200-380x):

- one torch thread: torch's speed scales with the cores of the grading machine, a NumPy answer's often does not;
  one thread keeps the ratio about the same on a laptop and on a 16-core grader;
- float32 torch: its float64 CPU convolution is a slow fallback (as slow as a NumPy im2col), a poor yardstick;
- the shape: many output pixels (254 x 254) and little work per pixel (18 multiply-adds), so that a Python loop
  over output pixels, even with a vectorised body (~2 us per pixel), costs 200-500x torch, while vectorised
  answers cost 1-60x: the reference 1-6x, a loop over the kH*kW kernel offsets 2-3x, ``np.einsum`` over
  ``sliding_window_view`` 3-10x, float32 im2col 1-16x, a loop over output rows 12-21x, ``np.tensordot`` 4-44x,
  im2col with one row per pixel 6-60x (OpenBLAS threads on a busy machine). More channels or filters make the
  pixel loop relatively cheaper (8 filters: 150-260x against vectorised answers up to 40x), and compute-bound
  answers without BLAS (plain ``einsum``: 25-55x on 3 -> 16 channels) indistinguishable from it.
- the bound, 100x, sits between the two groups with a margin of ~2x or more on each side. The transfer in and out
  of the isolated grader's sandbox (0.5 MB in, 1 MB out) and its per-call latency add to the answer's time: at
  torch's ~0.5 ms, every millisecond of proxy overhead costs 2x, so the proxy must stay within a few ms for
  these sizes (a binary transport, not JSON).
"""
from __future__ import annotations

import time

import numpy as np

from .. import speed
from ..params import FORM, Param, flag
from ..registry import register
from ..shapes import call_form, channels, conv_case, conv_out, conv_params, image_kernel, kernel_fits
from ..spec import Call, Exercise, Misconception, NotApplicable, Part, not_applicable, unless_torch_rejects
from ._torch import F, torch

ASSIGNMENT = "02-channels-batch"

#: the shape of the speed part: N, C_in, C_out, H, W, k
SPEED_SHAPE = {"N": 1, "C_in": 1, "C_out": 2, "H": 256, "W": 256, "k": 3}
#: full marks for the speed part when the answer takes at most this many times F.conv2d (float32, one thread)
SPEED_BOUND = 100.0
#: at most this many timed runs of the answer, and stop after this many seconds (at least one run)
SPEED_RUNS, SPEED_BUDGET_S = 7, 2.0
#: points of the speed part
SPEED_POINTS = 2


# --------------------------------------------------------------------------------------------------------------
# shared pieces of the array exercises
# --------------------------------------------------------------------------------------------------------------
def _conv(x, w, b=None, groups=1):
    return F().conv2d(x, w, b, groups=groups)


def _conv_params(batch: bool, image: int = 9) -> list[Param]:
    return conv_params(channels=4, image=image, kernel=5, batch=4 if batch else None)


def _build_conv(p, draw) -> Call:
    return Call(conv_case(p).arrays(draw))


def _describe_conv(p) -> str:
    return conv_case(p).text()


def _batched(compute):
    """A misconception written for (N, C, H, W) inputs, applied to one (C, H, W) image."""
    return lambda x, w, b: compute(x[None], w, b)[0]


def _no_bias(x, w, b):
    if b is None:
        raise NotApplicable("no bias in this case")
    return _conv(x, w)


def _bias_per_input_channel(x, w, b):
    if b is None:
        raise NotApplicable("no bias in this case")
    return _conv(x, w) + x.shape[1] * b[None, :, None, None]


def _first_channel_only(x, w, b):
    if x.shape[1] == 1:
        raise NotApplicable("one input channel: nothing to tell apart")
    return _conv(x[:, :1], w[:, :1], b)


@unless_torch_rejects
def _channel_axes_swapped(x, w, b):
    return _conv(x, w.transpose(0, 1), b)  # only runs when C_in == C_out


def _flipped(x, w, b):
    return _conv(x, w.flip(2, 3), b)


_CHANNEL_MISCONCEPTIONS = [
    ("bias missing", "you did not add the bias: every output channel o gets + b[o] (when b is not None).",
     _no_bias),
    ("bias added once per input channel",
     "you added b[o] inside the sum over input channels, so it was added C_in times; the bias is added once per "
     "output value, after summing over all input channels.", _bias_per_input_channel),
    ("only the first input channel",
     "your output only uses input channel 0: an output channel sums the correlations of *every* input channel c "
     "with its own kernel slice w[o, c].", _first_channel_only),
    ("weight axes swapped",
     "you indexed the weights as w[c, o] instead of w[o, c]: PyTorch's layout is (C_out, C_in, kH, kW), output "
     "channel first.", _channel_axes_swapped),
    ("flipped kernel",
     "you flipped the kernel (true convolution); a convolutional layer computes cross-correlation, no flip.",
     _flipped),
]


def _axes_swapped(x, w, b):
    if x.shape[0] == 1 and w.shape[0] == 1:
        raise NotApplicable("nothing to tell apart")
    return _conv(x, w, b).transpose(0, 1)


def _channel_misconceptions(batch: bool) -> list[Misconception]:
    wrap = (lambda f: f) if batch else _batched
    extra = [Misconception("batch and channel axes swapped",
                           "your output is (C_out, N, H', W'); PyTorch's layout is (N, C_out, H', W'), "
                           "batch first.", _axes_swapped)] if batch else []
    return [Misconception(name, text, wrap(f)) for name, text, f in _CHANNEL_MISCONCEPTIONS] + extra


# --------------------------------------------------------------------------------------------------------------
# conv2d_multi: one image, several channels
# --------------------------------------------------------------------------------------------------------------
_MULTI_FIXED = [
    {"C_in": 3, "C_out": 2, "H": 5, "W": 7, "kH": 2, "kW": 3, "bias": 1},   # C_in != C_out, non-square
    {"C_in": 2, "C_out": 2, "H": 5, "W": 5, "kH": 3, "kW": 3, "bias": 1},   # C_in == C_out: w[o, c] vs w[c, o]
    {"C_in": 1, "C_out": 4, "H": 4, "W": 6, "kH": 1, "kW": 1, "bias": 1},   # 1x1 kernel
    {"C_in": 2, "C_out": 3, "H": 3, "W": 5, "kH": 3, "kW": 5, "bias": 1},   # full-size kernel: 1x1 output
    {"C_in": 4, "C_out": 1, "H": 6, "W": 4, "kH": 3, "kW": 2, "bias": 0},   # no bias (b is None)
]

conv2d_multi = Exercise(
    name="conv2d_multi",
    assignment=ASSIGNMENT,
    points=2,
    signature="conv2d_multi(x, w, b)",
    oracle=lambda x, w, b: _conv(x[None], w, b)[0],
    params=_conv_params(batch=False),
    build=_build_conv,
    describe=_describe_conv,
    valid=kernel_fits,
    fixed_params=_MULTI_FIXED,
    misconceptions=_channel_misconceptions(batch=False),
    n_visible=8,
    n_hidden=24,
)

# --------------------------------------------------------------------------------------------------------------
# conv2d_batch: a batch of images
# --------------------------------------------------------------------------------------------------------------
_BATCH_FIXED = [dict(p, N=n) for p, n in zip(_MULTI_FIXED, (2, 3, 1, 2, 3))]


def _batch_mixed(x, w, b):
    if x.shape[0] == 1:
        raise NotApplicable("one image: nothing to tell apart")
    return _conv(x[:1], w, b).expand(x.shape[0], -1, -1, -1)


conv2d_batch = Exercise(
    name="conv2d_batch",
    assignment=ASSIGNMENT,
    points=2,
    signature="conv2d_batch(x, w, b)",
    oracle=lambda x, w, b: _conv(x, w, b),
    params=_conv_params(batch=True),
    build=_build_conv,
    describe=_describe_conv,
    valid=kernel_fits,
    fixed_params=_BATCH_FIXED,
    misconceptions=_channel_misconceptions(batch=True) + [
        Misconception("every image gets the first image's output",
                      "all images of your batch got the output of image 0: loop over (or vectorise over) the "
                      "batch axis N, each image is convolved separately with the same weights.", _batch_mixed)],
)

# --------------------------------------------------------------------------------------------------------------
# conv2d_grouped: groups and depthwise convolution
# --------------------------------------------------------------------------------------------------------------
_GROUPED_PARAMS = [Param("N", 1, 3), Param("G", 1, 4), Param("cg_in", 1, 3), Param("cg_out", 1, 3),
                   *image_kernel(8, kernel=4), flag("bias", 0.8)]


def _build_grouped(p, draw) -> Call:
    return Call(conv_case(p).arrays(draw) + (p["G"],))


def _describe_grouped(p) -> str:
    kind = " (depthwise)" if p["G"] > 1 and p["cg_in"] == 1 else ""
    return f"{conv_case(p).text()}, groups {p['G']}{kind}"


def _ignore_groups(x, w, b, groups):
    if groups == 1:
        raise NotApplicable("groups=1: nothing to tell apart")
    return _conv(x[:, : w.shape[1]], w, b)


def _interleaved_outputs(x, w, b, groups):
    """Output channel o paired with input group o % groups instead of o // (C_out / groups)."""
    t = torch()
    if groups == 1:
        raise NotApplicable("groups=1: nothing to tell apart")
    cg = w.shape[1]
    outs = [_conv(x[:, (o % groups) * cg:(o % groups + 1) * cg], w[o:o + 1], None if b is None else b[o:o + 1])
            for o in range(w.shape[0])]
    return t.cat(outs, dim=1)


def _strided_inputs(x, w, b, groups):
    """Group g made of the input channels g, g + groups, g + 2 groups, ... instead of a contiguous block."""
    t = torch()
    cg = w.shape[1]
    if groups == 1 or cg == 1:
        raise NotApplicable("nothing to tell apart")
    order = t.tensor([g + groups * i for g in range(groups) for i in range(cg)], device=x.device)
    return _conv(x[:, order], w, b, groups)


def _interleaved_groups(x, w, b, groups):
    """Every channel c (input and output) put in group c % groups: group g is x[:, g::groups] -> out[:, g::groups]."""
    t = torch()
    if groups == 1:
        raise NotApplicable("groups=1: nothing to tell apart")
    outs = [_conv(x[:, o % groups::groups], w[o:o + 1], None if b is None else b[o:o + 1])
            for o in range(w.shape[0])]
    return t.cat(outs, dim=1)


def _grouped_flipped(x, w, b, groups):
    return _conv(x, w.flip(2, 3), b, groups)


def _grouped_no_bias(x, w, b, groups):
    if b is None:
        raise NotApplicable("no bias in this case")
    return _conv(x, w, None, groups)


conv2d_grouped = Exercise(
    name="conv2d_grouped",
    assignment=ASSIGNMENT,
    points=3,
    signature="conv2d_grouped(x, w, b, groups)",
    oracle=lambda x, w, b, groups: _conv(x, w, b, groups),
    params=_GROUPED_PARAMS,
    build=_build_grouped,
    describe=_describe_grouped,
    valid=kernel_fits,
    fixed_params=[
        {"N": 2, "G": 2, "cg_in": 2, "cg_out": 3, "H": 5, "W": 6, "kH": 3, "kW": 2, "bias": 1},  # C_in != C_out
        {"N": 1, "G": 4, "cg_in": 1, "cg_out": 1, "H": 6, "W": 6, "kH": 3, "kW": 3, "bias": 1},  # depthwise
        {"N": 2, "G": 3, "cg_in": 1, "cg_out": 2, "H": 5, "W": 4, "kH": 2, "kW": 2, "bias": 1},  # multiplier 2
        {"N": 1, "G": 1, "cg_in": 3, "cg_out": 2, "H": 4, "W": 5, "kH": 2, "kW": 3, "bias": 1},  # groups=1
        {"N": 2, "G": 3, "cg_in": 2, "cg_out": 1, "H": 4, "W": 4, "kH": 1, "kW": 1, "bias": 0},  # 1x1, no bias
        {"N": 1, "G": 2, "cg_in": 3, "cg_out": 2, "H": 3, "W": 4, "kH": 3, "kW": 4, "bias": 1},  # full-size kernel
    ],
    misconceptions=[
        Misconception("groups ignored",
                      "every output channel used the first C_in / groups input channels. With groups, output "
                      "channel o belongs to group g = o // (C_out / groups) and sees only the input channels "
                      "g * C_in/groups ... (g + 1) * C_in/groups - 1.", _ignore_groups),
        Misconception("output channels assigned to groups round-robin",
                      "you paired output channel o with input group o % groups; PyTorch gives each group a "
                      "contiguous block of C_out / groups output channels: g = o // (C_out / groups).",
                      _interleaved_outputs),
        Misconception("input channels of a group taken with a stride",
                      "group g is the contiguous block of input channels g * C_in/groups ... (g + 1) * C_in/groups "
                      "- 1, not the channels g, g + groups, g + 2 * groups, ...", _strided_inputs),
        Misconception("interleaved groups",
                      "you put channel c in group c % groups (x[:, g::groups] in, out[:, g::groups] out). Groups "
                      "are contiguous blocks: group g is input channels g * C_in/groups ... (g + 1) * C_in/groups "
                      "- 1 and output channels g * C_out/groups ... (g + 1) * C_out/groups - 1.",
                      _interleaved_groups),
        Misconception("bias missing", "you did not add the bias b[o] to output channel o.", _grouped_no_bias),
        Misconception("flipped kernel", "you flipped the kernel; a convolutional layer computes cross-correlation.",
                      _grouped_flipped),
    ],
)

# --------------------------------------------------------------------------------------------------------------
# conv2d_im2col: the same as conv2d_batch, vectorised; plus the speed part
# --------------------------------------------------------------------------------------------------------------
def _flatten_orders_differ(x, w, b):
    """Patches flattened as (kH, kW, C) but weights as (C, kH, kW) (or the other way round)."""
    o, c, kh, kw = w.shape
    if c == 1 or kh * kw == 1:
        raise NotApplicable("nothing to tell apart")
    return _conv(x, w.reshape(o, kh, kw, c).permute(0, 3, 1, 2), b)


def _flatten_orders_differ_2(x, w, b):
    o, c, kh, kw = w.shape
    if c == 1 or kh * kw == 1:
        raise NotApplicable("nothing to tell apart")
    return _conv(x, w.permute(0, 2, 3, 1).reshape(o, c, kh, kw), b)


def _channels_not_moved(bias_after: bool):
    """Output (N * H' * W', C_out) reshaped straight to (N, C_out, H', W') without a transpose; the bias added
    before the reshape (to the columns, correctly) or after it."""
    def compute(x, w, b):
        y = _conv(x, w, None if bias_after else b)
        n, o, h, wd = y.shape
        if o == 1 or h * wd == 1 or (bias_after and b is None):
            raise NotApplicable("nothing to tell apart")
        y = y.permute(0, 2, 3, 1).reshape(n, o, h, wd)
        return y + b[None, :, None, None] if bias_after else y
    return compute


def _speed_case(rng: np.random.Generator) -> Call:
    """A fresh random input of the speed shape (a new one for every timed run: a cache earns nothing)."""
    s = SPEED_SHAPE
    x = rng.standard_normal((s["N"], s["C_in"], s["H"], s["W"]))
    w = rng.standard_normal((s["C_out"], s["C_in"], s["k"], s["k"])) / 3.0
    b = rng.standard_normal(s["C_out"])
    return Call((x, w, b))


def _speed_case_text() -> str:
    s = SPEED_SHAPE
    return (f"x ({s['N']}, {s['C_in']}, {s['H']}, {s['W']}), w ({s['C_out']}, {s['C_in']}, {s['k']}, {s['k']}), "
            f"b ({s['C_out']},)")


def _time_torch(call: Call) -> tuple[float, np.ndarray]:
    """``(seconds of F.conv2d in float32 on the call, the float64 reference)``."""
    t, fn = torch(), F()
    x, w, b = (t.from_numpy(a) for a in call.args)
    x32, w32, b32 = x.float(), w.float(), b.float()
    t0 = time.perf_counter()
    fn.conv2d(x32, w32, b32)
    seconds = time.perf_counter() - t0
    return seconds, fn.conv2d(x, w, b).numpy()


def _timed_runs(answer, rng: np.random.Generator) -> tuple[list, list, object, str | None]:
    """Interleaved timings of torch and the answer on fresh inputs, each result checked:
    ``(torch seconds, answer seconds, last outcome, why the answer failed or None)``."""
    from ..compare import compare

    t, fn = torch(), F()
    torch_times, answer_times, outcome = [], [], None
    with t.no_grad():
        fn.conv2d(*(a.float() for a in (t.from_numpy(v) for v in _speed_case(rng).args)))  # warm-up
        start = time.perf_counter()
        for _ in range(SPEED_RUNS):
            call = _speed_case(rng)
            seconds, expected = _time_torch(call)
            torch_times.append(seconds)
            t0 = time.perf_counter()
            outcome = answer(call)
            answer_times.append(time.perf_counter() - t0)
            if not outcome.ok:
                return torch_times, answer_times, outcome, outcome.error
            verdict = compare(expected, outcome.value)
            if not verdict:
                return torch_times, answer_times, outcome, f"the timed result is wrong: {verdict.reason}"
            if time.perf_counter() - start > SPEED_BUDGET_S:
                break
        while len(torch_times) < 3:                    # a slow answer ran once: still time torch fairly
            torch_times.append(_time_torch(_speed_case(rng))[0])
    return torch_times, answer_times, outcome, None


def grade_speed(answer, context) -> object:
    """The ``conv2d_im2col: speed`` part: wall-clock ratio of the answer to ``F.conv2d`` (float32, one thread),
    measured here, interleaved, best of up to :data:`SPEED_RUNS` runs within :data:`SPEED_BUDGET_S` seconds.

    Every run times a fresh random input, and every timed result must be correct (a fast wrong answer, or one that
    remembers an earlier result, earns nothing)."""

    name, points = "conv2d_im2col: speed", SPEED_POINTS
    with speed.one_torch_thread():
        torch_times, answer_times, _, failure = _timed_runs(answer, np.random.default_rng())
    shape = _speed_case_text()
    if failure is not None:
        return speed.wrong_result(name, points, f"a random input of the speed shape {shape}", failure)
    hint = ("a Python loop over output pixels (or over output channels per pixel): build every window at once "
            "with np.lib.stride_tricks.sliding_window_view, rearrange the windows into the im2col matrix (one "
            "column, or row, per output pixel) and finish with one matrix product (@ or np.einsum). A loop over "
            "the images or over the kH * kW kernel offsets is fine; one over the pixels is not.")
    return speed.verdict(name, points, SPEED_BOUND, min(answer_times), min(torch_times), len(answer_times), shape,
                         hint)


conv2d_im2col = Exercise(
    name="conv2d_im2col",
    assignment=ASSIGNMENT,
    points=3,
    signature="conv2d_im2col(x, w, b)",
    oracle=lambda x, w, b: _conv(x, w, b),
    params=_conv_params(batch=True, image=12),
    build=_build_conv,
    describe=_describe_conv,
    valid=kernel_fits,
    fixed_params=_BATCH_FIXED + [{"N": 2, "C_in": 3, "C_out": 4, "H": 9, "W": 12, "kH": 3, "kW": 3, "bias": 1}],
    misconceptions=_channel_misconceptions(batch=True) + [
        Misconception("patches and weights flattened in different orders",
                      "the rows of your im2col matrix and the rows of the reshaped weights list the C_in * kH * kW "
                      "entries in different orders (e.g. (kH, kW, C) for the patches, (C, kH, kW) for the weights). "
                      "Flatten both with the same axis order: w.reshape(C_out, -1) is (C, kH, kW).",
                      _flatten_orders_differ),
        Misconception("patches and weights flattened in different orders",
                      "the rows of your im2col matrix and the rows of the reshaped weights list the C_in * kH * kW "
                      "entries in different orders (e.g. (C, kH, kW) for the patches, (kH, kW, C) for the weights).",
                      _flatten_orders_differ_2),
        Misconception("output reshaped without moving the channel axis",
                      "the matrix product gives one row per output pixel and one column per output channel, "
                      "(N * H' * W', C_out); reshaping it straight to (N, C_out, H', W') scrambles the values. "
                      "Reshape to (N, H', W', C_out), then transpose(0, 3, 1, 2).", _channels_not_moved(False)),
        Misconception("output reshaped without moving the channel axis",
                      "the matrix product gives one row per output pixel and one column per output channel, "
                      "(N * H' * W', C_out); reshaping it straight to (N, C_out, H', W') scrambles the values. "
                      "Reshape to (N, H', W', C_out), then transpose(0, 3, 1, 2).", _channels_not_moved(True)),
    ],
    parts=[Part("speed", SPEED_POINTS, grade_speed)],
)

# --------------------------------------------------------------------------------------------------------------
# conv2d_param_count
# --------------------------------------------------------------------------------------------------------------
def _param_oracle(c_in, c_out, kh, kw, groups=1, bias=True):
    module = torch().nn.Conv2d(c_in, c_out, (kh, kw), groups=groups, bias=bias, device="meta")
    return int(sum(p.numel() for p in module.parameters()))


def _groups(often: tuple, chance: float, most: int) -> Param:
    """Groups: mostly the usual values (1, 2, 4...), sometimes any up to ``most``."""
    return Param("G", 1, most, mostly=often, chance=chance)


_PARAM_COUNT_PARAMS = [_groups((1, 1, 2, 3, 4, 8), 0.85, 32), Param("cg_in", 1, 64), Param("cg_out", 1, 64),
                       Param("kH", 1, 7), Param("kW", 1, 7), flag("bias", 0.6), FORM]


def _build_params_count(p, draw) -> Call:
    c_in, c_out = channels(p)
    return call_form((c_in, c_out, p["kH"], p["kW"]), [("groups", p["G"], 1), ("bias", bool(p["bias"]), True)],
                     p["form"])


def _describe_params_count(p) -> str:
    c_in, c_out = channels(p)
    return f"c_in {c_in}, c_out {c_out}, kernel {p['kH']}x{p['kW']}, groups {p['G']}, bias {bool(p['bias'])}"


def _weights(c_in, c_out, kh, kw, groups):
    return c_out * (c_in // groups) * kh * kw


conv2d_param_count = Exercise(
    name="conv2d_param_count",
    assignment=ASSIGNMENT,
    points=1,
    signature="conv2d_param_count(c_in, c_out, kh, kw, groups=1, bias=True)",
    oracle=_param_oracle,
    params=_PARAM_COUNT_PARAMS,
    build=_build_params_count,
    describe=_describe_params_count,
    fixed_params=[
        {"G": 4, "cg_in": 8, "cg_out": 16, "kH": 3, "kW": 5, "bias": 1, "form": 2},     # grouped, non-square
        {"G": 32, "cg_in": 1, "cg_out": 1, "kH": 3, "kW": 3, "bias": 1, "form": 1},     # depthwise 3x3: 320
        {"G": 1, "cg_in": 3, "cg_out": 64, "kH": 7, "kW": 7, "bias": 0, "form": 1},     # ResNet stem: 9,408
        {"G": 1, "cg_in": 64, "cg_out": 128, "kH": 3, "kW": 3, "bias": 1, "form": 0},
        {"G": 2, "cg_in": 3, "cg_out": 5, "kH": 1, "kW": 1, "bias": 0, "form": 0},      # grouped 1x1, no bias
        {"G": 1, "cg_in": 16, "cg_out": 32, "kH": 1, "kW": 1, "bias": 1, "form": 0},    # defaults omitted
    ],
    misconceptions=[
        Misconception("groups ignored",
                      "with groups, each output channel sees only C_in / groups input channels: the weight has "
                      "shape (C_out, C_in / groups, kH, kW).",
                      lambda ci, co, kh, kw, groups=1, bias=True: co * ci * kh * kw + (co if bias else 0)),
        Misconception("bias counted per group",
                      "there is one bias per output channel (C_out of them), not one per group.",
                      lambda ci, co, kh, kw, groups=1, bias=True: _weights(ci, co, kh, kw, groups)
                      + groups if bias and groups > 1 else not_applicable()),
        Misconception("a single bias",
                      "there is one bias per output channel: K * F * F * D_in + K, not + 1.",
                      lambda ci, co, kh, kw, groups=1, bias=True: _weights(ci, co, kh, kw, groups)
                      + (1 if bias else 0)),
        Misconception("bias not counted", "with bias=True the layer also has C_out bias parameters.",
                      lambda ci, co, kh, kw, groups=1, bias=True: _weights(ci, co, kh, kw, groups)),
        Misconception("bias counted although bias=False",
                      "with bias=False the layer has no bias parameters: only the weights count.",
                      lambda ci, co, kh, kw, groups=1, bias=True: _weights(ci, co, kh, kw, groups) + co),
        Misconception("bias counted per input channel",
                      "there is one bias per output channel, not one per input channel.",
                      lambda ci, co, kh, kw, groups=1, bias=True: _weights(ci, co, kh, kw, groups)
                      + (ci if bias else 0)),
    ],
    n_visible=12,
    n_hidden=36,
)

# --------------------------------------------------------------------------------------------------------------
# conv2d_flops
# --------------------------------------------------------------------------------------------------------------
def _flops_oracle(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1):
    """What FlopCounterMode counts for F.conv2d with bias (:func:`autograder.oracle.conv_flops`: its formula on the
    output shape torch computes; the same count as under the mode on meta tensors, tested)."""
    from ..oracle import conv_flops

    return conv_flops((n, c_in, h, w), (c_out, c_in // groups, kh, kw), stride, padding, groups=groups)[0]


def _flops_formula(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1, factor=2, out=None, extra=0,
                   groups_used=True):
    ho, wo = out if out is not None else (conv_out(h, kh, stride, padding), conv_out(w, kw, stride, padding))
    per = (c_in // groups if groups_used else c_in) * kh * kw
    return factor * n * c_out * ho * wo * per + extra * n * c_out * ho * wo


_FLOPS_PARAMS = [Param("N", 1, 16), _groups((1, 1, 1, 2, 4), 0.9, 8), Param("cg_in", 1, 32), Param("cg_out", 1, 32),
                 Param("H", 1, 64), Param("W", 1, 64), Param("kH", 1, 7), Param("kW", 1, 7), Param("stride", 1, 3),
                 Param("padding", 0, 3), FORM]


def _build_flops(p, draw) -> Call:
    c_in, c_out = channels(p)
    return call_form((p["N"], c_in, p["H"], p["W"], c_out, p["kH"], p["kW"]),
                     [("stride", p["stride"], 1), ("padding", p["padding"], 0), ("groups", p["G"], 1)], p["form"])


def _describe_flops(p) -> str:
    c_in, c_out = channels(p)
    return (f"x ({p['N']}, {c_in}, {p['H']}, {p['W']}), {c_out} filters {p['kH']}x{p['kW']}, stride {p['stride']}, "
            f"padding {p['padding']}, groups {p['G']}")


def _one_sided(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1):
    if padding == 0:
        raise NotApplicable("no padding: nothing to tell apart")
    out = ((h + padding - kh) // stride + 1, (w + padding - kw) // stride + 1)
    return _flops_formula(n, c_in, h, w, c_out, kh, kw, stride, padding, groups, out=out)


conv2d_flops = Exercise(
    name="conv2d_flops",
    assignment=ASSIGNMENT,
    points=2,
    signature="conv2d_flops(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1)",
    oracle=_flops_oracle,
    params=_FLOPS_PARAMS,
    build=_build_flops,
    describe=_describe_flops,
    valid=lambda p: kernel_fits(p, padding="padding"),
    fixed_params=[
        {"N": 8, "G": 1, "cg_in": 16, "cg_out": 32, "H": 64, "W": 64, "kH": 3, "kW": 3, "stride": 1, "padding": 0,
         "form": 0},
        {"N": 1, "G": 1, "cg_in": 3, "cg_out": 64, "H": 224, "W": 224, "kH": 7, "kW": 7, "stride": 2,
         "padding": 3, "form": 1},                                           # ResNet stem
        {"N": 2, "G": 32, "cg_in": 1, "cg_out": 1, "H": 14, "W": 14, "kH": 3, "kW": 3, "stride": 1, "padding": 1,
         "form": 1},                                                         # depthwise
        {"N": 1, "G": 2, "cg_in": 3, "cg_out": 5, "H": 10, "W": 7, "kH": 3, "kW": 2, "stride": 2, "padding": 1,
         "form": 2},                                                         # grouped, (H - k + 2p) / s not exact
        {"N": 3, "G": 1, "cg_in": 4, "cg_out": 2, "H": 9, "W": 11, "kH": 4, "kW": 4, "stride": 3, "padding": 0,
         "form": 0},                                                         # stride: rows dropped
    ],
    misconceptions=[
        Misconception("MACs instead of FLOPs",
                      "you counted multiply-adds (MACs); FlopCounterMode counts 2 FLOPs per multiply-add: "
                      "2 * N * C_out * H' * W' * (C_in / groups) * kH * kW.",
                      lambda *a, **k: _flops_formula(*a, **k, factor=1)),
        Misconception("bias counted",
                      "you added one FLOP per output value for the bias; FlopCounterMode does not count the bias.",
                      lambda *a, **k: _flops_formula(*a, **k, extra=1)),
        Misconception("groups ignored",
                      "with groups each output value sums over C_in / groups input channels, not C_in.",
                      lambda *a, **k: _flops_formula(*a, **k, groups_used=False)),
        Misconception("stride ignored",
                      "with stride s the output has floor((H + 2p - kH) / s) + 1 rows, not H + 2p - kH + 1.",
                      lambda n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1:
                      _flops_formula(n, c_in, h, w, c_out, kh, kw, 1, padding, groups)),
        Misconception("input size instead of output size",
                      "the cost is per *output* value: use H' = floor((H + 2p - kH) / s) + 1, not H.",
                      lambda n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1:
                      _flops_formula(n, c_in, h, w, c_out, kh, kw, stride, padding, groups, out=(h, w))),
        Misconception("padding ignored", "padding p adds 2p rows and 2p columns before the kernel slides.",
                      lambda n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1:
                      _flops_formula(n, c_in, h, w, c_out, kh, kw, stride, 0, groups)
                      if h >= kh and w >= kw and padding else not_applicable()),
        Misconception("padding on one side only", "padding p is added on both sides: H + 2p, not H + p.",
                      _one_sided),
        Misconception("true division in the output size",
                      "you divided with / (a float, and fractional rows when the division is not exact): the output "
                      "size is floor((H + 2p - kH) / s) + 1, written (H + 2p - kH) // s + 1, and the count an int.",
                      lambda n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, groups=1:
                      _flops_formula(n, c_in, h, w, c_out, kh, kw, stride, padding, groups,
                                     out=((h + 2 * padding - kh) / stride + 1, (w + 2 * padding - kw) / stride + 1))),
    ],
    n_visible=12,
    n_hidden=36,
)


register(conv2d_multi, conv2d_batch, conv2d_grouped, conv2d_im2col, conv2d_param_count, conv2d_flops)

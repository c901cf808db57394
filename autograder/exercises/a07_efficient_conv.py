"""07-efficient-conv: cheaper convolutions (``conv2d_fft`` with a graded speed part, ``conv_transpose2d_flops``,
``separable_factors``, ``conv2d_separable``, ``depthwise_separable_conv2d``, ``separable_cost``).

All six are NumPy, from scratch (``np.fft`` and ``np.linalg`` are NumPy, hence allowed). Layouts follow PyTorch.

The speed part of ``conv2d_fft`` (report line ``conv2d_fft: speed``) is timed on the grader's side, around the
answer proxy, against ``F.conv2d`` in float32 on one CPU thread (see :mod:`.a02_channels_batch` for why one thread
and float32), on :data:`SPEED_SHAPE`: a 256 x 256 image and one 31 x 31 kernel, where the convolution theorem wins
by far. Every repetition draws **fresh** random float32 inputs from an unpredictable seed and checks that
repetition's result (with float32's tolerance, since the inputs are float32), so an answer cannot replay earlier
results. The answer must beat ``F.conv2d`` by a margin: full marks when the best ratio is at most :data:`SPEED_BOUND`.
Measured on a 2-core machine (one thread): ``F.conv2d`` 60-80 ms; the reference FFT answer 2-3 ms (0.03-0.05x);
a loop over images and output channels with full complex ``fft2`` 0.05-0.23x (it allocates more, and suffers most
when the machine is loaded: load average 10 on 2 cores); direct sums in NumPy 0.85x (``einsum`` over
``sliding_window_view``), 0.96x (a loop over the 961 kernel offsets) and 3.1x (``tensordot``). Direct sums sit at
about 1x, where a bound of 1 would grade them by noise; 0.5 leaves a margin of 2x or more on both sides.

``separable_factors`` is judged by what its factors mean: the view is the shapes of ``(col, row)`` and their outer
product, compared with the kernel (the factors themselves are unique only up to a scale); for kernels of rank > 1
the oracle returns :data:`autograder.spec.RAISES`, so the answer must raise. Rank-1 cases are exact outer products,
rank-2 ones have a second singular value of at least a tenth of the first: no case is near the boundary.
"""
from __future__ import annotations

import secrets
import time

import numpy as np

from .. import speed
from ..params import FORM, Param, choice
from ..registry import register
from ..shapes import call_form, channels, conv_case, conv_params, image_kernel, kernel_fits, transposed_out
from ..spec import RAISES, Call, Exercise, Misconception, Part, not_applicable
from ._torch import F, torch

ASSIGNMENT = "07-efficient-conv"

#: the shape of the speed part
SPEED_SHAPE = {"N": 1, "C_in": 1, "C_out": 1, "H": 256, "W": 256, "k": 31}
#: full marks for the speed part when the answer takes at most this many times F.conv2d (float32, one thread):
#: faster than it, with a margin that no direct sum reaches
SPEED_BOUND = 0.5
#: at most this many timed runs, within this many seconds (at least one run)
SPEED_RUNS, SPEED_BUDGET_S = 5, 4.0
SPEED_POINTS = 2
#: a rank-2 case's second singular value is at least this fraction of the first
RANK_MARGIN = 0.1


# --------------------------------------------------------------------------------------------------------------
# conv2d_fft
# --------------------------------------------------------------------------------------------------------------
def _conv(x, w, b=None, groups=1):
    return F().conv2d(x, w, b, groups=groups)


#: bias 0: b left at its default (None), 1: given, 2: passed as None
_FFT_PARAMS = [Param("N", 1, 3), Param("C_in", 1, 3), Param("C_out", 1, 3), *image_kernel(12), choice("bias", 3)]


def _fft_case(p):
    return conv_case({**p, "bias": int(p["bias"] == 1)})


def _build_fft(p, draw) -> Call:
    x, w, b = _fft_case(p).arrays(draw)
    return Call((x, w)) if p["bias"] == 0 else Call((x, w, b))


def _describe_fft(p) -> str:
    return _fft_case(p).text(no_bias="no b (default None)" if p["bias"] == 0 else "b None")


def _full(x, w):
    """The full correlation: every offset where kernel and image overlap, (H + kH - 1, W + kW - 1)."""
    return F().conv2d(x, w, padding=(w.shape[2] - 1, w.shape[3] - 1))


def _with_bias(y, b):
    return y if b is None else y + b[None, :, None, None]


def _crop_misconception(offset):
    """The full correlation cropped at ``offset(kH, kW)`` instead of at (kH - 1, kW - 1)."""
    def compute(x, w, b=None):
        kh, kw = w.shape[2:]
        ho, wo = x.shape[2] - kh + 1, x.shape[3] - kw + 1
        top, left = offset(kh, kw)
        if (top, left) == (kh - 1, kw - 1):
            not_applicable()
        return _with_bias(_full(x, w)[:, :, top:top + ho, left:left + wo], b)
    return compute


def _circular(x, w, b=None, conj=False):
    """The spectra multiplied at the image size (H, W), without zero padding: a circular correlation (``conj``)
    or circular convolution with the flipped kernel, cropped where the linear result would be valid for the
    *other* route, so that the wrapped-around rows show."""
    t = torch()
    h, wd = x.shape[2:]
    kh, kw = w.shape[2:]
    if kh == 1 and kw == 1:
        not_applicable()
    spec_x = t.fft.rfft2(x, s=(h, wd))[:, None]                       # (N, 1, C_in, ., .)
    kernel = w if conj else w.flip(2, 3)
    spec_w = t.fft.rfft2(kernel, s=(h, wd))[None]                      # (1, C_out, C_in, ., .)
    spec_w = spec_w.conj() if conj else spec_w
    y = t.fft.irfft2((spec_x * spec_w).sum(2), s=(h, wd))
    ho, wo = h - kh + 1, wd - kw + 1
    y = y[:, :, kh - 1:kh - 1 + ho, kw - 1:kw - 1 + wo] if conj else y[:, :, :ho, :wo]
    return _with_bias(y, b)


_CROP_TEXT = ("after the inverse FFT the full correlation has H + kH - 1 rows; the valid part, where the kernel lies "
              "entirely inside the image, starts at row kH - 1 and column kW - 1: y = full[..., kH-1:H, kW-1:W] "
              "(when you multiplied by the spectrum of the flipped kernel).")
_WRAP_TEXT = ("the product of two DFTs is a *circular* convolution: without zero padding to H + kH - 1 rows the "
              "results that run past the border wrap around and are added to the other side. In an unpadded product "
              "kH - 1 rows (and kW - 1 columns) are wrapped: the first ones with the flipped kernel (keep rows "
              "kH-1..H-1), the last ones with the conjugate spectrum (keep rows 0..H-kH). Padding with "
              "rfft2(..., s=(H + kH - 1, W + kW - 1)) avoids the question.")


def _speed_call(rng, dtype=np.float32) -> Call:
    s = SPEED_SHAPE
    x = rng.standard_normal((s["N"], s["C_in"], s["H"], s["W"])).astype(dtype)
    w = (rng.standard_normal((s["C_out"], s["C_in"], s["k"], s["k"])) / s["k"]).astype(dtype)
    return Call((x, w))


def _speed_text() -> str:
    s = SPEED_SHAPE
    return f"x ({s['N']}, {s['C_in']}, {s['H']}, {s['W']}), w ({s['C_out']}, {s['C_in']}, {s['k']}, {s['k']}), float32"


def _time_torch(x32, w32) -> float:
    t0 = time.perf_counter()
    F().conv2d(x32, w32)
    return time.perf_counter() - t0


def _speed_reference(call: Call) -> np.ndarray:
    """F.conv2d's result in float64 for the speed shape, through torch's FFT: torch's float64 CPU convolution takes
    seconds on a 31 x 31 kernel (a slow fallback), the float64 product of spectra milliseconds (error ~1e-15)."""
    t = torch()
    x, w = (t.from_numpy(a).double() for a in call.args)
    (h, wd), (kh, kw) = x.shape[2:], w.shape[2:]
    size = (h + kh - 1, wd + kw - 1)
    spectra = t.fft.rfft2(x, s=size)[:, None] * t.fft.rfft2(w.flip(2, 3), s=size)[None]
    return t.fft.irfft2(spectra.sum(2), s=size)[:, :, kh - 1:h, kw - 1:wd].numpy()


def _timed_runs(answer):
    """Interleaved (torch time, answer time, outcome, call) per run, each on fresh random inputs."""
    t = torch()
    rng = np.random.default_rng(secrets.randbits(64))             # unpredictable: nothing to precompute
    runs, start = [], time.perf_counter()
    with t.no_grad():
        x0, w0 = (t.from_numpy(a) for a in _speed_call(rng).args)
        F().conv2d(x0, w0)                                           # warm-up (first call allocates)
        for _ in range(SPEED_RUNS):
            call = _speed_call(rng)
            torch_s = _time_torch(*(t.from_numpy(a) for a in call.args))
            t0 = time.perf_counter()
            outcome = answer(call)
            runs.append((torch_s, time.perf_counter() - t0, outcome, call))
            if not outcome.ok or time.perf_counter() - start > SPEED_BUDGET_S:
                break
        while len(runs) < 3:                                         # a slow answer ran once: time torch fairly
            runs.append((_time_torch(x0, w0), None, None, None))
    return runs


def _as_float32(value):
    """The inputs are float32: a float64 result computed from them is judged with float32's tolerance."""
    if isinstance(value, np.ndarray) and value.dtype == np.float64:
        return value.astype(np.float32)
    return value


def _first_wrong(runs) -> str | None:
    from ..compare import compare

    for _, _, outcome, call in runs:
        if outcome is None:
            continue
        if not outcome.ok:
            return outcome.error
        verdict = compare(_speed_reference(call), _as_float32(outcome.value))
        if not verdict:
            return f"the timed result is wrong: {verdict.reason}"
    return None


def grade_fft_speed(answer, context) -> object:
    """The ``conv2d_fft: speed`` part: best answer time over best ``F.conv2d`` time (float32, one thread), same
    run, interleaved, fresh inputs each run; every timed result must be correct."""

    name, points = "conv2d_fft: speed", SPEED_POINTS
    with speed.one_torch_thread():
        runs = _timed_runs(answer)
    wrong = _first_wrong(runs)
    if wrong:
        return speed.wrong_result(name, points, _speed_text(), wrong)
    hint = ("a direct sum (sliding windows, a loop over kernel offsets) costs kH * kW multiply-adds per output "
            "pixel, 961 here; the FFT route costs O(log(H W)) per pixel whatever the kernel size. Transform the "
            "image and the flipped kernel once with np.fft.rfft2 at size (H + kH - 1, W + kW - 1) (or the next "
            "fast size), multiply, sum over input channels, np.fft.irfft2, crop. Avoid Python loops over pixels.")
    answer_times = [r[1] for r in runs if r[1] is not None]
    return speed.verdict(name, points, SPEED_BOUND, min(answer_times), min(r[0] for r in runs), len(answer_times),
                         _speed_text(), hint)


conv2d_fft = Exercise(
    name="conv2d_fft",
    assignment=ASSIGNMENT,
    points=3,
    signature="conv2d_fft(x, w, b=None)",
    oracle=_conv,
    params=_FFT_PARAMS,
    build=_build_fft,
    describe=_describe_fft,
    valid=kernel_fits,
    fixed_params=[
        {"N": 1, "C_in": 1, "C_out": 1, "H": 12, "W": 10, "kH": 5, "kW": 3, "bias": 0},    # a single channel
        {"N": 2, "C_in": 3, "C_out": 2, "H": 9, "W": 11, "kH": 4, "kW": 4, "bias": 1},     # channels summed, even k
        {"N": 1, "C_in": 2, "C_out": 3, "H": 6, "W": 7, "kH": 6, "kW": 7, "bias": 1},      # full-size kernel
        {"N": 2, "C_in": 1, "C_out": 2, "H": 5, "W": 8, "kH": 1, "kW": 1, "bias": 2},      # 1x1 kernel, b=None
        {"N": 1, "C_in": 2, "C_out": 1, "H": 7, "W": 12, "kH": 2, "kW": 6, "bias": 1},     # wide kernel
    ],
    misconceptions=[
        Misconception("kernel not flipped in the FFT product",
                      "multiplying the spectra of x and w gives a *convolution* (the kernel flipped); a layer "
                      "computes cross-correlation. Flip the kernel first (w[..., ::-1, ::-1]) or multiply by the "
                      "complex conjugate of its spectrum.",
                      lambda x, w, b=None: _with_bias(_conv(x, w.flip(2, 3)), b)),
        Misconception("wrong crop", _CROP_TEXT, _crop_misconception(lambda kh, kw: (0, 0))),
        Misconception("wrong crop", _CROP_TEXT, _crop_misconception(lambda kh, kw: ((kh - 1) // 2, (kw - 1) // 2))),
        Misconception("wrong crop", _CROP_TEXT, _crop_misconception(lambda kh, kw: (kh, kw))),
        Misconception("wrap-around (circular convolution)", _WRAP_TEXT, _circular),
        Misconception("wrap-around (circular convolution)", _WRAP_TEXT,
                      lambda x, w, b=None: _circular(x, w, b, conj=True)),
        Misconception("bias missing", "add b[o] to output channel o (when b is not None).",
                      lambda x, w, b=None: _conv(x, w) if b is not None else not_applicable()),
        Misconception("input channels not summed",
                      "an output channel sums the correlations of every input channel with its kernel slice: sum "
                      "the products of the spectra over the input-channel axis before the inverse FFT.",
                      lambda x, w, b=None: _with_bias(_conv(x[:, :1], w[:, :1]), b) if x.shape[1] > 1
                      else not_applicable()),
    ],
    parts=[Part("speed", SPEED_POINTS, grade_fft_speed)],
    n_visible=8,
    n_hidden=24,
)


# --------------------------------------------------------------------------------------------------------------
# conv_transpose2d_flops
# --------------------------------------------------------------------------------------------------------------
def _ct_flops_oracle(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, output_padding=0, groups=1):
    """What FlopCounterMode counts for F.conv_transpose2d with bias (:func:`autograder.oracle.conv_flops`: its
    formula on the output shape torch computes; the same count as under the mode on meta tensors, tested)."""
    from ..oracle import conv_flops

    return conv_flops((n, c_in, h, w), (c_in, c_out // groups, kh, kw), stride, padding, groups=groups,
                      transposed=True, output_padding=output_padding)[0]


def _ct_formula(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, output_padding=0, groups=1, factor=2,
                groups_used=True, bias=False):
    per = c_in * (c_out // groups if groups_used else c_out) * kh * kw
    out = n * c_out * transposed_out(h, kh, stride, padding, output_padding) * transposed_out(w, kw, stride, padding,
                                                                                 output_padding)
    return factor * n * h * w * per + (out if bias else 0)


def _conv_formula_on_output(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, output_padding=0, groups=1):
    ho, wo = (transposed_out(n_in, k, stride, padding, output_padding) for n_in, k in ((h, kh), (w, kw)))
    return 2 * n * c_out * ho * wo * (c_in // groups) * kh * kw


_CT_FLOPS_PARAMS = [Param("N", 1, 8), Param("G", 1, 4, mostly=(1, 1, 1, 2, 4)), Param("cg_in", 1, 16),
                    Param("cg_out", 1, 16), Param("H", 1, 32), Param("W", 1, 32), Param("kH", 1, 5),
                    Param("kW", 1, 5), Param("stride", 1, 3), Param("padding", 0, 2),
                    Param("output_padding", 0, lambda p: p["stride"] - 1), FORM]


def _valid_ct_flops(p) -> bool:
    return (p["output_padding"] < p["stride"]
            and transposed_out(p["H"], p["kH"], p["stride"], p["padding"], p["output_padding"]) >= 1
            and transposed_out(p["W"], p["kW"], p["stride"], p["padding"], p["output_padding"]) >= 1)


def _build_ct_flops(p, draw) -> Call:
    c_in, c_out = channels(p)
    optional = [("stride", p["stride"], 1), ("padding", p["padding"], 0),
                ("output_padding", p["output_padding"], 0), ("groups", p["G"], 1)]
    return call_form((p["N"], c_in, p["H"], p["W"], c_out, p["kH"], p["kW"]), optional, p["form"])


def _describe_ct_flops(p) -> str:
    c_in, c_out = channels(p)
    ho = transposed_out(p["H"], p["kH"], p["stride"], p["padding"], p["output_padding"])
    wo = transposed_out(p["W"], p["kW"], p["stride"], p["padding"], p["output_padding"])
    return (f"x ({p['N']}, {c_in}, {p['H']}, {p['W']}), {c_out} output channels, kernel {p['kH']}x{p['kW']}, "
            f"stride {p['stride']}, padding {p['padding']}, output_padding {p['output_padding']}, groups {p['G']} "
            f"-> ({p['N']}, {c_out}, {ho}, {wo})")


conv_transpose2d_flops = Exercise(
    name="conv_transpose2d_flops",
    assignment=ASSIGNMENT,
    points=2,
    signature="conv_transpose2d_flops(n, c_in, h, w, c_out, kh, kw, stride=1, padding=0, output_padding=0, "
              "groups=1)",
    oracle=_ct_flops_oracle,
    params=_CT_FLOPS_PARAMS,
    build=_build_ct_flops,
    describe=_describe_ct_flops,
    valid=_valid_ct_flops,
    fixed_params=[
        {"N": 1, "G": 1, "cg_in": 64, "cg_out": 32, "H": 16, "W": 16, "kH": 4, "kW": 4, "stride": 2, "padding": 1,
         "output_padding": 0, "form": 1},                                    # DCGAN's upsampling layer
        {"N": 2, "G": 1, "cg_in": 3, "cg_out": 5, "H": 7, "W": 5, "kH": 3, "kW": 2, "stride": 1, "padding": 0,
         "output_padding": 0, "form": 0},                                    # stride 1: a full convolution
        {"N": 1, "G": 4, "cg_in": 2, "cg_out": 3, "H": 6, "W": 9, "kH": 3, "kW": 3, "stride": 3, "padding": 2,
         "output_padding": 2, "form": 2},                                    # grouped, output_padding
        {"N": 4, "G": 1, "cg_in": 8, "cg_out": 8, "H": 5, "W": 5, "kH": 1, "kW": 1, "stride": 2, "padding": 0,
         "output_padding": 1, "form": 1},                                    # 1x1 kernel, stride 2
    ],
    misconceptions=[
        Misconception("convolution formula on the transposed output",
                      "you counted 2 * C_in/groups * kH * kW FLOPs per *output* value, as for a convolution. A "
                      "transposed convolution scatters: every *input* value is multiplied by a whole kernel slice "
                      "(C_out/groups * kH * kW weights) and added into the output, so the count follows the input: "
                      "2 * N * H * W * C_in * (C_out/groups) * kH * kW, whatever the stride, padding and "
                      "output_padding (they only move or drop results).", _conv_formula_on_output),
        Misconception("MACs instead of FLOPs", "FlopCounterMode counts 2 FLOPs per multiply-add.",
                      lambda *a, **k: _ct_formula(*a, **k, factor=1)),
        Misconception("groups ignored", "with groups each input value meets only C_out / groups output channels.",
                      lambda *a, **k: _ct_formula(*a, **k, groups_used=False)),
        Misconception("bias counted", "FlopCounterMode does not count the bias additions.",
                      lambda *a, **k: _ct_formula(*a, **k, bias=True)),
    ],
    n_visible=10,
    n_hidden=30,
)


# --------------------------------------------------------------------------------------------------------------
# separable_factors
# --------------------------------------------------------------------------------------------------------------
#: kinds of kernel: 0 rank 1 (outer product), 1 rank 2, 2 rank 1 with a zero row and a zero column
KINDS = ("rank 1", "rank 2", "rank 1 with zero rows")


def _rank2(draw, kh, kw):
    """A rank-2 kernel whose second singular value is at least :data:`RANK_MARGIN` times the first."""
    a, b, c, d = draw.array(kh), draw.array(kw), draw.array(kh), draw.array(kw)
    k = np.outer(a, b) + np.outer(c, d)
    s = np.linalg.svd(k, compute_uv=False)
    if s[1] < RANK_MARGIN * s[0]:            # nearly rank 1 (or less): make it plainly rank 2
        k = np.zeros((kh, kw))
        k[0, 0] = k[1, 1] = 1.0
    return k


def _rank1(draw, kh, kw, zeros: bool):
    col, row = draw.array(kh), draw.array(kw)
    col[np.abs(col) < 0.25] = 1.0            # no factor is (nearly) zero: the kernel is plainly rank 1
    row[np.abs(row) < 0.25] = -1.0
    if zeros:
        col[kh // 2] = 0.0
        row[0] = 0.0
    return np.outer(col, row)


def _build_factors(p, draw) -> Call:
    kh, kw = p["kH"], p["kW"]
    if p["kind"] == 1:
        return Call((_rank2(draw, kh, kw),))
    return Call((_rank1(draw, kh, kw, zeros=p["kind"] == 2),))


def _shapes_text(col_shape, row_shape) -> str:
    return f"col {tuple(col_shape)}, row {tuple(row_shape)}"


def _factors_view(k_shape, col, row) -> tuple:
    """(the shapes in words, outer(col, row) or None when the shapes are wrong)"""
    text = _shapes_text(col.shape, row.shape)
    if text != _shapes_text(k_shape[:1], k_shape[1:]):
        return text, None
    return text, np.outer(col, row)


def _factors_oracle(k):
    if int(torch().linalg.matrix_rank(k)) > 1:
        return RAISES
    return _shapes_text(k.shape[:1], k.shape[1:]), k


def _factors_of_answer(plain, call, device):
    k = call.args[0]
    if not (isinstance(plain, tuple) and len(plain) == 2 and all(isinstance(v, np.ndarray) for v in plain)):
        return ("not a pair of arrays (col, row)", None)
    col, row = plain
    if col.dtype.kind != "f" or row.dtype.kind != "f":
        return (f"col of dtype {col.dtype}, row of dtype {row.dtype} (expected floats)", None)
    return _factors_view(k.shape, col, row)


def _svd(k):
    u, s, vh = torch().linalg.svd(k)
    return u, s, vh


def _factor_misconception(compute_pair):
    def compute(k):
        if int(torch().linalg.matrix_rank(k)) > 1:
            not_applicable()
        col, row = compute_pair(k)
        col, row = col.cpu().numpy(), row.cpu().numpy()
        return _factors_view(tuple(k.shape), col, row)
    return compute


def _dropped(k):
    u, s, vh = _svd(k)
    if abs(float(s[0]) - 1.0) < 1e-9:
        not_applicable()
    return u[:, 0], vh[0]


def _swapped(k):
    u, s, vh = _svd(k)
    return vh[0] * s[0], u[:, 0]


def _transposed_v(k):
    u, s, vh = _svd(k)
    if k.shape[1] == 1:
        not_applicable()
    return u[:, 0] * s[0], vh[:, 0]


separable_factors = Exercise(
    name="separable_factors",
    assignment=ASSIGNMENT,
    points=2,
    signature="separable_factors(k)",
    oracle=_factors_oracle,
    output_names=("shapes", "outer(col, row)"),
    params=[Param("kH", 1, 7), Param("kW", 1, 7), Param("kind", 0, len(KINDS) - 1, mostly=(0, 0, 1, 1, 2))],
    build=_build_factors,
    describe=lambda p: f"k ({p['kH']}, {p['kW']}), {KINDS[p['kind']]}"
                       + (": not separable, should raise ValueError" if p["kind"] == 1 else ""),
    valid=lambda p: p["kind"] == 0 or min(p["kH"], p["kW"]) >= 2,
    fixed_params=[
        {"kH": 3, "kW": 3, "kind": 0},
        {"kH": 5, "kW": 2, "kind": 0},       # not square: col and row have different lengths
        {"kH": 3, "kW": 3, "kind": 1},       # not separable
        {"kH": 4, "kW": 6, "kind": 1},
        {"kH": 3, "kW": 4, "kind": 2},       # zero row and column
        {"kH": 1, "kW": 5, "kind": 0},       # a row kernel
        {"kH": 1, "kW": 1, "kind": 0},
    ],
    misconceptions=[
        Misconception("singular value dropped",
                      "k = s[0] * outer(U[:, 0], Vt[0]): the first singular value has to go into one of the "
                      "factors (or sqrt(s[0]) into each); the singular vectors alone have unit length.",
                      _factor_misconception(_dropped)),
        Misconception("factors swapped",
                      "col holds the kernel's rows' profile (length kH, from U[:, 0]) and row its columns' "
                      "profile (length kW, from Vt[0]); you returned them the other way round.",
                      _factor_misconception(_swapped)),
        Misconception("a column of Vt instead of a row",
                      "numpy.linalg.svd returns Vt (V transposed): the right singular vector is its first *row*, "
                      "Vt[0], not Vt[:, 0].", _factor_misconception(_transposed_v)),
    ],
    view=_factors_of_answer,
    n_visible=10,
    n_hidden=30,
)


# --------------------------------------------------------------------------------------------------------------
# conv2d_separable
# --------------------------------------------------------------------------------------------------------------
def _depthwise_kernel(col, row, channels):
    k = col[:, None] * row[None, :]
    return k[None, None].expand(channels, 1, *k.shape)


def _separable(x, col, row):
    return _conv(x, _depthwise_kernel(col, row, x.shape[1]), groups=x.shape[1])


def _swapped_passes(x, col, row):
    if len(col) == len(row) and torch().allclose(col, row):
        not_applicable()
    if len(row) > x.shape[2] or len(col) > x.shape[3]:
        not_applicable()
    return _separable(x, row, col)


def _one_pass(x, col, row):
    if len(row) == 1:
        not_applicable()
    return _conv(x, col[None, None, :, None].expand(x.shape[1], 1, len(col), 1), groups=x.shape[1])


def _channels_summed(x, col, row):
    if x.shape[1] == 1:
        not_applicable()
    return _separable(x, col, row).sum(1, keepdim=True)


conv2d_separable = Exercise(
    name="conv2d_separable",
    assignment=ASSIGNMENT,
    points=2,
    signature="conv2d_separable(x, col, row)",
    oracle=_separable,
    params=[Param("N", 1, 3), Param("C", 1, 3), *image_kernel(12)],
    build=lambda p, draw: Call((draw.array(p["N"], p["C"], p["H"], p["W"]), draw.array(p["kH"]),
                                draw.array(p["kW"]))),
    describe=lambda p: (f"x ({p['N']}, {p['C']}, {p['H']}, {p['W']}), col ({p['kH']},), row ({p['kW']},) "
                        f"-> ({p['N']}, {p['C']}, {p['H'] - p['kH'] + 1}, {p['W'] - p['kW'] + 1})"),
    valid=kernel_fits,
    fixed_params=[
        {"N": 1, "C": 3, "H": 9, "W": 7, "kH": 3, "kW": 3},      # channels kept apart
        {"N": 2, "C": 1, "H": 8, "W": 10, "kH": 5, "kW": 2},     # non-square kernel
        {"N": 1, "C": 2, "H": 4, "W": 6, "kH": 4, "kW": 1},      # a column kernel, full height
        {"N": 1, "C": 1, "H": 3, "W": 5, "kH": 1, "kW": 5},      # a row kernel, full width
    ],
    misconceptions=[
        Misconception("factors swapped",
                      "col runs down the rows (axis 2, length kH) and row along the columns (axis 3, length kW): "
                      "the kernel is outer(col, row), k[i, j] = col[i] * row[j].", _swapped_passes),
        Misconception("kernel flipped", "a layer computes cross-correlation: slide the factors without flipping "
                                        "them (np.convolve flips).",
                      lambda x, col, row: _separable(x, col.flip(0), row.flip(0))),
        Misconception("only one pass", "two 1-D passes: first along the rows with col, then along the columns "
                                       "with row (or the other way round); each shrinks its own axis.", _one_pass),
        Misconception("channels summed", "a depthwise filter keeps the channels apart: every channel is filtered "
                                         "on its own, the output has C channels.", _channels_summed),
    ],
    n_visible=8,
    n_hidden=24,
)


# --------------------------------------------------------------------------------------------------------------
# depthwise_separable_conv2d
# --------------------------------------------------------------------------------------------------------------
def _dw_sep(x, w_dw, w_pw, b_dw=None, b_pw=None):
    return _conv(_conv(x, w_dw, b_dw, groups=x.shape[1]), w_pw, b_pw)


#: b_dw, b_pw 0: left at the default None, 1: given, 2: passed as None
_DW_PARAMS = [*conv_params(channels=4, image=9, kernel=4, batch=3, bias=None), choice("b_dw", 3), choice("b_pw", 3)]


def _build_dw(p, draw) -> Call:
    x = draw.array(p["N"], p["C_in"], p["H"], p["W"])
    w_dw = draw.array(p["C_in"], 1, p["kH"], p["kW"])
    w_pw = draw.array(p["C_out"], p["C_in"], 1, 1)
    kwargs = {}
    for name, size in (("b_dw", p["C_in"]), ("b_pw", p["C_out"])):
        if p[name]:                                          # 0: left at the default None
            kwargs[name] = draw.array(size) if p[name] == 1 else None
    return Call((x, w_dw, w_pw), kwargs)


def _describe_dw(p) -> str:
    biases = {0: "default None", 1: "given", 2: "None"}
    return (f"x ({p['N']}, {p['C_in']}, {p['H']}, {p['W']}), w_dw ({p['C_in']}, 1, {p['kH']}, {p['kW']}), "
            f"w_pw ({p['C_out']}, {p['C_in']}, 1, 1), b_dw {biases[p['b_dw']]}, b_pw {biases[p['b_pw']]}")


def _dw_summing(x, w_dw, w_pw, b_dw=None, b_pw=None):
    c = x.shape[1]
    if c == 1:
        not_applicable()
    return _conv(_conv(x, w_dw.expand(c, c, *w_dw.shape[2:]), b_dw), w_pw, b_pw)


def _pointwise_first(x, w_dw, w_pw, b_dw=None, b_pw=None):
    if w_pw.shape[0] != x.shape[1]:
        not_applicable()
    return _conv(_conv(x, w_pw, b_pw), w_dw, b_dw, groups=x.shape[1])


def _bias_missing(which):
    def compute(x, w_dw, w_pw, b_dw=None, b_pw=None):
        if (b_dw if which == "b_dw" else b_pw) is None:
            not_applicable()
        return _dw_sep(x, w_dw, w_pw, None if which == "b_dw" else b_dw, None if which == "b_pw" else b_pw)
    return compute


depthwise_separable_conv2d = Exercise(
    name="depthwise_separable_conv2d",
    assignment=ASSIGNMENT,
    points=3,
    signature="depthwise_separable_conv2d(x, w_dw, w_pw, b_dw=None, b_pw=None)",
    oracle=_dw_sep,
    params=_DW_PARAMS,
    build=_build_dw,
    describe=_describe_dw,
    valid=kernel_fits,
    fixed_params=[
        {"N": 1, "C_in": 3, "C_out": 3, "H": 6, "W": 6, "kH": 3, "kW": 3, "b_dw": 0, "b_pw": 0},  # C_in == C_out
        {"N": 2, "C_in": 2, "C_out": 4, "H": 5, "W": 7, "kH": 3, "kW": 2, "b_dw": 1, "b_pw": 1},  # both biases
        {"N": 1, "C_in": 4, "C_out": 1, "H": 4, "W": 4, "kH": 1, "kW": 1, "b_dw": 1, "b_pw": 2},  # 1x1 depthwise
        {"N": 1, "C_in": 2, "C_out": 3, "H": 3, "W": 5, "kH": 3, "kW": 5, "b_dw": 2, "b_pw": 1},  # full-size
    ],
    misconceptions=[
        Misconception("depthwise summing channels",
                      "the depthwise step filters every input channel with its own kernel w_dw[c, 0] and keeps the "
                      "C_in channels apart (groups = C_in); mixing the channels is the job of the 1x1 pointwise "
                      "step.", _dw_summing),
        Misconception("pointwise before depthwise", "the depthwise k x k filter comes first, then the 1x1 "
                                                    "pointwise convolution mixes the channels.", _pointwise_first),
        Misconception("depthwise bias missing", "add b_dw[c] to channel c after the depthwise step (when given).",
                      _bias_missing("b_dw")),
        Misconception("pointwise bias missing", "add b_pw[o] to output channel o at the end (when given).",
                      _bias_missing("b_pw")),
        Misconception("depthwise kernel flipped", "cross-correlation, no flip.",
                      lambda x, w_dw, w_pw, b_dw=None, b_pw=None: _dw_sep(x, w_dw.flip(2, 3), w_pw, b_dw, b_pw)),
    ],
    n_visible=8,
    n_hidden=24,
)


# --------------------------------------------------------------------------------------------------------------
# separable_cost
# --------------------------------------------------------------------------------------------------------------
COST_NAMES = ("params_standard", "params_separable", "flops_standard", "flops_separable")


def _flops(layers, c_in, h, w) -> int:
    """What FlopCounterMode counts for the layers' forward passes on a ``(1, c_in, h, w)`` input, layer after layer
    (:func:`autograder.oracle.conv_flops` of each convolution; the same count as under the mode, tested)."""
    from ..oracle import conv_flops

    shape, total = (1, c_in, h, w), 0
    for layer in layers:
        flops, shape = conv_flops(shape, tuple(layer.weight.shape), layer.stride, layer.padding, layer.dilation,
                                  layer.groups)
        total += flops
    return total


def _cost_oracle(c_in, c_out, k, h, w):
    nn = torch().nn
    standard = [nn.Conv2d(c_in, c_out, k, padding=k // 2, device="meta")]
    separable = [nn.Conv2d(c_in, c_in, k, padding=k // 2, groups=c_in, device="meta"),
                 nn.Conv2d(c_in, c_out, 1, device="meta")]
    count = lambda layers: int(sum(p.numel() for m in layers for p in m.parameters()))  # noqa: E731
    return count(standard), count(separable), _flops(standard, c_in, h, w), _flops(separable, c_in, h, w)


def _cost_formula(c_in, c_out, k, h, w, bias=True, factor=2, dw_full=False, out=None):
    ho, wo = out if out is not None else (h, w)
    dw_in = c_in if dw_full else 1
    params = (c_out * c_in * k * k + (c_out if bias else 0),
              c_in * dw_in * k * k + (c_in if bias else 0) + c_in * c_out + (c_out if bias else 0))
    flops = (factor * ho * wo * c_out * c_in * k * k,
             factor * ho * wo * (c_in * dw_in * k * k + c_in * c_out))
    return params + flops


#: odd kernels only, k = 2 * kr + 1
_COST_PARAMS = [Param("c_in", 1, 128), Param("c_out", 1, 128), Param("kr", 0, 3), Param("H", 1, 64), Param("W", 1, 64)]

separable_cost = Exercise(
    name="separable_cost",
    assignment=ASSIGNMENT,
    points=2,
    signature="separable_cost(c_in, c_out, k, h, w)",
    oracle=_cost_oracle,
    output_names=COST_NAMES,
    params=_COST_PARAMS,
    build=lambda p, draw: Call((p["c_in"], p["c_out"], 2 * p["kr"] + 1, p["H"], p["W"])),
    describe=lambda p: (f"c_in {p['c_in']}, c_out {p['c_out']}, k {2 * p['kr'] + 1}, input {p['H']} x {p['W']}"),
    fixed_params=[
        {"c_in": 32, "c_out": 64, "kr": 1, "H": 56, "W": 56},    # a MobileNet block
        {"c_in": 3, "c_out": 16, "kr": 2, "H": 9, "W": 13},      # 5x5, non-square input
        {"c_in": 8, "c_out": 8, "kr": 0, "H": 4, "W": 4},        # 1x1: the separable block costs more
        {"c_in": 1, "c_out": 5, "kr": 3, "H": 7, "W": 3},        # 7x7 kernel wider than the input
    ],
    misconceptions=[
        Misconception("biases ignored in the cost",
                      "both blocks have biases: the k x k convolution C_out of them, the depthwise one C_in and "
                      "the pointwise one C_out; count them with the weights (FlopCounterMode does not count their "
                      "additions, so only the parameter counts change).",
                      lambda *a: _cost_formula(*a, bias=False)),
        Misconception("MACs instead of FLOPs", "FlopCounterMode counts 2 FLOPs per multiply-add.",
                      lambda *a: _cost_formula(*a, factor=1)),
        Misconception("depthwise summing channels",
                      "the depthwise layer has one k x k kernel per input channel (C_in * k * k weights, groups = "
                      "C_in), not C_in x C_in kernels: it does not sum over channels.",
                      lambda *a: _cost_formula(*a, dw_full=True)),
        Misconception("padding ignored",
                      "with padding k // 2 and stride 1 both blocks keep the h x w size: every one of the h * w "
                      "output pixels costs the same.",
                      lambda c_in, c_out, k, h, w: _cost_formula(c_in, c_out, k, h, w, out=(h - k + 1, w - k + 1))
                      if h >= k and w >= k and k > 1 else not_applicable()),
    ],
    n_visible=10,
    n_hidden=30,
)

register(conv2d_fft, conv_transpose2d_flops, separable_factors, conv2d_separable, depthwise_separable_conv2d,
         separable_cost)

"""03-stride-padding: the arithmetic of stride, padding and dilation.

``conv_output_size``, ``pool_output_size``, ``same_padding``, ``pad2d``, ``conv2d``, ``receptive_field``.

The size functions are checked against the shapes torch actually produces (``F.conv2d``, ``F.max_pool2d``,
``padding="same"``) over a broad random grid: they are cheap, so each check runs hundreds of cases, including the
edge cases where the division is not exact, ceil mode's last-window rule, even kernels and dilation.

**Combinations torch rejects.** ``F.conv2d`` raises when the dilated kernel is larger than the padded input
(``n + 2p < d(k - 1) + 1``); ``F.max_pool2d`` raises when the padding is more than half the kernel (``p > k // 2``)
or when the output would be empty. Decision: for such combinations ``conv_output_size`` and ``pool_output_size``
**must raise an exception** (any ``Exception`` counts; ``ValueError`` is recommended), like torch, instead of
returning a size of 0 or less. The random grid includes them: the oracle asks torch itself and returns
:data:`~autograder.spec.RAISES` when torch raises, and the engine then accepts only an answer that raised.
:func:`torch_accepts_conv` / :func:`torch_accepts_pool` state the same rules in closed form (tested against torch).
Every other function is only ever called with valid arguments.

``receptive_field`` is checked against the gradient footprint of a torch stack of 1-D convolutions (all-ones
weights, no padding): the size is the extent of the input positions that reach output unit 0, the jump the
distance between the first input positions of output units 0 and 1.
"""
from __future__ import annotations

import warnings

from ..oracle import line_output
from ..params import FORM, Param, flag
from ..registry import register
from ..shapes import call_form, conv_case, conv_out, pair
from ..spec import RAISES, Call, Exercise, Misconception, not_applicable, unless_torch_rejects
from ._torch import F, torch

ASSIGNMENT = "03-stride-padding"


def _line(n, k):
    """A (1, 1, n, 1) input and a (1, 1, k, 1) kernel: 1-D along the rows."""
    t = torch()
    return t.zeros(1, 1, n, 1, dtype=t.float64), t.zeros(1, 1, k, 1, dtype=t.float64)


# --------------------------------------------------------------------------------------------------------------
# conv_output_size
# --------------------------------------------------------------------------------------------------------------
def torch_accepts_conv(n, k, stride=1, padding=0, dilation=1) -> bool:
    """Whether F.conv2d accepts this size (checked exhaustively against torch 2.13 on n<14, k<7, s<5, p<4, d<4)."""
    return n >= 1 and k >= 1 and stride >= 1 and dilation >= 1 and padding >= 0 and \
        n + 2 * padding >= dilation * (k - 1) + 1


def _conv_size(n, k, stride=1, padding=0, dilation=1):
    try:
        return line_output(n, k, stride, padding, dilation, 0, transposed=False)
    except RuntimeError:
        return RAISES


#: n mostly up to 40, sometimes up to 512; stride, padding, dilation as torch names them in the description
_SIZE_PARAMS = [Param("n", 1, 512, mostly=40, chance=0.85), Param("k", 1, 9), Param("s", 1, 5, label="stride"),
                Param("p", 0, 5, label="padding"), Param("d", 1, 4, label="dilation"), FORM]


def _build_conv_size(p, draw) -> Call:
    return call_form((p["n"], p["k"]), [("stride", p["s"], 1), ("padding", p["p"], 0), ("dilation", p["d"], 1)],
                 p["form"])


def _conv_size_wrong(rule):
    def compute(n, k, stride=1, padding=0, dilation=1):
        return rule(n, k, stride, padding, dilation)
    return compute


def _ceil_div(a, b):
    return -(-a // b)


conv_output_size = Exercise(
    name="conv_output_size",
    assignment=ASSIGNMENT,
    points=1,
    signature="conv_output_size(n, k, stride=1, padding=0, dilation=1)",
    oracle=_conv_size,
    params=_SIZE_PARAMS,  # combinations torch rejects included
    build=_build_conv_size,
    fixed_params=[
        {"n": 7, "k": 3, "s": 1, "p": 0, "d": 1, "form": 0},    # valid: 5
        {"n": 7, "k": 3, "s": 2, "p": 0, "d": 1, "form": 0},    # exact division: 3
        {"n": 8, "k": 3, "s": 2, "p": 0, "d": 1, "form": 1},    # (8 - 3) / 2 = 2.5: the last row is dropped
        {"n": 224, "k": 7, "s": 2, "p": 3, "d": 1, "form": 2},  # ResNet stem: 112
        {"n": 5, "k": 3, "s": 1, "p": 1, "d": 1, "form": 1},    # "same": 5
        {"n": 10, "k": 3, "s": 1, "p": 0, "d": 2, "form": 0},   # dilation: effective kernel 5
        {"n": 9, "k": 3, "s": 3, "p": 2, "d": 2, "form": 2},
        {"n": 5, "k": 1, "s": 4, "p": 0, "d": 1, "form": 0},    # stride > kernel
        {"n": 3, "k": 3, "s": 1, "p": 0, "d": 1, "form": 0},    # kernel as large as the input: 1
        {"n": 1, "k": 5, "s": 1, "p": 2, "d": 1, "form": 1},    # a 1-pixel input, all padding
        {"n": 4, "k": 6, "s": 2, "p": 1, "d": 1, "form": 0},    # kernel larger than the input, padding saves it
        {"n": 31, "k": 4, "s": 5, "p": 3, "d": 3, "form": 2},
    ],
    misconceptions=[
        Misconception("ceil instead of floor",
                      "PyTorch rounds down: a window that would stick out of the (padded) input is dropped. "
                      "out = floor((n + 2p - d(k-1) - 1) / s) + 1.",
                      _conv_size_wrong(lambda n, k, s, p, d: _ceil_div(n + 2 * p - d * (k - 1) - 1, s) + 1)),
        Misconception("padding on one side only",
                      "padding p adds p rows at the top *and* p at the bottom: n + 2p.",
                      _conv_size_wrong(lambda n, k, s, p, d: (n + p - d * (k - 1) - 1) // s + 1
                                       if p else not_applicable())),
        Misconception("dilation ignored",
                      "a kernel of size k with dilation d spans d(k-1) + 1 input pixels.",
                      _conv_size_wrong(lambda n, k, s, p, d: conv_out(n, k, s, p)
                                       if d > 1 else not_applicable())),
        Misconception("dilated kernel taken as d * k pixels wide",
                      "a kernel of size k with dilation d spans d(k-1) + 1 input pixels (k taps, d apart), "
                      "not d * k.",
                      _conv_size_wrong(lambda n, k, s, p, d: (n + 2 * p - d * k) // s + 1
                                       if d > 1 else not_applicable())),
        Misconception("missing + 1",
                      "the number of window positions is (last start) / s + 1: the first position counts too.",
                      _conv_size_wrong(lambda n, k, s, p, d: (n + 2 * p - d * (k - 1) - 1) // s)),
        Misconception("true division",
                      "you returned (n + 2p - d(k-1) - 1) / s + 1 without rounding down: use // (floor division) "
                      "and return an int.",
                      _conv_size_wrong(lambda n, k, s, p, d: (n + 2 * p - d * (k - 1) - 1) / s + 1)),
        Misconception("rounded to nearest",
                      "PyTorch rounds down (floor), not to the nearest integer.",
                      _conv_size_wrong(lambda n, k, s, p, d: round((n + 2 * p - d * (k - 1) - 1) / s) + 1)),
    ],
    n_visible=150,
    n_hidden=400,
)

# --------------------------------------------------------------------------------------------------------------
# pool_output_size
# --------------------------------------------------------------------------------------------------------------
def _pool_rule(n, k, s, p, d, ceil):
    eff = d * (k - 1) + 1
    if ceil:
        out = _ceil_div(n + 2 * p - eff, s) + 1
        if (out - 1) * s >= n + p:          # the last window would start in the right padding
            out -= 1
        return out
    return conv_out(n, k, s, p, d)


def torch_accepts_pool(n, k, stride=None, padding=0, dilation=1, ceil_mode=False) -> bool:
    """Whether F.max_pool2d accepts this size (checked exhaustively against torch 2.13 on n<14, k<7, s<5, p<4,
    d<4, both ceil modes)."""
    s = k if stride is None else stride
    if n < 1 or k < 1 or s < 1 or dilation < 1 or padding < 0 or padding > k // 2:
        return False
    return _pool_rule(n, k, s, padding, dilation, ceil_mode) >= 1


def _pool_size(n, k, stride=None, padding=0, dilation=1, ceil_mode=False):
    x, _ = _line(n, k)
    try:
        y = F().max_pool2d(x, (k, 1), None if stride is None else (stride, 1), (padding, 0), (dilation, 1),
                           ceil_mode=ceil_mode)
    except RuntimeError:
        return RAISES
    return int(y.shape[2])


#: stride 0 stands for None (the default: the kernel size); padding mostly at most k // 2 (what torch accepts)
_POOL_PARAMS = [Param("n", 1, 40), Param("k", 1, 6), Param("s", 0, 4), Param("p", 0, 3, mostly=lambda p: p["k"] // 2,
                                                                            chance=0.9),
                Param("d", 1, 3, mostly=(1,), chance=0.6), flag("ceil"), FORM]


def _pool_args(p):
    return p["n"], p["k"], (None if p["s"] == 0 else p["s"]), p["p"], p["d"], bool(p["ceil"])


def _build_pool(p, draw) -> Call:
    n, k, s, pad, d, ceil = _pool_args(p)
    return call_form((n, k), [("stride", s, None), ("padding", pad, 0), ("dilation", d, 1), ("ceil_mode", ceil, False)],
                 p["form"])


def _describe_pool(p) -> str:
    n, k, s, pad, d, ceil = _pool_args(p)
    return f"n={n}, k={k}, stride={s}, padding={pad}, dilation={d}, ceil_mode={ceil}"


def _pool_wrong(rule):
    def compute(n, k, stride=None, padding=0, dilation=1, ceil_mode=False):
        return rule(n, k, stride, padding, dilation, ceil_mode)
    return compute


def _plain_ceil(n, k, s, p, d, ceil):
    if not ceil:
        not_applicable()
    return _ceil_div(n + 2 * p - d * (k - 1) - 1, k if s is None else s) + 1


pool_output_size = Exercise(
    name="pool_output_size",
    assignment=ASSIGNMENT,
    points=2,
    signature="pool_output_size(n, k, stride=None, padding=0, dilation=1, ceil_mode=False)",
    oracle=_pool_size,
    params=_POOL_PARAMS,  # combinations torch rejects included
    build=_build_pool,
    describe=_describe_pool,
    fixed_params=[
        {"n": 6, "k": 2, "s": 0, "p": 0, "d": 1, "ceil": 0, "form": 0},   # stride defaults to k: 3
        {"n": 7, "k": 2, "s": 0, "p": 0, "d": 1, "ceil": 0, "form": 1},   # floor: 3 (last row dropped)
        {"n": 7, "k": 2, "s": 0, "p": 0, "d": 1, "ceil": 1, "form": 0},   # ceil: 4 (a half window)
        {"n": 5, "k": 2, "s": 2, "p": 1, "d": 1, "ceil": 1, "form": 2},   # ceil, last window in the padding: 3
        {"n": 6, "k": 3, "s": 2, "p": 1, "d": 1, "ceil": 1, "form": 1},   # ceil with the last-window rule: 3
        {"n": 112, "k": 3, "s": 2, "p": 1, "d": 1, "ceil": 0, "form": 2},  # ResNet max pool: 56
        {"n": 9, "k": 3, "s": 1, "p": 1, "d": 2, "ceil": 0, "form": 0},   # dilation
        {"n": 10, "k": 3, "s": 4, "p": 0, "d": 1, "ceil": 1, "form": 1},  # stride > kernel, ceil
        {"n": 1, "k": 1, "s": 0, "p": 0, "d": 1, "ceil": 1, "form": 0},
        {"n": 8, "k": 4, "s": 3, "p": 2, "d": 1, "ceil": 1, "form": 2},
    ],
    misconceptions=[
        Misconception("ceil_mode ignored",
                      "with ceil_mode=True the division is rounded up: a last, partial window is kept.",
                      _pool_wrong(lambda n, k, s, p, d, c: _pool_rule(n, k, k if s is None else s, p, d, False)
                                  if c else not_applicable())),
        Misconception("ceil mode without PyTorch's last-window rule",
                      "in ceil mode PyTorch drops the last window when it would start in the right padding: "
                      "out = ceil((n + 2p - d(k-1) - 1) / s) + 1, minus 1 if (out - 1) * s >= n + p.",
                      _pool_wrong(_plain_ceil)),
        Misconception("ceil even without ceil_mode",
                      "the default (ceil_mode=False) rounds down, like a convolution.",
                      _pool_wrong(lambda n, k, s, p, d, c: _pool_rule(n, k, k if s is None else s, p, d, True)
                                  if not c else not_applicable())),
        Misconception("stride=None taken as 1",
                      "for pooling, stride=None means stride = kernel size (non-overlapping windows), not 1.",
                      _pool_wrong(lambda n, k, s, p, d, c: _pool_rule(n, k, 1, p, d, c)
                                  if s is None else not_applicable())),
        Misconception("dilation ignored",
                      "a window of size k with dilation d spans d(k-1) + 1 input pixels.",
                      _pool_wrong(lambda n, k, s, p, d, c: _pool_rule(n, k, k if s is None else s, p, 1, c)
                                  if d > 1 else not_applicable())),
        Misconception("padding on one side only",
                      "padding p adds p on both sides: n + 2p.",
                      _pool_wrong(lambda n, k, s, p, d, c: _pool_rule(n - p, k, k if s is None else s, p, d, c)
                                  if p else not_applicable())),
    ],
    n_visible=150,
    n_hidden=400,
)

# --------------------------------------------------------------------------------------------------------------
# same_padding
# --------------------------------------------------------------------------------------------------------------
def _same_padding(k, dilation=1):
    """Read PyTorch's split off ``padding="same"``: an impulse kernel (1 at tap 0) copies the input shifted by
    the top padding, so the number of leading zeros of the output is the padding before."""
    t = torch()
    total = dilation * (k - 1)
    n = total + 3
    x = t.arange(1, n + 1, dtype=t.float64).reshape(1, 1, n, 1)
    w = t.zeros(1, 1, k, 1, dtype=t.float64)
    w[0, 0, 0, 0] = 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")    # even kernels: "may require a zero-padded copy of the input"
        y = F().conv2d(x, w, padding="same", dilation=(dilation, 1))[0, 0, :, 0]
    assert y.shape[0] == n
    before = int((y == 0).sum())
    return before, total - before


def _same_wrong(rule):
    def compute(k, dilation=1):
        return rule(k, dilation)
    return compute


same_padding = Exercise(
    name="same_padding",
    assignment=ASSIGNMENT,
    points=1,
    signature="same_padding(k, dilation=1)",
    oracle=_same_padding,
    output_names=("before", "after"),
    params=[Param("k", 1, 12), Param("d", 1, 4, mostly=(1,), chance=0.5, label="dilation"), FORM],
    build=lambda p, draw: call_form((p["k"],), [("dilation", p["d"], 1)], p["form"]),
    fixed_params=[{"k": 3, "d": 1, "form": 0}, {"k": 4, "d": 1, "form": 1}, {"k": 1, "d": 1, "form": 0},
                  {"k": 2, "d": 1, "form": 2}, {"k": 3, "d": 2, "form": 1}, {"k": 2, "d": 3, "form": 0},
                  {"k": 6, "d": 1, "form": 0}, {"k": 4, "d": 3, "form": 2}],
    misconceptions=[
        Misconception("extra padding on the wrong side",
                      "when the total padding d(k-1) is odd, PyTorch puts the extra row after (bottom/right): "
                      "before = total // 2, after = total - before.",
                      _same_wrong(lambda k, d: (d * (k - 1) - d * (k - 1) // 2, d * (k - 1) // 2)
                                  if d * (k - 1) % 2 else not_applicable())),
        Misconception("dilation ignored",
                      "a dilated kernel spans d(k-1) + 1 pixels, so the total padding is d(k-1).",
                      _same_wrong(lambda k, d: ((k - 1) // 2, k - 1 - (k - 1) // 2) if d > 1 else not_applicable())),
        Misconception("k // 2 on both sides",
                      "(k // 2, k // 2) keeps the size only for odd kernels: the total padding must be k - 1 "
                      "(d(k-1) with dilation), split as total // 2 before and the rest after.",
                      _same_wrong(lambda k, d: (d * (k // 2), d * (k // 2)))),
        Misconception("(k - 1) // 2 on both sides",
                      "for an even kernel the total padding k - 1 is odd and cannot be split evenly: "
                      "put total // 2 before and the rest after.",
                      _same_wrong(lambda k, d: (d * (k - 1) // 2, d * (k - 1) // 2))),
    ],
    n_visible=30,
    n_hidden=60,
)

# --------------------------------------------------------------------------------------------------------------
# pad2d
# --------------------------------------------------------------------------------------------------------------
def _pad(x, padding, where="both", mode="constant"):
    ph, pw = pair(padding)
    spec = {"both": (pw, pw, ph, ph), "end": (0, pw, 0, ph), "start": (pw, 0, ph, 0), "swapped": (ph, ph, pw, pw),
            "double": (2 * pw, 2 * pw, 2 * ph, 2 * ph), "all at the end": (0, 2 * pw, 0, 2 * ph),
            "all at the start": (2 * pw, 0, 2 * ph, 0)}[where]
    return F().pad(x, spec, mode=mode)


_PAD_PARAMS = [Param("N", 1, 3), Param("C", 1, 3), Param("H", 1, 6), Param("W", 1, 6), Param("pH", 0, 3),
               Param("pW", 0, 3), flag("pair", 0.6)]


def _padding_arg(p, h="pH", w="pW"):
    return (p[h], p[w]) if p["pair"] else p[h]


def _pad_only(where):
    def compute(x, padding):
        if max(pair(padding)) == 0:
            not_applicable()
        return _pad(x, padding, where)
    return compute


def _pad_swapped(x, padding):
    ph, pw = pair(padding)
    if ph == pw:
        not_applicable()
    return _pad(x, padding, "swapped")


def _pad_edge(x, padding):
    if max(pair(padding)) == 0:
        not_applicable()
    return _pad(x, padding, mode="replicate")


pad2d = Exercise(
    name="pad2d",
    assignment=ASSIGNMENT,
    points=1,
    signature="pad2d(x, padding)",
    oracle=lambda x, padding: _pad(x, padding),
    params=_PAD_PARAMS,
    build=lambda p, draw: Call((draw.array(p["N"], p["C"], p["H"], p["W"]), _padding_arg(p))),
    describe=lambda p: f"x ({p['N']}, {p['C']}, {p['H']}, {p['W']}), padding {_padding_arg(p)!r}",
    fixed_params=[
        {"N": 2, "C": 3, "H": 4, "W": 5, "pH": 1, "pW": 1, "pair": 0},   # an int
        {"N": 1, "C": 2, "H": 3, "W": 4, "pH": 2, "pW": 1, "pair": 1},   # a pair (rows, columns)
        {"N": 1, "C": 1, "H": 2, "W": 3, "pH": 0, "pW": 3, "pair": 1},   # columns only
        {"N": 2, "C": 1, "H": 3, "W": 3, "pH": 0, "pW": 0, "pair": 0},   # no padding: a copy
        {"N": 1, "C": 2, "H": 1, "W": 1, "pH": 3, "pW": 2, "pair": 1},   # a single pixel
    ],
    misconceptions=[
        Misconception("padding on one side only",
                      "you padded only at the bottom/right; pad2d adds the padding on both sides: "
                      "(H + 2 pH, W + 2 pW).", _pad_only("end")),
        Misconception("padding on one side only",
                      "you padded only at the top/left; pad2d adds the padding on both sides: "
                      "(H + 2 pH, W + 2 pW).", _pad_only("start")),
        Misconception("all the padding on one side",
                      "your output has the right shape, but the image sits in its top-left corner: the 2 pH rows "
                      "and 2 pW columns of zeros went to the bottom/right. Put pH rows at the top and pH at the "
                      "bottom, pW columns on the left and pW on the right.", _pad_only("all at the end")),
        Misconception("all the padding on one side",
                      "your output has the right shape, but the image sits in its bottom-right corner: split the "
                      "padding, pH rows at the top and pH at the bottom, pW columns on each side.",
                      _pad_only("all at the start")),
        Misconception("pair read the wrong way round",
                      "padding (pH, pW) is (rows, columns), like PyTorch's padding=(pH, pW) for conv2d: the first "
                      "number pads the height (top and bottom), the second the width.", _pad_swapped),
        Misconception("padding doubled",
                      "padding p adds p rows on each side (2p in total), not 2p on each side.", _pad_only("double")),
        Misconception("edge values instead of zeros",
                      "the border must be zeros (zero padding), not copies of the edge pixels.", _pad_edge),
    ],
    n_visible=10,
    n_hidden=30,
)

# --------------------------------------------------------------------------------------------------------------
# conv2d with stride, padding and dilation
# --------------------------------------------------------------------------------------------------------------
def _conv_args(p):
    if p["pairs"]:
        return (p["sH"], p["sW"]), (p["pH"], p["pW"]), (p["dH"], p["dW"])
    return p["sH"], p["pH"], p["dH"]


def _conv_spatial(p):
    """(stride, padding, dilation) as pairs, whatever form the call uses."""
    return tuple(pair(v) for v in _conv_args(p))


def _spatial(axis: str) -> list[Param]:
    return [Param("s" + axis, 1, 3), Param("p" + axis, 0, 2), Param("d" + axis, 1, 3, mostly=(1,), chance=0.6)]


_CONV_PARAMS = [Param("N", 1, 3), Param("C_in", 1, 3), Param("C_out", 1, 3), Param("H", 1, 11), Param("W", 1, 11),
                Param("kH", 1, 4), Param("kW", 1, 4), flag("bias", 0.7), flag("pairs"), FORM,
                *_spatial("H"), *_spatial("W")]


def _valid_conv(p) -> bool:
    (sh, sw), (ph, pw), (dh, dw) = _conv_spatial(p)
    return p["H"] + 2 * ph >= dh * (p["kH"] - 1) + 1 and p["W"] + 2 * pw >= dw * (p["kW"] - 1) + 1


def _build_conv(p, draw) -> Call:
    x, w, b = conv_case(p).arrays(draw)
    s, pad, d = _conv_args(p)
    one, zero = ((1, 1), (0, 0)) if p["pairs"] else (1, 0)
    return call_form((x, w), [("b", b, None), ("stride", s, one), ("padding", pad, zero), ("dilation", d, one)],
                 p["form"])


def _describe_conv(p) -> str:
    s, pad, d = _conv_args(p)
    return f"{conv_case(p).text()}, stride {s}, padding {pad}, dilation {d}"


def _conv_full(x, w, b=None, stride=1, padding=0, dilation=1):
    return F().conv2d(x, w, b, stride=stride, padding=padding, dilation=dilation)


def _conv_no_dilation(x, w, b=None, stride=1, padding=0, dilation=1):
    if pair(dilation) == (1, 1):
        not_applicable()
    return _conv_full(x, w, b, stride, padding, 1)


@unless_torch_rejects
def _conv_one_sided(x, w, b=None, stride=1, padding=0, dilation=1):
    ph, pw = pair(padding)
    if (ph, pw) == (0, 0):
        not_applicable()
    return _conv_full(F().pad(x, (0, pw, 0, ph)), w, b, stride, 0, dilation)


@unless_torch_rejects
def _conv_swapped(x, w, b=None, stride=1, padding=0, dilation=1):
    s, p, d = pair(stride), pair(padding), pair(dilation)
    if s[0] == s[1] and p[0] == p[1] and d[0] == d[1]:
        not_applicable()
    return _conv_full(x, w, b, s[::-1], p[::-1], d[::-1])


def _conv_flipped(x, w, b=None, stride=1, padding=0, dilation=1):
    return _conv_full(x, w.flip(2, 3), b, stride, padding, dilation)


def _conv_no_bias(x, w, b=None, stride=1, padding=0, dilation=1):
    if b is None:
        not_applicable()
    return _conv_full(x, w, None, stride, padding, dilation)


conv2d = Exercise(
    name="conv2d",
    assignment=ASSIGNMENT,
    points=4,
    signature="conv2d(x, w, b=None, stride=1, padding=0, dilation=1)",
    oracle=_conv_full,
    params=_CONV_PARAMS,
    build=_build_conv,
    describe=_describe_conv,
    valid=_valid_conv,
    fixed_params=[
        dict(N=2, C_in=3, C_out=2, H=7, W=8, kH=3, kW=3, bias=1, pairs=0, form=0, sH=2, sW=2, pH=1, pW=1, dH=1,
             dW=1),                                                            # stride 2, padding 1
        dict(N=1, C_in=2, C_out=3, H=8, W=6, kH=3, kW=2, bias=1, pairs=1, form=1, sH=2, sW=1, pH=0, pW=1, dH=1,
             dW=1),                                                            # pairs, (8 - 3) / 2 not exact
        dict(N=1, C_in=1, C_out=2, H=9, W=9, kH=3, kW=3, bias=0, pairs=0, form=1, sH=1, sW=1, pH=0, pW=0, dH=2,
             dW=2),                                                            # dilation 2
        dict(N=2, C_in=2, C_out=1, H=6, W=7, kH=2, kW=3, bias=1, pairs=1, form=2, sH=3, sW=2, pH=2, pW=0, dH=2,
             dW=1),                                                            # everything as pairs
        dict(N=1, C_in=2, C_out=2, H=5, W=5, kH=1, kW=1, bias=1, pairs=0, form=0, sH=3, sW=3, pH=0, pW=0, dH=1,
             dW=1),                                                            # stride > kernel
        dict(N=1, C_in=1, C_out=1, H=2, W=3, kH=4, kW=4, bias=0, pairs=1, form=1, sH=1, sW=1, pH=1, pW=1, dH=1,
             dW=1),                                                            # kernel larger than the input
        dict(N=2, C_in=3, C_out=2, H=6, W=5, kH=3, kW=3, bias=1, pairs=0, form=0, sH=1, sW=1, pH=0, pW=0, dH=1,
             dW=1),                                                            # all defaults
    ],
    misconceptions=[
        Misconception("dilation ignored",
                      "with dilation d the kernel taps are d pixels apart: x[i*s + a*d, j*s + b*d] * w[a, b].",
                      _conv_no_dilation),
        Misconception("padding on one side only",
                      "you padded only the bottom/right; padding adds p rows/columns on both sides.",
                      _conv_one_sided),
        Misconception("pair read the wrong way round",
                      "a pair is (rows, columns) = (height, width): stride=(sH, sW), padding=(pH, pW), "
                      "dilation=(dH, dW).", _conv_swapped),
        Misconception("bias missing", "you did not add the bias b[o] to output channel o.", _conv_no_bias),
        Misconception("flipped kernel", "you flipped the kernel; a convolutional layer computes cross-correlation.",
                      _conv_flipped),
    ],
    n_visible=10,
    n_hidden=30,
)

# --------------------------------------------------------------------------------------------------------------
# receptive_field
# --------------------------------------------------------------------------------------------------------------
MAX_LAYERS = 5


def _layers(p):
    return [(p[f"k{i}"], p[f"s{i}"], p[f"d{i}"]) for i in range(p["L"])]


def _receptive_field(layers):
    """(size, jump) from the gradient footprint of output units 0 and 1 of a torch stack of the layers. The input
    starts as long as the textbook rule says two outputs need (any longer input has the same footprint; a shorter
    one doubles until torch gives two outputs), so that the stack is usually built once."""
    t = torch()
    size, jump = _rf_rule(layers)
    n = max(8, size + jump)
    while True:
        with t.enable_grad():
            x = t.zeros(1, 1, n, 1, dtype=t.float64, requires_grad=True)
            y = x
            for k, s, d in layers:
                y = F().conv2d(y, t.ones(1, 1, k, 1, dtype=t.float64), stride=(s, 1), dilation=(d, 1)) \
                    if y.shape[2] >= d * (k - 1) + 1 else None
                if y is None:
                    break
            if y is not None and y.shape[2] >= 2:
                (g0,) = t.autograd.grad(y[0, 0, 0, 0], x, retain_graph=True)
                (g1,) = t.autograd.grad(y[0, 0, 1, 0], x)
                break
        n *= 2
    hit0 = t.nonzero(g0[0, 0, :, 0]).flatten()
    hit1 = t.nonzero(g1[0, 0, :, 0]).flatten()
    return int(hit0.max() - hit0.min() + 1), int(hit1.min() - hit0.min())


def _rf_rule(layers, dilation=True, scaled=True, jump_first=False, last_stride=True):
    size, jump = 1, 1
    for i, (k, s, d) in enumerate(layers):
        span = (d if dilation else 1) * (k - 1)
        if jump_first:
            jump *= s
        size += span * (jump if scaled else 1)
        if not jump_first and (last_stride or i < len(layers) - 1):
            jump *= s
    return size, jump


_RF_PARAMS = [Param("L", 1, MAX_LAYERS, smallest=0)] + [
    param for i in range(MAX_LAYERS)
    for param in (Param(f"k{i}", 1, 5), Param(f"s{i}", 1, 3, mostly=(1,), chance=0.4),
                  Param(f"d{i}", 1, 3, mostly=(1,), chance=0.7))]


def _rf_params(layers):
    p = {"L": len(layers)}
    for i in range(MAX_LAYERS):
        k, s, d = layers[i] if i < len(layers) else (1, 1, 1)
        p.update({f"k{i}": k, f"s{i}": s, f"d{i}": d})
    return p


def _rf_wrong(**kwargs):
    def compute(layers):
        wrong = _rf_rule(layers, **kwargs)
        if wrong == _rf_rule(layers):
            not_applicable()
        return wrong
    return compute


def _rf_product(layers):
    size = 1
    for k, s, d in layers:
        size *= d * (k - 1) + 1
    return size, _rf_rule(layers)[1]


receptive_field = Exercise(
    name="receptive_field",
    assignment=ASSIGNMENT,
    points=2,
    signature="receptive_field(layers)",
    oracle=_receptive_field,
    output_names=("size", "jump"),
    params=_RF_PARAMS,
    build=lambda p, draw: Call((_layers(p),)),
    describe=lambda p: f"layers {_layers(p)}",
    fixed_params=[
        _rf_params([(3, 1, 1)]),                                              # one 3x3 conv: (3, 1)
        _rf_params([(3, 1, 1), (3, 1, 1)]),                                   # two 3x3 = one 5x5: (5, 1)
        _rf_params([(3, 1, 1), (3, 1, 1), (2, 2, 1), (3, 1, 1), (3, 1, 1)]),  # VGG-style block with a pool
        _rf_params([(7, 2, 1), (3, 2, 1), (3, 1, 1)]),                        # ResNet stem, pool, conv: (19, 4)
        _rf_params([(3, 1, 1), (3, 1, 2), (3, 1, 4)]),                        # dilations 1, 2, 4: (15, 1)
        _rf_params([(1, 2, 1), (1, 2, 1)]),                                   # 1x1 strided: (1, 4)
        _rf_params([]),                                                       # no layers: one pixel, (1, 1)
    ],
    misconceptions=[
        Misconception("dilation ignored",
                      "a layer with kernel k and dilation d widens the receptive field by d(k-1) of its input "
                      "steps, not k-1.", _rf_wrong(dilation=False)),
        Misconception("growth not scaled by the jump",
                      "each layer adds (k-1)d of *its input's* units, and neighbouring units of its input are "
                      "`jump` input pixels apart (the product of the strides of the layers below): "
                      "size += d(k-1) * jump, then jump *= s.", _rf_wrong(scaled=False)),
        Misconception("jump updated before the growth",
                      "a layer's own stride does not spread its own taps: add d(k-1) * jump first, then multiply "
                      "jump by the layer's stride.", _rf_wrong(jump_first=True)),
        Misconception("last stride left out of the jump",
                      "the jump of the output is the product of *all* strides, including the last layer's: "
                      "neighbouring outputs of the last layer start s_L of its input units apart.",
                      _rf_wrong(last_stride=False)),
        Misconception("kernel sizes multiplied",
                      "receptive fields grow by addition: size = 1 + sum of d(k-1) * jump, not the product of the "
                      "kernel sizes.", lambda layers: _rf_product(layers) if _rf_product(layers)
                      != _rf_rule(layers) else not_applicable()),
    ],
    n_visible=12,
    n_hidden=36,
)


register(conv_output_size, pool_output_size, same_padding, pad2d, conv2d, receptive_field)

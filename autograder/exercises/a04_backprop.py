"""04-backprop: gradients of convolution and pooling, and gradient checking.

``conv2d_backward``, ``maxpool2d``, ``maxpool2d_backward``, ``avgpool2d``, ``avgpool2d_backward``,
``numeric_gradient``. Every oracle is torch autograd driven by a *random* upstream gradient ``dout`` (an all-ones
``dout``, i.e. the loss ``sum(y)``, hides bugs such as a missing flip or an overwrite). Max-pooling inputs have no
ties (``draw.distinct``), so the routing is unambiguous.

``numeric_gradient`` receives a function ``f`` from :mod:`autograder.probe_functions` (plain NumPy, so the isolated
grader can ship it to its sandbox by name); its torch twin for the autograd oracle is in :data:`TWINS`.
"""
from __future__ import annotations

from .. import probe_functions as probes
from ..params import Param, choice, flag
from ..registry import register
from ..shapes import conv_case, conv_out, kernel_fits, shape_text
from ..spec import Call, Exercise, Misconception, Tolerance
from ._torch import F, torch

ASSIGNMENT = "04-backprop"


# --------------------------------------------------------------------------------------------------------------
# conv2d_backward
# --------------------------------------------------------------------------------------------------------------
def _conv_grads(dout, x, w, stride=1, padding=0):
    """(dx, dw, db) of y = conv2d(x, w, b, stride, padding) for the upstream gradient dout, by autograd."""
    t = torch()
    with t.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        wg = w.detach().clone().requires_grad_(True)
        bg = t.zeros(w.shape[0], dtype=w.dtype, device=w.device, requires_grad=True)
        _backward(F().conv2d(xg, wg, bg, stride=stride, padding=padding), dout)
    return xg.grad, wg.grad, bg.grad


def _backward(y, dout) -> None:
    """``y.backward(dout)``, as the backward pass of ``(y * dout).sum()``: the same gradients to the bit (the
    upstream gradient reaching ``y`` is ``1.0 * dout``), without ``backward(dout)``'s shape check, which imports
    sympy on first use (~0.4 CPU-s in each process that computes expected values)."""
    (y * dout).sum().backward()


def _padded_dx(dout, x, w, stride=1, padding=0):
    """The gradient with respect to the zero-padded input, shape (N, C, H + 2p, W + 2p)."""
    p = padding
    xp = F().pad(x, (p, p, p, p))
    dxp, _, _ = _conv_grads(dout, xp, w, stride, 0)
    return dxp


_CONV_PARAMS = [Param("N", 1, 3), Param("C_in", 1, 3), Param("C_out", 1, 4), Param("H", 1, 9), Param("W", 1, 9),
                Param("kH", 1, 4), Param("kW", 1, 4), Param("stride", 1, 3), Param("padding", 0, 2)]


def _out_shape(p) -> tuple:
    """The shape of ``dout``: (N, C_out, H', W')."""
    return (p["N"], p["C_out"], conv_out(p["H"], p["kH"], p["stride"], p["padding"]),
            conv_out(p["W"], p["kW"], p["stride"], p["padding"]))


def _build_conv(p, draw) -> Call:
    x, w, _ = conv_case(p).arrays(draw)
    return Call((draw.array(*_out_shape(p)), x, w), {"stride": p["stride"], "padding": p["padding"]})


def _describe_conv(p) -> str:
    case = conv_case(p)
    return (f"x {shape_text(*case.x)}, w {shape_text(*case.w)}, stride {p['stride']}, padding {p['padding']}, "
            f"dout {shape_text(*_out_shape(p))}")


def _unflipped_dx(dout, x, w, stride=1, padding=0):
    dx, _, _ = _conv_grads(dout, x, w.flip(2, 3), stride, padding)
    _, dw, db = _conv_grads(dout, x, w, stride, padding)
    return dx, dw, db


def _with_dx(make_dx):
    def compute(dout, x, w, stride=1, padding=0):
        _, dw, db = _conv_grads(dout, x, w, stride, padding)
        return make_dx(dout, x, w, stride, padding), dw, db
    return compute


def _with_dw(change):
    def compute(dout, x, w, stride=1, padding=0):
        dx, dw, db = _conv_grads(dout, x, w, stride, padding)
        return dx, change(dw, dout), db
    return compute


def _with_db(make_db):
    def compute(dout, x, w, stride=1, padding=0):
        dx, dw, _ = _conv_grads(dout, x, w, stride, padding)
        return dx, dw, make_db(dout)
    return compute


_H = lambda x: x.shape[2]  # noqa: E731
_W = lambda x: x.shape[3]  # noqa: E731

conv2d_backward = Exercise(
    name="conv2d_backward",
    assignment=ASSIGNMENT,
    points=4,
    signature="conv2d_backward(dout, x, w, stride=1, padding=0)",
    oracle=_conv_grads,
    output_names=("dx", "dw", "db"),
    params=_CONV_PARAMS,
    build=_build_conv,
    describe=_describe_conv,
    valid=lambda p: kernel_fits(p, padding="padding"),
    fixed_params=[
        {"N": 2, "C_in": 3, "C_out": 2, "H": 5, "W": 6, "kH": 3, "kW": 2, "stride": 1, "padding": 0},
        {"N": 1, "C_in": 2, "C_out": 3, "H": 7, "W": 7, "kH": 3, "kW": 3, "stride": 2, "padding": 1},
        # (8 - 3) / 2 is not an integer: the last row of x is never read, its gradient is zero
        {"N": 2, "C_in": 1, "C_out": 2, "H": 8, "W": 6, "kH": 3, "kW": 3, "stride": 2, "padding": 0},
        {"N": 1, "C_in": 2, "C_out": 2, "H": 4, "W": 5, "kH": 1, "kW": 1, "stride": 1, "padding": 0},
        {"N": 1, "C_in": 2, "C_out": 1, "H": 5, "W": 5, "kH": 2, "kW": 2, "stride": 3, "padding": 0},
        {"N": 2, "C_in": 2, "C_out": 3, "H": 6, "W": 5, "kH": 3, "kW": 4, "stride": 3, "padding": 2},
        {"N": 1, "C_in": 1, "C_out": 1, "H": 3, "W": 4, "kH": 3, "kW": 4, "stride": 1, "padding": 0},
    ],
    misconceptions=[
        Misconception(
            "unflipped kernel in dx",
            "dx is a *full convolution* of dout with the kernel: dx[r, c] = sum over (i, j) of dout[i, j] * "
            "w[r - s*i, c - s*j]. Written as a sliding window, that window slides over dout with the kernel "
            "flipped in both spatial axes (w[:, :, ::-1, ::-1]), and with C_in and C_out swapped.",
            _unflipped_dx),
        Misconception(
            "padding not cropped from dx",
            "you returned the gradient of the zero-padded input; drop the p rows and columns of padding on every "
            "side: dx = dx_padded[:, :, p:p+H, p:p+W].",
            _with_dx(_padded_dx)),
        Misconception(
            "padding cropped on one side",
            "you removed the padding from the top and left only; it sits on both sides: "
            "dx = dx_padded[:, :, p:p+H, p:p+W].",
            _with_dx(lambda dout, x, w, s, p: _padded_dx(dout, x, w, s, p)[:, :, p:, p:])),
        Misconception(
            "padding cropped on one side",
            "you kept the first H rows and W columns of the padded gradient; the padding sits on both sides: "
            "dx = dx_padded[:, :, p:p+H, p:p+W].",
            _with_dx(lambda dout, x, w, s, p: _padded_dx(dout, x, w, s, p)[:, :, :_H(x), :_W(x)])),
        Misconception(
            "db over the wrong axes",
            "db must be summed over every axis but the channel one: db = dout.sum(axis=(0, 2, 3)) (batch, rows, "
            "columns); you kept the batch axis.",
            _with_db(lambda dout: dout.sum((2, 3)))),
        Misconception(
            "db averaged instead of summed",
            "the bias is added to every output position of every sample, so its gradient is the *sum* of dout "
            "over (0, 2, 3), not the mean.",
            _with_db(lambda dout: dout.mean((0, 2, 3)))),
        Misconception(
            "dw averaged over the batch",
            "the same weights serve every sample: dw is the *sum* of the per-sample gradients, not their mean.",
            _with_dw(lambda dw, dout: dw / dout.shape[0])),
        Misconception(
            "dw flipped",
            "dw[f, c, a, b] = sum over (n, i, j) of dout[n, f, i, j] * x_pad[n, c, s*i + a, s*j + b]: a "
            "cross-correlation of the input with dout, without a flip.",
            _with_dw(lambda dw, dout: dw.flip(2, 3))),
    ],
)


# --------------------------------------------------------------------------------------------------------------
# pooling, forward and backward
# --------------------------------------------------------------------------------------------------------------
_POOL_PARAMS = [Param("N", 1, 2), Param("C", 1, 3), Param("H", 1, 9), Param("W", 1, 9), Param("k", 1, 4),
                Param("stride", 1, 4)]


def _describe_pool(p) -> str:
    ho, wo = conv_out(p["H"], p["k"], p["stride"]), conv_out(p["W"], p["k"], p["stride"])
    overlap = " (overlapping windows)" if p["k"] > p["stride"] else ""
    return f"x ({p['N']}, {p['C']}, {p['H']}, {p['W']}), k {p['k']}, stride {p['stride']}{overlap} -> ({ho}, {wo})"


_POOL_FIXED = [
    {"N": 1, "C": 2, "H": 5, "W": 7, "k": 3, "stride": 2},   # overlapping windows
    {"N": 2, "C": 1, "H": 6, "W": 6, "k": 2, "stride": 2},   # the textbook 2x2/2
    {"N": 1, "C": 1, "H": 7, "W": 5, "k": 2, "stride": 2},   # odd sizes: the last row/column is dropped
    {"N": 1, "C": 2, "H": 6, "W": 5, "k": 3, "stride": 1},   # stride 1, heavy overlap
    {"N": 2, "C": 2, "H": 7, "W": 8, "k": 2, "stride": 3},   # stride > k: gaps between windows
    {"N": 1, "C": 3, "H": 4, "W": 3, "k": 1, "stride": 1},   # 1x1 windows: the identity
    {"N": 1, "C": 1, "H": 4, "W": 4, "k": 4, "stride": 2},   # one window covering everything
]

_POOL = dict(
    params=_POOL_PARAMS,
    describe=_describe_pool,
    valid=lambda p: p["k"] <= p["H"] and p["k"] <= p["W"],
    fixed_params=_POOL_FIXED,
)


def _build_pool_forward(p, draw) -> Call:
    return Call((draw.distinct(p["N"], p["C"], p["H"], p["W"]), p["k"], p["stride"]))


def _build_pool_backward(p, draw) -> Call:
    x = draw.distinct(p["N"], p["C"], p["H"], p["W"])
    dout = draw.array(p["N"], p["C"], conv_out(p["H"], p["k"], p["stride"]), conv_out(p["W"], p["k"], p["stride"]))
    return Call((dout, x, p["k"], p["stride"]))


def _grad_of(pool):
    def backward(dout, x, k, stride):
        t = torch()
        with t.enable_grad():
            xg = x.detach().clone().requires_grad_(True)
            _backward(pool(xg, k, stride), dout)
        return xg.grad
    return backward


_max_backward = _grad_of(lambda x, k, s: F().max_pool2d(x, k, s))
_avg_backward = _grad_of(lambda x, k, s: F().avg_pool2d(x, k, s))


def _max_overwrite(dout, x, k, stride):
    """Max-pool backward with `dx[argmax] = dout` instead of `+=`: in row-major window order the last window
    whose maximum an element is wins, the others are lost."""
    t = torch()
    _, idx = F().max_pool2d(x, k, stride, return_indices=True)
    n, c, h, w = x.shape
    idx = idx.flatten(2)
    order = t.arange(idx.shape[2], device=x.device).expand_as(idx).contiguous()
    last = t.full((n, c, h * w), -1, dtype=t.int64, device=x.device)
    last = last.scatter_reduce(2, idx, order, reduce="amax", include_self=True)
    picked = dout.flatten(2).gather(2, last.clamp(min=0))
    return t.where(last >= 0, picked, t.zeros_like(picked)).reshape(n, c, h, w)


def _avg_overwrite(dout, x, k, stride):
    """Avg-pool backward with `dx[window] = dout / k**2` instead of `+=`: the last window covering an element
    (largest row index, then largest column index) wins."""
    t = torch()
    ho, wo = dout.shape[2], dout.shape[3]

    def last_window(n, n_out):
        pos = t.arange(n, device=x.device)
        i = t.clamp(pos // stride, max=n_out - 1)
        return i, (pos - i * stride) < k

    ri, rv = last_window(x.shape[2], ho)
    ci, cv = last_window(x.shape[3], wo)
    dx = dout[:, :, ri][:, :, :, ci] / k**2
    return dx * (rv[:, None] & cv[None, :]).to(dx.dtype)


_SPREAD_EVENLY = Misconception(
    "gradient spread evenly",
    "you spread dout evenly over the window (that is average pooling's backward pass); max pooling passes "
    "each dout entry to the one element that was the maximum of its window, all others get zero.",
    lambda dout, x, k, s: _avg_backward(dout, x, k, s))


maxpool2d = Exercise(
    name="maxpool2d",
    assignment=ASSIGNMENT,
    points=1,
    signature="maxpool2d(x, k, stride)",
    oracle=lambda x, k, stride: F().max_pool2d(x, k, stride),
    build=_build_pool_forward,
    misconceptions=[
        Misconception("stride ignored", "the windows start every `stride` pixels: window (i, j) covers rows "
                      "i*stride .. i*stride + k - 1; you moved them by one pixel.",
                      lambda x, k, s: F().max_pool2d(x, k, 1)),
        Misconception("stride taken equal to k", "use the stride you are given; it may differ from the window "
                      "size (overlapping windows when stride < k, gaps when stride > k).",
                      lambda x, k, s: F().max_pool2d(x, k, k)),
        Misconception("partial windows kept", "a window must fit entirely inside the input: the output has "
                      "floor((H - k) / stride) + 1 rows; you also pooled the incomplete windows at the border "
                      "(ceil mode).", lambda x, k, s: F().max_pool2d(x, k, s, ceil_mode=True)),
        Misconception("average instead of maximum", "max pooling takes the largest value of each window.",
                      lambda x, k, s: F().avg_pool2d(x, k, s)),
    ],
    **_POOL,
)

maxpool2d_backward = Exercise(
    name="maxpool2d_backward",
    assignment=ASSIGNMENT,
    points=2,
    signature="maxpool2d_backward(dout, x, k, stride)",
    oracle=_max_backward,
    build=_build_pool_backward,
    misconceptions=[
        Misconception(
            "overwrite instead of accumulate",
            "when windows overlap (k > stride) one element can be the maximum of several windows; it then "
            "receives the *sum* of their gradients: dx[...] += dout[...], not dx[...] = dout[...].",
            _max_overwrite),
        _SPREAD_EVENLY,
        Misconception(
            "gradient copied to the whole window",
            "you gave every element of the window the full dout; only the maximum of the window gets it.",
            lambda dout, x, k, s: _avg_backward(dout, x, k, s) * k**2),
    ],
    **_POOL,
)

avgpool2d = Exercise(
    name="avgpool2d",
    assignment=ASSIGNMENT,
    points=1,
    signature="avgpool2d(x, k, stride)",
    oracle=lambda x, k, stride: F().avg_pool2d(x, k, stride),
    build=_build_pool_forward,
    misconceptions=[
        Misconception("sum instead of mean", "average pooling divides each window's sum by its k*k elements.",
                      lambda x, k, s: F().avg_pool2d(x, k, s) * k**2),
        Misconception("divided by k instead of k*k", "a k x k window holds k*k elements.",
                      lambda x, k, s: F().avg_pool2d(x, k, s) * k),
        Misconception("stride ignored", "the windows start every `stride` pixels; you moved them by one pixel.",
                      lambda x, k, s: F().avg_pool2d(x, k, 1)),
        Misconception("stride taken equal to k", "use the stride you are given; it may differ from k.",
                      lambda x, k, s: F().avg_pool2d(x, k, k)),
        Misconception("partial windows kept", "a window must fit entirely inside the input: "
                      "floor((H - k) / stride) + 1 rows.",
                      lambda x, k, s: F().avg_pool2d(x, k, s, ceil_mode=True)),
    ],
    **_POOL,
)

avgpool2d_backward = Exercise(
    name="avgpool2d_backward",
    assignment=ASSIGNMENT,
    points=1,
    signature="avgpool2d_backward(dout, x, k, stride)",
    oracle=_avg_backward,
    build=_build_pool_backward,
    misconceptions=[
        Misconception(
            "gradient not divided by the window size",
            "each of the k*k inputs of a window contributes 1/(k*k) of its output, so it receives dout / (k*k).",
            lambda dout, x, k, s: _avg_backward(dout, x, k, s) * k**2),
        Misconception(
            "overwrite instead of accumulate",
            "when windows overlap (k > stride) an element belongs to several windows and receives the *sum* of "
            "their shares: dx[window] += dout / (k*k), not dx[window] = dout / (k*k).",
            _avg_overwrite),
        Misconception("divided by k instead of k*k", "a k x k window holds k*k elements.",
                      lambda dout, x, k, s: _avg_backward(dout, x, k, s) * k),
        Misconception("gradient routed to the maximum", "that is max pooling; average pooling spreads dout "
                      "evenly over the window.", _max_backward),
    ],
    **_POOL,
)


# --------------------------------------------------------------------------------------------------------------
# numeric_gradient
# --------------------------------------------------------------------------------------------------------------
def _twin_tanh_conv3x3(x):
    k = torch().tensor(probes.KERNEL3, dtype=x.dtype, device=x.device)
    return F().conv2d(x[None, None], k[None, None])[0, 0].tanh()


#: the torch twin of every probe function, keyed by the function's name (the oracle differentiates the twin)
TWINS = {
    "tanh_conv3x3": _twin_tanh_conv3x3,
    "neighbour_products": lambda x: x[:-1, :-1] * x[:-1, 1:] + x[:-1, :-1].sin() * x[1:, :-1],
    "softmax_rows": lambda x: x.softmax(dim=1),
    "gram": lambda x: x @ x.T,
    "normalize": lambda x: x / (1.0 + (x * x).sum()).sqrt(),
}
assert set(TWINS) == {f.__name__ for f, *_ in probes.PROBES}


def _twin(f):
    name = getattr(f, "__name__", None)
    if name not in TWINS:
        raise KeyError(f"no torch twin for probe function {name!r}")
    return TWINS[name]


def _exact_gradient(f, x, dout, h=1e-5):
    t = torch()
    with t.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        (_twin(f)(xg) * dout).sum().backward()
    return xg.grad


def _forward_difference(f, x, dout, h=1e-5):
    t = torch()
    twin, flat = _twin(f), x.detach().clone().reshape(-1)
    base = (twin(x) * dout).sum()
    grad = t.empty_like(flat)
    for i in range(flat.numel()):
        y = flat.clone()
        y[i] += h
        grad[i] = ((twin(y.reshape(x.shape)) * dout).sum() - base) / h
    return grad.reshape(x.shape)


_NUMERIC_PARAMS = [choice("f", len(probes.PROBES)), Param("H", 1, 6), Param("W", 1, 6), flag("h")]


def _build_numeric(p, draw) -> Call:
    f, _, _, out_shape = probes.PROBES[p["f"]]
    x = draw.array(p["H"], p["W"])
    dout = draw.array(*out_shape(p["H"], p["W"]))
    return Call((f, x, dout), {"h": 1e-6} if p["h"] else {})


def _describe_numeric(p) -> str:
    f, _, _, out_shape = probes.PROBES[p["f"]]
    h = ", h=1e-6" if p["h"] else ""
    return f"f = {f.__name__}, x ({p['H']}, {p['W']}), dout {out_shape(p['H'], p['W'])}{h}"


def _valid_numeric(p) -> bool:
    if not 0 <= p["f"] < len(probes.PROBES):
        return False
    _, min_h, min_w, _ = probes.PROBES[p["f"]]
    return p["H"] >= min_h and p["W"] >= min_w


numeric_gradient = Exercise(
    name="numeric_gradient",
    assignment=ASSIGNMENT,
    points=2,
    signature="numeric_gradient(f, x, dout, h=1e-5)",
    oracle=_exact_gradient,
    params=_NUMERIC_PARAMS,
    build=_build_numeric,
    describe=_describe_numeric,
    valid=_valid_numeric,
    fixed_params=[
        {"f": 0, "H": 4, "W": 5, "h": 0},
        {"f": 1, "H": 3, "W": 4, "h": 0},
        {"f": 2, "H": 2, "W": 4, "h": 1},
        {"f": 3, "H": 3, "W": 2, "h": 0},
        {"f": 4, "H": 2, "W": 3, "h": 0},
    ],
    # central differences in float64 with h = 1e-5 are accurate to ~1e-10 relative; 1e-7 forgives that with a
    # wide margin, while h instead of 2h (factor 2), ignoring dout, perturbing every entry at once, and even a
    # forward difference (error ~h/2 * f'' ~ 1e-6) all fail.
    tolerance=Tolerance(rel_floor=1e-7),
    misconceptions=[
        Misconception(
            "denominator h instead of 2h",
            "the central difference (f(x + h) - f(x - h)) spans a distance of 2h: divide by 2*h.",
            lambda f, x, dout, h=1e-5: 2 * _exact_gradient(f, x, dout)),
        Misconception(
            "dout ignored",
            "you differentiated sum(f(x)); the quantity to differentiate is sum(f(x) * dout), the loss whose "
            "upstream gradient is dout.",
            lambda f, x, dout, h=1e-5: _exact_gradient(f, x, torch().ones_like(dout))),
        Misconception(
            "every entry perturbed at once",
            "perturb one entry of x at a time (x[i] +/- h, all others unchanged); moving them all together measures "
            "the derivative along the all-ones direction, the same number for every entry.",
            lambda f, x, dout, h=1e-5: _exact_gradient(f, x, dout).sum().expand(x.shape).clone()),
        Misconception(
            "forward difference",
            "(f(x + h) - f(x)) / h has an error proportional to h; the central difference "
            "(f(x + h) - f(x - h)) / (2h) cancels that term (error proportional to h**2).",
            _forward_difference),
    ],
)

register(conv2d_backward, maxpool2d, maxpool2d_backward, avgpool2d, avgpool2d_backward, numeric_gradient)

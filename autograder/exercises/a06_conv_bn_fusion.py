"""06-conv-bn-fusion: folding BatchNorm into convolution (``batchnorm2d_eval``, ``fuse_conv_bn``,
``fuse_conv_bn_module``, ``fuse_sequential``).

The first two are NumPy, from scratch, compared with ``F.batch_norm(training=False)`` and
``torch.nn.utils.fusion.fuse_conv_bn_weights``. The last two return ``nn.Module`` objects: their answers travel as
plain data through :mod:`autograder.module_codec` (``encode`` = ``module_codec.encode_answer``), and the trusted
``view`` rebuilds the model from an allow-list of layers and reduces it to comparable values:

- ``fuse_conv_bn_module``: ``(layer, in_channels, ..., padding_mode, weight, bias, on the inputs' device,
  conv unchanged, bn unchanged)`` (:data:`CONV_VIEW`);
- ``fuse_sequential``: ``(layers, outputs, on the inputs' device, model unchanged)``, where ``outputs`` are the
  eval-mode outputs on a fixed input derived from the case (its shape is stored with the argument,
  ``module_codec.argument_meta``).

Every element is data, made by a named check of :mod:`autograder.checks` (type names, settings, arrays, bools), so
a grade never depends on the wording of feedback. "on the inputs' device" says whether the returned model lives
where its inputs lived; "conv unchanged" (one flag per module argument) whether that argument came back
untouched, judged here from plain data (see ``module_codec``: the answer carries the arguments' state after the
call, which is compared with the grader's own templates of the call). The oracle returns the same views, from
``torch.nn.utils.fusion.fuse_conv_bn_eval`` and from the original model; misconceptions built with
:func:`autograder.checks.property_mistake` explain a failed flag.
"""
from __future__ import annotations

import copy
import secrets

import numpy as np

from .. import checks, module_codec
from ..oracle import exact_numerics
from ..params import Param, choice, flag
from ..registry import register
from ..shapes import shape_text
from ..spec import Call, Exercise, Misconception, NotApplicable, not_applicable
from ._torch import F, torch

ASSIGNMENT = "06-conv-bn-fusion"

EPS = (None, 1e-3, 0.1, 0.5)  # None: the default 1e-5, not passed
SAME_DEVICE = "on the inputs' device"
EXAMPLE_SEED = 20261106

#: ready-made fusion helpers, forbidden in every answer of this assignment
FUSION_HELPERS = (
    "torch.nn.utils.fusion",
    "torch.nn.utils.fuse_conv_bn_eval",
    "torch.nn.utils.fuse_conv_bn_weights",
    "torch.nn.utils.fuse_linear_bn_eval",
    "torch.nn.utils.fuse_linear_bn_weights",
    "torch.ao.quantization",
    "torch.quantization",
    "torch.ao.nn.intrinsic",
    "torch.nn.intrinsic",
    "torch.fx.experimental.optimization",
    "torch.jit.freeze",
    "torch.jit.optimize_for_inference",
)


#: eps (an index into :data:`EPS`) and small running variances make the mistakes visible: never shrunk
_BN_EXTRAS = [Param("tiny", 0, 1, shrink=False), Param("eps", 0, len(EPS) - 1, shrink=False)]


def _eps_kwargs(p) -> dict:
    eps = EPS[p["eps"]]
    return {} if eps is None else {"eps": eps}


def _eps_text(p) -> str:
    eps = EPS[p["eps"]]
    return "eps=1e-5 (default)" if eps is None else f"eps={eps:g}"


def _bn_stats(draw, c: int, tiny: bool):
    """mean, var, gamma, beta for ``c`` channels; ``tiny`` variances make eps matter."""
    mean = draw.array(c)
    var = draw.positive(c) * 1e-3 if tiny else draw.positive(c)  # 5e-4..2e-3 (simple cases: 1e-3, 2e-3, 3e-3)
    return mean, var, draw.array(c), draw.array(c)


# ---------------------------------------------------------------------------------------------------------------
# batchnorm2d_eval
# ---------------------------------------------------------------------------------------------------------------

def _bn_eval(x, mean, var, gamma, beta, eps=1e-5):
    return F().batch_norm(x, mean, var, gamma, beta, training=False, eps=eps)


def _chan(v):
    return v[None, :, None, None]


_BN_PARAMS = [Param("N", 1, 3), Param("C", 1, 5), Param("H", 1, 6), Param("W", 1, 6), *_BN_EXTRAS]


def _build_bn(p, draw) -> Call:
    x = draw.array(p["N"], p["C"], p["H"], p["W"])
    mean, var, gamma, beta = _bn_stats(draw, p["C"], bool(p["tiny"]))
    return Call((x, mean, var, gamma, beta), _eps_kwargs(p))


def _describe_bn(p) -> str:
    small = ", small running variances" if p["tiny"] else ""
    return f"x ({p['N']}, {p['C']}, {p['H']}, {p['W']}), {_eps_text(p)}{small}"


def _bn_batch_stats(x, mean, var, gamma, beta, eps=1e-5):
    if x.numel() == x.shape[1]:
        raise NotApplicable("one value per channel: no batch statistics")
    return F().batch_norm(x, None, None, gamma, beta, training=True, eps=eps)


def _bn_last_axis(x, mean, var, gamma, beta, eps=1e-5):
    if x.shape[-1] != mean.shape[0]:
        raise NotApplicable("not applicable: W != C")
    return (x - mean) / (var + eps).sqrt() * gamma + beta


batchnorm2d_eval = Exercise(
    name="batchnorm2d_eval",
    assignment=ASSIGNMENT,
    points=2,
    signature="batchnorm2d_eval(x, mean, var, gamma, beta, eps=1e-5)",
    oracle=_bn_eval,
    params=_BN_PARAMS,
    build=_build_bn,
    describe=_describe_bn,
    fixed_params=[
        {"N": 3, "C": 4, "H": 2, "W": 4, "tiny": 0, "eps": 2},   # W == C: statistics on the wrong axis broadcast
        {"N": 2, "C": 3, "H": 4, "W": 5, "tiny": 1, "eps": 0},   # small variances, default eps
        {"N": 1, "C": 2, "H": 3, "W": 3, "tiny": 1, "eps": 1},   # a single image, eps 1e-3
        {"N": 4, "C": 1, "H": 1, "W": 1, "tiny": 0, "eps": 3},   # one channel, one pixel
    ],
    misconceptions=[
        Misconception("eps outside the square root",
                      "you divided by sqrt(var) + eps; BatchNorm divides by sqrt(var + eps). The difference is "
                      "invisible for var ~ 1 but large for small running variances.",
                      lambda x, m, v, g, b, eps=1e-5: (x - _chan(m)) / (_chan(v).sqrt() + eps) * _chan(g) + _chan(b)),
        Misconception("eps ignored", "you divided by sqrt(var); BatchNorm adds eps first: sqrt(var + eps).",
                      lambda x, m, v, g, b, eps=1e-5: (x - _chan(m)) / _chan(v).sqrt() * _chan(g) + _chan(b)),
        Misconception("batch statistics",
                      "you normalised with the mean and variance of this batch (training mode); in inference "
                      "BatchNorm uses the running statistics `mean` and `var` it was given, so that an image's "
                      "output does not depend on the other images in the batch.", _bn_batch_stats),
        Misconception("variance used as the standard deviation",
                      "you divided by var + eps; divide by the standard deviation sqrt(var + eps).",
                      lambda x, m, v, g, b, eps=1e-5: (x - _chan(m)) / (_chan(v) + eps) * _chan(g) + _chan(b)),
        Misconception("gamma and beta swapped", "gamma scales, beta shifts: (x - mean) / sqrt(var + eps) * gamma "
                                                "+ beta.",
                      lambda x, m, v, g, b, eps=1e-5: _bn_eval(x, m, v, b, g, eps)),
        Misconception("statistics broadcast along the width axis",
                      "your (C,) vectors were broadcast against the last axis (W); reshape them to (1, C, 1, 1) "
                      "so that they act per channel (axis 1).", _bn_last_axis),
    ],
)


# ---------------------------------------------------------------------------------------------------------------
# fuse_conv_bn (NumPy)
# ---------------------------------------------------------------------------------------------------------------

def _fuse_weights(w, b, mean, var, gamma, beta, eps=1e-5):
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    return fuse_conv_bn_weights(w, b, mean, var, eps, gamma, beta)


_FUSE_PARAMS = [Param("Cout", 1, 5), Param("Cin", 1, 4), Param("kH", 1, 3), Param("kW", 1, 3), flag("bias"),
                *_BN_EXTRAS]


def _build_fuse(p, draw) -> Call:
    w = draw.array(p["Cout"], p["Cin"], p["kH"], p["kW"])
    b = draw.array(p["Cout"]) if p["bias"] else None
    mean, var, gamma, beta = _bn_stats(draw, p["Cout"], bool(p["tiny"]))
    return Call((w, b, mean, var, gamma, beta), _eps_kwargs(p))


def _describe_fuse(p) -> str:
    small = ", small running variances" if p["tiny"] else ""
    bias = f"b {shape_text(p['Cout'])}" if p["bias"] else "b=None"
    return f"w {shape_text(p['Cout'], p['Cin'], p['kH'], p['kW'])}, {bias}, {_eps_text(p)}{small}"


def _scale(var, gamma, eps):
    return gamma / (var + eps).sqrt()


def _wrong_fuse(scale_fn=None, bias_fn=None, axis=0):
    """A wrong fusion: ``scale_fn(var, gamma, eps)`` for the per-channel scale, ``bias_fn(b0, mean, beta, s)`` for
    the bias, the scale applied along weight axis ``axis``."""

    def compute(w, b, mean, var, gamma, beta, eps=1e-5):
        s = (scale_fn or _scale)(var, gamma, eps)
        if axis == 1:
            if w.shape[1] != w.shape[0]:
                raise NotApplicable("not applicable")
            w_fused = w * s.reshape(1, -1, 1, 1)
        else:
            w_fused = w * s.reshape(-1, 1, 1, 1)
        b0 = torch().zeros_like(mean) if b is None else b
        b_fused = (bias_fn or (lambda b0, m, bt, s: (b0 - m) * s + bt))(b0, mean, beta, s)
        return w_fused, b_fused

    return compute


def _none_bias(w, b, mean, var, gamma, beta, eps=1e-5):
    if b is not None:
        raise NotApplicable("not applicable")
    return w * _scale(var, gamma, eps).reshape(-1, 1, 1, 1), None


def _bias_ignored(w, b, mean, var, gamma, beta, eps=1e-5):
    if b is None:
        raise NotApplicable("not applicable")
    return _wrong_fuse()(w, None, mean, var, gamma, beta, eps)


_EPS_OUTSIDE = "eps outside the square root"
_EPS_OUTSIDE_TEXT = ("you scaled by gamma / (sqrt(var) + eps); BatchNorm divides by sqrt(var + eps). With small "
                     "running variances the difference is large.")
_UNSCALED_BIAS = "unscaled bias"
_UNSCALED_BIAS_TEXT = ("the fused bias must be scaled too: b' = (b - mean) * gamma / sqrt(var + eps) + beta "
                       "(you used b - mean + beta, or scaled only part of it).")
_INPUT_AXIS = "scale on the input-channel axis"
_INPUT_AXIS_TEXT = ("BatchNorm scales each *output* channel, so the scale multiplies w[c_out, :, :, :] (axis 0 of "
                    "a Conv2d weight). Axis 1 is right only for a ConvTranspose2d, whose weight is (C_in, C_out, "
                    "kH, kW).")

fuse_conv_bn = Exercise(
    name="fuse_conv_bn",
    assignment=ASSIGNMENT,
    points=3,
    signature="fuse_conv_bn(w, b, mean, var, gamma, beta, eps=1e-5)",
    oracle=_fuse_weights,
    output_names=("w_fused", "b_fused"),
    params=_FUSE_PARAMS,
    build=_build_fuse,
    describe=_describe_fuse,
    fixed_params=[
        {"Cout": 3, "Cin": 3, "kH": 3, "kW": 3, "bias": 1, "tiny": 1, "eps": 0},   # C_in == C_out, small var
        {"Cout": 4, "Cin": 2, "kH": 1, "kW": 3, "bias": 0, "tiny": 0, "eps": 1},   # b=None (bias=False conv)
        {"Cout": 2, "Cin": 5, "kH": 2, "kW": 1, "bias": 1, "tiny": 1, "eps": 2},   # eps 0.1
        {"Cout": 1, "Cin": 1, "kH": 1, "kW": 1, "bias": 0, "tiny": 0, "eps": 3},   # 1x1, one channel
    ],
    misconceptions=[
        Misconception(_EPS_OUTSIDE, _EPS_OUTSIDE_TEXT,
                      _wrong_fuse(scale_fn=lambda v, g, eps: g / (v.sqrt() + eps))),
        Misconception("eps ignored", "the scale is gamma / sqrt(var + eps): you left eps out.",
                      _wrong_fuse(scale_fn=lambda v, g, eps: g / v.sqrt())),
        Misconception("variance used as the standard deviation", "the scale is gamma / sqrt(var + eps), not "
                                                                 "gamma / (var + eps).",
                      _wrong_fuse(scale_fn=lambda v, g, eps: g / (v + eps))),
        Misconception(_UNSCALED_BIAS, _UNSCALED_BIAS_TEXT,
                      _wrong_fuse(bias_fn=lambda b0, m, bt, s: b0 - m + bt)),
        Misconception(_UNSCALED_BIAS, _UNSCALED_BIAS_TEXT,
                      _wrong_fuse(bias_fn=lambda b0, m, bt, s: b0 - m * s + bt)),
        Misconception(_UNSCALED_BIAS, _UNSCALED_BIAS_TEXT,
                      _wrong_fuse(bias_fn=lambda b0, m, bt, s: b0 + (bt - m) * s)),
        Misconception("conv bias ignored", "the conv's own bias b is shifted by BatchNorm like every other "
                                           "output: b' = (b - mean) * scale + beta.", _bias_ignored),
        Misconception("no bias when b is None",
                      "a conv without bias still gets one after fusion: BatchNorm's shift "
                      "beta - mean * scale has to go somewhere. Treat b=None as zeros.", _none_bias),
        Misconception(_INPUT_AXIS, _INPUT_AXIS_TEXT, _wrong_fuse(axis=1)),
    ],
)


# ---------------------------------------------------------------------------------------------------------------
# helpers for the module exercises
# ---------------------------------------------------------------------------------------------------------------

def _device_kind(device) -> str:
    return str(device).split(":")[0]


def _tensor(a, dtype=None):
    return torch().from_numpy(np.ascontiguousarray(a)).to(dtype or torch().float64)


def _make_conv(draw, cin, cout, k, bias, stride=1, padding=None, groups=1):
    """An eval-mode float64 ``nn.Conv2d`` with drawn weights (and bias)."""
    hyper = dict(in_channels=cin, out_channels=cout, kernel_size=k, stride=stride,
                 padding=k // 2 if padding is None else padding, groups=groups, bias=bool(bias))
    tensors = {"weight": _tensor(draw.array(cout, cin // groups, k, k))}
    if bias:
        tensors["bias"] = _tensor(draw.array(cout))
    return module_codec.layer_with("Conv2d", hyper, tensors)


def _make_bn(draw, c, eps_index, tiny=False):
    """An eval-mode float64 ``nn.BatchNorm2d`` with drawn running statistics, scale and shift."""
    eps = EPS[eps_index]
    mean, var, gamma, beta = _bn_stats(draw, c, tiny)
    tensors = {"running_mean": _tensor(mean), "running_var": _tensor(var), "weight": _tensor(gamma),
               "bias": _tensor(beta), "num_batches_tracked": torch().tensor(int(draw.integers(1, 1000)))}
    return module_codec.layer_with("BatchNorm2d", dict(num_features=c, eps=1e-5 if eps is None else eps), tensors)


def _numpy(t):
    return None if t is None else t.detach().cpu().numpy().copy()


_DEVICE_ADVICE = ("the returned module does not live on the device of its inputs: create new layers with "
                  "device=conv.weight.device (or copy.deepcopy the input).")
_UNCHANGED_ADVICE = ("the function must build a new module (nn.Conv2d(...) or copy.deepcopy) and leave its "
                     "arguments untouched, so that the original model still works.")


def _decoded(plain, call, device) -> tuple:
    """``(model, on the inputs' device, unchanged flag of each module argument)`` of an encoded answer."""
    model, model_device, verdicts = module_codec.decode_judged(plain, device, call)
    arg_device = module_codec.judged(verdicts)[1]
    return model, model_device == (arg_device or _device_kind(device)), module_codec.unchanged(verdicts)


def _judged_mistakes(view, view_names: tuple, arguments: tuple) -> list:
    """The misconceptions that explain a failed device or "unchanged" flag of ``view`` (the oracle's)."""
    device = view_names.index(SAME_DEVICE)
    return [checks.property_mistake("module on another device than its inputs", _DEVICE_ADVICE, view, device, False),
            *checks.unchanged_mistakes(view, device + 1, arguments, _UNCHANGED_ADVICE)]


# ---------------------------------------------------------------------------------------------------------------
# fuse_conv_bn_module (torch)
# ---------------------------------------------------------------------------------------------------------------

CONV_VIEW = ("layer", *checks.CONV_SETTINGS, "weight", "bias", SAME_DEVICE, "conv unchanged", "bn unchanged")


def _conv_view(m, same_device: bool = True, unchanged: tuple = (True, True)) -> tuple:
    conv = checks.type_name(m) == "Conv2d"
    weights = (_numpy(m.weight), _numpy(m.bias)) if conv else (None, None)
    return (checks.type_name(m), *checks.conv_settings(m), *weights, same_device, *unchanged)


def _conv_view_of_answer(plain, call, device):
    return _conv_view(*_decoded(plain, call, device))


_CONV_BN_PARAMS = [Param("g", 1, 2), Param("ci", 1, 3), Param("co", 1, 3), Param("k", 1, 3), Param("stride", 1, 2),
                   Param("pad", 0, 1), flag("bias"), *_BN_EXTRAS]


def _build_conv_bn(p, draw) -> Call:
    token = secrets.token_hex(8)
    conv = _make_conv(draw, p["g"] * p["ci"], p["g"] * p["co"], p["k"], p["bias"], stride=p["stride"],
                      padding=p["pad"], groups=p["g"])
    bn = _make_bn(draw, p["g"] * p["co"], p["eps"], bool(p["tiny"]))
    return Call((module_codec.mark_argument(conv, "conv", token), module_codec.mark_argument(bn, "bn", token)))


def _describe_conv_bn(p) -> str:
    cin, cout = p["g"] * p["ci"], p["g"] * p["co"]
    extra = [f"stride={p['stride']}", f"padding={p['pad']}"]
    if p["g"] > 1:
        extra.append(f"groups={p['g']}")
    extra.append("bias=True" if p["bias"] else "bias=False")
    small = ", small running variances" if p["tiny"] else ""
    return (f"conv = Conv2d({cin}, {cout}, kernel_size={p['k']}, {', '.join(extra)}), "
            f"bn = BatchNorm2d({cout}, {_eps_text(p)}){small}")


def _fused_conv(conv, bn, scale_fn=None, bias_fn=None, axis=0, eps=None, keep_none_bias=False):
    """A (possibly wrong) fusion in torch, built like fuse_conv_bn_eval: a deep copy of ``conv``."""
    t = torch()
    fused = copy.deepcopy(conv)
    with t.no_grad():
        compute = _wrong_fuse(scale_fn, bias_fn, axis)
        w, b = compute(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                       bn.eps if eps is None else eps)
        fused.weight = t.nn.Parameter(w)
        fused.bias = None if (keep_none_bias and conv.bias is None) else t.nn.Parameter(b)
    return fused


def _oracle_conv_bn(conv, bn):
    """``fuse_conv_bn_eval``'s result: its weights (``fuse_conv_bn_weights``) in ``conv`` itself, which is already
    the oracle's own copy (``oracle.run_reference``), instead of in another deep copy."""
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    if conv.training or bn.training:
        raise AssertionError("Fusion only for eval!")
    conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                                  bn.weight, bn.bias)
    return _conv_view(conv)


def _conv_misconception(name, text, applies=lambda conv, bn: True, **how):
    def compute(conv, bn):
        if not applies(conv, bn):
            raise NotApplicable("not applicable")
        return _conv_view(_fused_conv(conv, bn, **how))

    return Misconception(name, text, compute)


fuse_conv_bn_module = Exercise(
    name="fuse_conv_bn_module",
    assignment=ASSIGNMENT,
    points=3,
    signature="fuse_conv_bn_module(conv, bn)",
    oracle=_oracle_conv_bn,
    output_names=CONV_VIEW,
    params=_CONV_BN_PARAMS,
    build=_build_conv_bn,
    describe=_describe_conv_bn,
    fixed_params=[
        {"g": 1, "ci": 3, "co": 3, "k": 3, "stride": 1, "pad": 1, "bias": 0, "tiny": 1, "eps": 1},  # bias=False
        {"g": 1, "ci": 2, "co": 4, "k": 3, "stride": 2, "pad": 0, "bias": 1, "tiny": 0, "eps": 2},  # stride 2
        {"g": 2, "ci": 2, "co": 1, "k": 1, "stride": 1, "pad": 0, "bias": 1, "tiny": 1, "eps": 0},  # groups=2
        {"g": 1, "ci": 1, "co": 1, "k": 2, "stride": 1, "pad": 1, "bias": 1, "tiny": 0, "eps": 3},  # even kernel
    ],
    misconceptions=[
        _conv_misconception(_EPS_OUTSIDE, _EPS_OUTSIDE_TEXT, scale_fn=lambda v, g, eps: g / (v.sqrt() + eps)),
        _conv_misconception("default eps instead of bn.eps",
                            "this BatchNorm was built with its own eps; read it from bn.eps instead of assuming "
                            "1e-5.", applies=lambda conv, bn: bn.eps != 1e-5, eps=1e-5),
        _conv_misconception(_UNSCALED_BIAS, _UNSCALED_BIAS_TEXT, bias_fn=lambda b0, m, bt, s: b0 - m + bt),
        _conv_misconception(_UNSCALED_BIAS, _UNSCALED_BIAS_TEXT, bias_fn=lambda b0, m, bt, s: b0 - m * s + bt),
        _conv_misconception("no bias when the conv has none",
                            "conv was built with bias=False, but the fused conv needs a bias: BatchNorm's shift "
                            "beta - mean * scale. Create the new Conv2d with bias=True.",
                            applies=lambda conv, bn: conv.bias is None, keep_none_bias=True),
        _conv_misconception(_INPUT_AXIS, _INPUT_AXIS_TEXT, axis=1),
        Misconception("fused conv wrapped in a container",
                      "the grader expected a single nn.Conv2d: return the fused convolution itself, not an "
                      "nn.Sequential holding it.",
                      lambda conv, bn: _conv_view(torch().nn.Sequential(_fused_conv(conv, bn)))),
        *_judged_mistakes(_oracle_conv_bn, CONV_VIEW, ("conv", "bn")),
    ],
    from_scratch=False,
    forbidden=FUSION_HELPERS,
    encode=module_codec.encode_answer,
    view=_conv_view_of_answer,
)


# ---------------------------------------------------------------------------------------------------------------
# fuse_sequential (torch)
# ---------------------------------------------------------------------------------------------------------------

SEQ_VIEW = ("layers", "outputs", SAME_DEVICE, "model unchanged")


#: the float64 example input of each shape (:func:`_example_input`; a case's shape comes from a few dozen)
_EXAMPLES: dict = {}


def _example_input(call_model, model):
    """The fixed input an answered ``model`` runs on: ``call_model``'s input shape, values from
    :data:`EXAMPLE_SEED`, in the dtype and on the device of the model's first floating-point parameter (float64 on
    CPU without one). A new tensor each time: a model may write into its input (``ReLU(inplace=True)``)."""
    t = torch()
    shape = tuple(module_codec.argument_meta(call_model)["input_shape"])
    base = _EXAMPLES.get(shape)
    if base is None:
        if len(_EXAMPLES) >= 256:
            _EXAMPLES.clear()
        base = _EXAMPLES[shape] = t.randn(shape, generator=t.Generator().manual_seed(EXAMPLE_SEED), dtype=t.float64)
    first = next((p for p in model.parameters() if p.is_floating_point()), None)
    dtype, device = (first.dtype, first.device) if first is not None else (t.float64, "cpu")
    return base.to(device=device, dtype=dtype, copy=True)


def _outputs(model, example):
    t = torch()
    model.eval()
    try:
        module_codec.check_forward_cost(model, example)  # a student's model is bounded before it runs here
        with t.no_grad(), exact_numerics():
            return _numpy(model(example))
    except Exception as exc:  # noqa: BLE001 - a broken model is a wrong answer, not a grader crash
        return f"running the model raised {type(exc).__name__}: {str(exc)[:200]}"


def _seq_view(model, call_model, same_device: bool = True, unchanged: tuple = (True,)) -> tuple:
    return (checks.layer_names(model), _outputs(model, _example_input(call_model, model)), same_device, *unchanged)


def _seq_view_of_answer(plain, call, device):
    model, same_device, unchanged = _decoded(plain, call, device)
    return _seq_view(model, call.args[0], same_device, unchanged)


def _fusable(layers, i) -> bool:
    t = torch()
    return type(layers[i]) is t.nn.Conv2d and i + 1 < len(layers) and type(layers[i + 1]) is t.nn.BatchNorm2d


def _oracle_sequential(model):
    layers = list(model.children())
    kept = [m for i, m in enumerate(layers) if not (i > 0 and _fusable(layers, i - 1))]
    names = ", ".join(checks.type_name(m) for m in kept)
    return (names, _outputs(model, _example_input(model, model)), True, True)   # model: the oracle's own copy


def _wrong_model(model, first_only=False, keep_bn=False, across=False, drop_lone=False, drop_others=False, **how):
    """``model`` fused the wrong way, for misconceptions (a variant that happens to be right on this model is
    harmless: a failing answer never matches it)."""
    t = torch()
    layers = list(model.children())
    out, skip, last_conv, pairs = [], set(), None, 0
    for i, m in enumerate(layers):
        if i in skip:
            continue
        if _fusable(layers, i) and not (first_only and pairs):
            out.append(_fused_conv(m, layers[i + 1], **how))
            pairs, last_conv = pairs + 1, len(out) - 1
            if keep_bn:
                out.append(copy.deepcopy(layers[i + 1]))
            skip.add(i + 1)
            continue
        lone_bn = type(m) is t.nn.BatchNorm2d and not (i > 0 and _fusable(layers, i - 1))
        if lone_bn and across and last_conv is not None:
            out[last_conv] = _fused_conv(out[last_conv], m, **how)
            continue
        if (lone_bn and drop_lone) or (drop_others and type(m) not in (t.nn.Conv2d, t.nn.BatchNorm2d)):
            continue
        out.append(copy.deepcopy(m))
        if type(m) is t.nn.Conv2d:
            last_conv = len(out) - 1
    return t.nn.Sequential(*out)


def _seq_misconception(name, text, **kw):
    def compute(model):
        return _seq_view(_wrong_model(model, **kw), model)

    return Misconception(name, text, compute)


#: k: the kernel is 2k + 1; relu: a ReLU after each block; lone: a BatchNorm after a ReLU (not foldable);
#: last_plain: the last conv without BatchNorm; head: Flatten and Linear at the end
_SEQ_PARAMS = [Param("blocks", 1, 3), Param("cin", 1, 3), Param("C", 1, 4), Param("k", 0, 1), flag("bias"),
               flag("relu", 0.75), flag("lone", 0.25), flag("last_plain", 1 / 3), flag("pool"), flag("head"),
               Param("H", 1, 6), Param("W", 1, 6), _BN_EXTRAS[1]]


def _seq_layout(p) -> list:
    """The model as a list of (kind, args) from the case parameters."""
    k = 2 * p["k"] + 1
    layers, c_in, h, w = [], p["cin"], p["H"], p["W"]
    for i in range(p["blocks"]):
        layers.append(("conv", (c_in, p["C"], k)))
        if not (p["last_plain"] and i == p["blocks"] - 1):
            layers.append(("bn", p["C"]))
        if p["relu"]:
            layers.append(("relu", None))
        if i == 0 and p["lone"]:
            layers.append(("bn", p["C"]))
        if i == 0 and p["pool"]:
            layers.append(("pool", 2))
            h, w = h // 2, w // 2
        c_in = p["C"]
    if p["head"]:
        layers += [("flatten", None), ("linear", (p["C"] * h * w, 3))]
    return layers


def _build_seq(p, draw) -> Call:
    t = torch()
    mods = []
    for kind, arg in _seq_layout(p):
        if kind == "conv":
            mods.append(_make_conv(draw, *arg, bias=p["bias"]))
        elif kind == "bn":
            mods.append(_make_bn(draw, arg, p["eps"]))
        elif kind == "relu":
            mods.append(t.nn.ReLU())
        elif kind == "pool":
            mods.append(t.nn.MaxPool2d(arg))
        elif kind == "flatten":
            mods.append(t.nn.Flatten())
        else:
            lin = t.nn.Linear(*arg, dtype=t.float64)
            with t.no_grad():
                lin.weight.copy_(_tensor(draw.array(*lin.weight.shape)))
                lin.bias.copy_(_tensor(draw.array(arg[1])))
            mods.append(lin)
    model = t.nn.Sequential(*mods).eval()
    meta = (("input_shape", (2, p["cin"], p["H"], p["W"])),)
    return Call((module_codec.mark_argument(model, "model", secrets.token_hex(8), meta),))


def _describe_seq(p) -> str:
    names = {"conv": lambda a: f"Conv2d({a[0]}, {a[1]}, {a[2]})", "bn": lambda a: "BN", "relu": lambda a: "ReLU",
             "pool": lambda a: "MaxPool2d(2)", "flatten": lambda a: "Flatten", "linear": lambda a: f"Linear({a[0]}, 3)"}
    body = " - ".join(names[kind](arg) for kind, arg in _seq_layout(p))
    bias = "conv bias" if p["bias"] else "bias=False"
    return f"model = {body}; input (2, {p['cin']}, {p['H']}, {p['W']}), BN {_eps_text(p)}, {bias}"


fuse_sequential = Exercise(
    name="fuse_sequential",
    assignment=ASSIGNMENT,
    points=4,
    signature="fuse_sequential(model)",
    oracle=_oracle_sequential,
    output_names=SEQ_VIEW,
    params=_SEQ_PARAMS,
    build=_build_seq,
    describe=_describe_seq,
    valid=lambda p: not p["pool"] or (p["H"] >= 2 and p["W"] >= 2),
    fixed_params=[
        # the digits CNN in small: three Conv-BN-ReLU blocks, a pool, a linear head
        {"blocks": 3, "cin": 2, "C": 3, "k": 1, "bias": 0, "relu": 1, "lone": 0, "last_plain": 0, "pool": 1,
         "head": 1, "H": 6, "W": 5, "eps": 0},
        # Conv-BN-Conv-BN with nothing in between, conv biases, eps 0.1
        {"blocks": 2, "cin": 3, "C": 2, "k": 1, "bias": 1, "relu": 0, "lone": 0, "last_plain": 0, "pool": 0,
         "head": 0, "H": 4, "W": 4, "eps": 2},
        # a BatchNorm after a ReLU cannot be folded and must stay; the last conv has no BatchNorm
        {"blocks": 3, "cin": 1, "C": 3, "k": 1, "bias": 1, "relu": 1, "lone": 1, "last_plain": 1, "pool": 0,
         "head": 1, "H": 3, "W": 5, "eps": 1},
        # 1x1 convolutions on 1x1 images
        {"blocks": 2, "cin": 2, "C": 2, "k": 0, "bias": 0, "relu": 1, "lone": 0, "last_plain": 0, "pool": 0,
         "head": 0, "H": 1, "W": 1, "eps": 3},
    ],
    misconceptions=[
        _seq_misconception("fused one pair only",
                           "every Conv2d followed by a BatchNorm2d must be fused, not only the first pair: keep "
                           "scanning the layers after a fusion.", first_only=True),
        _seq_misconception("BatchNorm left in",
                           "after folding a BatchNorm2d into its Conv2d, drop the BatchNorm2d: applying it again "
                           "normalises twice.", keep_bn=True),
        _seq_misconception("folded a BatchNorm across a ReLU",
                           "only a BatchNorm2d that directly follows a Conv2d can be folded into it; one after a "
                           "ReLU (or a pool) must stay as it is.", across=True),
        _seq_misconception("removed a BatchNorm that follows no Conv2d",
                           "a BatchNorm2d that does not directly follow a Conv2d cannot be folded: keep it.",
                           drop_lone=True),
        _seq_misconception("other layers dropped",
                           "keep every layer that is not a fused BatchNorm2d (ReLU, pooling, Flatten, Linear...) "
                           "in its place.", drop_others=True),
        _seq_misconception(_EPS_OUTSIDE, _EPS_OUTSIDE_TEXT, scale_fn=lambda v, g, eps: g / (v.sqrt() + eps)),
        _seq_misconception(_UNSCALED_BIAS, _UNSCALED_BIAS_TEXT, bias_fn=lambda b0, m, bt, s: b0 - m + bt),
        _seq_misconception("default eps instead of bn.eps",
                           "each BatchNorm2d has its own eps; read bn.eps instead of assuming 1e-5.", eps=1e-5),
        *_judged_mistakes(_oracle_sequential, SEQ_VIEW, ("model",)),
    ],
    from_scratch=False,
    forbidden=FUSION_HELPERS,
    encode=module_codec.encode_answer,
    view=_seq_view_of_answer,
)

register(batchnorm2d_eval, fuse_conv_bn, fuse_conv_bn_module, fuse_sequential)


# ---------------------------------------------------------------------------------------------------------------
# feature_maps (torch): forward hooks on every Conv2d
# ---------------------------------------------------------------------------------------------------------------

MAPS_VIEW = ("conv layers", "outputs", "model unchanged")


def _maps_layout(p) -> list:
    """(kind, args) of the top level; a "block" is a Conv2d (+ BatchNorm2d) + ReLU, nested ``nest`` levels deep."""
    k = 2 * p["k"] + 1
    layers = [("conv", (p["cin"], p["C"], k)), ("relu", None)]
    for i in range(p["blocks"]):
        layers.append(("block", (p["C"], p["C"], k)))
        if i == 0 and p["pool"]:
            layers.append(("pool", 2))
    if p["head"]:
        layers += [("flatten", None), ("linear", None)]
    return layers


def _maps_size(p) -> tuple:
    return (p["H"] // 2, p["W"] // 2) if p["pool"] else (p["H"], p["W"])


def _maps_block(draw, p, cin, cout, k):
    t = torch()
    layers = [_make_conv(draw, cin, cout, k, p["bias"])]
    if p["bn"]:
        layers.append(_make_bn(draw, cout, 0))
    relu = t.nn.ReLU(inplace=bool(p["inplace"]))
    if p["nest"] == 0:
        return layers + [relu]
    if p["nest"] == 1:
        return [t.nn.Sequential(*layers, relu)]
    return [t.nn.Sequential(t.nn.Sequential(*layers), relu)]


def _maps_linear(draw, p):
    t = torch()
    h, w = _maps_size(p)
    lin = t.nn.Linear(p["C"] * h * w, 3, dtype=t.float64)
    with t.no_grad():
        lin.weight.copy_(_tensor(draw.array(*lin.weight.shape)))
        lin.bias.copy_(_tensor(draw.array(3)))
    return lin


def _build_maps(p, draw) -> Call:
    t = torch()
    make = {"conv": lambda a: [_make_conv(draw, *a, bias=p["bias"])],
            "relu": lambda a: [t.nn.ReLU(inplace=bool(p["inplace"]))],
            "block": lambda a: _maps_block(draw, p, *a), "pool": lambda a: [t.nn.MaxPool2d(a)],
            "flatten": lambda a: [t.nn.Flatten()], "linear": lambda a: [_maps_linear(draw, p)]}
    mods = [m for kind, arg in _maps_layout(p) for m in make[kind](arg)]
    model = module_codec.mark_argument(t.nn.Sequential(*mods).eval(), "model", secrets.token_hex(8))
    return Call((model, _tensor(draw.array(p["N"], p["cin"], p["H"], p["W"]))))


def _describe_maps(p) -> str:
    k = 2 * p["k"] + 1
    relu = "ReLU(inplace=True)" if p["inplace"] else "ReLU"
    inner = f"Conv2d({p['C']}, {p['C']}, {k})" + (" - BN" if p["bn"] else "")
    block = {0: f"{inner} - {relu}", 1: f"Sequential({inner} - {relu})",
             2: f"Sequential(Sequential({inner}) - {relu})"}[p["nest"]]
    names = {"conv": f"Conv2d({p['cin']}, {p['C']}, {k})", "relu": relu, "block": block, "pool": "MaxPool2d(2)",
             "flatten": "Flatten", "linear": "Linear"}
    body = " - ".join(names[kind] for kind, _ in _maps_layout(p))
    return f"model = Sequential({body}); x ({p['N']}, {p['cin']}, {p['H']}, {p['W']})"


def _run_layers(module, x, name, record, want):
    """Run a tree of Sequentials layer by layer, as forward hooks see it: ``record(name, input, output)`` for every
    module that ``want``s it, a container after its children; ``name`` as in ``named_modules()``."""
    t = torch()
    if type(module) is t.nn.Sequential:
        y = x
        for child_name, child in module.named_children():
            y = _run_layers(child, y, f"{name}.{child_name}" if name else child_name, record, want)
    else:
        y = module(x)
    if want(module):
        record(name, x, y)
    return y


def _maps_oracle(model, x, want=None, what="output", top_level=False):
    """The view of the right answer (or, with other arguments, of a wrong one): names, outputs, model state."""
    t = torch()
    model.eval()
    x = x.to(next(model.parameters()).device)
    want = want or (lambda m: type(m) is t.nn.Conv2d)
    found = {}

    def record(name, inp, out):
        if not top_level or "." not in name:
            found[name] = (inp if what == "input" else out).detach().clone()

    with t.no_grad():
        _run_layers(model, x, "", record, want)
    return ", ".join(found), tuple(_numpy(v) for v in found.values()), True


def _maps_of_answer(plain, call, device):
    """Trusted side: names and outputs as sent; the model's state compared with the grader's own template."""
    ok = (isinstance(plain, tuple) and len(plain) == 4 and plain[0] == module_codec.FEATURE_MAPS
          and isinstance(plain[1], tuple) and all(isinstance(n, str) for n in plain[1])
          and isinstance(plain[2], tuple) and len(plain[2]) == len(plain[1]))
    if not ok:
        raise ValueError("not a {name: output tensor} dict")
    return (", ".join(plain[1]), plain[2], *checks.arguments_unchanged(plain[3], call))


def _stored_without_copy(model, x):
    """Outputs kept by reference: an in-place ReLU after a conv overwrites them."""
    t = torch()
    model.eval()
    x = x.to(next(model.parameters()).device)
    found, handles = {}, []
    for name, m in model.named_modules():
        if type(m) is t.nn.Conv2d:
            handles.append(m.register_forward_hook(lambda mod, inp, out, name=name: found.__setitem__(name, out)))
    try:
        with t.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    if not any(type(m) is t.nn.ReLU and m.inplace for m in model.modules()):
        not_applicable()
    return ", ".join(found), tuple(_numpy(v) for v in found.values()), True


#: nest: blocks flat (0), as Sequentials (1), or Sequentials of Sequentials (2)
_MAPS_PARAMS = [Param("blocks", 1, 3), choice("nest", 3), flag("bn"), flag("inplace"), flag("bias"), Param("cin", 1, 3),
                Param("C", 1, 4), Param("k", 0, 1), flag("pool"), flag("head"), Param("N", 1, 2), Param("H", 2, 7),
                Param("W", 2, 7)]


feature_maps = Exercise(
    name="feature_maps",
    assignment=ASSIGNMENT,
    points=3,
    signature="feature_maps(model, x)",
    oracle=_maps_oracle,
    output_names=MAPS_VIEW,
    params=_MAPS_PARAMS,
    build=_build_maps,
    describe=_describe_maps,
    fixed_params=[
        # nested two levels deep, in-place ReLUs, BatchNorm, a pool and a linear head: the digits CNN in small
        {"blocks": 2, "nest": 2, "bn": 1, "inplace": 1, "bias": 0, "cin": 1, "C": 3, "k": 1, "pool": 1, "head": 1,
         "N": 2, "H": 6, "W": 5},
        # blocks as Sequentials: the nested convs are not children of the model
        {"blocks": 3, "nest": 1, "bn": 0, "inplace": 0, "bias": 1, "cin": 2, "C": 2, "k": 1, "pool": 0, "head": 0,
         "N": 1, "H": 5, "W": 5},
        # flat, in-place ReLUs: outputs stored by reference are overwritten
        {"blocks": 1, "nest": 0, "bn": 0, "inplace": 1, "bias": 1, "cin": 3, "C": 2, "k": 0, "pool": 0, "head": 0,
         "N": 2, "H": 3, "W": 4},
    ],
    misconceptions=[
        Misconception("hooks on the top level only",
                      "model.children() (or named_children()) lists only the top-level modules; convolutions inside "
                      "nested blocks are missed. model.named_modules() walks the whole tree, with dotted names such "
                      "as '2.0.0'.", lambda model, x: _maps_oracle(model, x, top_level=True)),
        Misconception("inputs instead of outputs",
                      "a forward hook is called as hook(module, inputs, output): `inputs` is the tuple of the "
                      "layer's arguments, the feature map is `output`.",
                      lambda model, x: _maps_oracle(model, x, what="input")),
        Misconception("every module recorded",
                      "keep only the nn.Conv2d layers (isinstance(module, nn.Conv2d)), not the ReLUs, pools and "
                      "containers.", lambda model, x: _maps_oracle(model, x, want=lambda m: True)),
        Misconception("outputs kept without a copy",
                      "the ReLU(inplace=True) after a convolution overwrites the tensor your hook stored: keep "
                      "output.detach().clone().", _stored_without_copy),
        *checks.unchanged_mistakes(_maps_oracle, MAPS_VIEW.index("model unchanged"), ("model",),
                                   "register the hooks, run the model, then remove every hook (handle.remove()) "
                                   "and leave the model's weights and mode as they were."),
    ],
    from_scratch=False,
    encode=module_codec.encode_feature_maps,
    view=_maps_of_answer,
)

register(feature_maps)

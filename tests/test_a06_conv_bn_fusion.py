"""06-conv-bn-fusion: the reference answers (exec'd from the solution notebook) pass, correct alternatives pass
(loops, float32, the NumPy route, deep copies, shared unchanged layers), and plausible bugs fail with feedback that
names the mistake (eps outside the square root, batch statistics, unscaled bias, scale on the input axis, mutating
the original, BatchNorm left in, one pair only...). The module exercises are also graded the way the isolated
grader runs them (arguments and answers through ``module_codec`` as plain data). Last, ``module_codec`` itself:
round trips, plain data only, rejection of unknown layers and malformed data, identity and mutation reports."""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch
from torch import nn

from autograder import module_codec, registry
from autograder.answers import Outcome
from autograder.cases import hidden_cases, visible_cases
from autograder.compare import to_plain
from autograder.engine import grade_exercise
from autograder.forbidden import scan_function, scan_source
from autograder.spec import Call
from tests.harness import SEED, answer_tests, assert_passes, grade, named, reference_answers

ASSIGNMENT = "06-conv-bn-fusion"
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The cases are tiny models: on a shared 2-core machine one intra-op thread is several times faster."""
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(saved)




REF = reference_answers("06-conv-bn-fusion", "import copy\nimport numpy as np\nimport torch\nfrom torch import nn")


def _chan(v):
    return v[None, :, None, None]


# ------------------------------------------------------------------------------------------------------------------
# batchnorm2d_eval
# ------------------------------------------------------------------------------------------------------------------
def bn_channel_loop_float32(x, mean, var, gamma, beta, eps=1e-5):
    """One channel at a time, in float32."""
    x = x.astype(np.float32)
    out = np.empty_like(x)
    for c in range(x.shape[1]):
        a = np.float32(gamma[c] / np.sqrt(var[c] + eps))
        out[:, c] = (x[:, c] - np.float32(mean[c])) * a + np.float32(beta[c])
    return out


def bn_reshape(x, mean, var, gamma, beta, eps=1e-5):
    """The formula as written, with (1, C, 1, 1) vectors."""
    shape = (1, -1, 1, 1)
    return (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)


def bn_moveaxis(x, mean, var, gamma, beta, eps=1e-5):
    """Channels moved last, so that plain broadcasting works, then moved back."""
    y = (np.moveaxis(x, 1, -1) - mean) / np.sqrt(var + eps) * gamma + beta
    return np.moveaxis(y, -1, 1)


def bn_eps_outside(x, mean, var, gamma, beta, eps=1e-5):
    return (x - _chan(mean)) / (np.sqrt(_chan(var)) + eps) * _chan(gamma) + _chan(beta)


def bn_batch_statistics(x, mean, var, gamma, beta, eps=1e-5):
    m, v = x.mean(axis=(0, 2, 3)), x.var(axis=(0, 2, 3))
    return (x - _chan(m)) / np.sqrt(_chan(v) + eps) * _chan(gamma) + _chan(beta)


def bn_width_axis(x, mean, var, gamma, beta, eps=1e-5):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def bn_variance_as_std(x, mean, var, gamma, beta, eps=1e-5):
    return (x - _chan(mean)) / (_chan(var) + eps) * _chan(gamma) + _chan(beta)


def bn_torch(x, mean, var, gamma, beta, eps=1e-5):
    t = torch.from_numpy
    return torch.nn.functional.batch_norm(t(x), t(mean), t(var), t(gamma), t(beta), eps=eps).numpy()


# ------------------------------------------------------------------------------------------------------------------
# fuse_conv_bn
# ------------------------------------------------------------------------------------------------------------------
def fuse_loops_float32(w, b, mean, var, gamma, beta, eps=1e-5):
    """One output channel at a time, results in float32."""
    w_fused = np.empty(w.shape, np.float32)
    b_fused = np.empty(mean.shape, np.float32)
    for o in range(w.shape[0]):
        a = gamma[o] / np.sqrt(var[o] + eps)
        w_fused[o] = w[o] * a
        b_fused[o] = ((0.0 if b is None else b[o]) - mean[o]) * a + beta[o]
    return w_fused, b_fused


def fuse_einsum(w, b, mean, var, gamma, beta, eps=1e-5):
    a = gamma * (var + eps) ** -0.5
    bias = beta - mean * a + (0 if b is None else b * a)
    return np.einsum("oihw,o->oihw", w, a), bias


def fuse_eps_outside(w, b, mean, var, gamma, beta, eps=1e-5):
    a = gamma / (np.sqrt(var) + eps)
    b = np.zeros_like(mean) if b is None else b
    return w * a[:, None, None, None], (b - mean) * a + beta


def fuse_unscaled_bias(w, b, mean, var, gamma, beta, eps=1e-5):
    a = gamma / np.sqrt(var + eps)
    b = np.zeros_like(mean) if b is None else b
    return w * a[:, None, None, None], b - mean + beta


def fuse_input_axis(w, b, mean, var, gamma, beta, eps=1e-5):
    a = gamma / np.sqrt(var + eps)
    b = np.zeros_like(mean) if b is None else b
    return w * a[None, :, None, None], (b - mean) * a + beta


def fuse_none_bias(w, b, mean, var, gamma, beta, eps=1e-5):
    a = gamma / np.sqrt(var + eps)
    return w * a[:, None, None, None], None if b is None else (b - mean) * a + beta


def fuse_with_torch(w, b, mean, var, gamma, beta, eps=1e-5):
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    t = torch.from_numpy
    wf, bf = fuse_conv_bn_weights(t(w), None if b is None else t(b), t(mean), t(var), eps, t(gamma), t(beta))
    return wf.detach().numpy(), bf.detach().numpy()


# ------------------------------------------------------------------------------------------------------------------
# fuse_conv_bn_module
# ------------------------------------------------------------------------------------------------------------------
def module_deepcopy(conv, bn):
    """Start from a deep copy of conv and give it new Parameters."""
    fused = copy.deepcopy(conv)
    with torch.no_grad():
        a = bn.weight * (bn.running_var + bn.eps).rsqrt()
        bias = torch.zeros_like(bn.running_mean) if conv.bias is None else conv.bias
        fused.weight = nn.Parameter(conv.weight * a[:, None, None, None])
        fused.bias = nn.Parameter(bn.bias + (bias - bn.running_mean) * a)
    return fused


def module_numpy_float32(conv, bn):
    """Through the NumPy fuse_conv_bn, into a default (float32) Conv2d on conv's device."""
    as_np = lambda t: None if t is None else t.detach().cpu().numpy()  # noqa: E731
    w, b = REF["fuse_conv_bn"](as_np(conv.weight), as_np(conv.bias), as_np(bn.running_mean),
                               as_np(bn.running_var), as_np(bn.weight), as_np(bn.bias), bn.eps)
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, device=conv.weight.device)
    with torch.no_grad():
        fused.weight.copy_(torch.from_numpy(w))
        fused.bias.copy_(torch.from_numpy(b))
    return fused


def module_in_place(conv, bn):
    """Fuses into conv itself and returns it."""
    with torch.no_grad():
        a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = torch.zeros_like(bn.running_mean) if conv.bias is None else conv.bias
        conv.bias = nn.Parameter((bias - bn.running_mean) * a + bn.bias)
        conv.weight.mul_(a.reshape(-1, 1, 1, 1))
    return conv


def module_shared_weight(conv, bn):
    """A new Conv2d that shares conv's weight Parameter, then scales it in place (conv changes too)."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                      conv.dilation, conv.groups, dtype=conv.weight.dtype)
    with torch.no_grad():
        a = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        bias = torch.zeros_like(bn.running_mean) if conv.bias is None else conv.bias
        fused.weight = conv.weight
        fused.weight.mul_(a.reshape(-1, 1, 1, 1))
        fused.bias.copy_((bias - bn.running_mean) * a + bn.bias)
    return fused


def _module_variant(eps_outside=False, default_eps=False, unscaled_bias=False, keep_none_bias=False):
    def answer(conv, bn):
        eps = 1e-5 if default_eps else bn.eps
        with torch.no_grad():
            a = bn.weight / ((bn.running_var.sqrt() + eps) if eps_outside else (bn.running_var + eps).sqrt())
            bias = torch.zeros_like(bn.running_mean) if conv.bias is None else conv.bias
            fused = copy.deepcopy(conv)
            fused.weight = nn.Parameter(conv.weight * a.reshape(-1, 1, 1, 1))
            if keep_none_bias and conv.bias is None:
                return fused
            fused.bias = nn.Parameter(bias - bn.running_mean + bn.bias if unscaled_bias else
                                      (bias - bn.running_mean) * a + bn.bias)
        return fused
    return answer


module_eps_outside = named(_module_variant(eps_outside=True), "module_eps_outside")
module_default_eps = named(_module_variant(default_eps=True), "module_default_eps")
module_unscaled_bias = named(_module_variant(unscaled_bias=True), "module_unscaled_bias")
module_no_bias = named(_module_variant(keep_none_bias=True), "module_no_bias")


def module_wrapped(conv, bn):
    """Returns Sequential(conv, bn) copies: no fusion at all."""
    return nn.Sequential(copy.deepcopy(conv), copy.deepcopy(bn))


def module_ready_made(conv, bn):
    return torch.nn.utils.fuse_conv_bn_eval(conv, bn)


def module_to_cpu(conv, bn):
    """Always returns a CPU module (wrong when the inputs live on a GPU)."""
    return REF["fuse_conv_bn_module"](conv, bn).cpu()


# ------------------------------------------------------------------------------------------------------------------
# fuse_sequential
# ------------------------------------------------------------------------------------------------------------------
def _pairs(model):
    layers = list(model.children())
    i = 0
    while i < len(layers):
        pair = isinstance(layers[i], nn.Conv2d) and i + 1 < len(layers) and isinstance(layers[i + 1], nn.BatchNorm2d)
        yield layers[i], (layers[i + 1] if pair else None)
        i += 2 if pair else 1


def seq_named_deepcopy(model):
    """Deep-copies the whole model first, keeps the layer names (an OrderedDict)."""
    model = copy.deepcopy(model)
    names = dict((id(m), n) for n, m in model.named_children())
    return nn.Sequential(OrderedDict((names[id(layer)], module_deepcopy(layer, bn) if bn is not None else layer)
                                     for layer, bn in _pairs(model)))


def seq_float32(model):
    return REF["fuse_sequential"](model).float()


def seq_shares_unchanged_layers(model):
    """Reuses the layer objects it does not change (allowed: the input is not modified)."""
    return nn.Sequential(*(REF["fuse_conv_bn_module"](layer, bn) if bn is not None else layer
                           for layer, bn in _pairs(model)))


def seq_one_pair_only(model):
    out, done = [], False
    for layer, bn in _pairs(model):
        if bn is not None and not done:
            out.append(REF["fuse_conv_bn_module"](layer, bn))
            done = True
        else:
            out += [copy.deepcopy(layer)] + ([copy.deepcopy(bn)] if bn is not None else [])
    return nn.Sequential(*out)


def seq_batchnorm_left_in(model):
    out = []
    for layer, bn in _pairs(model):
        out += [REF["fuse_conv_bn_module"](layer, bn), copy.deepcopy(bn)] if bn is not None else [copy.deepcopy(layer)]
    return nn.Sequential(*out)


def seq_in_place(model):
    """Replaces the pairs inside the input model and returns it."""
    i = 0
    while i < len(model) - 1:
        if isinstance(model[i], nn.Conv2d) and isinstance(model[i + 1], nn.BatchNorm2d):
            model[i] = REF["fuse_conv_bn_module"](model[i], model[i + 1])
            del model[i + 1]
        i += 1
    return model


def seq_every_bn_into_last_conv(model):
    """Folds every BatchNorm into the last Conv2d seen, even across a ReLU."""
    out, last = [], None
    for layer in model:
        if isinstance(layer, nn.BatchNorm2d) and last is not None:
            out[last] = REF["fuse_conv_bn_module"](out[last], layer)
            continue
        out.append(copy.deepcopy(layer))
        if isinstance(layer, nn.Conv2d):
            last = len(out) - 1
    return nn.Sequential(*out)


def seq_only_convs(model):
    return nn.Sequential(*(REF["fuse_conv_bn_module"](layer, bn) for layer, bn in _pairs(model) if bn is not None))


def seq_ready_made(model):
    from torch.ao.quantization import fuse_modules

    names = [n for n, _ in model.named_children()]
    pairs = [[names[i], names[i + 1]] for i in range(len(names) - 1)
             if isinstance(model[i], nn.Conv2d) and isinstance(model[i + 1], nn.BatchNorm2d)]
    return fuse_modules(model, pairs)


def seq_fx(model):
    return torch.fx.experimental.optimization.fuse(model)


PASSES = [
    ("batchnorm2d_eval", REF["batchnorm2d_eval"]),
    ("batchnorm2d_eval", bn_channel_loop_float32),
    ("batchnorm2d_eval", bn_reshape),
    ("batchnorm2d_eval", bn_moveaxis),
    ("fuse_conv_bn", REF["fuse_conv_bn"]),
    ("fuse_conv_bn", fuse_loops_float32),
    ("fuse_conv_bn", fuse_einsum),
    ("fuse_conv_bn_module", REF["fuse_conv_bn_module"]),
    ("fuse_conv_bn_module", module_deepcopy),
    ("fuse_conv_bn_module", module_numpy_float32),
    ("fuse_sequential", REF["fuse_sequential"]),
    ("fuse_sequential", seq_named_deepcopy),
    ("fuse_sequential", seq_float32),
    ("fuse_sequential", seq_shares_unchanged_layers),
]

FAILS = [
    ("batchnorm2d_eval", bn_eps_outside, ["eps outside the square root"]),
    ("batchnorm2d_eval", bn_batch_statistics, ["batch statistics"]),
    ("batchnorm2d_eval", bn_width_axis, ["statistics broadcast along the width axis"]),
    ("batchnorm2d_eval", bn_variance_as_std, ["variance used as the standard deviation"]),
    ("batchnorm2d_eval", bn_torch, ["from scratch", "torch"]),
    ("fuse_conv_bn", fuse_eps_outside, ["eps outside the square root"]),
    ("fuse_conv_bn", fuse_unscaled_bias, ["unscaled bias"]),
    ("fuse_conv_bn", fuse_input_axis, ["scale on the input-channel axis"]),
    ("fuse_conv_bn", fuse_none_bias, ["no bias when b is None"]),
    ("fuse_conv_bn", fuse_with_torch, ["from scratch", "torch.nn.utils.fusion"]),
    ("fuse_conv_bn_module", module_in_place, ["modified the input `conv` in place"]),
    ("fuse_conv_bn_module", module_shared_weight, ["modified the input `conv` in place"]),
    ("fuse_conv_bn_module", module_eps_outside, ["eps outside the square root"]),
    ("fuse_conv_bn_module", module_default_eps, ["default eps instead of bn.eps"]),
    ("fuse_conv_bn_module", module_unscaled_bias, ["unscaled bias"]),
    ("fuse_conv_bn_module", module_no_bias, ["no bias when the conv has none"]),
    ("fuse_conv_bn_module", module_wrapped, ["expected a single nn.Conv2d"]),
    ("fuse_conv_bn_module", module_ready_made, ["torch.nn.utils.fuse_conv_bn_eval"]),
    ("fuse_sequential", seq_one_pair_only, ["fused one pair only"]),
    ("fuse_sequential", seq_batchnorm_left_in, ["BatchNorm left in"]),
    ("fuse_sequential", seq_in_place, ["modified the input `model` in place"]),
    ("fuse_sequential", seq_every_bn_into_last_conv, ["folded a BatchNorm across a ReLU"]),
    ("fuse_sequential", seq_only_convs, ["other layers dropped"]),
    ("fuse_sequential", seq_ready_made, ["torch.ao.quantization"]),
    ("fuse_sequential", seq_fx, ["torch.fx.experimental.optimization"]),
]


def _id(p):
    return f"{p[0]}-{getattr(p[1], '__name__', '?')}"


test_correct_answer_passes, test_bug_fails_with_named_mistake = answer_tests(PASSES, FAILS, REF)


# ------------------------------------------------------------------------------------------------------------------
# the module exercises as the isolated grader runs them: everything through module_codec as plain data
# ------------------------------------------------------------------------------------------------------------------
def codec_answer(ex, fn, device: str = "cpu"):
    """An answer proxy like the isolated grader's: module arguments cross as ``encode_module`` plain data and are
    rebuilt with ``decode_module`` on ``device``; the result comes back through the exercise's ``encode``."""

    def ship(value):
        if isinstance(value, nn.Module):
            return module_codec.decode_module(to_plain(module_codec.encode_module(value)), device)
        return copy.deepcopy(value)

    def answer(call):
        args = tuple(ship(a) for a in call.args)
        kwargs = {k: ship(v) for k, v in call.kwargs.items()}
        try:
            raw = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            return Outcome(error=f"{type(exc).__name__}: {exc}")
        try:
            return Outcome(value=to_plain(ex.encode(raw)))
        except Exception as exc:  # noqa: BLE001
            return Outcome(error=f"returned something the grader cannot read ({exc})")

    return answer


def grade_through_codec(name, fn, device="cpu"):
    ex = registry.get(name)
    cases = visible_cases(ex) + hidden_cases(ex, SEED)
    return grade_exercise(ex, codec_answer(ex, fn, device), cases, device, scan_function(fn, ex.forbidden_names),
                          shrink_budget=20)


@pytest.mark.parametrize("case", [("fuse_conv_bn_module", REF["fuse_conv_bn_module"]),
                                  ("fuse_conv_bn_module", module_numpy_float32),
                                  ("fuse_sequential", REF["fuse_sequential"])], ids=_id)
def test_through_the_codec_correct_answers_pass(case):
    result = grade_through_codec(*case)
    assert result.score == result.max_score, result.text


@pytest.mark.parametrize("case", [("fuse_conv_bn_module", module_in_place, "modified the input `conv` in place"),
                                  ("fuse_conv_bn_module", module_eps_outside, "eps outside the square root"),
                                  ("fuse_sequential", seq_in_place, "modified the input `model` in place"),
                                  ("fuse_sequential", seq_one_pair_only, "fused one pair only")], ids=_id)
def test_through_the_codec_bugs_fail(case):
    name, fn, mention = case
    result = grade_through_codec(name, fn)
    assert result.score < result.max_score and mention in result.text, result.text


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("name", ["fuse_conv_bn_module", "fuse_sequential"])
def test_on_cuda_the_fused_module_must_stay_on_the_gpu(name):
    assert_passes(name, REF[name], device="cuda")
    result = grade_through_codec(name, REF[name], device="cuda")
    assert result.score == result.max_score, result.text
    wrong = named(lambda *a: REF[name](*a).cpu(), "moved_to_cpu")
    result = grade_through_codec(name, wrong, device="cuda")
    assert result.score == 0 and "on the inputs' device: expected True, got False" in result.text, result.text
    assert "module on another device than its inputs" in result.text, result.text


# ------------------------------------------------------------------------------------------------------------------
# the forbidden fusion helpers
# ------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("source, caught", [
    ("from torch.nn.utils.fusion import fuse_conv_bn_eval\n", "torch.nn.utils.fusion"),
    ("import torch\ny = torch.nn.utils.fuse_conv_bn_weights(w, b, m, v, e, g, bt)\n", "torch.nn.utils.fuse_conv_bn"),
    ("import torch\nm = torch.ao.quantization.fuse_modules(model, [['0', '1']])\n", "torch.ao.quantization"),
    ("from torch.quantization import fuse_modules\n", "torch.quantization"),
    ("import torch.fx.experimental.optimization as o\nm = o.fuse(model)\n", "torch.fx.experimental.optimization"),
    ("import torch\nm = torch.jit.freeze(torch.jit.script(model))\n", "torch.jit.freeze"),
])
def test_fusion_helpers_are_forbidden_in_the_torch_exercises(source, caught):
    for name in ("fuse_conv_bn_module", "fuse_sequential"):
        found = scan_source(source, registry.get(name).forbidden_names)
        assert any(caught in f for f in found), (name, found)
    assert not scan_source("import torch\nfrom torch import nn\nf = nn.Conv2d(1, 2, 3)\n",
                           registry.get("fuse_sequential").forbidden_names)


# ------------------------------------------------------------------------------------------------------------------
# module_codec
# ------------------------------------------------------------------------------------------------------------------
def _every_layer(dtype):
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=(2, 1), padding=1, dilation=1, groups=2, bias=False, padding_mode="reflect"),
        nn.BatchNorm2d(4, eps=1e-3, momentum=None),
        nn.ReLU(),
        nn.Sequential(OrderedDict(up=nn.ConvTranspose2d(4, 3, 2, stride=2, output_padding=0), norm=nn.BatchNorm2d(
            3, affine=False), pool=nn.MaxPool2d(2, stride=1, ceil_mode=True))),
        nn.AvgPool2d(2, count_include_pad=False),
        nn.Dropout(0.25),
        nn.Identity(),
        nn.AdaptiveAvgPool2d((2, 2)),
        nn.Flatten(),
        nn.Linear(12, 5),
    ).to(dtype)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                m.num_batches_tracked.fill_(7)
    return model.eval()


def _plain_only(value) -> bool:
    if value is None or type(value) in (str, int, float, bool):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype.kind in "biuf"
    return type(value) is tuple and all(_plain_only(v) for v in value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_codec_round_trip_of_every_allowed_layer(dtype):
    model = _every_layer(dtype)
    model[5].train()                                  # a per-layer training flag survives too
    plain = module_codec.encode_module(model)
    assert _plain_only(plain) and to_plain(plain) is not None
    back = module_codec.decode_module(plain, "cpu", arguments=False)
    assert [type(m) for m in back.modules()] == [type(m) for m in model.modules()]
    assert [m.training for m in back.modules()] == [m.training for m in model.modules()]
    assert [m.extra_repr() for m in back.modules()] == [m.extra_repr() for m in model.modules()]
    assert module_codec.fingerprint(back) == module_codec.fingerprint(model)
    state, state_back = model.state_dict(), back.state_dict()
    assert list(state) == list(state_back)
    assert all(torch.equal(state[k], state_back[k]) and state[k].dtype == state_back[k].dtype for k in state)
    x = torch.randn(2, 2, 9, 8, dtype=dtype)
    model.eval(), back.eval()
    with torch.no_grad():
        assert torch.equal(model(x), back(x))
    assert module_codec.plain_device(plain) == "cpu"


@pytest.fixture
def no_arguments():
    """Forget the arguments registered by earlier calls (they are weak references; a cycle could keep one alive)."""
    module_codec._ARGUMENTS.clear()


def _judged(answer, call):
    """What the trusted side concludes from the answer's plain data (``encode_answer`` -> ``decode_answer``)."""
    return module_codec.decode_answer(to_plain(module_codec.encode_answer(answer)), "cpu", call)[2:]


def test_codec_round_trip_of_a_module_argument_keeps_its_tag_and_its_state_is_judged_here(no_arguments):
    conv = module_codec.mark_argument(nn.Conv2d(1, 2, 3).double().eval(), "conv", "t0k", (("k", 3),))
    plain = to_plain(module_codec.encode_module(conv))
    received = module_codec.decode_module(plain, "cpu")
    assert module_codec.argument_meta(received) == {"k": 3}
    call = Call((conv,))
    assert _judged(copy.deepcopy(received), call) == ("", "cpu")
    with torch.no_grad():
        received.weight.mul_(2)
    assert _judged(nn.Conv2d(1, 2, 3), call)[0] == "modified the input `conv` in place"


def test_deep_copies_of_a_template_are_the_arguments_and_their_copies_are_not(no_arguments):
    bn = module_codec.mark_argument(nn.BatchNorm2d(3).eval(), "bn", "t1k")
    argument = copy.deepcopy(bn)                   # what local_answer hands to the student
    own_copy = copy.deepcopy(argument)             # what a student may make
    call = Call((bn,))
    assert _judged(own_copy, call) == ("", "cpu")
    own_copy.eps = 0.5                             # the student's own copy may change
    assert _judged(own_copy, call) == ("", "cpu")
    argument.eps = 0.5                             # ... but the argument may not: changing its eps is a mutation
    assert "modified the input `bn` in place" in _judged(own_copy, call)[0]


def test_a_forged_state_cannot_hide_a_mutation_it_does_not_match(no_arguments):
    conv = module_codec.mark_argument(nn.Conv2d(1, 1, 1).double(), "conv", "t2k")
    forged = (module_codec.ANSWER, module_codec.encode_module(nn.Conv2d(1, 1, 1).double()),
              (("conv", "t2k", "cpu", module_codec.fingerprint(nn.Conv2d(1, 1, 1).double())),))
    assert module_codec.decode_answer(to_plain(forged), "cpu", Call((conv,)))[2] == \
        "modified the input `conv` in place"


class MyConv(nn.Conv2d):
    pass


@pytest.mark.parametrize("model, named", [
    (nn.Sequential(nn.Conv2d(1, 1, 1), nn.GELU()), "GELU"),
    (nn.Sequential(MyConv(1, 1, 1)), "MyConv"),
    (nn.Sequential(nn.Sequential(nn.Conv2d(1, 1, 1), nn.Tanh())), "Tanh"),
    (torch.ao.nn.intrinsic.ConvBn2d(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)), "ConvBn2d"),
])
def test_codec_rejects_unknown_layer_types(model, named):
    with pytest.raises(ValueError, match=f"{named}.*may only contain: Sequential, Conv2d"):
        module_codec.encode_module(model)
    with pytest.raises(TypeError, match="expected an nn.Module"):
        module_codec.encode_answer(np.zeros(3))


def _tamper(plain, path, value):
    """``plain`` with the element at index ``path`` (a tuple of indices) replaced by ``value``."""
    if not path:
        return value
    i, rest = path[0], path[1:]
    return plain[:i] + (_tamper(plain[i], rest, value),) + plain[i + 1:]


GOOD = module_codec.encode_module(nn.Sequential(nn.Conv2d(2, 3, 3), nn.ReLU()).eval())
# GOOD = (FORMAT, ("module", "Sequential", (), (), (), None, False, (("0", conv), ("1", relu))), None)
CONV = (1, 7, 0, 1)        # path of the conv's tree


@pytest.mark.parametrize("plain, message", [
    (_tamper(GOOD, CONV + (1,), "Conv2dEvil"), "layer type 'Conv2dEvil' .* is not allowed"),
    (_tamper(GOOD, (1, 7, 1, 1, 1), "LeakyReLU"), "layer type 'LeakyReLU' .* is not allowed"),
    (_tamper(GOOD, CONV + (3, 0, 1), np.zeros((3, 2, 5, 5))), r"has shape \(3, 2, 5, 5\), but this layer needs"),
    (_tamper(GOOD, CONV + (3,), GOOD[1][7][0][1][3][:1]), "has parameters \\['weight'\\], but a Conv2d"),
    (_tamper(GOOD, CONV + (3, 0, 1), np.full((3, 2, 3, 3), np.nan)), "NaN or Inf"),
    (_tamper(GOOD, CONV + (3, 0, 1), np.zeros((3, 2, 3, 3), np.int64)), "expected float32 or float64"),
    (_tamper(GOOD, CONV + (2,), GOOD[1][7][0][1][2] + (("evil", 1),)), "needs exactly the hyper-parameters"),
    (_tamper(GOOD, CONV + (2, 0, 1), "3"), "cannot build Conv2d"),
    (_tamper(GOOD, (1, 7, 0, 0), "0.weight"), "invalid layer name"),
    (_tamper(GOOD, (0,), "pickle"), "not an encoded model"),
    (_tamper(GOOD, (1, 7), (("0", ("module", "ReLU")),)), "malformed module encoding"),
])
def test_codec_rejects_malformed_or_hostile_data(plain, message):
    with pytest.raises(ValueError, match=message):
        module_codec.decode_module(plain, "cpu", arguments=False)


def test_codec_reads_a_layers_tensors_in_any_order_and_nothing_else():
    """The decoder's fast path takes the slots in the layer's own order; any other order is read the long way, and
    anything else (a duplicate, a name that is not a string, a tensor where the layer has none) is refused."""
    weight, bias = GOOD[1][7][0][1][3]
    swapped = module_codec.decode_module(_tamper(GOOD, CONV + (3,), (bias, weight)), "cpu", arguments=False)
    straight = module_codec.decode_module(GOOD, "cpu", arguments=False)
    assert all(torch.equal(a, b) for a, b in zip(swapped.state_dict().values(), straight.state_dict().values()))
    for given, message in [((weight, weight), "duplicate names"), ((weight, (0, bias[1])), "malformed parameters"),
                           ((weight, ("bias", None)), r"has parameters \['weight'\], but a Conv2d")]:
        with pytest.raises(ValueError, match=message):
            module_codec.decode_module(_tamper(GOOD, CONV + (3,), given), "cpu", arguments=False)
    no_bias = module_codec.encode_module(nn.Sequential(nn.Conv2d(2, 3, 3, bias=False)))
    extra = _tamper(no_bias, CONV + (3, 1), ("bias", np.zeros(3, np.float32)))
    with pytest.raises(ValueError, match=r"has parameters \['bias', 'weight'\], but a Conv2d"):
        module_codec.decode_module(extra, "cpu", arguments=False)


def test_codec_limits_depth_and_size():
    deep = nn.Identity()
    for _ in range(module_codec.MAX_DEPTH + 2):
        deep = nn.Sequential(deep)
    with pytest.raises(ValueError, match="nested more than"):
        module_codec.encode_module(deep)
    tree = module_codec.encode_module(nn.Identity())[1]
    for _ in range(module_codec.MAX_DEPTH + 2):
        tree = ("module", "Sequential", (), (), (), None, False, (("0", tree),))
    with pytest.raises(ValueError, match="nested more than"):
        module_codec.decode_module((module_codec.FORMAT, tree, None))


def test_module_codec_is_standalone_and_cheap_to_import():
    """The isolated grader copies module_codec.py into its sandbox: it may import only the standard library, NumPy
    and torch, and torch only on first use (the exercise specs import it and must load without torch)."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    tree = ast.parse(Path(module_codec.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree)), "no relative imports"
    assert imported <= {"__future__", "collections", "hashlib", "math", "warnings", "weakref", "typing", "numpy",
                        "torch"}, imported
    code = ("import sys, autograder.module_codec, autograder.exercises.a06_conv_bn_fusion\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------------------------------------------------------
# feature_maps: forward hooks on every Conv2d
# ------------------------------------------------------------------------------------------------------------------
def _hooked(model, x, select=lambda m: isinstance(m, nn.Conv2d), modules=None, keep=None, remove=True):
    """One implementation of the hook recipe, with its knobs: which modules, what each hook keeps, removal."""
    maps, handles = OrderedDict(), []
    keep = keep or (lambda inputs, output: output.detach().clone())
    for name, m in (modules or model.named_modules)():
        if select(m):
            handles.append(m.register_forward_hook(
                lambda mod, inputs, output, name=name: maps.__setitem__(name, keep(inputs, output))))
    with torch.no_grad():
        model(x)
    if remove:
        for h in handles:
            h.remove()
    return maps


def maps_float32_copy(model, x):
    """On a float32 deep copy of the model (the original is left alone), float32 outputs."""
    return _hooked(copy.deepcopy(model).float(), x.float())


def maps_one_hook_everywhere(model, x):
    """One hook on every module that filters by type, names looked up afterwards; removed in a finally block."""
    names = {id(m): n for n, m in model.named_modules()}
    maps, handles = {}, []

    def hook(module, inputs, output):
        if type(module) is nn.Conv2d:
            maps[names[id(module)]] = output.clone()

    try:
        handles = [m.register_forward_hook(hook) for m in model.modules()]
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return maps


def maps_top_level_only(model, x):
    return _hooked(model, x, modules=model.named_children)


def maps_inputs(model, x):
    return _hooked(model, x, keep=lambda inputs, output: inputs[0].detach().clone())


def maps_hooks_left(model, x):
    return _hooked(model, x, remove=False)


def maps_no_copy(model, x):
    return _hooked(model, x, keep=lambda inputs, output: output)


def maps_every_module(model, x):
    return _hooked(model, x, select=lambda m: True)


MAPS_PASSES = [
    ("feature_maps", REF["feature_maps"]),
    ("feature_maps", maps_float32_copy),
    ("feature_maps", maps_one_hook_everywhere),
]

MAPS_FAILS = [
    ("feature_maps", maps_top_level_only, ["hooks on the top level only"]),
    ("feature_maps", maps_inputs, ["inputs instead of outputs"]),
    ("feature_maps", maps_no_copy, ["outputs kept without a copy"]),
    ("feature_maps", maps_every_module, ["every module recorded"]),
]


test_feature_maps_correct_answers_pass, test_feature_maps_bugs_fail_with_named_mistake = answer_tests(
    MAPS_PASSES, MAPS_FAILS, REF)


def test_feature_maps_hooks_left_are_feedback_not_points():
    """Hooks left on the model are seen only where the student's code runs: a note, never points."""
    result = grade("feature_maps", maps_hooks_left, "cpu")
    assert result.score == result.max_score, result.text
    assert "forward hooks left on `model`" in result.text and "handle.remove()" in result.text, result.text


@pytest.mark.parametrize("case", [MAPS_PASSES[0], MAPS_FAILS[0], MAPS_FAILS[2]], ids=_id)
def test_feature_maps_through_the_codec(case):
    """The model crosses as plain data (rebuilt and registered as the call's argument, as in the sandbox)."""
    result = grade_through_codec(case[0], case[1])
    if len(case) == 2:
        assert result.score == result.max_score, result.text
    else:
        assert result.score < result.max_score and case[2][0] in result.text, result.text


def test_tensor_arguments_reach_the_sandbox_as_tensors():
    from autograder.isolation import protocol, remote, worker

    x = torch.arange(6, dtype=torch.float64).reshape(1, 1, 2, 3)
    frame = remote.pack_call({"op": "call", "args": (x,)})
    header_len = int.from_bytes(frame[4:8], "big")
    import json

    header = json.loads(frame[8:8 + header_len])
    blobs, offset = [], 8 + header_len
    for n in header["b"]:
        blobs.append(frame[offset:offset + n])
        offset += n
    (got,) = protocol.unpack(header["m"], blobs, worker._resolve)["args"]
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float64 and torch.equal(got, x)
    with pytest.raises(protocol.ProtocolError):
        protocol.unpack(header["m"], blobs, None)

"""module_codec builds decoded layers as copies of cached pristine prototypes: every decode must still be a fresh,
independent model, equal to what was encoded, and the cache must never mix hyper-parameters torch tells apart."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from autograder import module_codec as mc  # noqa: E402


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=torch.float64), nn.BatchNorm2d(3, dtype=torch.float64),
                         nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(12, 2, dtype=torch.float64)).eval()


def _same(a, b) -> bool:
    return mc.same_state(a, b) and a[6] == b[6]


def test_decoded_models_round_trip_and_run_like_the_original():
    model = _model()
    plain = mc.encode_module(model)
    for _ in range(3):
        decoded = mc.decode_module(plain)
        assert _same(mc.encode_module(decoded)[1], plain[1])
        x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
        assert torch.equal(decoded(x), model(x))


def test_each_decode_is_an_independent_object():
    plain = mc.encode_module(_model())
    a, b = mc.decode_module(plain), mc.decode_module(plain)
    assert all(x is not y for x, y in zip(a.modules(), b.modules()))
    a[0].register_forward_hook(lambda *args: None)
    a[0].weight.data.add_(1)
    a[1].running_mean.add_(1)
    a[0].stride = (2, 2)
    a.append(nn.ReLU())
    a[2].inplace = True
    c = mc.decode_module(plain)
    for fresh in (b, c):
        assert not fresh[0]._forward_hooks and len(fresh) == 6 and fresh[0].stride == (1, 1)
        assert fresh[2].inplace is False
        assert _same(mc.encode_module(fresh)[1], plain[1])


def _dropout(p) -> tuple:
    tree = ("module", "Dropout", (("p", p), ("inplace", False)), (), (), None, False, ())
    return (mc.FORMAT, tree, None)


def test_values_equal_in_python_but_not_to_torch_never_share_a_prototype():
    assert type(mc.decode_module(_dropout(True)).p) is bool
    assert type(mc.decode_module(_dropout(1)).p) is int
    assert type(mc.decode_module(_dropout(1.0)).p) is float


def test_rejected_hyper_parameters_are_rejected_every_time_and_the_cache_stays_bounded():
    for _ in range(2):
        with pytest.raises(ValueError, match="cannot build Dropout"):
            mc.decode_module(_dropout(2.0))
    for i in range(mc.MAX_PROTOTYPES + 20):
        tree = ("module", "Flatten", (("start_dim", 1), ("end_dim", -1 - i)), (), (), None, False, ())
        mc.decode_module((mc.FORMAT, tree, None))
    assert len(mc._PROTOTYPES) <= mc.MAX_PROTOTYPES


def test_hyper_parameters_checked_once_are_still_checked_when_only_equal_in_python():
    """Checks of an answer's hyper-parameters are skipped for a tuple already accepted, by its ``repr``: a tuple
    equal to it in Python with a value the checks refuse (``True`` where an int must be, ``inf``) is refused."""
    plain = mc.encode_module(nn.Conv2d(2, 3, (1, 3), dtype=torch.float64))
    module, name, hyper, params, buffers, device, training, children = plain[1]

    def decoded(new_hyper):
        return mc.decode_module((mc.FORMAT, (module, name, new_hyper, params, buffers, device, training, children),
                                 None))

    for _ in range(2):
        assert decoded(hyper).kernel_size == (1, 3)
    sneaky = tuple((k, (True, 3) if k == "kernel_size" else v) for k, v in hyper)
    assert sneaky == hyper and (name, repr(sneaky)) not in mc._CHECKED_HYPER
    with pytest.raises(ValueError, match="kernel_size has an unexpected value"):
        decoded(sneaky)
    for i in range(mc.MAX_CHECKED_HYPER + 20):
        tree = ("module", "Flatten", (("start_dim", 1), ("end_dim", -2 - i)), (), (), None, False, ())
        mc.decode_module((mc.FORMAT, tree, None))
    assert len(mc._CHECKED_HYPER) <= mc.MAX_CHECKED_HYPER


def test_tensors_are_still_checked_against_the_prototype_shapes():
    plain = mc.encode_module(nn.Conv2d(2, 3, 3, dtype=torch.float64))
    module, name, hyper, params, buffers, device, training, children = plain[1]
    bad = tuple((k, np.zeros((3, 2, 5, 5)) if k == "weight" else v) for k, v in params)
    with pytest.raises(ValueError, match="has shape"):
        mc.decode_module((mc.FORMAT, (module, name, hyper, bad, buffers, device, training, children), None))
    missing = tuple((k, None if k == "bias" else v) for k, v in params)
    with pytest.raises(ValueError, match="parameters"):
        mc.decode_module((mc.FORMAT, (module, name, hyper, missing, buffers, device, training, children), None))


def _layers(model: nn.Module) -> list:
    return [(name, type(m), m.training, [(k, None if t is None else (t.dtype, t.requires_grad))
                                         for k, t in (*m._parameters.items(), *m._buffers.items())])
            for name, m in model.named_modules()]


def _as_message(plain):
    """``plain`` sent as a call argument and rebuilt by the sandbox's resolver (``protocol.MessageTree``)."""
    import json

    from autograder.isolation import protocol

    blobs: list = []
    tree = json.loads(protocol.json_text({"$module": protocol.to_tree(plain, blobs)}))
    return protocol.from_tree(tree, blobs, lambda kind, payload: mc.rebuild_message(*payload))


def _settings(model: nn.Module) -> list:
    """Every layer's plain attributes (hyper-parameters as torch keeps them: a tuple stays a tuple)."""
    return [(name, {k: v for k, v in vars(m).items() if not k.startswith("_")}) for name, m in model.named_modules()]


def test_the_sandbox_rebuilds_the_graders_arguments_like_the_checked_decode():
    """``rebuild_message`` and ``rebuild_argument`` (the sandbox's shortcuts for the grader's own encodings, from
    the message and from plain data) give the very model, tag and registration that ``decode_module`` gives, on
    every module argument of 06's grading cases."""
    from autograder import registry
    from autograder.compare import to_plain
    from autograder.isolation.grader import grading_cases

    checked = 0
    for ex in registry.assignments()["06-conv-bn-fusion"]:
        for case in grading_cases(ex, 4242, 1):
            for value in (*case.call.args, *case.call.kwargs.values()):
                if not isinstance(value, nn.Module):
                    continue
                plain = to_plain(mc.encode_module(value))
                message = _as_message(plain)        # what the sandbox rebuilds from the message itself
                fast, slow = mc.rebuild_argument(plain), mc.decode_module(plain)
                assert mc.fingerprint(message) == mc.fingerprint(fast) == mc.fingerprint(slow) == \
                    mc.fingerprint(value)
                assert _layers(message) == _layers(fast) == _layers(slow)
                assert _settings(message) == _settings(fast) == _settings(slow)
                tags = [m.__dict__[mc.TAG_ATTR] for m in (fast, slow)]
                assert [(t.name, t.token, t.state, t.meta) for t in tags] == \
                    [(t.name, t.token, t.state, t.meta) for t in tags[::-1]] and tags[0].state == "argument"
                registered = [(name, token, ref()) for name, token, ref, _ in mc._ARGUMENTS[-3:]]
                assert registered == [(tags[0].name, tags[0].token, module) for module in (message, fast, slow)]
                assert len({device for *_, device in mc._ARGUMENTS[-3:]}) == 1     # "cpu" (None: no tensor)
                assert message.__dict__[mc.TAG_ATTR].meta == tags[0].meta
                checked += 1
    assert checked > 150


def test_an_argument_rebuilt_from_its_message_owns_its_tensors():
    from autograder.compare import to_plain

    plain = to_plain(mc.encode_module(_model()))
    a, b = _as_message(plain), _as_message(plain)
    for ta, tb in zip(mc.tensors_of(a), mc.tensors_of(b)):
        assert ta.is_contiguous() and ta.data_ptr() != tb.data_ptr()
    with torch.no_grad():
        a[0].weight.add_(1.0)
    assert mc.fingerprint(b) == mc.fingerprint(_as_message(plain)) != mc.fingerprint(a)


def test_what_the_grader_did_not_encode_gets_the_checked_decode_and_its_message():
    plain = mc.encode_module(_model())
    tree = list(plain[1])
    tree[1] = "Bilinear"
    with pytest.raises(ValueError, match="not allowed"):
        mc.rebuild_argument((mc.FORMAT, tuple(tree), None))
    with pytest.raises(ValueError, match="not allowed"):
        _as_message((mc.FORMAT, tuple(tree), None))
    bad = ("module", "Conv2d", plain[1][7][0][1][2], (("weight", np.zeros((1, 1))), ("bias", None)), (), "cpu",
           False, ())
    with pytest.raises(ValueError):
        mc.rebuild_argument((mc.FORMAT, bad, None))


@pytest.mark.parametrize("cls, kwargs", [
    (nn.Conv2d, dict(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1, dilation=1, groups=1,
                     bias=True, padding_mode="zeros")),
    (nn.Conv2d, dict(in_channels=4, out_channels=4, kernel_size=(1, 3), stride=1, padding="same", dilation=2,
                     groups=2, bias=False, padding_mode="reflect")),
    (nn.ConvTranspose2d, dict(in_channels=2, out_channels=3, kernel_size=2, stride=2, padding=0, output_padding=1,
                              groups=1, bias=True, dilation=1, padding_mode="zeros")),
    (nn.BatchNorm2d, dict(num_features=5, eps=1e-3, momentum=0.2, affine=True, track_running_stats=True)),
    (nn.BatchNorm2d, dict(num_features=2, eps=1e-5, momentum=None, affine=False, track_running_stats=False)),
    (nn.Linear, dict(in_features=6, out_features=2, bias=True)),
])
def test_layers_built_without_random_initialisation_are_otherwise_what_the_constructor_builds(cls, kwargs):
    """``_construct`` skips ``reset_parameters`` (nothing to write on meta tensors): the same class, the same
    attributes, the same parameters and buffers (shape, dtype, device, parameter or not, gradient flag)."""
    plain, fast = cls(**kwargs, device="meta"), mc._construct(cls, kwargs, True, cls.__name__, "")
    assert type(fast) is cls and set(vars(fast)) == set(vars(plain))

    def described(layer):
        out = {}
        for k, v in vars(layer).items():
            if k in ("_parameters", "_buffers"):
                out[k] = {n: None if t is None else (type(t), t.shape, t.dtype, t.device, t.requires_grad)
                          for n, t in v.items()}
            elif not isinstance(v, torch.Tensor):
                out[k] = v
        return out

    assert described(fast) == described(plain)


def test_a_message_rebuilds_tuples_as_tuples():
    """JSON has no tuples: a pooling layer keeps its hyper-parameters as given, so the message's lists must become
    tuples again (``kernel_size == (2, 2)`` in the student's code)."""
    model = nn.Sequential(nn.MaxPool2d((2, 2), stride=(2, 1)), nn.AvgPool2d((1, 2)), nn.AdaptiveAvgPool2d((1, 1)))
    plain = mc.encode_module(model)
    assert _settings(_as_message(plain)) == _settings(mc.decode_module(plain)) == _settings(model)
    assert _as_message(plain)[0].kernel_size == (2, 2)

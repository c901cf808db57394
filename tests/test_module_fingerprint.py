"""module_codec's model fingerprint (how an argument is found changed in place) and its walk of a model's tensors:
equal models give equal digests; any change that matters for inference gives another; every tensor is seen once."""
import copy

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from autograder import module_codec as mc  # noqa: E402


def _model() -> nn.Module:
    torch.manual_seed(0)
    block = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1, dtype=torch.float64), nn.BatchNorm2d(3, dtype=torch.float64))
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, dtype=torch.float64), nn.ReLU(), block,
                         nn.Flatten(), nn.Linear(48, 2, dtype=torch.float64)).eval()


def _changes():
    """(what, change applied to a copy of the model): each must change the fingerprint."""
    def weight_in_place(m):
        with torch.no_grad():
            m[0].weight[0, 0, 0, 0] += 1e-12

    def weight_replaced_by_float32(m):
        m[0].weight = nn.Parameter(m[0].weight.detach().float())

    def buffer_in_place(m):
        m[2][1].running_var.mul_(2.0)

    def hyper_parameter(m):
        m[0].stride = (2, 2)

    def eps(m):
        m[2][1].eps = 1e-3

    def bias_removed(m):
        m[0].bias = None

    def layer_swapped(m):
        m[1] = nn.Identity()

    def bfloat16_weight(m):        # NumPy has no bfloat16: the bytes are read through torch
        m[4].weight = nn.Parameter(m[4].weight.detach().to(torch.bfloat16))

    return [weight_in_place, weight_replaced_by_float32, buffer_in_place, hyper_parameter, eps, bias_removed,
            layer_swapped, bfloat16_weight]


def test_equal_models_have_equal_fingerprints_in_any_mode():
    a, b = _model(), _model()
    b.train()
    assert mc.fingerprint(a) == mc.fingerprint(b) == mc.fingerprint(copy.deepcopy(a))


@pytest.mark.parametrize("change", _changes(), ids=lambda f: f.__name__)
def test_every_change_that_matters_changes_the_fingerprint(change):
    model = _model()
    changed = copy.deepcopy(model)
    change(changed)
    assert mc.fingerprint(changed) != mc.fingerprint(model)


def test_a_non_contiguous_tensor_has_the_fingerprint_of_its_contiguous_copy():
    a, b = _model(), _model()
    with torch.no_grad():
        b[4].weight = nn.Parameter(b[4].weight.detach().t().contiguous().t())
    assert not b[4].weight.is_contiguous()
    assert mc.fingerprint(a) == mc.fingerprint(b)


def test_the_walk_sees_what_parameters_and_buffers_list_each_once():
    model = _model()
    shared = nn.Conv2d(3, 3, 1, dtype=torch.float64)
    model.append(nn.Sequential(shared, shared))        # the same layer twice: its tensors once
    model[2][1].running_mean = None                     # an empty slot is left out
    listed = list(model.parameters()) + list(model.buffers())
    walked = mc.tensors_of(model)
    assert len(walked) == len(listed) and {id(t) for t in walked} == {id(t) for t in listed}
    assert [id(t) for t in mc.tensors_of(model)] == [id(t) for t in walked]      # a fixed order
    model[0].to("meta")
    assert mc._module_device(model) == "mixed" and mc._module_device(nn.ReLU()) is None

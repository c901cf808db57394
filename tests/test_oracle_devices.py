"""The oracle on CPU and CUDA: float64, TF32 off, same expected values. CUDA tests skip cleanly without a GPU."""
from __future__ import annotations

import pytest
import torch

from autograder import registry
from autograder.cases import visible_cases
from autograder.compare import compare
from autograder.oracle import exact_numerics, resolve_device, run_reference

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")


def test_auto_device_resolves_to_what_exists():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="only meaningful without a GPU")
def test_asking_for_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_tf32_is_off_inside_the_oracle_and_restored_after():
    torch.backends.cudnn.allow_tf32 = True
    before = torch.backends.cudnn.conv.fp32_precision
    with exact_numerics():
        assert torch.backends.cudnn.allow_tf32 is False
        assert torch.backends.cuda.matmul.allow_tf32 is False
        assert torch.backends.cudnn.conv.fp32_precision == "ieee"
    assert torch.backends.cudnn.allow_tf32 is True
    assert torch.backends.cudnn.conv.fp32_precision == before


def test_oracle_results_are_float64():
    ex = registry.get("corr2d")
    out = run_reference(ex.oracle, visible_cases(ex)[0].call, "cpu")
    assert out.dtype.name == "float64"


@cuda
@pytest.mark.cuda
@pytest.mark.parametrize("ex", registry.all_exercises(), ids=lambda e: e.name)
def test_cuda_oracle_agrees_with_cpu(ex):
    for case in visible_cases(ex):
        cpu = run_reference(ex.oracle, case.call, "cpu")
        gpu = run_reference(ex.oracle, case.call, "cuda")
        if ex.view is None:
            assert compare(cpu, gpu, ex.tolerance.rel_floor, tuple(ex.output_names)), ex.describe(case.params)

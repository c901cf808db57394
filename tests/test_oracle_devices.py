"""The oracle on CPU and CUDA: float64, TF32 off, same expected values. CUDA tests skip cleanly without a GPU."""
from __future__ import annotations

import subprocess
import sys
import textwrap

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


def test_flop_counter_counts_like_flopcountermode_without_importing_dynamo():
    """The oracle's FLOP counter skips torch's lazy ``import torch._dynamo`` (~1 s) and counts exactly what a plain
    ``FlopCounterMode`` counts, for convolutions and transposed convolutions, grouped and strided."""
    script = textwrap.dedent("""
        import sys, torch, torch.nn.functional as F
        from torch.utils.flop_counter import FlopCounterMode
        from autograder.oracle import flop_counter
        cases = [((2, 4, 9, 7), (6, 2, 3, 2), dict(stride=2, padding=1, groups=2), F.conv2d),
                 ((1, 3, 5, 5), (3, 4, 3, 3), dict(stride=2, output_padding=1), F.conv_transpose2d)]
        counts = []
        for x, w, kw, op in cases:
            with flop_counter() as ours:
                op(torch.empty(x, device="meta"), torch.empty(w, device="meta"), **kw)
            counts.append(ours.get_total_flops())
        print("dynamo" if "torch._dynamo" in sys.modules else "no dynamo")
        for (x, w, kw, op), count in zip(cases, counts):
            with FlopCounterMode(display=False) as plain:
                op(torch.empty(x, device="meta"), torch.empty(w, device="meta"), **kw)
            assert plain.get_total_flops() == count > 0, (plain.get_total_flops(), count)
        print("same counts")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["no", "dynamo", "same", "counts"]

"""The oracle on CPU and CUDA: float64, TF32 off, same expected values. CUDA tests skip cleanly without a GPU."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

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


def _counted(op, x_shape, w_shape, **kwargs) -> int:
    """What a plain ``FlopCounterMode`` counts for ``op`` on meta tensors (with a bias, like the exercises)."""
    from torch.utils.flop_counter import FlopCounterMode

    bias = torch.empty(w_shape[1] * kwargs.get("groups", 1) if op is F.conv_transpose2d else w_shape[0],
                       device="meta")
    with FlopCounterMode(display=False) as mode:
        op(torch.empty(x_shape, device="meta"), torch.empty(w_shape, device="meta"), bias, **kwargs)
    return mode.get_total_flops()


def _conv_flops_of_case(ex, call):
    """``(x shape, weight shape, op, keyword arguments)`` of the convolution a case of ``conv2d_flops`` or
    ``conv_transpose2d_flops`` counts."""
    import inspect

    p = inspect.signature(ex.oracle).bind(*call.args, **call.kwargs)
    p.apply_defaults()
    p = dict(p.arguments)
    n, c_in, h, w, c_out, kh, kw, groups = (p.pop(k) for k in ("n", "c_in", "h", "w", "c_out", "kh", "kw", "groups"))
    if ex.name == "conv2d_flops":
        return (n, c_in, h, w), (c_out, c_in // groups, kh, kw), F.conv2d, dict(p, groups=groups)
    return (n, c_in, h, w), (c_in, c_out // groups, kh, kw), F.conv_transpose2d, dict(p, groups=groups)


@pytest.mark.parametrize("name", ["conv2d_flops", "conv_transpose2d_flops"])
def test_flop_oracles_count_what_flopcountermode_counts(name):
    """``oracle.conv_flops`` (FlopCounterMode's formula on the output shape torch computes, without meta tensors)
    gives exactly what ``FlopCounterMode`` counts on meta tensors, on every grading case of the exercise."""
    from autograder.isolation.grader import grading_cases

    ex = registry.get(name)
    cases = grading_cases(ex, 2024, 2)
    assert len(cases) > 100
    for case in cases:
        x, w, op, kwargs = _conv_flops_of_case(ex, case.call)
        assert run_reference(ex.oracle, case.call, "cpu") == _counted(op, x, w, **kwargs) > 0, case.call


def test_separable_cost_counts_what_flopcountermode_counts_for_the_layers():
    from autograder.isolation.grader import grading_cases

    ex = registry.get("separable_cost")
    for case in grading_cases(ex, 2024, 1):
        c_in, c_out, k, h, w = case.call.args
        standard = _counted(F.conv2d, (1, c_in, h, w), (c_out, c_in, k, k), padding=k // 2)
        separable = _counted(F.conv2d, (1, c_in, h, w), (c_in, 1, k, k), padding=k // 2, groups=c_in) + \
            _counted(F.conv2d, (1, c_in, h, w), (c_out, c_in, 1, 1))
        assert tuple(run_reference(ex.oracle, case.call, "cpu")[2:]) == (standard, separable), case.call


@pytest.mark.parametrize("x, w, kwargs", [((1, 1, 3, 3), (1, 1, 5, 5), {}),
                                          ((1, 2, 4, 4), (2, 1, 3, 3), dict(stride=2, output_padding=2))])
def test_conv_flops_raises_where_torch_does(x, w, kwargs):
    """A kernel larger than the padded input, an output padding not smaller than the stride: torch raises on
    CPU tensors (on meta it does not check the latter), and so does the count."""
    from autograder.oracle import conv_flops

    transposed = "output_padding" in kwargs
    with pytest.raises(RuntimeError):
        (F.conv_transpose2d if transposed else F.conv2d)(torch.zeros(x), torch.zeros(w), **kwargs)
    with pytest.raises(RuntimeError):
        conv_flops(x, w, transposed=transposed, **kwargs)


def test_expected_values_import_neither_sympy_nor_dynamo():
    """Every exercise's expected values, in a fresh process: torch's lazy imports of sympy (shape checks on meta
    tensors, ``backward(gradient)``'s size check; ~0.4 CPU-s) and of ``torch._dynamo`` (~1 CPU-s) never happen, in
    the oracle process that every ``grade`` and ``batch`` starts."""
    script = textwrap.dedent("""
        import sys, torch
        from autograder import registry
        from autograder.expected import expected_values
        from autograder.isolation.grader import grading_cases
        for exercises in registry.assignments().values():
            for ex in exercises:
                expected_values(ex, grading_cases(ex, 99, 1), "cpu").fill()
        print(sorted(m for m in ("sympy", "torch._dynamo") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]"]

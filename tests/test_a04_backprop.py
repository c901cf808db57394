"""04-backprop: the reference answers (exec'd from the solution notebook) pass, correct alternatives pass (loops,
the full-convolution route, float32), and plausible bugs fail with feedback naming the case and the mistake."""
from __future__ import annotations

import ast
import json
from pathlib import Path

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from autograder import probe_functions
from autograder.exercises.a04_backprop import TWINS
from tests.coursecopy import ROOT
from tests.harness import answer_tests, as_float32, named, reference_answers, variant

ASSIGNMENT = "04-backprop"


REF = reference_answers("04-backprop")


# ------------------------------------------------------------------------------------------------------------------
# conv2d_backward
# ------------------------------------------------------------------------------------------------------------------
def conv_backward_loops(dout, x, w, stride=1, padding=0):
    """The textbook version: one loop per output position, scatter the kernel into dx, gather the window into dw."""
    s, p = stride, padding
    kh, kw = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    for n in range(dout.shape[0]):
        for f in range(dout.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    window = (n, slice(None), slice(i * s, i * s + kh), slice(j * s, j * s + kw))
                    dw[f] += dout[n, f, i, j] * xp[window]
                    dxp[window] += dout[n, f, i, j] * w[f]
    return dxp[:, :, p:p + x.shape[2], p:p + x.shape[3]], dw, dout.sum(axis=(0, 2, 3))


def conv_backward_full_conv(dout, x, w, stride=1, padding=0, *, flip=True, crop="both", db_axes=(0, 2, 3),
                            dw_mean=False):
    """dw as the correlation of x_pad with dout, dx as the full convolution of the dilated dout with the flipped
    kernel (channels swapped). The keyword flags reproduce the classic mistakes."""
    N, C, H, W = x.shape
    F, _, kh, kw = w.shape
    s, p = stride, padding
    Ho, Wo = dout.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    windows = sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::s, ::s][:, :, :Ho, :Wo]
    dw = np.einsum("nfij,ncijab->fcab", dout, windows) / (N if dw_mean else 1)
    dilated = np.zeros((N, F, s * (Ho - 1) + 1, s * (Wo - 1) + 1))
    dilated[:, :, ::s, ::s] = dout
    Hp, Wp = H + 2 * p, W + 2 * p
    extra_h, extra_w = Hp - (dilated.shape[2] + kh - 1), Wp - (dilated.shape[3] + kw - 1)
    full = np.pad(dilated, ((0, 0), (0, 0), (kh - 1, kh - 1 + extra_h), (kw - 1, kw - 1 + extra_w)))
    kernel = w[:, :, ::-1, ::-1] if flip else w
    dxp = np.einsum("nfrqab,fcab->ncrq", sliding_window_view(full, (kh, kw), axis=(2, 3)), kernel)
    dx = {"both": dxp[:, :, p:p + H, p:p + W], "none": dxp, "start": dxp[:, :, p:, p:],
          "first": dxp[:, :, :H, :W]}[crop]
    return dx, dw, dout.sum(axis=db_axes)


# ------------------------------------------------------------------------------------------------------------------
# pooling
# ------------------------------------------------------------------------------------------------------------------
def pool_loops(x, k, stride, *, reduce="max", ceil=False, stride_used=None):
    """Pooling with loops over the output. ``stride_used``: 1 or "k" to ignore the stride given."""
    s = {None: stride, 1: 1, "k": k}[stride_used]
    N, C, H, W = x.shape
    size = lambda n: -(-(n - k) // s) + 1 if ceil else (n - k) // s + 1  # noqa: E731
    out = np.zeros((N, C, size(H), size(W)))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            window = x[:, :, i * s:i * s + k, j * s:j * s + k]
            out[:, :, i, j] = {"max": window.max(axis=(2, 3)) if reduce == "max" else None,
                               "mean": window.mean(axis=(2, 3)), "sum": window.sum(axis=(2, 3)),
                               "sum/k": window.sum(axis=(2, 3)) / k}[reduce]
    return out


def pool_backward_loops(dout, x, k, stride, *, kind="max", accumulate=True, divisor=None):
    """Pooling backward with loops over the windows: ``kind`` max routes to the first maximum, avg spreads
    ``dout / divisor`` (default k*k) over the window; ``accumulate=False`` overwrites instead of adding."""
    s = stride
    dx = np.zeros_like(x)
    for n in range(dout.shape[0]):
        for c in range(dout.shape[1]):
            for i in range(dout.shape[2]):
                for j in range(dout.shape[3]):
                    g = dout[n, c, i, j]
                    if kind == "max":
                        a, b = np.unravel_index(np.argmax(x[n, c, i * s:i * s + k, j * s:j * s + k]), (k, k))
                        target, value = (n, c, i * s + a, j * s + b), g
                    else:
                        target = (n, c, slice(i * s, i * s + k), slice(j * s, j * s + k))
                        value = g / (divisor or k * k)
                    if accumulate:
                        dx[target] += value
                    else:
                        dx[target] = value
    return dx


def maxpool_backward_add_at(dout, x, k, stride):
    """Vectorised with np.add.at: unbuffered, so repeated indices (overlapping windows) accumulate."""
    N, C, Ho, Wo = dout.shape
    windows = sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    a, b = np.divmod(windows.reshape(N, C, Ho, Wo, k * k).argmax(axis=-1), k)
    n, c, i, j = np.indices((N, C, Ho, Wo))
    dx = np.zeros_like(x)
    np.add.at(dx, (n, c, i * stride + a, j * stride + b), dout)
    return dx


# ------------------------------------------------------------------------------------------------------------------
# numeric_gradient
# ------------------------------------------------------------------------------------------------------------------
def numeric_gradient_flat(f, x, dout, h=1e-5, *, denominator=2, use_dout=True, all_at_once=False, forward=False):
    """Central differences with a perturbation array e; the flags reproduce the classic mistakes."""
    x = np.asarray(x, dtype=np.float64)
    S = lambda z: np.sum(f(z) * (dout if use_dout else 1.0))  # noqa: E731
    grad = np.empty(x.size)
    for i in range(x.size):
        e = np.full(x.shape, h) if all_at_once else np.eye(1, x.size, i).reshape(x.shape) * h
        low = S(x) if forward else S(x - e)
        grad[i] = (S(x + e) - low) / ((1 if forward else denominator) * h)
    return grad.reshape(x.shape)


def _float32_output(fn):
    def answer(*args, **kwargs):
        return fn(*args, **kwargs).astype(np.float32)
    return named(answer, f"{fn.__name__}_float32_output")


# ------------------------------------------------------------------------------------------------------------------
# the answers, as data
# ------------------------------------------------------------------------------------------------------------------
CORRECT = [
    ("conv2d_backward", REF["conv2d_backward"]),
    ("conv2d_backward", conv_backward_loops),
    ("conv2d_backward", conv_backward_full_conv),
    ("conv2d_backward", as_float32(REF["conv2d_backward"])),
    ("maxpool2d", REF["maxpool2d"]),
    ("maxpool2d", variant(pool_loops, "maxpool_loops")),
    ("maxpool2d", as_float32(REF["maxpool2d"])),
    ("maxpool2d_backward", REF["maxpool2d_backward"]),
    ("maxpool2d_backward", variant(pool_backward_loops, "maxpool_backward_loops")),
    ("maxpool2d_backward", maxpool_backward_add_at),
    ("maxpool2d_backward", as_float32(REF["maxpool2d_backward"])),
    ("avgpool2d", REF["avgpool2d"]),
    ("avgpool2d", variant(pool_loops, "avgpool_loops", reduce="mean")),
    ("avgpool2d", as_float32(REF["avgpool2d"])),
    ("avgpool2d_backward", REF["avgpool2d_backward"]),
    ("avgpool2d_backward", variant(pool_backward_loops, "avgpool_backward_loops", kind="avg")),
    ("avgpool2d_backward", as_float32(REF["avgpool2d_backward"])),
    ("numeric_gradient", REF["numeric_gradient"]),
    ("numeric_gradient", numeric_gradient_flat),
    ("numeric_gradient", _float32_output(REF["numeric_gradient"])),
]

BUGGY = [
    ("conv2d_backward", variant(conv_backward_full_conv, "dx_unflipped", flip=False), ["unflipped kernel in dx"]),
    ("conv2d_backward", variant(conv_backward_full_conv, "dx_uncropped", crop="none"),
     ["padding not cropped from dx"]),
    ("conv2d_backward", variant(conv_backward_full_conv, "dx_cropped_start", crop="start"),
     ["padding cropped on one side"]),
    ("conv2d_backward", variant(conv_backward_full_conv, "dx_cropped_first_rows", crop="first"),
     ["padding cropped on one side"]),
    ("conv2d_backward", variant(conv_backward_full_conv, "db_keeps_batch", db_axes=(2, 3)),
     ["db over the wrong axes"]),
    ("conv2d_backward", variant(conv_backward_full_conv, "dw_batch_mean", dw_mean=True),
     ["dw averaged over the batch"]),
    ("maxpool2d", variant(pool_loops, "maxpool_stride_1", stride_used=1), ["stride ignored"]),
    ("maxpool2d", variant(pool_loops, "maxpool_ceil", ceil=True), ["partial windows kept"]),
    ("maxpool2d", variant(pool_loops, "maxpool_stride_k", stride_used="k"), ["stride taken equal to k"]),
    ("maxpool2d", variant(pool_loops, "maxpool_mean", reduce="mean"), ["average instead of maximum"]),
    ("maxpool2d_backward", variant(pool_backward_loops, "maxpool_backward_overwrite", accumulate=False),
     ["overwrite instead of accumulate"]),
    ("maxpool2d_backward", variant(pool_backward_loops, "maxpool_backward_spread", kind="avg"),
     ["gradient spread evenly"]),
    ("maxpool2d_backward", variant(pool_backward_loops, "maxpool_backward_window", kind="avg", divisor=1),
     ["gradient copied to the whole window"]),
    ("avgpool2d", variant(pool_loops, "avgpool_sum", reduce="sum"), ["sum instead of mean"]),
    ("avgpool2d", variant(pool_loops, "avgpool_over_k", reduce="sum/k"), ["divided by k instead of k*k"]),
    ("avgpool2d", variant(pool_loops, "avgpool_stride_1", reduce="mean", stride_used=1), ["stride ignored"]),
    ("avgpool2d_backward", variant(pool_backward_loops, "avgpool_backward_undivided", kind="avg", divisor=1),
     ["gradient not divided by the window size"]),
    ("avgpool2d_backward", variant(pool_backward_loops, "avgpool_backward_overwrite", kind="avg",
                                    accumulate=False), ["overwrite instead of accumulate"]),
    ("avgpool2d_backward", variant(pool_backward_loops, "avgpool_backward_to_max", kind="max"),
     ["gradient routed to the maximum"]),
    ("numeric_gradient", variant(numeric_gradient_flat, "numgrad_over_h", denominator=1),
     ["denominator h instead of 2h"]),
    ("numeric_gradient", variant(numeric_gradient_flat, "numgrad_no_dout", use_dout=False), ["dout ignored"]),
    ("numeric_gradient", variant(numeric_gradient_flat, "numgrad_all_at_once", all_at_once=True),
     ["every entry perturbed at once"]),
    ("numeric_gradient", variant(numeric_gradient_flat, "numgrad_forward", forward=True), ["forward difference"]),
]


test_correct_answer_passes, test_buggy_answer_fails_with_feedback = answer_tests(CORRECT, BUGGY)


def test_probe_functions_are_self_contained_numpy():
    """The isolated grader copies probe_functions.py into its sandbox: it may import numpy only, and every
    probe needs a torch twin for the oracle that agrees with it."""
    tree = ast.parse((ROOT / "autograder" / "probe_functions.py").read_text())
    imported = {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert imported <= {"numpy", "__future__"}, imported
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    for f, min_h, min_w, out_shape in probe_functions.PROBES:
        x = rng.standard_normal((min_h + 2, min_w + 3))
        y = f(x)
        assert y.shape == out_shape(*x.shape)
        np.testing.assert_allclose(TWINS[f.__name__](torch.tensor(x)).numpy(), y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("assignment", [ASSIGNMENT, "05-transposed-conv"])
def test_solution_notebook_is_committed_without_outputs(assignment):
    """(For both notebooks of this pair: 05's answers are exec'd by tests/test_a05_transposed_conv.py.)"""
    nb = json.loads(Path(ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)

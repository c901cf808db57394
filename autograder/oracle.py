"""The torch oracle: runs an exercise's reference on pristine float64 copies of a case, on CPU or CUDA.

TF32 is always off: on CUDA it silently costs ~3e-4 relative error in convolutions, which would make the
reference less accurate than a correct float32 student answer.
"""
from __future__ import annotations

import contextlib
import copy
from typing import Any

import numpy as np

from .spec import Call


def torch():
    import torch as _torch  # imported lazily: `import torch` costs ~1.3 s

    return _torch


def resolve_device(device: str = "auto") -> str:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available) to a concrete device string."""
    if device not in ("cpu", "cuda", "auto"):
        raise ValueError(f"device must be 'cpu', 'cuda' or 'auto', not {device!r}")
    if device == "cpu":
        return "cpu"
    available = torch().cuda.is_available()
    if device == "cuda" and not available:
        raise RuntimeError("device='cuda' was asked for, but torch sees no CUDA GPU")
    return "cuda" if available else "cpu"


@contextlib.contextmanager
def exact_numerics():
    """Turn TF32 off for convolutions and matmuls (restored afterwards). torch 2.13 has two switches: the old
    ``allow_tf32`` flags and the newer ``fp32_precision`` settings ("tf32" by default for cuDNN convolutions);
    both are set to full float32 precision ("ieee")."""
    t = torch()
    switches = [(t.backends.cudnn, "allow_tf32", False), (t.backends.cuda.matmul, "allow_tf32", False)]
    for backend in (getattr(t.backends.cudnn, "conv", None), getattr(t.backends.cuda, "matmul", None)):
        if backend is not None and hasattr(backend, "fp32_precision"):
            switches.append((backend, "fp32_precision", "ieee"))
    saved = [getattr(obj, name) for obj, name, _ in switches]
    for obj, name, value in switches:
        setattr(obj, name, value)
    try:
        yield
    finally:
        for (obj, name, _), value in reversed(list(zip(switches, saved))):
            setattr(obj, name, value)


def to_torch(value: Any, device: str) -> Any:
    """Arrays (and arrays inside tuples/lists/dicts) to float64 / int64 / bool tensors on ``device``."""
    t = torch()
    if isinstance(value, np.ndarray):
        tensor = t.from_numpy(np.array(value, copy=True))
        if tensor.is_floating_point():
            tensor = tensor.to(t.float64)
        return tensor.to(device)
    if isinstance(value, tuple):
        return tuple(to_torch(v, device) for v in value)
    if isinstance(value, list):
        return [to_torch(v, device) for v in value]
    if isinstance(value, dict):
        return {k: to_torch(v, device) for k, v in value.items()}
    if isinstance(value, t.nn.Module):
        return copy.deepcopy(value).to(device)
    return copy.deepcopy(value)


def place_modules(value: Any, device: str) -> Any:
    """Copies of the ``nn.Module`` objects (and tensors) in ``value`` (tuples, lists, dicts) moved to ``device``;
    arrays and everything else unchanged. Used to hand torch exercises their module arguments on the grading device."""
    if isinstance(value, (tuple, list)):
        return type(value)(place_modules(v, device) for v in value)
    if isinstance(value, dict):
        return {k: place_modules(v, device) for k, v in value.items()}
    if isinstance(value, torch().nn.Module):
        return copy.deepcopy(value).to(device)
    if isinstance(value, torch().Tensor):
        return value.to(device)
    return value


def from_torch(value: Any) -> Any:
    """Tensors back to NumPy (on CPU); numbers and bools to plain Python; tuples stay tuples."""
    t = torch()
    if isinstance(value, t.Tensor):
        value = value.detach().cpu()
        return value.item() if value.dim() == 0 and not value.is_floating_point() else value.numpy().copy()
    if isinstance(value, (tuple, list)):
        return tuple(from_torch(v) for v in value)
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread: the oracle's tensors are tiny, and on a busy 2-core machine torch's thread pool
    turns 0.1 ms operations into 60 ms ones."""
    t = torch()
    threads = t.get_num_threads()
    if threads != 1:
        t.set_num_threads(1)
    try:
        yield
    finally:
        if threads != 1:
            t.set_num_threads(threads)


def run_reference(fn, call: Call, device: str) -> Any:
    """Evaluate ``fn`` (an oracle or a misconception) on pristine torch copies of ``call``, single-threaded and
    without TF32. An oracle may return :data:`autograder.spec.RAISES` for arguments PyTorch rejects."""
    with exact_numerics(), one_thread():
        args = to_torch(call.args, device)
        kwargs = to_torch(dict(call.kwargs), device)
        return from_torch(fn(*args, **kwargs))

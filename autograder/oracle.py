"""The torch oracle: runs an exercise's reference on pristine float64 copies of a case, on CPU or CUDA.

TF32 is always off: on CUDA it silently costs ~3e-4 relative error in convolutions, which would make the
reference less accurate than a correct float32 student answer.
"""
from __future__ import annotations

import contextlib
import copy
import sys
import threading
from typing import Any

import numpy as np

from .compare import plain_scalar
from .spec import Call


def torch():
    import torch as _torch  # imported lazily: `import torch` costs ~1.3 s

    return _torch


def torch_imported() -> bool:
    """Whether torch is imported completely (``sys.modules`` holds it from the start of its ``import``)."""
    module = sys.modules.get("torch")
    return module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)


def conv_flops(x_shape: tuple, w_shape: tuple, stride=1, padding=0, dilation=1, groups=1, transposed: bool = False,
               output_padding=0) -> tuple[int, tuple]:
    """``(flops, output shape)`` of one 2-D convolution of an ``x_shape`` input ``(N, C_in, H, W)`` with a weight of
    ``w_shape`` (``F.conv2d``'s layout, or ``F.conv_transpose2d``'s when ``transposed``): what ``FlopCounterMode``
    counts for it (``torch.utils.flop_counter.conv_flop_count``, the formula it applies to ``aten.convolution``),
    on the output shape torch computes. Counting under ``FlopCounterMode`` with ``meta`` tensors gives the same
    numbers (tests/test_oracle_devices.py) but costs ~0.5 ms a convolution, and the first one imports sympy (~0.4
    CPU-s: torch's shape checks on ``meta``). The output's height depends only on the height, the kernel's height
    and the vertical stride, padding and dilation (the width likewise), so torch computes each on a line of zeros
    (microseconds); it raises where it would for the full shapes (a kernel larger than the padded input,
    ``output_padding >= stride``)."""
    from torch.utils.flop_counter import conv_flop_count

    from .shapes import pair

    size = tuple(line_output(x_shape[2 + axis], w_shape[2 + axis], *(pair(v)[axis] for v in (
        stride, padding, dilation, output_padding)), transposed) for axis in (0, 1))
    c_out = w_shape[1] * groups if transposed else w_shape[0]
    out_shape = (x_shape[0], c_out, *size)
    return int(conv_flop_count(list(x_shape), list(w_shape), list(out_shape), transposed=transposed)), out_shape


def line_output(n: int, k: int, stride: int, padding: int, dilation: int, output_padding: int,
                 transposed: bool) -> int:
    """The output length torch gives a convolution (or, ``transposed``, a transposed convolution) of a length-``n``
    line with a length-``k`` kernel; raises where torch does."""
    t = torch()
    x, weight = t.zeros(1, 1, n, 1), t.zeros(1, 1, k, 1)
    if transposed:
        y = t.nn.functional.conv_transpose2d(x, weight, stride=(stride, 1), padding=(padding, 0),
                                             output_padding=(output_padding, 0), dilation=(dilation, 1))
    else:
        y = t.nn.functional.conv2d(x, weight, stride=(stride, 1), padding=(padding, 0), dilation=(dilation, 1))
    return int(y.shape[2])


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


class _ProcessSetting:
    """A process-wide torch setting held while any thread is inside ``with setting:`` (re-entrant, counted): the
    first entry applies it and the last exit restores what was there before. The TF32 switches are global, so a
    plain save/restore per ``with`` would let one thread restore the default while another is still computing (a
    background thread computes expected values while the grader reads answers: :mod:`autograder.expected`)."""

    def __init__(self, apply, restore):
        self._apply, self._restore = apply, restore
        self._lock = threading.Lock()
        self._depth = 0
        self._saved: Any = None

    def __enter__(self) -> None:
        with self._lock:
            if self._depth == 0:
                self._saved = self._apply()
            self._depth += 1

    def __exit__(self, *exc) -> None:
        with self._lock:
            self._depth -= 1
            if self._depth == 0:
                self._restore(self._saved)
                self._saved = None


def _tf32_switches() -> list:
    """``(object, attribute, exact value)`` of every TF32 switch of this torch."""
    t = torch()
    switches = [(t.backends.cudnn, "allow_tf32", False), (t.backends.cuda.matmul, "allow_tf32", False)]
    for backend in (getattr(t.backends.cudnn, "conv", None), getattr(t.backends.cuda, "matmul", None)):
        if backend is not None and hasattr(backend, "fp32_precision"):
            switches.append((backend, "fp32_precision", "ieee"))
    return switches


def _exact_on() -> list:
    switches = _tf32_switches()
    saved = [getattr(obj, name) for obj, name, _ in switches]
    for obj, name, value in switches:
        setattr(obj, name, value)
    return list(zip(switches, saved))


def _exact_off(saved: list) -> None:
    for (obj, name, _), value in reversed(saved):
        setattr(obj, name, value)


_EXACT = _ProcessSetting(_exact_on, _exact_off)


def exact_numerics() -> _ProcessSetting:
    """Turn TF32 off for convolutions and matmuls while any ``with exact_numerics():`` is open (restored
    afterwards). torch 2.13 has two switches: the old ``allow_tf32`` flags and the newer ``fp32_precision``
    settings ("tf32" by default for cuDNN convolutions); both are set to full float32 precision ("ieee")."""
    return _EXACT


#: values that need no copy (immutable)
_IMMUTABLE = (int, float, bool, str, bytes, type(None))


def to_torch(value: Any, device: str) -> Any:
    """Arrays (and arrays inside tuples/lists/dicts) to float64 / int64 / bool tensors on ``device``; modules and
    anything else mutable as fresh copies (the oracle may change what it receives)."""
    cls = type(value)
    if cls is np.ndarray:
        return _array_tensor(value, device)
    if cls in _IMMUTABLE:
        return value
    if cls is tuple:
        return tuple(to_torch(v, device) for v in value)
    if cls is list:
        return [to_torch(v, device) for v in value]
    if cls is dict:
        return {k: to_torch(v, device) for k, v in value.items()}
    return _to_torch_other(value, device)


def _to_torch_other(value: Any, device: str) -> Any:
    """:func:`to_torch` of subclasses (of ndarray, tuple...), modules and other objects."""
    if isinstance(value, np.ndarray):
        return _array_tensor(value, device)
    if isinstance(value, tuple):
        return tuple(to_torch(v, device) for v in value)
    if isinstance(value, list):
        return [to_torch(v, device) for v in value]
    if isinstance(value, dict):
        return {k: to_torch(v, device) for k, v in value.items()}
    if isinstance(value, torch().nn.Module):
        return copy_module(value).to(device)
    return copy.deepcopy(value)


def _array_tensor(value: np.ndarray, device: str) -> Any:
    t = torch()
    tensor = t.from_numpy(np.array(value, copy=True))
    if tensor.is_floating_point():
        tensor = tensor.to(t.float64)
    return tensor.to(device)


def _plain_layer(module: Any) -> bool:
    """Whether ``module`` and everything in it are exact ``torch.nn`` layers of :data:`module_codec.LAYERS`."""
    from . import module_codec

    return module_codec._layer_name(module) is not None and \
        all(m is None or _plain_layer(m) for m in module._modules.values())


def copy_module(module: Any) -> Any:
    """An independent copy of ``module``: its parameters and buffers cloned, its hook tables and other containers
    copied, a grader's argument tag as a ``"copy"``. For models of the allowed plain layers this is ~8x cheaper than
    ``copy.deepcopy`` (which is used for anything else); the result is equal in every tensor and attribute."""
    if not _plain_layer(module):
        return copy.deepcopy(module)
    return _clone(module)


def _clone(module: Any) -> Any:
    from . import module_codec

    t = torch()
    new = type(module).__new__(type(module))
    state = {k: (v.copy() if isinstance(v, (dict, list, set)) else v) for k, v in module.__dict__.items()}
    state["_parameters"] = {k: None if v is None else t.nn.Parameter(v.detach().clone(), v.requires_grad)
                            for k, v in module._parameters.items()}
    state["_buffers"] = {k: None if v is None else v.detach().clone() for k, v in module._buffers.items()}
    state["_modules"] = {k: None if v is None else _clone(v) for k, v in module._modules.items()}
    tag = state.get(module_codec.TAG_ATTR)
    if tag is not None:
        state[module_codec.TAG_ATTR] = copy.copy(tag)
    new.__dict__.update(state)
    return new


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
    return plain_scalar(value)


@contextlib.contextmanager
def one_thread():
    """Run torch on one thread in this block: the oracle's tensors are tiny, and on a busy 2-core machine torch's
    thread pool turns 0.1 ms operations into 60 ms ones. The setting is per thread (OpenMP's), so every thread
    that computes (the grading one, :mod:`autograder.expected`'s) enters it itself."""
    t = torch()
    threads = t.get_num_threads()
    if threads != 1:
        t.set_num_threads(1)
    try:
        yield
    finally:
        if threads != 1:
            t.set_num_threads(threads)


def oracle_numerics(if_imported: bool = False) -> contextlib.ExitStack:
    """The oracle's numerics (one thread, no TF32), entered once around many cases (see :func:`run_reference`).
    ``if_imported``: only if torch is imported already, not while another thread is still importing it (a grader
    that gets every expected value from :mod:`autograder.expected` never imports it, and one that waits for it
    reads answers meanwhile; whatever uses torch later enters the numerics itself)."""
    stack = contextlib.ExitStack()
    if (if_imported and not torch_imported()) or getattr(_HOLDING, "depth", 0):
        return stack            # not yet, or this thread holds them already (around many cases: nothing to add)
    stack.enter_context(exact_numerics())
    stack.enter_context(one_thread())
    stack.enter_context(_holding())
    return stack


#: how many ``oracle_numerics`` blocks this thread is inside
_HOLDING = threading.local()


@contextlib.contextmanager
def _holding():
    _HOLDING.depth = getattr(_HOLDING, "depth", 0) + 1
    try:
        yield
    finally:
        _HOLDING.depth -= 1


def run_reference(fn, call: Call, device: str) -> Any:
    """Evaluate ``fn`` (an oracle or a misconception) on pristine torch copies of ``call``, single-threaded and
    without TF32. An oracle may return :data:`autograder.spec.RAISES` for arguments PyTorch rejects."""
    with oracle_numerics():
        args = to_torch(call.args, device)
        kwargs = to_torch(dict(call.kwargs), device)
        return from_torch(fn(*args, **kwargs))

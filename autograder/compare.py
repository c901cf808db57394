"""The one comparison engine: an answer, reduced to plain data, against the oracle's expected value.

Rules (the same for every exercise):
- arrays: exact shape (no broadcasting); NaN or Inf never pass; float answers must be float32 or float64 and are
  compared with a tolerance derived from the answer's dtype, relative to ``max|expected|``; integer and boolean
  arrays are compared exactly;
- ints, bools and strings exactly, and of the right type (``True`` is not ``1``, ``5.0`` is not ``5``);
- tuples element by element, with the exercise's output names.

A :class:`Verdict` carries the reason and the worst entries for feedback.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: forgiven rounding, in units of the answer dtype's machine epsilon, relative to max|expected|.
#: float32 convolutions of a few hundred terms measure ~3e-7..7e-7 relative; 64 eps32 = 7.6e-6 (a 576-term float32
#: convolution passes: tests/test_compare.py).
ULPS = {np.dtype(np.float32): 64.0, np.dtype(np.float64): 4096.0}


class NotPlainData(TypeError):
    """The answer is not something the grader accepts (an object, a string...)."""


class PlainList(tuple):
    """A list answer reduced to plain data: compared exactly like a tuple (the same score as on the isolated path),
    but called a "list" in feedback."""


#: the NumPy scalars that stand for plain Python ones (complex, string and object scalars do not)
NUMPY_SCALARS = (np.bool_, np.integer, np.floating)


def plain_scalar(value: Any) -> Any:
    """The one normalisation of NumPy scalars: ``np.bool_`` -> bool, ``np.integer`` -> int, ``np.floating`` ->
    float (so that ``True`` is never taken for ``1``); anything else unchanged."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value


_ATOMS = frozenset((type(None), bool, int, float, str))


def to_plain(value: Any, fresh: bool = False) -> Any:
    """Reduce an answer to plain data: ndarray (base class, own memory), int, float, bool, None, or tuples of those.

    Strings are kept (for encoded answers such as layer names). Anything else (dicts, arbitrary objects whose ``__eq__`` lies) raises :class:`NotPlainData`.
    Tensors are accepted (detached, moved to CPU) so that torch exercises can return them. ``fresh``: the arrays
    of ``value`` are already base-class, C-ordered and owned by nobody else (what the protocol decodes), so they
    are kept instead of copied.
    """
    t = type(value)
    if t is tuple:          # kept as it is while every element is plain already (immutable)
        out = None
        for i, v in enumerate(value):
            if type(v) not in _ATOMS:
                p = to_plain(v, fresh)
                if p is not v:
                    out = list(value) if out is None else out
                    out[i] = p
        return value if out is None else tuple(out)
    if value is None or t is bool or t is int or t is float or t is str:
        return value
    if t is np.ndarray and fresh and value.flags.c_contiguous and value.flags.owndata:
        return _numeric(value)
    return _to_plain_other(value, fresh)


def _numeric(value: np.ndarray) -> np.ndarray:
    if value.dtype.kind not in "biuf":
        raise NotPlainData(f"an array of dtype {value.dtype} (expected numbers)")
    return value


def _to_plain_other(value: Any, fresh: bool) -> Any:
    """:func:`to_plain` of NumPy scalars, arrays to copy, lists, tuple subclasses and tensors."""
    if isinstance(value, NUMPY_SCALARS):
        return plain_scalar(value)
    if isinstance(value, np.ndarray):
        return np.array(np.asarray(_numeric(value)).view(np.ndarray), copy=True, order="C")
    if isinstance(value, list):
        return PlainList(to_plain(v, fresh) for v in value)
    if isinstance(value, tuple):
        return tuple(to_plain(v, fresh) for v in value)
    module = type(value).__module__ or ""
    if module.startswith("torch") and type(value).__name__ in ("Tensor", "Parameter"):
        return to_plain(value.detach().cpu().numpy())
    raise NotPlainData(f"a {type(value).__module__}.{type(value).__qualname__}")


@dataclass
class Verdict:
    ok: bool
    reason: str = ""
    details: list[str] = field(default_factory=list)
    max_error: float = 0.0

    def __bool__(self) -> bool:
        return self.ok


def describe_value(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"array of shape {value.shape}, dtype {value.dtype}"
    if isinstance(value, tuple):
        kind = "list" if isinstance(value, PlainList) else "tuple"
        return f"{kind} of {len(value)}"
    return f"{type(value).__name__} {value!r}"


def tolerance(expected: np.ndarray, dtype: np.dtype, rel_floor: float = 0.0) -> float:
    """Absolute tolerance for an answer of ``dtype`` against ``expected``: ULPS * eps(dtype) * max(1, max|ref|)."""
    scale = max(1.0, float(np.max(np.abs(expected))) if expected.size else 1.0)
    return (ULPS[np.dtype(dtype)] * float(np.finfo(dtype).eps) + rel_floor) * scale


def _compare_arrays(expected: np.ndarray, got: np.ndarray, rel_floor: float) -> Verdict:
    if got.shape != expected.shape:
        return Verdict(False, f"shape: expected {expected.shape}, got {got.shape}")
    if expected.dtype.kind in "biu":
        if got.dtype.kind not in "biu" or (expected.dtype.kind == "b") != (got.dtype.kind == "b"):
            kind = "boolean" if expected.dtype.kind == "b" else "integer"
            return Verdict(False, f"dtype: expected an {kind} array, got {got.dtype}")
        wrong = np.argwhere(got != expected)
        if len(wrong) == 0:
            return Verdict(True)
        details = [f"at {tuple(int(i) for i in idx)}: expected {expected[tuple(idx)]}, got {got[tuple(idx)]}"
                   for idx in wrong[:3]]
        return Verdict(False, f"{len(wrong)} of {expected.size} entries differ", details, float(len(wrong)))
    if got.dtype.kind != "f" or got.dtype not in ULPS:
        return Verdict(False, f"dtype: expected float32 or float64 values, got {got.dtype}")
    if not np.all(np.isfinite(got)):
        bad = np.argwhere(~np.isfinite(got))[0]
        return Verdict(False, f"the answer contains NaN or Inf (first at {tuple(int(i) for i in bad)})")
    atol = tolerance(expected, got.dtype, rel_floor)
    err = np.abs(got.astype(np.float64) - expected)
    worst = float(err.max()) if err.size else 0.0
    if worst <= atol:
        return Verdict(True, max_error=worst)
    n_bad = int(np.count_nonzero(err > atol))
    order = np.argsort(err, axis=None)[::-1][:3]
    details = []
    for flat in order:
        idx = np.unravel_index(flat, err.shape)
        details.append(f"at {tuple(int(i) for i in idx)}: expected {expected[idx]:.6g}, got {got[idx]:.6g}")
    return Verdict(False, f"{n_bad} of {expected.size} entries differ (max error {worst:.3g}, "
                          f"tolerance {atol:.2g} for {got.dtype})", details, worst)


def _not_an_array(expected: np.ndarray, got: Any) -> Verdict:
    advice = " (np.array(...) turns it into one)" if isinstance(got, PlainList) else ""
    return Verdict(False, f"expected an array of shape {expected.shape}, got {describe_value(got)}{advice}")


def _compare_tuple(expected: tuple, got: Any, rel_floor: float, names: tuple) -> Verdict:
    if not isinstance(got, tuple) or len(got) != len(expected):
        return Verdict(False, f"expected a tuple of {len(expected)}"
                              + (f" ({', '.join(names)})" if names else "") + f", got {describe_value(got)}")
    for i, (e, g) in enumerate(zip(expected, got)):
        v = compare(e, g, rel_floor)
        if not v:
            label = names[i] if i < len(names) else f"element {i}"
            return Verdict(False, f"{label}: {v.reason}", v.details, v.max_error)
    return Verdict(True)


def _compare_bool(expected: bool, got: Any, rel_floor: float) -> Verdict:
    if not isinstance(got, bool):
        return Verdict(False, f"expected a bool, got {describe_value(got)}")
    return Verdict(got == expected, "" if got == expected else f"expected {expected}, got {got}")


def _compare_int(expected: numbers.Integral, got: Any, rel_floor: float) -> Verdict:
    if isinstance(got, bool) or not isinstance(got, int):
        return Verdict(False, f"expected an int, got {describe_value(got)}")
    return Verdict(got == expected, "" if got == expected else f"expected {expected}, got {got}")


def _compare_number(expected: Any, got: Any, rel_floor: float) -> Verdict:
    if isinstance(got, bool) or not isinstance(got, (int, float)):
        return Verdict(False, f"expected a number, got {describe_value(got)}")
    if not math.isfinite(got):
        return Verdict(False, f"the answer is {got}")
    return _compare_arrays(np.asarray(expected, dtype=np.float64), np.asarray(float(got)), rel_floor)


def _compare_array(expected: np.ndarray, got: Any, rel_floor: float) -> Verdict:
    if not isinstance(got, np.ndarray):
        return _not_an_array(expected, got)
    return _compare_arrays(expected, got, rel_floor)


def _compare_str(expected: str, got: Any, rel_floor: float) -> Verdict:
    if not isinstance(got, str) or got != expected:
        return Verdict(False, f"expected {expected!r}, got {describe_value(got)}")
    return Verdict(True)


def _compare_none(expected: None, got: Any, rel_floor: float) -> Verdict:
    return Verdict(got is None, "" if got is None else f"expected None, got {describe_value(got)}")


def _is_number(expected: Any, got: Any) -> bool:
    """A float, or a 0-d array answered by a plain number."""
    return isinstance(expected, float) or (isinstance(expected, np.ndarray) and expected.ndim == 0
                                           and not isinstance(got, np.ndarray))


#: ``(applies(expected, got), judge(expected, got, rel_floor))``: the first rule that applies to the expected
#: value judges the answer (``bool`` before ``int``: a bool is an Integral)
RULES = (
    (lambda e, g: isinstance(e, bool), _compare_bool),
    (lambda e, g: isinstance(e, numbers.Integral), _compare_int),
    (_is_number, _compare_number),
    (lambda e, g: isinstance(e, np.ndarray), _compare_array),
    (lambda e, g: isinstance(e, str), _compare_str),
    (lambda e, g: e is None, _compare_none),
)


def compare(expected: Any, got: Any, rel_floor: float = 0.0, names: tuple = ()) -> Verdict:
    """Compare plain ``got`` with plain ``expected`` (both as produced by :func:`to_plain` / the oracle)."""
    if type(expected) is int and type(got) is int:     # the commonest case (sizes, counts): no rule to look up
        return _compare_int(expected, got, rel_floor)
    if isinstance(expected, tuple):
        return _compare_tuple(expected, got, rel_floor, names)
    for applies, judge in RULES:
        if applies(expected, got):
            return judge(expected, got, rel_floor)
    raise TypeError(f"oracle produced unsupported value {type(expected)}")

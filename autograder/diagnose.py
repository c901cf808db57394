"""Recognising common mistakes: the exercise's named misconceptions first, then generic patterns.

Generic patterns work for any array-valued exercise: an output size off by one or two, swapped spatial axes,
a flipped sign, a constant factor, a constant offset per channel (a missing or doubled bias).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cases import Case
from .compare import compare
from .oracle import run_reference
from .spec import Exercise, Misconception, NotApplicable

LOG = logging.getLogger(__name__)


@dataclass
class Recognised:
    """What the named misconceptions say about an answer: the first one it matches, and the grader bugs met on
    the way (a misconception that raised anything but :class:`NotApplicable`)."""

    misconception: Misconception | None = None
    grader_bugs: list[str] = field(default_factory=list)

    @property
    def hint(self) -> str | None:
        """``"name: explanation"`` of the misconception, or None."""
        m = self.misconception
        return f"{m.name}: {m.explanation}" if m else None


def recognise(ex: Exercise, case: Case, got: Any, device: str) -> Recognised:
    """The first misconception of ``ex`` whose output the answer matches. One that raises
    :class:`NotApplicable` is skipped; one that raises anything else is a grader bug: logged, reported, skipped."""
    found = Recognised()
    for m in ex.misconceptions:
        try:
            wrong = run_reference(m.compute, case.call, device)
        except NotApplicable:
            continue
        except Exception as exc:  # noqa: BLE001 - a bug in one misconception must not cost the feedback
            LOG.error("grader bug: misconception %r of %s raised on %s", m.name, ex.name, ex.describe(case.params),
                      exc_info=True)
            found.grader_bugs.append(f"misconception {m.name!r} of {ex.name} raised {type(exc).__name__}: {exc}")
            continue
        if compare(wrong, got, ex.tolerance.rel_floor, tuple(ex.output_names)):
            found.misconception = m
            break
    return found


def matching_misconception(ex: Exercise, case: Case, got: Any, device: str) -> Misconception | None:
    """The first misconception whose output the answer matches, else None (see :func:`recognise`)."""
    return recognise(ex, case, got, device).misconception


def named_misconception(ex: Exercise, case: Case, got: Any, device: str) -> str | None:
    """``"name: explanation"`` of the first misconception whose output the answer matches, else None."""
    return recognise(ex, case, got, device).hint


#: the output-size rule in each assignment's own notation: 01 and 02 know only valid, stride-1 windows;
#: stride, padding and dilation arrive in 03
VALID_SIZE_RULE = "the valid output has H - kH + 1 rows and W - kW + 1 columns (one per window position)"
FULL_SIZE_RULE = "the number of window positions is floor((n + 2p - d(k-1) - 1) / s) + 1"
SIZE_RULES = {"01-single-channel": VALID_SIZE_RULE, "02-channels-batch": VALID_SIZE_RULE}
LARGER_THAN_VALID = {"01-single-channel": "did your loops run past the last window (range(H) instead of "
                                          "range(H - kH + 1)), or pad the image?",
                     "02-channels-batch": "did your loops run past the last window (range(H) instead of "
                                          "range(H - kH + 1))?"}


def _more_dimensions(expected: np.ndarray, got: np.ndarray, assignment: str) -> str | None:
    if got.ndim == expected.ndim:
        return None
    return (f"your answer has {got.ndim} dimensions, the expected one {expected.ndim}: "
            "check which axes you keep (batch N, channels C, then H, W)")


def _swapped_height_width(expected: np.ndarray, got: np.ndarray, assignment: str) -> str | None:
    if got.shape != expected.shape[:-2] + expected.shape[-2:][::-1]:
        return None
    return "height and width look swapped: rows are the second-to-last axis, columns the last"


def _leading_sizes(expected: np.ndarray, got: np.ndarray, assignment: str) -> str | None:
    if got.shape[:-2] == expected.shape[:-2]:
        return None
    return "the leading (batch/channel) sizes differ: check how you loop over N and C_out"


def _spatial_differences(expected: np.ndarray, got: np.ndarray) -> list[int]:
    return [g - e for g, e in zip(got.shape[-2:], expected.shape[-2:])]


def _off_by_one_size(expected: np.ndarray, got: np.ndarray, assignment: str) -> str | None:
    if not all(abs(d) <= 1 for d in _spatial_differences(expected, got)):
        return None
    return (f"off-by-one output size: yours is {got.shape[-2:]}, expected {expected.shape[-2:]}; "
            + SIZE_RULES.get(assignment, FULL_SIZE_RULE))


def _larger_than_expected(expected: np.ndarray, got: np.ndarray, assignment: str) -> str | None:
    if not all(d >= 0 for d in _spatial_differences(expected, got)):
        return None
    return (f"your output is larger than expected ({got.shape[-2:]} vs {expected.shape[-2:]}): "
            + LARGER_THAN_VALID.get(assignment, "did you pad the input, or let windows run past its edge?"))


#: patterns of a wrong output shape ``(expected, got, assignment) -> hint or None``, tried in order on answers
#: whose shape differs from the expected one
SHAPE_HINTS = (_more_dimensions, _swapped_height_width, _leading_sizes, _off_by_one_size, _larger_than_expected)


def _shape_hint(expected: np.ndarray, got: np.ndarray, assignment: str = "") -> str | None:
    """The first of :data:`SHAPE_HINTS` that recognises ``got``'s shape (which differs from ``expected``'s)."""
    return next(filter(None, (hint(expected, got, assignment) for hint in SHAPE_HINTS)), None)


def _integer_output_hint(expected: np.ndarray, got: np.ndarray) -> str | None:
    if got.dtype.kind not in "iub" or expected.dtype.kind != "f":
        return None
    truncated = np.array_equal(got, np.trunc(expected)) or np.array_equal(got, np.round(expected))
    return ("integer output array: your result has dtype " f"{got.dtype}, so every value written into it was "
            + ("cut to a whole number (it matches the expected values truncated)" if truncated else
               "cut to a whole number") + ". Create the output as a float array: np.zeros(shape), not "
            "np.zeros(shape, dtype=int) or np.zeros_like(x) of an integer x.")


@dataclass(frozen=True)
class WrongValues:
    """A wrong answer of the expected shape: finite float values ``got`` (as float64) against ``expected``."""

    expected: np.ndarray
    got: np.ndarray

    @property
    def scale(self) -> float:
        return max(1e-12, float(np.max(np.abs(self.expected))))

    def close(self, a: np.ndarray, b: np.ndarray) -> bool:
        """Equal up to rounding, relative to ``max|expected|``."""
        return float(np.max(np.abs(a - b))) <= 1e-5 * max(self.scale, 1.0)

    def negligible(self, value: float) -> bool:
        return abs(value) <= 1e-6 * max(self.scale, 1.0)


def _transposed(w: WrongValues) -> str | None:
    e = w.expected
    if e.ndim < 2 or e.shape[-1] != e.shape[-2]:
        return None
    t = np.swapaxes(e, -1, -2)
    if w.close(e, t) or not w.close(w.got, t):
        return None
    return "your result is transposed: rows and columns are swapped"


def _opposite_sign(w: WrongValues) -> str | None:
    return "your result has the opposite sign everywhere" if w.close(w.got, -w.expected) else None


def _scale_factor(w: WrongValues) -> str | None:
    denom = float(np.vdot(w.expected, w.expected))
    if denom <= 0:
        return None
    c = float(np.vdot(w.expected, w.got)) / denom
    if abs(c - 1) <= 1e-3 or abs(c) <= 1e-6 or not w.close(w.got, c * w.expected):
        return None
    return f"your result is the expected one times {c:.4g}: a scale factor (averaging, or a missing 2?)"


#: the channel axis of an answer by its number of dimensions: (N, C, H, W) and (C, H, W)
CHANNEL_AXIS = {4: 1, 3: 0}


def _bias_per_channel(w: WrongValues) -> str | None:
    axis = CHANNEL_AXIS.get(w.expected.ndim)
    if axis is None:
        return None
    reduce_axes = tuple(i for i in range(w.expected.ndim) if i != axis)
    offset = (w.got - w.expected).mean(axis=reduce_axes, keepdims=True)
    if w.negligible(float(np.max(np.abs(offset)))) or not w.close(w.got - offset, w.expected):
        return None
    return "off by a constant per output channel: a missing, doubled or misplaced bias?"


def _constant_offset(w: WrongValues) -> str | None:
    diff = w.got - w.expected
    if not w.negligible(float(np.ptp(diff))) or abs(float(diff.flat[0])) <= 1e-9:
        return None
    return f"off by the constant {float(diff.flat[0]):.4g} everywhere"


#: patterns of wrong values ``WrongValues -> hint or None``, tried in order: the first that recognises the answer
#: names the likely mistake
VALUE_HINTS = (_transposed, _opposite_sign, _scale_factor, _bias_per_channel, _constant_offset)


def generic_hint(expected: Any, got: Any, assignment: str = "") -> str | None:
    """A pattern recognised in a wrong array answer, or None. ``assignment`` picks the notation of the hints."""
    if not (isinstance(expected, np.ndarray) and isinstance(got, np.ndarray)):
        return None
    if got.shape != expected.shape:
        return _shape_hint(expected, got, assignment)
    if got.dtype.kind != "f" or not np.all(np.isfinite(got)) or expected.size <= 1:
        # a single value matches any scale or offset pattern: no hint is better than a wrong one
        return _integer_output_hint(expected, got)
    wrong = WrongValues(expected, got.astype(np.float64))
    return next(filter(None, (hint(wrong) for hint in VALUE_HINTS)), None)


#: mistakes recognised from the message of the exception an answer raised: (words in the message, hint)
ERROR_HINTS = (
    (("matmul", "mismatch"), "@ where * was meant? @ (np.matmul) is a matrix product, rows times columns, "
                             "and needs matching inner sizes; an element-wise product is written *."),
)


def error_hint(error: str | None) -> str | None:
    """A likely mistake behind an exception message, or None."""
    for words, hint in ERROR_HINTS:
        if error and all(w in error for w in words):
            return hint
    return None

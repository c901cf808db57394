"""Recognising common mistakes: the exercise's named misconceptions first, then generic patterns.

Generic patterns work for any array-valued exercise: an output size off by one or two, swapped spatial axes,
a flipped sign, a constant factor, a constant offset per channel (a missing or doubled bias).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .cases import Case
from .compare import compare
from .oracle import run_reference
from .spec import Exercise, Misconception


def matching_misconception(ex: Exercise, case: Case, got: Any, device: str) -> Misconception | None:
    """The first misconception whose output the answer matches, else None."""
    for m in ex.misconceptions:
        try:
            wrong = run_reference(m.compute, case.call, device)
        except Exception:  # the wrong variant may not exist for this case (e.g. shapes do not fit)
            continue
        if compare(wrong, got, ex.tolerance.rel_floor, tuple(ex.output_names)):
            return m
    return None


def named_misconception(ex: Exercise, case: Case, got: Any, device: str) -> str | None:
    """``"name: explanation"`` of the first misconception whose output the answer matches, else None."""
    m = matching_misconception(ex, case, got, device)
    return f"{m.name}: {m.explanation}" if m else None


#: the output-size rule in each assignment's own notation: 01 and 02 know only valid, stride-1 windows;
#: stride, padding and dilation arrive in 03
VALID_SIZE_RULE = "the valid output has H - kH + 1 rows and W - kW + 1 columns (one per window position)"
FULL_SIZE_RULE = "the number of window positions is floor((n + 2p - d(k-1) - 1) / s) + 1"
SIZE_RULES = {"01-single-channel": VALID_SIZE_RULE, "02-channels-batch": VALID_SIZE_RULE}
LARGER_THAN_VALID = {"01-single-channel": "did your loops run past the last window (range(H) instead of "
                                          "range(H - kH + 1)), or pad the image?",
                     "02-channels-batch": "did your loops run past the last window (range(H) instead of "
                                          "range(H - kH + 1))?"}


def _shape_hint(expected: np.ndarray, got: np.ndarray, assignment: str = "") -> str | None:
    if got.ndim != expected.ndim:
        return (f"your answer has {got.ndim} dimensions, the expected one {expected.ndim}: "
                "check which axes you keep (batch N, channels C, then H, W)")
    diffs = [g - e for g, e in zip(got.shape, expected.shape)]
    if got.shape == expected.shape[:-2] + expected.shape[-2:][::-1] and got.shape != expected.shape:
        return "height and width look swapped: rows are the second-to-last axis, columns the last"
    spatial = diffs[-2:]
    if any(diffs[:-2]):
        return "the leading (batch/channel) sizes differ: check how you loop over N and C_out"
    if all(abs(d) <= 1 for d in spatial) and any(spatial):
        return (f"off-by-one output size: yours is {got.shape[-2:]}, expected {expected.shape[-2:]}; "
                + SIZE_RULES.get(assignment, FULL_SIZE_RULE))
    if all(d >= 0 for d in spatial) and any(spatial):
        return (f"your output is larger than expected ({got.shape[-2:]} vs {expected.shape[-2:]}): "
                + LARGER_THAN_VALID.get(assignment, "did you pad the input, or let windows run past its edge?"))
    return None


def _integer_output_hint(expected: np.ndarray, got: np.ndarray) -> str | None:
    if got.dtype.kind not in "iub" or expected.dtype.kind != "f":
        return None
    truncated = np.array_equal(got, np.trunc(expected)) or np.array_equal(got, np.round(expected))
    return ("integer output array: your result has dtype " f"{got.dtype}, so every value written into it was "
            + ("cut to a whole number (it matches the expected values truncated)" if truncated else
               "cut to a whole number") + ". Create the output as a float array: np.zeros(shape), not "
            "np.zeros(shape, dtype=int) or np.zeros_like(x) of an integer x.")


def generic_hint(expected: Any, got: Any, assignment: str = "") -> str | None:
    """A pattern recognised in a wrong array answer, or None. ``assignment`` picks the notation of the hints."""
    if not (isinstance(expected, np.ndarray) and isinstance(got, np.ndarray)):
        return None
    if got.shape != expected.shape:
        return _shape_hint(expected, got, assignment)
    if got.dtype.kind != "f" or not np.all(np.isfinite(got)) or expected.size <= 1:
        return _integer_output_hint(expected, got)  # a single value matches any scale or offset pattern: no hint is better than a wrong one
    g = got.astype(np.float64)
    scale = max(1e-12, float(np.max(np.abs(expected))))
    close = lambda a, b: float(np.max(np.abs(a - b))) <= 1e-5 * max(scale, 1.0)  # noqa: E731
    transposed = np.swapaxes(expected, -1, -2) if expected.ndim >= 2 else expected
    if expected.ndim >= 2 and expected.shape[-1] == expected.shape[-2] and not close(expected, transposed) \
            and close(g, transposed):
        return "your result is transposed: rows and columns are swapped"
    if close(g, -expected):
        return "your result has the opposite sign everywhere"
    denom = float(np.vdot(expected, expected))
    if denom > 0:
        c = float(np.vdot(expected, g)) / denom
        if abs(c - 1) > 1e-3 and abs(c) > 1e-6 and close(g, c * expected):
            return f"your result is the expected one times {c:.4g}: a scale factor (averaging, or a missing 2?)"
    for axis in ((1,) if expected.ndim == 4 else (0,) if expected.ndim == 3 else ()):
        reduce_axes = tuple(i for i in range(expected.ndim) if i != axis)
        offset = (g - expected).mean(axis=reduce_axes, keepdims=True)
        if float(np.max(np.abs(offset))) > 1e-6 * max(scale, 1.0) and close(g - offset, expected):
            return "off by a constant per output channel: a missing, doubled or misplaced bias?"
    diff = g - expected
    if diff.size > 1 and float(np.ptp(diff)) <= 1e-6 * max(scale, 1.0) and abs(float(diff.flat[0])) > 1e-9:
        return f"off by the constant {float(diff.flat[0]):.4g} everywhere"
    return None


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

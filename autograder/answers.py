"""How the engine calls a student's function: an *answer* maps a :class:`Call` to an :class:`Outcome`.

In a notebook the answer is the function itself (:func:`local_answer`); in the isolated grader it is a proxy
that ships the call to a sandboxed process as plain data. Either way the engine only ever sees plain data.
"""
from __future__ import annotations

import contextlib
import copy
import io
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .compare import NotPlainData, to_plain
from .oracle import place_modules
from .spec import Call


@dataclass
class Outcome:
    """What one call produced: a plain ``value``, or an ``error`` message (exception, timeout, crash)."""

    value: Any = None
    error: str | None = None
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    raised: bool = False  # the function itself raised an ``Exception`` (not a timeout, exit or crash)
    timed_out: bool = False  # the call ran past its time limit (set by the sandboxed answer)

    @property
    def ok(self) -> bool:
        return self.error is None


class Answer(Protocol):
    def __call__(self, call: Call) -> Outcome: ...


def describe_exception(exc: BaseException, limit: int = 3) -> str:
    """The exception's last frames in the student's code, short enough for feedback."""
    if isinstance(exc, SystemExit):
        return f"the function called sys.exit({exc.code!r})"
    frames = traceback.extract_tb(exc.__traceback__)[1:][-limit:]
    where = "; ".join(f"line {f.lineno}: {f.line}" for f in frames if f.line)
    head = f"{type(exc).__name__}: {exc}".strip()
    return f"{head}" + (f"  (at {where})" if where else "")


def local_answer(fn: Callable[..., Any], encode: Callable[[Any], Any] | None = None, device: str = "cpu") -> Answer:
    """Call ``fn`` in this process on deep copies of the arguments; stderr and warnings are captured so that
    nothing reaches the notebook's stderr (nbgrader zeroes a cell that writes there). ``encode`` (the exercise's)
    turns the raw return value into plain data before :func:`to_plain`. ``nn.Module`` arguments are handed over on
    ``device`` (the grading device), like the oracle's."""

    def answer(call: Call) -> Outcome:
        import time

        args, kwargs = call.args, dict(call.kwargs)
        if device != "cpu":
            args, kwargs = place_modules(args, device), place_modules(kwargs, device)
        args, kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
        captured = io.StringIO()
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(captured):
            warnings.simplefilter("always")
            start = time.perf_counter()
            try:
                raw = fn(*args, **kwargs)
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - SystemExit too: it costs the case, not the run
                return Outcome(error=describe_exception(exc), seconds=time.perf_counter() - start,
                               raised=isinstance(exc, Exception))
            seconds = time.perf_counter() - start
        notes = tuple(f"{w.category.__name__}: {w.message}" for w in caught[:3])
        if captured.getvalue().strip():
            notes += (f"wrote to stderr: {captured.getvalue().strip()[:200]}",)
        try:
            with warnings.catch_warnings(record=True) as during_encode:  # what encode notices is feedback only
                warnings.simplefilter("always")
                encoded = encode(raw) if encode else raw
            notes += tuple(f"{w.category.__name__}: {w.message}" for w in during_encode[:1])
            value = to_plain(encoded)
        except NotPlainData as exc:
            return Outcome(error=f"returned {exc}, which is not an array or number", warnings=notes,
                           seconds=seconds)
        except Exception as exc:  # noqa: BLE001 - encoding a malformed object
            return Outcome(error=f"returned something the grader cannot read ({describe_exception(exc)})",
                           warnings=notes, seconds=seconds)
        return Outcome(value=value, warnings=notes, seconds=seconds)

    return answer


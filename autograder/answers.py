"""How the engine calls a student's function: an *answer* maps a :class:`Call` to an :class:`Outcome`.

In a notebook the answer is the function itself (:func:`local_answer`); in the isolated grader it is a proxy
that ships the call to a sandboxed process as plain data. Either way the engine only ever sees plain data.
"""
from __future__ import annotations

import contextlib
import copy
import inspect
import io
import os
import signal
import sys
import threading
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

import numpy as np

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
    where: str = ""  # the student's function in which the exception was raised (innermost student frame)
    timed_out: bool = False  # the call ran past its time limit (in the kernel or the sandbox) and was stopped
    mutated: tuple[str, ...] = ()  # names of the arguments the call changed in place (feedback only)

    @property
    def ok(self) -> bool:
        return self.error is None


class Answer(Protocol):
    def __call__(self, call: Call) -> Outcome: ...


_LIBRARY_DIRS = tuple({os.path.realpath(d) for d in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                       os.path.dirname(os.path.abspath(__file__)))})


def _is_student_frame(frame: traceback.FrameSummary) -> bool:
    """Frames of notebook cells (or any code outside Python, its packages and the autograder) are the student's."""
    path = os.path.realpath(frame.filename) if not frame.filename.startswith("<") else frame.filename
    return not path.startswith(_LIBRARY_DIRS) and "site-packages" not in path


def student_frames(exc: BaseException) -> list[traceback.FrameSummary]:
    """The traceback's frames in the student's code, outermost first (the call into the answer excluded)."""
    return [f for f in traceback.extract_tb(exc.__traceback__)[1:] if _is_student_frame(f)]


def describe_exception(exc: BaseException, limit: int = 3) -> str:
    """The exception's last frames in the student's code, short enough for feedback, naming the function of each
    frame (``line 7 in corr2d: ...``), so that an error inside a helper is seen to come from the helper."""
    if isinstance(exc, SystemExit):
        return f"the function called sys.exit({exc.code!r})"
    frames = student_frames(exc) or traceback.extract_tb(exc.__traceback__)[1:]
    distinct = [f for i, f in enumerate(frames) if i == 0 or (f.filename, f.lineno) != (frames[i - 1].filename,
                                                                                   frames[i - 1].lineno)]
    where = "; ".join(f"line {f.lineno} in {f.name}: {f.line}" for f in distinct[-limit:] if f.line)
    head = f"{type(exc).__name__}: {exc}".strip()
    return f"{head}" + (f"  (at {where})" if where else "")


def raising_function(exc: BaseException) -> str:
    """The name of the innermost student function on the traceback ("" when none is the student's)."""
    frames = student_frames(exc)
    return frames[-1].name if frames else ""


class CallTimeout(BaseException):
    """Raised inside a student call that ran past the per-call time limit (a BaseException: ``except Exception``
    in the answer does not swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Stop the block with :class:`CallTimeout` after ``seconds`` of wall-clock time (SIGALRM, so only in the main
    thread of a POSIX process, which is where a notebook kernel runs cells); elsewhere, or with ``None``, no
    limit. An alarm set by the caller is restored afterwards."""
    usable = seconds is not None and seconds > 0 and hasattr(signal, "setitimer") and \
        threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def stop(signum, frame):
        raise CallTimeout()

    previous = signal.signal(signal.SIGALRM, stop)
    outer = signal.setitimer(signal.ITIMER_REAL, float(seconds))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, *outer)


def timeout_message(seconds: float) -> str:
    return (f"stopped after {seconds:g} s: one call may take at most {seconds:g} s on these small inputs. "
            "An endless loop (a while loop whose condition never changes?) or a very slow one")


def _snapshot(args: tuple, kwargs: dict, fn: Callable) -> dict[str, np.ndarray]:
    """Copies of the array arguments, by the student's parameter names."""
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs).arguments
    except (TypeError, ValueError):
        bound = {f"argument {i + 1}": a for i, a in enumerate(args)} | dict(kwargs)
    return {name: value.copy() for name, value in bound.items() if isinstance(value, np.ndarray)}


def changed_in_place(before: dict[str, np.ndarray], args: tuple, kwargs: dict, fn: Callable) -> tuple[str, ...]:
    """Names of the array arguments whose values differ from ``before`` after the call."""
    after = _snapshot(args, kwargs, fn)
    return tuple(name for name, old in before.items()
                 if name in after and not np.array_equal(old, after[name], equal_nan=True))


def local_answer(fn: Callable[..., Any], encode: Callable[[Any], Any] | None = None, device: str = "cpu",
                 seconds: float | None = None) -> Answer:
    """Call ``fn`` in this process on deep copies of the arguments; stderr and warnings are captured so that
    nothing reaches the notebook's stderr (nbgrader zeroes a cell that writes there). ``encode`` (the exercise's)
    turns the raw return value into plain data before :func:`to_plain`. ``nn.Module`` arguments are handed over on
    ``device`` (the grading device), like the oracle's. ``seconds`` limits each call (see :func:`time_limit`);
    arguments the call changes in place are reported in ``Outcome.mutated``."""

    def answer(call: Call) -> Outcome:
        args, kwargs = call.args, dict(call.kwargs)
        if device != "cpu":
            args, kwargs = place_modules(args, device), place_modules(kwargs, device)
        args, kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
        before = _snapshot(args, kwargs, fn)
        captured = io.StringIO()
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stderr(captured):
            warnings.simplefilter("always")
            start = time.perf_counter()
            try:
                with time_limit(seconds):
                    raw = fn(*args, **kwargs)
            except KeyboardInterrupt:
                raise
            except CallTimeout:
                return Outcome(error=timeout_message(seconds), seconds=time.perf_counter() - start,
                               timed_out=True)
            except BaseException as exc:  # noqa: BLE001 - SystemExit too: it costs the case, not the run
                return Outcome(error=describe_exception(exc), seconds=time.perf_counter() - start,
                               raised=isinstance(exc, Exception), where=raising_function(exc))
            seconds_taken = time.perf_counter() - start
        notes = tuple(f"{w.category.__name__}: {w.message}" for w in caught[:3])
        if captured.getvalue().strip():
            notes += (f"wrote to stderr: {captured.getvalue().strip()[:200]}",)
        mutated = changed_in_place(before, args, kwargs, fn)
        try:
            with warnings.catch_warnings(record=True) as during_encode:  # what encode notices is feedback only
                warnings.simplefilter("always")
                encoded = encode(raw) if encode else raw
            notes += tuple(f"{w.category.__name__}: {w.message}" for w in during_encode[:1])
            value = to_plain(encoded)
        except NotPlainData as exc:
            return Outcome(error=f"returned {exc}, which is not an array or number", warnings=notes,
                           seconds=seconds_taken, mutated=mutated)
        except Exception as exc:  # noqa: BLE001 - encoding a malformed object
            return Outcome(error=f"returned something the grader cannot read ({describe_exception(exc)})",
                           warnings=notes, seconds=seconds_taken, mutated=mutated)
        return Outcome(value=value, warnings=notes, seconds=seconds_taken, mutated=mutated)

    return answer

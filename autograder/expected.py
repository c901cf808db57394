"""The oracle's expected values of an exercise's grading cases: computed once per process, possibly ahead of time.

A notebook's student code runs in another process (the sandbox); while the grader waits for it to start and run
the cells, a background thread (:func:`prefetch`) builds each exercise's grading cases and computes their expected
values in order. The engine takes each value from the exercise's :class:`Expected` (waiting for it when the
thread has not reached it yet, computing it itself when no thread is at work). The values are kept for the
process: a ``batch`` grading process grades every student of an assignment on the same cases (the course seed),
so each reference is computed once per process, not once per notebook.

Nothing here changes what is computed: each value is :func:`~autograder.oracle.run_reference` of the case (fresh
float64 copies of its arguments, one thread, no TF32), and an oracle that raises raises again, in the grading
thread, when the engine asks for that case. Expected values are shared between notebooks and never mutated.
"""
from __future__ import annotations

import contextlib
import threading
from typing import Any, Callable, Sequence

from .cases import Case
from .oracle import oracle_numerics, run_reference
from .spec import Exercise

_MISSING = object()


class _Failed:
    """The exception an oracle raised on a case (re-raised where the value is asked for)."""

    def __init__(self, exc: BaseException):
        self.exc = exc


class Expected:
    """Expected values of ``cases`` (one exercise's grading cases, in order) on ``device``.

    ``store(case)`` is the engine's reference for a case: the stored value of one of ``cases`` (the same object),
    :func:`run_reference` for any other case (a shrunk one)."""

    def __init__(self, ex: Exercise, cases: Sequence[Case], device: str):
        self.ex, self.cases, self.device = ex, list(cases), device
        self.source = cases         # the list the cases came from (the key of the process's store)
        self._index = {id(c): i for i, c in enumerate(self.cases)}
        self._values: list[Any] = [_MISSING] * len(self.cases)
        self._ready = threading.Condition()
        self._filling = False       # a thread is computing the values in order

    def __call__(self, case: Case) -> Any:
        i = self._index.get(id(case))
        if i is None or self.cases[i] is not case:
            return run_reference(self.ex.oracle, case.call, self.device)
        with self._ready:
            while self._values[i] is _MISSING and self._filling:
                self._ready.wait()
            value = self._values[i]
        if value is _MISSING:
            value = self._store(i, self._compute(i))
        if isinstance(value, _Failed):
            raise value.exc
        return value

    @property
    def complete(self) -> bool:
        return all(v is not _MISSING for v in self._values)

    def _compute(self, i: int) -> Any:
        try:
            return run_reference(self.ex.oracle, self.cases[i].call, self.device)
        except Exception as exc:  # noqa: BLE001 - raised again where the engine asks for this case
            return _Failed(exc)

    def _store(self, i: int, value: Any) -> Any:
        with self._ready:
            if self._values[i] is _MISSING:
                self._values[i] = value
            self._ready.notify_all()
            return self._values[i]

    def fill(self, background: bool = False) -> None:
        """Compute every value not known yet, in order (under the oracle's numerics, entered once). In the
        ``background``, each case waits while a timed part runs (:func:`quiet`)."""
        with self._ready:
            if self._filling:
                return
            self._filling = True
        try:
            with oracle_numerics():
                for i in range(len(self.cases)):
                    if self._values[i] is not _MISSING:
                        continue
                    if background:
                        with _working():
                            self._store(i, self._compute(i))
                    else:
                        self._store(i, self._compute(i))
        finally:
            with self._ready:
                self._filling = False
                self._ready.notify_all()


#: background work and timed parts exclude each other: a speed part times torch in this process
_QUIET = threading.Condition()
_STATE = {"quiet": 0, "working": 0}


@contextlib.contextmanager
def _working():
    with _QUIET:
        while _STATE["quiet"]:
            _QUIET.wait()
        _STATE["working"] += 1
    try:
        yield
    finally:
        with _QUIET:
            _STATE["working"] -= 1
            _QUIET.notify_all()


@contextlib.contextmanager
def quiet():
    """No background computation while the block runs (it waits for the case being computed): for parts that
    time code in this process."""
    with _QUIET:
        _STATE["quiet"] += 1
        while _STATE["working"]:
            _QUIET.wait()
    try:
        yield
    finally:
        with _QUIET:
            _STATE["quiet"] -= 1
            _QUIET.notify_all()


_LOCK = threading.Lock()
_STORES: dict[tuple, Expected] = {}
_MAX_STORES = 64


def expected_values(ex: Exercise, cases: Sequence[Case], device: str) -> Expected:
    """The process's :class:`Expected` of ``ex`` on these ``cases`` (the same list object: what
    :func:`autograder.isolation.grader.grading_cases` caches)."""
    key = (ex.assignment, ex.name, id(ex.oracle), id(cases), device)
    with _LOCK:
        store = _STORES.get(key)
        if store is None or store.source is not cases:
            if len(_STORES) >= _MAX_STORES:
                _STORES.clear()
            store = _STORES[key] = Expected(ex, cases, device)
        return store


def prefetch(exercises: Sequence[Exercise], cases_of: Callable[[Exercise], Sequence[Case]], device: str,
             before: Callable[[], Any] | None = None) -> threading.Thread:
    """Start a daemon thread that runs ``before()`` (e.g. ``import torch``), then for each exercise in order builds
    its cases (``cases_of``) and fills its :class:`Expected`. Returns the thread (nobody needs to join it: the
    engine waits for each value it needs; a failure is seen again by the grading thread when it computes)."""

    def work() -> None:
        try:
            if before is not None:
                before()
            for ex in exercises:
                expected_values(ex, cases_of(ex), device).fill(background=True)
        except Exception:  # noqa: BLE001 - the grading thread computes (and reports) whatever is missing
            pass

    thread = threading.Thread(target=work, name="convlab-expected", daemon=True)
    thread.start()
    return thread

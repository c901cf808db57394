"""The oracle's expected values of an exercise's grading cases: computed once per process, and ahead of time.

A notebook's student code runs in another process (the sandbox). While the grader starts it, runs the cells and
reads the answers, :func:`prefetch` computes the expected values of every exercise's grading cases, in order: on
the CPU in a process forked from the grader (the machine's other core; it imports torch itself, so a grader whose
answers are all right never needs to), on CUDA in a thread. The engine takes each value from the exercise's
:class:`Expected`, waiting for it when it is on its way, computing it itself when nothing is at work (or when the
forked process could not send it). The values are kept for the process: a ``batch`` grading process grades every
student of an assignment on the same cases (the course seed), so each reference is computed once per process, not
once per notebook.

Nothing here changes what is computed: each value is :func:`~autograder.oracle.run_reference` of the case (fresh
float64 copies of its arguments, one thread, no TF32) on the same cases, drawn from the same seed; an oracle that
raises raises again, in the grading thread, when the engine asks for that case. Expected values are shared between
notebooks and never mutated. Background work stops while a part times code (:func:`quiet`). The forked process is
trusted code only: it starts before the notebook's sandbox and exchanges nothing with it.
"""
from __future__ import annotations

import contextlib
import os
import pickle
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any, Callable, Sequence

from .cases import Case
from .oracle import oracle_numerics, run_reference
from .spec import Exercise

_MISSING = object()
#: the engine stops waiting for values that are on their way when none has arrived for this long (a stuck
#: background computation costs time, never a hang); it then computes them itself
STALL_SECONDS = 60.0


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
        self._filling = False       # values are being computed in order (by a thread, or a forked process)

    def __call__(self, case: Case) -> Any:
        i = self._index.get(id(case))
        if i is None or self.cases[i] is not case:
            return run_reference(self.ex.oracle, case.call, self.device)
        value = self._values[i]
        if value is not _MISSING and type(value) is not _Failed:    # known: no lock to take
            return value
        with self._ready:
            while self._values[i] is _MISSING and self._filling:
                if not self._ready.wait(STALL_SECONDS):   # nothing arrived for that long: stop waiting, and
                    self._filling = False                   # end a stuck prefetching process (none lingers)
                    _signal_children(signal.SIGKILL)
            value = self._values[i]
        if value is _MISSING:
            value = self._store(i, self._compute(i))
        if isinstance(value, _Failed):
            raise value.exc
        return value

    def pending(self, case: Case) -> bool:
        """Whether asking for ``case``'s value now would wait for values still on their way (the engine reads
        answers ahead meanwhile: :func:`autograder.engine._answer_while_waiting`)."""
        i = self._index.get(id(case))
        coming = self._filling or (self.ex.assignment, self.ex.name) in _COMING
        return i is not None and coming and self._values[i] is _MISSING

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

    def begin(self) -> None:
        """Values are on their way (from :func:`prefetch`'s process): the engine waits for them."""
        with self._ready:
            self._filling = True

    def put(self, start: int, values: Sequence[Any], unknown: Sequence[int]) -> None:
        """Store ``values`` from index ``start`` on, except the indices in ``unknown`` (the engine computes those
        itself, and sees their exception)."""
        skip = set(unknown)
        with self._ready:
            for i, value in enumerate(values, start):
                if i not in skip and i < len(self._values) and self._values[i] is _MISSING:
                    self._values[i] = value
            self._ready.notify_all()

    def end(self) -> None:
        """No more values are coming: what is missing is computed by the engine when it asks."""
        with self._ready:
            self._filling = False
            self._ready.notify_all()

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


#: process ids of the prefetching processes still at work (stopped while a part is timed)
_CHILDREN: set = set()


def _signal_children(signum: int) -> None:
    for pid in list(_CHILDREN):
        try:
            os.kill(pid, signum)
        except OSError:
            _CHILDREN.discard(pid)


@contextlib.contextmanager
def quiet():
    """No background computation while the block runs (a prefetching thread finishes the case it computes, a
    prefetching process is stopped): for parts that time code."""
    with _QUIET:
        _STATE["quiet"] += 1
        if _STATE["quiet"] == 1:
            _signal_children(signal.SIGSTOP)
        while _STATE["working"]:
            _QUIET.wait()
    try:
        yield
    finally:
        with _QUIET:
            _STATE["quiet"] -= 1
            if _STATE["quiet"] == 0:
                _signal_children(signal.SIGCONT)
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
             before: Callable[[], Any] | None = None, process: bool | None = None) -> threading.Thread:
    """Compute the exercises' expected values in the background, in order; returns the thread that fills the stores
    (nobody needs to join it: the engine waits for each value it needs, and computes what never comes).

    ``process`` (default :func:`fork_pays`): a forked process computes them, on the machine's other core, and this
    process never needs torch for a correct answer; otherwise a thread of this process does, after ``before()``
    (e.g. ``import torch``)."""
    todo = list(exercises)
    if (fork_pays(todo, device) if process is None else process) and hasattr(os, "fork"):
        try:
            return _prefetch_in_process(todo, cases_of, device)
        except OSError:
            pass
    return _prefetch_in_thread(todo, cases_of, device, before)


def fork_pays(exercises: Sequence[Exercise], device: str) -> bool:
    """Whether a forked process should compute the values: on the CPU (CUDA does not survive a fork), while this
    process has not imported torch (a fork then saves importing it here; once it is imported a thread is cheaper)
    and when no exercise has a view or extra parts (they use torch here anyway: two imports would cost more CPU
    than the other core saves)."""
    return device == "cpu" and "torch" not in sys.modules and \
        not any(ex.view is not None or ex.parts for ex in exercises)


#: (assignment, name) of the exercises a prefetching thread is still to compute (``import torch`` first)
_COMING: set = set()


def _prefetch_in_thread(exercises, cases_of, device, before) -> threading.Thread:
    keys = [(ex.assignment, ex.name) for ex in exercises]
    _COMING.update(keys)

    def work() -> None:
        try:
            if before is not None:
                before()
            for ex, key in zip(exercises, keys):
                expected_values(ex, cases_of(ex), device).fill(background=True)
                _COMING.discard(key)
        except Exception:  # noqa: BLE001 - the grading thread computes (and reports) whatever is missing
            pass
        finally:
            _COMING.difference_update(keys)

    thread = threading.Thread(target=work, name="convlab-expected", daemon=True)
    thread.start()
    return thread


#: values per message from the prefetching process
CHUNK = 256


def _compute_chunk(ex: Exercise, cases: Sequence[Case], start: int, device: str) -> tuple[list, list]:
    values, unknown = [], []
    for i in range(start, min(start + CHUNK, len(cases))):
        try:
            values.append(run_reference(ex.oracle, cases[i].call, device))
        except Exception:  # noqa: BLE001 - the engine computes this one itself and sees the exception
            values.append(None)
            unknown.append(i)
    return values, unknown


def send_values(send: Callable[[tuple], Any], head: tuple, ex: Exercise, cases: Sequence[Case],
                device: str) -> None:
    """Compute the expected values of ``cases`` chunk by chunk and ``send(head + (start, values, unknown))`` each
    (``unknown``: indices whose oracle raised); a chunk that cannot be pickled goes as all unknown (the engine then
    computes those cases itself)."""
    for start in range(0, len(cases), CHUNK):
        values, unknown = _compute_chunk(ex, cases, start, device)
        try:
            send((*head, start, values, unknown))
        except (TypeError, ValueError, AttributeError, pickle.PicklingError):
            send((*head, start, [], list(range(start, start + len(values)))))


def fill_forked(stores: Sequence["Expected"]) -> Callable[[], None]:
    """Start computing the missing values of ``stores`` in a forked process (it inherits their cases: nothing is
    pickled but the values), on another core while this process does something else; returns the function that
    collects them into the stores and computes itself whatever did not come (the process failed, a value could not
    be pickled). Used once per batch, before its grading processes are forked (:mod:`.isolation.head_start`)."""
    read_fd, write_fd = os.pipe()

    def compute() -> None:
        close_all_but(write_fd)
        conn = Connection(write_fd, readable=False)
        with oracle_numerics():
            for k, store in enumerate(stores):
                send_values(conn.send, (k,), store.ex, store.cases, store.device)

    pid = forked(compute)
    os.close(write_fd)

    def read() -> None:     # at once, in a thread: the child never waits on a full pipe
        conn = Connection(read_fd, writable=False)
        try:
            while True:
                k, start, values, unknown = conn.recv()
                stores[k].put(start, values, unknown)
        except (EOFError, OSError, IndexError, ValueError, TypeError, pickle.UnpicklingError):
            pass
        finally:
            conn.close()
            os.waitpid(pid, 0)

    reader = threading.Thread(target=read, name="convlab-values", daemon=True)
    reader.start()

    def collect() -> None:
        reader.join()
        for store in stores:
            store.fill()

    return collect


def _child(exercises, cases_of, device, conn, given: Connection) -> None:
    """The forked process: ``(exercise index, start, values, unknown indices)`` messages, chunk by chunk, then
    ``(exercise index, None, None, None)`` when an exercise is done. Each exercise's cases come from the grader
    (``given``: it draws them anyway, meanwhile this process imports torch); when they do not, they are drawn
    here, from the same seed: the same cases, in the same order."""
    with oracle_numerics():
        for k, ex in enumerate(exercises):
            send_values(conn.send, (k,), ex, _given_cases(given, ex, cases_of), device)
            conn.send((k, None, None, None))


def _given_cases(given: Connection, ex: Exercise, cases_of) -> Sequence[Case]:
    try:
        cases = given.recv()
    except (EOFError, OSError, pickle.UnpicklingError, AttributeError, ValueError, TypeError):
        cases = None
    return cases if cases is not None else cases_of(ex)


def _send_cases(exercises, cases_of, conn: Connection) -> None:
    """The grader's side of ``given``: each exercise's cases in order (``None``: draw them yourself)."""
    try:
        for ex in exercises:
            try:
                conn.send(list(cases_of(ex)))
            except (TypeError, ValueError, AttributeError, pickle.PicklingError):
                conn.send(None)
    except OSError:         # the process has ended: nothing more to give
        pass
    finally:
        conn.close()


def _fork_child(exercises, cases_of, device) -> tuple[int, Connection, Connection]:
    """``(pid, its values, its cases)``: the forked process and the two pipes to it."""
    read_fd, write_fd = os.pipe()
    cases_read, cases_write = os.pipe()

    def compute() -> None:
        close_all_but(write_fd, cases_read)     # nothing of the parent's (a sandbox's pipes) stays open here
        _child(exercises, cases_of, device, Connection(write_fd, readable=False),
               Connection(cases_read, writable=False))

    pid = forked(compute)
    os.close(write_fd)
    os.close(cases_read)
    return pid, Connection(read_fd, writable=False), Connection(cases_write, readable=False)


def forked(work: Callable[[], Any]) -> int:
    """The pid of a child that runs ``work()`` and leaves at once, without the parent's exit handlers: exit status
    0 when it returned, 1 when it raised (the caller reads its pipes and waits for it)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            work()
            code = 0
        finally:
            os._exit(code)
    return pid


def close_all_but(*keep: int) -> None:
    """Close every file descriptor from 3 up but ``keep`` (a forked oracle process holds nothing of its parent's)."""
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)


def _prefetch_in_process(exercises, cases_of, device) -> threading.Thread:
    pid, conn, cases_conn = _fork_child(exercises, cases_of, device)
    _CHILDREN.add(pid)
    if _STATE["quiet"]:
        _signal_children(signal.SIGSTOP)
    threading.Thread(target=_send_cases, args=(exercises, cases_of, cases_conn), name="convlab-cases",
                     daemon=True).start()

    def read() -> None:
        stores: dict[int, Expected] = {}
        try:
            for k, ex in enumerate(exercises):
                stores[k] = expected_values(ex, cases_of(ex), device)
                stores[k].begin()
            while True:
                k, start, values, unknown = conn.recv()
                if start is None:
                    stores.pop(k).end()
                else:
                    stores[k].put(start, values, unknown)
        except (EOFError, OSError, KeyError, ValueError, TypeError, pickle.UnpicklingError):
            pass
        finally:
            for store in stores.values():
                store.end()
            conn.close()
            _CHILDREN.discard(pid)
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass

    thread = threading.Thread(target=read, name="convlab-expected", daemon=True)
    thread.start()
    return thread

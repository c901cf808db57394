"""Oracle processes shared by a whole local ``batch``: they draw every assignment's grading cases and compute their
expected values once, and each grading process of the pool receives them, instead of drawing and computing them
itself after its own ``import torch`` (on 2 cores that duplicated work was a quarter of a class's CPU time).

The batch (parent): :class:`Feed` forks the oracle processes (one per four graders) before the pool
starts; each pool process takes its pipes in the pool's initialiser (:func:`attach`) and the parent drops its
copies once the pool has started
(:meth:`Feed.release`). An oracle process forks a child at once, which imports torch while its parent draws the
cases; the parent sends the cases, then hands them to the child, which sends the values (one writer per pipe at a
time). The messages are pickled (the processes are all the grader's own, forked before any
student code runs; the sandboxes never hold these pipes):

- ``("cases", key, cases)``: the grading cases of ``key = (assignment, exercise, seed, factor)``, in order;
- ``("values", key, start, values, unknown)``: expected values from case ``start`` on (:mod:`autograder.expected`
  chunks; ``unknown``: cases whose oracle raised, which the engine computes itself and sees raise);
- ``("end", key)``.

A grading process asks for the cases of a key (:func:`cases`, waiting for them) and connects a key's
:class:`~autograder.expected.Expected` store (:func:`bind`). Nothing changes what is graded: the cases are those
:func:`autograder.isolation.grader.grading_cases` draws from the same seed and the values are
:func:`~autograder.oracle.run_reference` of them. What the feed does not cover, or does not deliver within
``expected.STALL_SECONDS``, is drawn and computed as without it. The oracle process is not paused while a speed
part is timed in another process (neither is that process's grading).
"""
from __future__ import annotations

import os
import pickle
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any, Callable, Sequence

from . import expected

Key = tuple  # (assignment, exercise name, seed, cases factor)


def key_of(ex, seed: int, factor: int) -> Key:
    return (ex.assignment, ex.name, int(seed), int(factor))


# ------------------------------------------------------------------------------------------ the batch's side

def pays(assignment: str, device: str) -> bool:
    """Whether one oracle process for the pool saves work on ``assignment``: on the CPU, where the grading processes
    need no torch themselves (no views, no extra parts: :func:`autograder.expected.fork_pays`). Where they import
    it anyway (02, 06, 07), each computing its own values costs less than receiving them (measured on 2 cores)."""
    from . import registry

    exercises = registry.assignments().get(assignment, [])
    return device == "cpu" and bool(exercises) and \
        not any(ex.view is not None or ex.parts for ex in exercises)


class Feed:
    """The oracle processes of a local batch and their pipes (one per oracle process and pool process).

    ``plan``: ``(assignment, seed)`` in the order the batch grades them; ``draw(ex, seed, factor)`` the grading
    cases (``grader.grading_cases``); ``workers``: the pool's size; ``oracles``: how many oracle processes share
    the exercises, dealt in turn (the first exercise to one, the second to the next...; the executor asks for one
    per four graders: on 2 cores a second one only adds an ``import torch``)."""

    def __init__(self, plan: Sequence[tuple[str, int]], factor: int, device: str, workers: int,
                 draw: Callable[[Any, int, int], list], oracles: int = 1):
        import multiprocessing

        from . import registry

        self.factor, self.device, self.draw, self.workers = int(factor), device, draw, workers
        exercises = registry.assignments()
        self.items = [(ex, int(seed)) for assignment, seed in plan for ex in exercises.get(assignment, [])]
        self.oracles = max(1, min(oracles, len(self.items)))
        self.owner = {key_of(ex, seed, self.factor): i % self.oracles for i, (ex, seed) in enumerate(self.items)}
        self.read_fds: list[list[int]] = []       # [pool process][oracle process]
        self.pids: list[int] = []
        self.taken = multiprocessing.get_context("fork").Value("i", 0)

    def start(self) -> "Feed":
        pipes = [[os.pipe() for _ in range(self.oracles)] for _ in range(self.workers)]
        for k in range(self.oracles):
            self.pids.append(self._fork(k, [row[k][1] for row in pipes]))
        for row in pipes:
            for _, w in row:
                os.close(w)
        self.read_fds = [[r for r, _ in row] for row in pipes]
        return self

    def _fork(self, k: int, write_fds: list[int]) -> int:
        def serve() -> None:
            expected.close_all_but(*write_fds)   # nothing of the parent's (the output lock, the pool's pipes)
            _die_with_parent()
            _serve(self.items[k::self.oracles], self, [Connection(fd, readable=False) for fd in write_fds])

        return expected.forked(serve)

    def release(self) -> None:
        """The pool has started (each process holds its pipes): the parent's copies go, so that a pipe whose process
        died is closed and the oracle processes stop writing to it."""
        for fd in (fd for row in self.read_fds for fd in row):
            _close(fd)
        self.read_fds = []

    def close(self) -> None:
        self.release()
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (OSError, ChildProcessError):
                pass
        self.pids = []


def _close(fd: int) -> None:
    try:
        os.close(fd)
    except OSError:
        pass


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the parent's close() kills it
        pass


def _sender(conns: list[Connection]) -> Callable[[tuple], None]:
    """``send(message)``: pickled once (or already: ``pickled``), written to every connection still open (none left:
    this process ends)."""
    out = list(conns)

    def send(message: Any, pickled: bool = False) -> None:
        data = message if pickled else pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        for conn in list(out):
            try:
                conn.send_bytes(data)
            except OSError:          # that grading process is gone
                out.remove(conn)
        if not out:
            raise SystemExit(0)

    return send


def _serve(items: list, feed: Feed, conns: list[Connection]) -> None:
    """An oracle process: draws its exercises' cases and sends them, while a child forked at once imports torch
    (on 2 cores the import overlaps the drawing instead of following it); the child then receives the same
    cases once the last one has gone to the grading processes, and sends their values by chunks (one writer per
    pipe at a time)."""
    given, to_child = os.pipe()

    def values_child() -> None:
        os.close(to_child)
        _die_with_parent()
        _send_values(items, feed, Connection(given, writable=False), _sender(conns))

    pid = expected.forked(values_child)
    os.close(given)
    child = Connection(to_child, readable=False)
    try:
        messages = []
        send = _sender(conns)
        for ex, seed in items:
            messages.append(pickle.dumps(("cases", key_of(ex, seed, feed.factor), feed.draw(ex, seed, feed.factor)),
                                         protocol=pickle.HIGHEST_PROTOCOL))
            send(messages[-1], pickled=True)
        for conn in conns:
            conn.close()
        for data in messages:      # the child reads them once torch is imported
            child.send_bytes(data)
    finally:
        child.close()
        os.waitpid(pid, 0)


def _send_values(items: list, feed: Feed, given: Connection, send: Callable[[tuple], None]) -> None:
    """The oracle process's child: each exercise's values as soon as its cases come (its parent sends them once
    every case has gone to the grading processes: the pipes have one writer at a time)."""
    from .oracle import oracle_numerics, torch

    torch()
    with oracle_numerics():
        for ex, _seed in items:
            _kind, key, cases = pickle.loads(given.recv_bytes())
            expected.send_values(send, ("values", key), ex, cases, feed.device)
            send(("end", key))
    given.close()


# ------------------------------------------------------------------------------------------ a grading process

class _Entry:
    def __init__(self):
        self.cases: list | None = None
        self.chunks: list[tuple] = []
        self.done = False
        self.store: expected.Expected | None = None


_COND = threading.Condition()
_FED: dict = {"owner": {}, "open": set()}   # key -> oracle process; the oracle processes still sending
_ENTRIES: dict[Key, _Entry] = {}


def attach(feed: Feed | None) -> None:
    """In a pool process: take the next free set of pipes of ``feed`` (none left: grade without it), read them."""
    if feed is None or not feed.read_fds:
        return
    with feed.taken.get_lock():
        index = feed.taken.value
        feed.taken.value += 1
    for i, row in enumerate(feed.read_fds):
        if i != index:
            for fd in row:
                _close(fd)
    if index >= len(feed.read_fds):
        return
    with _COND:
        _FED.update(owner=dict(feed.owner), open=set(range(len(feed.read_fds[index]))))
    for k, fd in enumerate(feed.read_fds[index]):
        conn = Connection(fd, writable=False)
        threading.Thread(target=_read, args=(k, conn), name=f"convlab-feed-{k}", daemon=True).start()


def _read(k: int, conn: Connection) -> None:
    try:
        while True:
            _take(pickle.loads(conn.recv_bytes()))
    except (EOFError, OSError, pickle.UnpicklingError, ValueError, TypeError, AttributeError, ImportError):
        pass
    finally:
        try:
            conn.close()
        except OSError:
            pass
        with _COND:
            _FED["open"].discard(k)
            for key, entry in _ENTRIES.items():
                if entry.store is not None and not entry.done and _FED["owner"].get(key) == k:
                    entry.store.end()
            _COND.notify_all()


def _take(message: tuple) -> None:
    kind, key = message[0], message[1]
    with _COND:
        entry = _ENTRIES.setdefault(key, _Entry())
        if kind == "cases":
            entry.cases = message[2]
        elif kind == "values":
            entry.chunks.append(message[2:])
            if entry.store is not None:
                entry.store.put(*message[2:])
        elif kind == "end":
            entry.done = True
            if entry.store is not None:
                entry.store.end()
        _COND.notify_all()


def covers(ex, seed: int | None, factor: int) -> bool:
    """Whether this process's feed brings (or brought) ``ex``'s cases and values."""
    with _COND:
        return seed is not None and key_of(ex, seed, factor) in _FED["owner"]


def _coming(key: Key) -> bool:
    """Whether the oracle process that owns ``key`` still sends (call with ``_COND`` held)."""
    return _FED["owner"].get(key) in _FED["open"]


def cases(ex, seed: int, factor: int) -> list | None:
    """The feed's grading cases of ``ex``, once they arrive (``None``: not covered, or its oracle process ended or
    went silent for ``expected.STALL_SECONDS`` before they came)."""
    if not covers(ex, seed, factor):
        return None
    key = key_of(ex, seed, factor)
    with _COND:
        while (key not in _ENTRIES or _ENTRIES[key].cases is None) and _coming(key):
            if not _COND.wait(expected.STALL_SECONDS):
                return None
        entry = _ENTRIES.get(key)
        return entry.cases if entry is not None else None


def bind(ex, seed: int, factor: int, cases_list: list, store: expected.Expected) -> bool:
    """Make ``store`` (the values of ``cases_list``, this feed's cases of ``ex``) receive the feed's values: those
    already here at once, the rest as they come. ``False`` when the feed does not bring them."""
    key = key_of(ex, seed, factor)
    with _COND:
        entry = _ENTRIES.get(key)
        if entry is None or entry.cases is not cases_list:
            return False
        if entry.store is store:
            return True
        entry.store = store
        if not entry.done and _coming(key):
            store.begin()
        for chunk in entry.chunks:
            store.put(*chunk)
        return True

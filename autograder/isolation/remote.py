"""The trusted side of the boundary: a notebook's worker session, and the engine's Answer proxy into it.

:class:`WorkerSession` starts a sandbox for one notebook and one profile, executes the program's cells (each
under a wall-clock limit) and, when the sandbox dies or hangs, starts a new one and replays the cells except the
ones that killed it. :meth:`WorkerSession.exercise` forks a fresh child of the worker for one exercise, so that
nothing an answer does (global state, threads, ``sys.exit``, ``os._exit``, a crash) reaches the next exercise.

:class:`RemoteAnswer` is the engine's ``Answer``: ``Call -> Outcome``. Arguments leave as plain data (arrays as
``.npy``), results come back as plain data and go through :func:`autograder.compare.to_plain` here; a call that
hangs past its limit or kills its process costs the rest of that exercise only (later calls fail at once with the
reason; the next exercise gets a fresh process). The cases of the correctness check are sent in chunks, ahead of
need (the sandbox works on one while the grader encodes the next and compares); their replies come in groups
(the worker holds them at most ``worker.GROUP_HOLD``) and are read one by one, each under the per-call limit. A
failure while replies may be held raises :class:`RepliesLost`: the grader grades that exercise again with one reply
per frame, so that a score never depends on timing. While the engine waits for an expected value that is still
being computed, it reads the next replies ahead (:meth:`RemoteAnswer.read_ahead`, bounded) instead of letting the
sandbox idle.

Every request carries a fresh random id and every reply must echo it (``"re"``, and ``"i"`` for each reply of a
batch): a frame written before its request existed (a forged "joined", replies queued for a later exercise) is
skipped, and whatever is left in the pipe is drained between exercises, so no exercise reads what another wrote.
Any malformed frame is a :class:`~.protocol.ProtocolError` that costs the exercise that received it.
"""
from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ..answers import Outcome
from ..compare import NotPlainData, to_plain
from ..spec import Call, Exercise
from . import sandbox, stubs
from .protocol import Closed, ProtocolError, Timeout, frame, frame_with, json_text, new_id, pack, to_tree
from .submission import Cell

from .manifest import REFERENCE_MODULES
MAX_ERROR_TEXT = 1500
#: calls per request of a correctness check's batch: the first chunk, and the most (chunks double)
FIRST_CHUNK, MAX_CHUNK = 8, 256
#: outcomes, and bytes of their arrays, read ahead of the engine at most (:meth:`RemoteAnswer.read_ahead`)
MAX_AHEAD, MAX_AHEAD_BYTES = 8192, 64 << 20
#: seconds a reply of a chunk may wait in the sandbox beyond its call (the worker's ``2 * GROUP_HOLD``)
GROUP_SLACK = 0.05
#: whether the engine distinguishes an answer that raised an exception (for arguments PyTorch rejects)
_HAS_RAISED = "raised" in getattr(Outcome, "__dataclass_fields__", {})


@dataclass
class Settings:
    """Limits of one grading run (seconds are wall-clock)."""

    cell_timeout: float = 30.0
    call_timeout: float = 10.0
    exercise_budget: float = 120.0
    max_restarts: int = 6
    limits: sandbox.Limits = field(default_factory=sandbox.Limits)


class SessionFailed(Exception):
    """The notebook cannot be run any further in this profile (the message is for the student)."""

    timed_out = False


class BudgetExhausted(SessionFailed):
    """The notebook's time budget ran out."""

    timed_out = True


class RepliesLost(Exception):
    """The process answering a chunk of calls failed (a call that never returned, a death, a broken frame) while
    it may still have held replies of that chunk (the worker sends them in groups): the exercise is graded again
    with one reply per call (``grouped=False``), so that its result never depends on timing."""


class SandboxUnavailable(RuntimeError):
    """The sandbox could not start before any student code ran: the grader's failure, not the student's."""


def reference(obj: Any) -> str:
    """``"module:qualname"`` of a function the sandbox can import (from its copies of the standalone modules)."""
    module, name = getattr(obj, "__module__", ""), getattr(obj, "__qualname__", "")
    if module not in REFERENCE_MODULES or not name or "<" in name:
        raise TypeError(f"{module}.{name} cannot cross into the sandbox: define it in one of "
                        f"{', '.join(REFERENCE_MODULES)}")
    return f"{module}:{name}"


def encode_reference(exercise: Exercise) -> str | None:
    """The exercise's ``encode`` hook, by name (it runs inside the sandbox)."""
    if exercise.encode is None or exercise.encode is to_plain:
        return None
    return reference(exercise.encode)


def _argument_encoder(blobs: list) -> Any:
    """``to_tree``'s ``default`` for grader-side objects in a case's arguments: test functions by name (``$fn``),
    ``nn.Module`` as plain data (``$module``, rebuilt in the sandbox by ``module_codec``), tensors as arrays."""
    def default(value: Any) -> Any:
        cls = type(value)
        if (cls.__module__ or "").startswith("torch"):
            import torch

            if isinstance(value, torch.nn.Module):
                try:
                    from .. import module_codec  # type: ignore[attr-defined]
                except ImportError:
                    raise TypeError("an nn.Module argument, but autograder.module_codec is missing") from None
                return {"$module": to_tree(module_codec.encode_module(value), blobs, default)}
            if isinstance(value, torch.Tensor):
                return {"$tensor": to_tree(value.detach().cpu().numpy(), blobs)}
        if callable(value):
            return {"$fn": reference(value)}
        raise TypeError(f"a {cls.__module__}.{cls.__qualname__} in a case's arguments")

    return default


def pack_call(message: dict) -> bytes:
    """Like :func:`protocol.pack`, with grader-side objects in a case's arguments encoded
    (:func:`_argument_encoder`)."""
    blobs: list[bytes] = []
    return frame(to_tree(message, blobs, _argument_encoder(blobs)), blobs)


#: encoded chunks of calls, by the identity of their ``Call`` objects: ``batch`` sends every student of an
#: assignment the same grading cases (one list per process), so each chunk is encoded once per process
_CHUNKS: OrderedDict = OrderedDict()
MAX_CHUNKS = 1024


def _torch_made(value: Any) -> bool:
    """Whether ``value`` is an instance of a torch class or of a subclass of one (without importing torch)."""
    return any((k.__module__ or "").startswith("torch") for k in type(value).__mro__)


def _module_versions(calls: Sequence[Call]) -> tuple:
    """Identity and in-place version of every tensor of the calls' module arguments (a changed template is
    encoded again). Case arrays cannot change: the grader's cases are read-only (``grader.grading_cases``).
    torch is imported only when an argument is a torch object (``import`` waits for another thread that is
    importing it; ``sys.modules`` may hold it half-initialised meanwhile)."""
    args = [a for c in calls for a in (*c.args, *c.kwargs.values()) if _torch_made(a)]
    if not args:
        return ()
    import torch

    from ..module_codec import tensor_versions, tensors_of

    versions = tensor_versions([t for a in args if isinstance(a, torch.nn.Module) for t in tensors_of(a)])
    return versions if versions[0] else ()


def encoded_calls(calls: Sequence[Call]) -> tuple[Any, list[bytes]]:
    """``(tree, blobs)`` of a chunk's calls (``[{"args", "kwargs"}, ...]``), from the cache when these very calls
    were encoded before and their module arguments have not changed since."""
    entry = _chunk(calls)
    return entry[2], entry[3]


def encoded_chunk(calls: Sequence[Call]) -> tuple[str, list[bytes]]:
    """The JSON text of :func:`encoded_calls`' tree (written once per cached chunk) and the chunk's blobs."""
    entry = _chunk(calls)
    return _text_of(entry), entry[3]


def _text_of(entry: list) -> str:
    """The JSON text of a cached chunk's tree, written once."""
    if entry[4] is None:
        entry[4] = json_text(entry[2])
    return entry[4]


def encode_ahead(calls: Sequence[Call]) -> None:
    """Encode the chunks in which :class:`RemoteAnswer` will send ``calls`` (a correctness check's, in order:
    :data:`FIRST_CHUNK`, then doubling up to :data:`MAX_CHUNK`) into the cache now."""
    start, size = 0, FIRST_CHUNK
    while start < len(calls):
        chunk = calls[start:start + size]
        if len(chunk) > 1:       # a single call travels as a plain ``call``
            encoded_chunk(chunk)
        start, size = start + size, min(2 * size, MAX_CHUNK)


def preloadable(most_bytes: int) -> list[tuple[str, str, list[bytes]]]:
    """``(key, JSON text, blobs)`` of the cached chunks whose calls have models (the arguments a sandbox takes
    longest to rebuild), oldest first, their blobs at most ``most_bytes`` in all: what a zygote may preload. Only a
    correctness check's grading cases travel in chunks (:class:`RemoteAnswer`'s ``cases``); a speed part's fresh
    inputs, like every other call, travel one by one and are never preloaded."""
    out, total = [], 0
    for entry in list(_CHUNKS.values()):
        size = sum(map(len, entry[3]))
        if not entry[1] or total + size > most_bytes:
            continue
        total += size
        out.append((entry[5], _text_of(entry), entry[3]))
    return out


def _chunk(calls: Sequence[Call]) -> list:
    """The cache entry of a chunk: ``[calls, module versions, tree, blobs, JSON text or None, key]``."""
    key = tuple(map(id, calls))
    hit = _CHUNKS.get(key)
    same_calls = hit is not None and all(a is b for a, b in zip(hit[0], calls))
    versions = _module_versions(calls) if not same_calls or hit[1] else ()   # no module tensors then: none now
    if same_calls and hit[1] == versions:
        _CHUNKS.move_to_end(key)
        return hit
    blobs: list[bytes] = []
    tree = to_tree(tuple({"args": tuple(c.args), "kwargs": dict(c.kwargs)} for c in calls), blobs,
                   _argument_encoder(blobs))
    _CHUNKS[key] = [tuple(calls), versions, tree, blobs, None, new_id()]
    while len(_CHUNKS) > MAX_CHUNKS:
        _CHUNKS.popitem(last=False)
    return _CHUNKS[key]


def _text(value: Any, limit: int = MAX_ERROR_TEXT) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[:limit] + " ..."


class WorkerSession:
    """One notebook's program running in sandboxes of one profile."""

    def __init__(self, cells: Sequence[Cell], profile: str, mode: str, settings: Settings,
                 deadline: float | None = None):
        self.cells, self.profile, self.mode, self.settings = list(cells), profile, mode, settings
        self.deadline = deadline or (time.monotonic() + 3600)
        self.layout = stubs.layout()
        self.box: sandbox.Sandbox | None = None
        self.fatal: dict[str, str] = {}         # cell name -> why it killed the sandbox (not replayed)
        self.timed_out: set[str] = set()        # cells among ``fatal`` that ran past the cell timeout
        self.cell_errors: dict[str, str] = {}   # cell name -> the exception it raised
        self.restarts = 0
        self.outputs: list[str] = []            # captured fd-level output of finished sandboxes (instructor log)

    # -- the sandbox
    def _request(self, message: dict, timeout: float, also: tuple = ()) -> tuple[str, dict]:
        """Send ``message`` with a fresh id; ``(id, reply)`` where the reply answers it (or one of ``also``)."""
        assert self.box is not None
        deadline = time.monotonic() + timeout
        rid = new_id()
        self.box.channel.send(pack({**message, "id": rid}), deadline)
        return rid, self.box.channel.receive_reply((rid, *also), deadline)

    def _rpc(self, message: dict, timeout: float) -> dict:
        return self._request(message, timeout)[1]

    def kill(self) -> None:
        if self.box is not None:
            sandbox.stop(self.box)
            text = self.box.output_text().strip()
            if text:
                self.outputs.append(text[-4000:])
            self.box = None

    def ensure(self) -> None:
        """A live sandbox with every cell executed (replaying after a crash, skipping fatal cells)."""
        if self.box is not None and self.box.alive:
            return
        self.kill()
        while True:
            if time.monotonic() > self.deadline:
                raise BudgetExhausted("the notebook's time budget ran out")
            try:
                self.box = sandbox.start(self.layout, self.profile, self.mode, self.settings.limits)
            except RuntimeError as exc:
                raise SandboxUnavailable(f"the sandbox could not start: {exc}") from None
            if self._run_cells():
                return
            self.restarts += 1
            if self.restarts > self.settings.max_restarts:
                raise SessionFailed("the notebook's cells crashed the sandbox too many times: "
                                    + "; ".join(f"{k}: {v}" for k, v in self.fatal.items()))

    def _run_cells(self) -> bool:
        for cell in self.cells:
            if cell.name in self.fatal:
                continue
            try:
                reply = self._rpc({"op": "exec", "name": cell.name, "source": cell.source,
                                   "trusted": cell.trusted}, self.settings.cell_timeout)
            except Timeout:
                self.fatal[cell.name] = f"did not finish within {self.settings.cell_timeout:g} s"
                self.timed_out.add(cell.name)
                self.kill()
                return False
            except ProtocolError as exc:
                how = self._death()
                self.fatal[cell.name] = f"ended the process running it ({how})" if isinstance(exc, Closed) \
                    else f"broke the grader's protocol ({exc})"
                self.kill()
                return False
            error = reply.get("error")
            if error:
                self.cell_errors[cell.name] = _text(error)
            else:
                self.cell_errors.pop(cell.name, None)
        return True

    def _death(self) -> str:
        """How the sandbox's main process ended, in words (best effort)."""
        if self.box is None:
            return "stopped"
        try:
            code = self.box.process.wait(timeout=2)
        except Exception:  # noqa: BLE001
            return "stopped responding"
        if code is None:
            return "stopped responding"
        if code < 0 or code > 128:
            return f"killed by signal {abs(code) if code < 0 else code - 128} (out of memory or CPU time?)"
        return f"exit status {code}: sys.exit, os._exit or a crash"

    def exercise(self, exercise: Exercise) -> "ExerciseHandle":
        """A forked child of the worker that serves this exercise's calls."""
        for _attempt in range(2):
            self.ensure()
            try:
                assert self.box is not None
                self.box.channel.drain()  # whatever an earlier exercise left in the pipe is never read
                fork_id, reply = self._request({"op": "fork"}, 15)
                if reply.get("ok"):
                    return ExerciseHandle(self, exercise, fork_id)
            except ProtocolError:
                pass
            self.kill()
        raise SessionFailed("the sandbox could not start a process for this exercise")

    def close(self) -> None:
        if self.box is not None and self.box.alive:
            self.box.note_cpu()   # before "bye": an idle worker exits at once, and its CPU could not be read after
            try:
                self.box.channel.send(pack({"op": "bye", "id": new_id()}), time.monotonic() + 1)
            except ProtocolError:
                pass
        self.kill()


class ExerciseHandle:
    """The child process serving one exercise; ``with`` ends it (and waits for the parent's ``joined``)."""

    def __init__(self, session: WorkerSession, exercise: Exercise, fork_id: str = ""):
        self.session, self.exercise, self.fork_id = session, exercise, fork_id
        self.box = session.box
        self.child_alive = True
        self.poison: str | None = None
        self.spent = 0.0
        self.referenced: set[str] = set()   # preloaded chunks sent by reference to this process (once each)

    def holds(self, key: str) -> bool:
        """Whether this exercise's process holds the preloaded chunk ``key``, not sent to it by reference yet: its
        sandbox was forked from a zygote that preloaded it (``zygote.Zygote.preloaded``), and a process uses each
        preloaded chunk once (``worker.Worker._prebuilt_chunk``)."""
        zygote = getattr(self.box, "zygote", None)
        return zygote is not None and key in zygote.preloaded and key not in self.referenced

    def __enter__(self) -> "ExerciseHandle":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def current(self) -> bool:
        """This exercise's sandbox is still the session's (no system call: checked before every queued reply)."""
        return self.session.box is self.box and self.box is not None

    @property
    def usable(self) -> bool:
        return self.current and self.box.alive

    def probe(self, name: str) -> str:
        """``callable``, ``missing`` or ``not callable`` (or ``unavailable`` when the sandbox is gone)."""
        if not self.usable:
            return "unavailable"
        try:
            _, reply = self.session._request({"op": "probe", "names": [name]}, 10, also=(self.fork_id,))
            found = reply.get("found")
            if isinstance(found, dict) and isinstance(found.get(name), str):
                return found[name]
            if reply.get("op") == "joined":
                self.child_alive = False
        except ProtocolError:
            self.session.kill()
        return "unavailable"

    def fail(self, why: str, kill: bool) -> None:
        self.poison = why
        if kill:
            self.session.kill()

    def close(self) -> None:
        if not self.usable:
            return
        if not self.child_alive:
            return
        deadline = time.monotonic() + 10
        try:
            assert self.box is not None
            self.box.channel.send(pack({"op": "end", "id": new_id()}), deadline)
            while True:  # skip replies still queued, up to the parent's report on this exercise's child
                reply = self.box.channel.receive_reply((self.fork_id,), deadline)
                if reply.get("op") == "joined":
                    break
            self.box.channel.drain()
        except ProtocolError:
            self.session.kill()
        self.child_alive = False

    def answer(self, cases: Sequence = (), grouped: bool = True) -> "RemoteAnswer":
        return RemoteAnswer(self, cases, grouped)


def _array_bytes(value: Any) -> int:
    """The bytes of the arrays in a plain value (:func:`protocol.to_plain`'s output: bounded in depth)."""
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, (tuple, list)):
        return sum(map(_array_bytes, value))
    if isinstance(value, dict):
        return sum(map(_array_bytes, value.values()))
    return 0


class RemoteAnswer:
    """The engine's Answer: ``Call -> Outcome`` through the sandbox (see the module docstring)."""

    def __init__(self, handle: ExerciseHandle, cases: Sequence = (), grouped: bool = True):
        self.handle = handle
        self.grouped = grouped          # replies of a chunk may come in groups (else one frame per call)
        self._held: deque = deque()     # replies of the last group not read yet
        self.fn = handle.exercise.name
        self.encode = encode_reference(handle.exercise)
        self.settings = handle.session.settings
        self._batch = deque(c.call for c in cases)   # the correctness check's calls not sent yet
        self._queued: deque = deque()   # calls sent in a batch whose replies are not read yet
        self._expect: deque = deque()   # (request id, index) of each reply still to read, in order
        self._chunk = FIRST_CHUNK
        self._ahead: deque = deque()    # (call, outcome) read before the engine asked, in order
        self._ahead_bytes = 0

    # -- sending
    def _frame(self, calls: Sequence[Call], rid: str) -> bytes:
        if len(calls) == 1:
            c = calls[0]
            return pack_call({"op": "call", "id": rid, "fn": self.fn, "args": tuple(c.args),
                              "kwargs": dict(c.kwargs), "encode": self.encode})
        entry = _chunk(calls)    # its key: a zygote that preloaded this encoding has its calls (``preloadable``)
        request = {"op": "calls", "id": rid, "fn": self.fn, "encode": self.encode, "group": self.grouped,
                   "chunk": entry[5]}
        if self.handle.holds(entry[5]):     # by reference: the process has these calls, only their count travels
            self.handle.referenced.add(entry[5])
            return pack({**request, "count": len(calls)})
        return frame_with(request, "calls", _text_of(entry), entry[3])

    def _send(self, calls: Sequence[Call]) -> bool:
        box = self.handle.box
        rid = new_id()
        self._expect.extend((rid, i if len(calls) > 1 else None) for i in range(len(calls)))
        try:
            data = self._frame(calls, rid)
        except TypeError as exc:
            raise RuntimeError(f"grader error: a case of {self.fn} cannot be sent to the sandbox ({exc})") from None
        try:
            assert box is not None
            box.channel.send(data, time.monotonic() + max(self.settings.call_timeout, 5.0))
        except ProtocolError as exc:
            self.handle.fail(f"the sandbox stopped accepting calls ({exc})", kill=True)
            return False
        return True

    # -- receiving
    def _receive(self, started: float) -> Outcome:
        limit = self.settings.call_timeout
        rid, index = self._expect.popleft() if self._expect else ("", None)
        try:
            reply = self._reply(rid, index, time.monotonic() + limit + (GROUP_SLACK if index is not None else 0))
        except Timeout:
            self._failed(index, f"{self.fn} did not return within {limit:g} s (an infinite loop, or far too slow); "
                                "the remaining cases of this exercise were not run", kill=True)
            return Outcome(error=self.handle.poison, timed_out=True)
        except Closed:
            how = self.handle.session._death()
            self._failed(index, f"the process running {self.fn} ended ({how}); the remaining cases of this "
                                "exercise were not run", kill=True)
            return Outcome(error=self.handle.poison)
        except ProtocolError as exc:
            self._failed(index, f"the sandbox broke the grader's protocol while running {self.fn} ({exc}); the "
                                "remaining cases of this exercise were not run", kill=True)
            return Outcome(error=self.handle.poison)
        measured = time.monotonic() - started
        self.handle.spent += measured
        if reply.get("op") == "joined":
            self.handle.child_alive = False
            self._queued.clear()
            self._expect.clear()
            how = reply.get("how") if isinstance(reply.get("how"), str) else "it ended"
            self._failed(index, f"the process running {self.fn} ended ({_text(how, 80)}): sys.exit, os._exit, a "
                                "crash, or running out of memory; the remaining cases of this exercise were not run",
                         kill=False)
            return Outcome(error=self.handle.poison, seconds=measured)
        return self._outcome(reply, measured)

    def _reply(self, rid: str, index: int | None, deadline: float) -> dict:
        """The reply to request ``rid`` (case ``index`` of a chunk, ``None`` for a single call): the next one of
        the last group, or a new frame. Any reply out of order is a :class:`ProtocolError`."""
        if not self._held:
            box = self.handle.box
            assert box is not None
            reply = box.channel.receive_reply((rid, self.handle.fork_id), deadline)
            if reply.get("op") == "joined":
                return reply
            if index is None:
                if "i" in reply:
                    raise ProtocolError("a reply out of order (a chunk's reply to a single call)")
                return reply
            group = reply.get("replies")
            if type(group) is not list or not group or not all(type(r) is dict for r in group) or \
                    reply.get("re") != rid:
                raise ProtocolError("a chunk's replies without a group")
            self._held.extend(group)
        reply = self._held.popleft()
        if reply.get("i") != index:
            raise ProtocolError(f"a reply out of order (case {reply.get('i')!r}, expected {index!r})")
        return reply

    def _failed(self, index: int | None, why: str, kill: bool) -> None:
        """The exercise fails with ``why``; raises :class:`RepliesLost` when replies of a chunk may have been held
        in the process that failed."""
        self._held.clear()
        self.handle.fail(why, kill)
        if index is not None and self.grouped:
            raise RepliesLost(why)

    def _outcome(self, reply: dict, measured: float) -> Outcome:
        notes = reply.get("warnings")
        notes = tuple(_text(n, 300) for n in notes[:3] if isinstance(n, str)) if isinstance(notes, list) else ()
        seconds = measured      # as the grader measured it (a group's first reply carries the group's time)
        if "error" in reply:
            return Outcome(error=_text(reply["error"]), warnings=notes, seconds=seconds,
                           **({"raised": True} if reply.get("raised") is True and _HAS_RAISED else {}))
        if "value" not in reply:
            return Outcome(error="the sandbox sent a reply without a value", warnings=notes, seconds=seconds)
        try:
            value = to_plain(reply["value"], fresh=True)  # its arrays were just decoded (protocol._npy_array)
        except NotPlainData as exc:
            return Outcome(error=f"returned {exc}, which is not an array or number", warnings=notes,
                           seconds=seconds)
        return Outcome(value=value, warnings=notes, seconds=seconds)

    def _drain(self) -> None:
        while self._queued and not self.handle.poison:
            self._queued.popleft()
            self._receive(time.monotonic())
        self._queued.clear()
        self._expect.clear()
        self._held.clear()

    def _send_more(self) -> bool:
        """Send the next chunk of the batch while the sandbox still has at least half a chunk to work on (calls
        whose replies have not arrived; a group of replies read but not judged yet does not count): the sandbox
        starts on the first calls at once and never waits for the grader, which encodes the next calls while it
        reads replies. Chunks double up to :data:`MAX_CHUNK`."""
        if not self._batch or len(self._queued) - len(self._held) > self._chunk // 2:
            return True
        chunk = [self._batch.popleft() for _ in range(min(self._chunk, len(self._batch)))]
        self._chunk = min(2 * self._chunk, MAX_CHUNK)
        if not self._send(chunk):
            return False
        self._queued.extend(chunk)
        return True

    def read_ahead(self) -> bool:
        """Read the next call's outcome before the engine asks for it (it waits for an expected value meanwhile);
        ``False`` when there is nothing more to read, :data:`MAX_AHEAD` outcomes wait already, or the exercise
        has failed (what failed is the last outcome read)."""
        following = self._queued[0] if self._queued else self._batch[0] if self._batch else None
        if following is None or self.handle.poison or len(self._ahead) >= MAX_AHEAD or \
                self._ahead_bytes > MAX_AHEAD_BYTES:
            return False
        outcome = self._answer(following)
        self._ahead.append((following, outcome))
        self._ahead_bytes += _array_bytes(outcome.value)
        return True

    def __call__(self, call: Call) -> Outcome:
        if self._ahead:
            if self._ahead[0][0] is call:
                outcome = self._ahead.popleft()[1]
                self._ahead_bytes = self._ahead_bytes - _array_bytes(outcome.value) if self._ahead else 0
                return outcome
            self._ahead.clear()     # asked out of order: the outcomes read ahead are not needed
            self._ahead_bytes = 0
        return self._answer(call)

    def _answer(self, call: Call) -> Outcome:
        if self.handle.poison:
            return Outcome(error=self.handle.poison)
        if self.handle.spent > self.settings.exercise_budget:
            self.handle.fail(f"{self.fn} used more than {self.settings.exercise_budget:g} s in total; the "
                             "remaining cases of this exercise were not run", kill=False)
            return Outcome(error=self.handle.poison, timed_out=True)
        queued = bool(self._queued) and self._queued[0] is call  # a death shows as Closed when it is read
        if not (self.handle.current if queued else self.handle.usable) or not self.handle.child_alive:
            how = self.handle.session._death() if self.handle.box is not None else "stopped"
            self.handle.fail(f"the process running {self.fn} ended ({how}); the remaining cases of this "
                             "exercise were not run", kill=True)
            return Outcome(error=self.handle.poison)
        in_order = (self._queued[0] if self._queued else self._batch[0] if self._batch else None) is call
        if in_order and not self._send_more():
            return Outcome(error=self.handle.poison)
        if self._queued and self._queued[0] is call:
            self._queued.popleft()
            return self._receive(time.monotonic())
        if self._queued:  # the engine asked out of order: read what is in flight, then call directly
            self._drain()
            if self.handle.poison:
                return Outcome(error=self.handle.poison)
        self._batch.clear()
        started = time.monotonic()
        if not self._send([call]):
            return Outcome(error=self.handle.poison)
        return self._receive(started)

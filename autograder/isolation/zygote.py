"""A pristine sandbox per grading process, from which each notebook's sandbox is forked (bubblewrap as root only).

A torch sandbox costs ~1.3 CPU-seconds to start, nearly all of it ``import torch`` (a scratch one ~0.12): in a
batch, most of 06's sandbox time. A zygote is a sandbox started exactly like any other (the same filesystem,
seccomp filter and limits) whose worker answered hello (NumPy, torch, the ready-made functions removed) and then,
before any cell or call, became a :class:`worker.Zygote`: it forks each notebook's worker, one at a time. So a
grading process imports torch for its first notebook only.

Why nothing crosses from one notebook to the next (the red-team tests in ``tests/redteam/test_zygote.py`` try):

- **Only where each notebook gets a user of its own**: bubblewrap as root without a user namespace
  (:func:`sandbox.drops_to_own_user`). The zygote keeps root with ``CAP_SETUID``/``CAP_SETGID`` only; each forked
  worker drops to a fresh user id (:func:`budget.sandbox_uid`) before it reads its first request, so a notebook's
  processes can neither signal, trace, nor read the memory or ``/proc`` entries of the zygote (root) or of another
  notebook (another user); bubblewrap's ``no_new_privs`` makes set-uid programs useless. Elsewhere (a user
  namespace, reduced isolation) every notebook gets a fresh sandbox, as before.
- **One notebook at a time**: a notebook's worker is forked only when the previous one has ended, its user's
  processes have all been killed (by a cleaner of that user inside, and checked from the host: nothing but the
  zygote is left in the sandbox's pid namespace) and the working directory, the one writable place, is empty
  again. If any of that fails, or the zygote does not answer in time, it is stopped and the next notebook gets a
  fresh sandbox.
- **Pristine**: the zygote has run nothing but hello and, in a torch zygote, the grader's preload (the arguments
  of the chunks of calls this grading process has encoded, rebuilt once: :meth:`Zygote._preload`); what a child
  inherits is what a fresh worker would have built itself. Each child has its own pipes (passed to the zygote over
  a socket) and closes the zygote's socket before anything runs.

A local batch launches its grading processes' zygotes itself, just before it forks them (:func:`launch_for_pool`,
:mod:`.head_start`), so that they start while it prepares the run; each process takes a set of its own
(:func:`adopt`) and watches its bubblewrap by pid (:class:`_Unowned`).

The budget counts the zygote as one more process of the sandbox (:class:`budget.Limits`), so the limits are the
same whether a notebook's sandbox was forked or started: so are the scores (tested). A notebook forked after a
preload has limits higher by exactly what the preload added, so that its room is a fresh sandbox's
(``budget.py`` says why the budget still holds).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field

from . import sandbox, stubs
from .budget import Limits, sandbox_uid
from .protocol import Channel, frame_with, pack, unpack

#: seconds the zygote has to answer a request (fork, or the end of a notebook with its clean-up)
ANSWER_TIMEOUT = 10.0

_STATE = {"enabled": False, "preload": True}


def enable(on: bool = True) -> None:
    """Use zygotes in this process (a batch's grading processes do: each grades many notebooks)."""
    _STATE["enabled"] = bool(on)


def usable(mode: str) -> bool:
    """Whether zygotes can serve sandboxes of ``mode`` here (bubblewrap as root; not ``CONVLAB_ZYGOTE=0``)."""
    return mode == "bwrap" and os.environ.get("CONVLAB_ZYGOTE", "1") != "0" and sandbox.drops_to_own_user()


def used_for(mode: str) -> bool:
    """Whether this process forks notebooks' sandboxes from zygotes (enabled, bubblewrap as root)."""
    return _STATE["enabled"] and usable(mode)


class _Unowned:
    """The host's handle on a sandbox process this grading process did not start (a worker the zygote forked; a
    zygote's bubblewrap that the batch launched for it): never waited for here, identified by pid and start time,
    so a reused pid is never mistaken for it (a zombie counts as ended)."""

    def __init__(self, pid: int):
        self.pid = pid
        stat = sandbox._proc_stat(pid)
        self.start = stat[3] if stat else None

    def poll(self):
        stat = sandbox._proc_stat(self.pid)
        return None if stat is not None and stat[3] == self.start else 0

    def wait(self, timeout: float | None = None):
        deadline = time.monotonic() + (timeout if timeout is not None else 3600)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("sandbox process", timeout)
            time.sleep(0.002)
        return 0

    def kill(self) -> None:
        if self.poll() is None:
            sandbox._kill(self.pid)


@dataclass
class ForkedSandbox(sandbox.Sandbox):
    """A notebook's worker forked by ``zygote``: used like any sandbox; stopping it ends the notebook there."""

    zygote: "Zygote | None" = field(default=None, repr=False)

    def _kill_processes(self) -> None:
        """The forked worker and everything below it; then the zygote cleans up (:meth:`Zygote.finished`)."""
        for pid in [self.process.pid, *sandbox.subtree(self.process.pid)]:
            sandbox._kill(pid)
        if self.zygote is not None:
            self.zygote.finished()
            self.zygote = None


class Zygote:
    """The grader's end of one zygote: its sandbox, its socket, whether a notebook is running in it."""

    def __init__(self, layout: stubs.Layout, profile: str, limits: Limits):
        self.limits, self.profile = limits, profile
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self.box = sandbox.launch(layout, profile, "bwrap", limits, zygote_fd=theirs.fileno())
        finally:
            theirs.close()
        self.sock = mine
        self.busy = threading.Lock()
        self.init: int | None = None      # bubblewrap's init in the sandbox (every process there descends from it)
        self.pid: int | None = None       # the zygote's worker, as the host sees it (once it became one)
        self.charged = 0.0                # its own CPU seconds, already counted in sandbox.cpu_seconds()
        self.preloaded: list[str] = []    # the keys of the chunks of calls it preloaded (:meth:`_preload`)

    # -- launched by the batch for a grading process (:func:`launch_for_pool`)
    def adopt(self) -> None:
        """In the grading process that takes it: its bubblewrap is the batch's child, not this process's, so it is
        watched by pid (the batch reaps it)."""
        sandbox.disown(self.box)
        self.box.process = _Unowned(self.box.process.pid)

    def let_go(self) -> None:
        """Close this process's copies of the zygote's socket and pipes (they belong to one grading process)."""
        self.sock.close()
        self.box.channel.close()

    # -- life cycle
    def _become(self) -> None:
        """Wait for hello, then make the worker a zygote; find its host pid."""
        sandbox.ready(self.box, self.limits)
        self._preload()
        deadline = time.monotonic() + ANSWER_TIMEOUT
        self.box.channel.send(pack({"op": "zygote", "id": "z"}), deadline)
        reply = unpack(*self.box.channel.receive(deadline))
        if not reply.get("ok"):
            raise RuntimeError(f"the worker did not become a zygote: {reply.get('error')}")
        inside = sandbox._children(self.box.process.pid)            # bubblewrap's init in the sandbox
        workers = sandbox._children(inside[0]) if len(inside) == 1 else []
        if len(workers) != 1:
            raise RuntimeError("the zygote's process is not where it should be")
        self.init, self.pid = inside[0], workers[0]

    def _preload(self) -> None:
        """Give a torch zygote the chunks of calls with models that this process has encoded (a batch's grading
        process: its assignment's, encoded before the fork), to rebuild once for all its notebooks
        (``worker.Worker.preload``). RuntimeError, and no more preloads in this process, when what it then holds
        does not fit the sandbox's budget (``budget.Limits.preload_fits``)."""
        if self.profile != "torch" or not _STATE["preload"] or os.environ.get("CONVLAB_PRELOAD", "1") == "0":
            return
        from .remote import preloadable

        for key, text, blobs in preloadable(self.limits.preload_bytes // 4):
            deadline = time.monotonic() + ANSWER_TIMEOUT
            self.box.channel.send(frame_with({"op": "preload", "id": "p", "key": key}, "calls", text, blobs),
                                  deadline)
            reply = unpack(*self.box.channel.receive(deadline))
            if not reply.get("ok"):
                raise RuntimeError(f"the zygote did not preload: {reply.get('error')}")
            if not self.limits.preload_fits(int(reply["before"]), int(reply["added"])):
                _STATE["preload"] = False
                raise RuntimeError("the zygote's preloaded calls do not fit its budget")
            self.preloaded.append(key)

    def stop(self) -> None:
        """Stop the zygote's sandbox (idempotent)."""
        self._charge()
        self.sock.close()
        if self.box.process.poll() is None or not self.box.channel.closed:
            sandbox.stop(self.box)

    def _charge(self) -> None:
        """Count the zygote's own CPU seconds so far (its start: ``import torch``) in the sandboxes' account."""
        own = _own_cpu_seconds(self.pid) if self.pid else 0.0
        sandbox.charge_cpu(max(0.0, own - self.charged))
        self.charged = max(self.charged, own)

    # -- one notebook
    def fork(self) -> ForkedSandbox:
        """A fresh worker for one notebook (RuntimeError, the zygote unusable, when that fails)."""
        if self.pid is None:
            self._become()
        if not self.clean():
            raise RuntimeError("something is left in the zygote's sandbox")
        req_r, req_w = sandbox.pipe()
        rep_r, rep_w = sandbox.pipe()
        out_r, out_w = os.pipe()
        request = {"uid": sandbox_uid(), "tasks": 1 + self.limits.spare_tasks}
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], [req_r, rep_w, out_w])
            reply = self._answer()
            workers = sandbox._children(self.pid)
            if "pid" not in reply or len(workers) != 1:
                raise RuntimeError(f"the zygote did not fork: {reply.get('error', reply)}")
        except BaseException:
            for fd in (req_w, rep_r, out_r):
                os.close(fd)
            raise
        finally:
            for fd in (req_r, rep_w, out_w):
                os.close(fd)
        self._charge()
        box = ForkedSandbox("bwrap", _Unowned(workers[0]), Channel(rep_r, req_w), b"", None, zygote=self)
        box._drain = threading.Thread(target=sandbox._drain_output, args=(out_r, box, self.limits.output_bytes),
                                      daemon=True)
        box._drain.start()
        return box

    def finished(self) -> None:
        """The notebook's worker was stopped: wait for the zygote's clean-up; keep the zygote only if it is idle,
        alone in its sandbox and its working directory empty."""
        try:
            reply = self._answer()
            ok = reply.get("clean") is True and self.clean()
        except RuntimeError:
            ok = False
        _release(self, keep=ok)

    def _answer(self) -> dict:
        """The zygote's next message (RuntimeError when none comes within :data:`ANSWER_TIMEOUT` or it is not one)."""
        self.sock.settimeout(ANSWER_TIMEOUT)
        try:
            data = self.sock.recv(1 << 12)
            reply = json.loads(data) if data else None
        except (OSError, ValueError) as exc:
            raise RuntimeError(f"the zygote did not answer ({exc})") from None
        if not isinstance(reply, dict):
            raise RuntimeError("the zygote ended")
        return reply

    def clean(self) -> bool:
        """Nothing but the zygote left in its sandbox (checked from the host: every process of the sandbox's pid
        namespace descends from bubblewrap's init there) and the zygote not stopped."""
        if not self.box.alive or self.pid is None:
            return False
        if sandbox.stat_fields(self.pid)[:1] not in (["S"], ["R"]):
            return False
        return sandbox._children(self.box.process.pid) == [self.init] and sandbox.subtree(self.init) == [self.pid]


def _own_cpu_seconds(pid: int) -> float:
    """User + system seconds of ``pid`` itself (not of its children: each notebook's are counted with it)."""
    try:
        return sum(int(v) for v in sandbox.stat_fields(pid)[11:13]) / os.sysconf("SC_CLK_TCK")
    except ValueError:
        return 0.0


# ------------------------------------------------------------------------------------------ this process's zygotes

_ZYGOTES: dict[tuple, Zygote] = {}
_LOCK = threading.Lock()


def _key(layout: stubs.Layout, profile: str, limits: Limits) -> tuple:
    return str(layout.root), profile, limits


def prepare(layout: stubs.Layout, profile: str, limits: Limits) -> None:
    """Launch this process's zygote for ``profile`` now, if there is none (it starts while the grader works)."""
    key = _key(layout, profile, limits)
    with _LOCK:
        if key not in _ZYGOTES:
            try:
                _ZYGOTES[key] = Zygote(layout, profile, limits)
            except Exception:  # noqa: BLE001 - fork() tries again, and a fresh sandbox is the fallback
                pass


def fork(layout: stubs.Layout, profile: str, limits: Limits) -> sandbox.Sandbox | None:
    """A notebook's sandbox forked from this process's zygote for ``profile``, or None (none usable, or it is busy
    with another notebook): the caller then starts a fresh one."""
    prepare(layout, profile, limits)
    with _LOCK:
        zygote = _ZYGOTES.get(_key(layout, profile, limits))
    if zygote is None or not zygote.busy.acquire(blocking=False):
        return None
    waiting = time.monotonic()
    try:
        return zygote.fork()
    except Exception:  # noqa: BLE001 - an unusable zygote: stopped; this notebook gets a fresh sandbox
        _release(zygote, keep=False)
        return None
    finally:
        sandbox.note_waited(time.monotonic() - waiting)


def _release(zygote: Zygote, keep: bool) -> None:
    if not keep:
        with _LOCK:
            for key, known in list(_ZYGOTES.items()):
                if known is zygote:
                    del _ZYGOTES[key]
        zygote.stop()
    zygote.busy.release()


def stop_all() -> None:
    """Stop this process's zygotes (idle ones; a busy one is stopped when its notebook ends)."""
    with _LOCK:
        idle = [z for z in _ZYGOTES.values() if z.busy.acquire(blocking=False)]
        for key in [k for k, z in _ZYGOTES.items() if z in idle]:
            del _ZYGOTES[key]
    for zygote in idle:
        zygote.stop()
        zygote.busy.release()


# ------------------------------------------------------------------------------------------ launched before the fork

#: the batch's process: the zygotes it launched for its grading processes, one dict (key -> Zygote) per process
_HANDED: list[dict] = []
_NEXT: list = []      # [a shared counter]: the index of the next grading process to take its set


def launch_for_pool(layout: stubs.Layout, profiles: list[str], limits: Limits, graders: int) -> None:
    """In a batch's process, just before it forks ``graders`` grading processes: launch a zygote of each of
    ``profiles`` for each of them, so that they start (``import torch``) while this process prepares the run (the
    oracle's work, :mod:`.head_start`) instead of after the fork, in the grading processes' own time. Each grading
    process takes one set (:func:`adopt`); this process stops them all when the batch ends (:func:`stop_launched`:
    their bubblewrap is its child, and dies with it)."""
    import multiprocessing

    _NEXT[:] = [multiprocessing.get_context("fork").Value("i", 0)]
    for _ in range(graders):
        mine = {}
        for profile in profiles:
            try:
                mine[_key(layout, profile, limits)] = Zygote(layout, profile, limits)
            except Exception:  # noqa: BLE001 - the grading process launches its own
                continue
        _HANDED.append(mine)


def adopt() -> None:
    """In a grading process forked after :func:`launch_for_pool`: take the next set of zygotes as this process's
    own, and close its copies of the other sets' descriptors (a later process, past the sets, launches its own)."""
    if not _NEXT:
        return
    with _NEXT[0].get_lock():
        index = _NEXT[0].value
        _NEXT[0].value += 1
    mine = _HANDED[index] if index < len(_HANDED) else {}
    for handed in _HANDED:
        if handed is not mine:
            for zygote in handed.values():
                zygote.let_go()
    for key, zygote in mine.items():
        try:
            zygote.adopt()
        except Exception:  # noqa: BLE001 - not usable here: a zygote of its own is launched when needed
            zygote.let_go()
            continue
        with _LOCK:
            _ZYGOTES[key] = zygote
    _HANDED.clear()
    _NEXT.clear()


def release_launched() -> None:
    """In the batch's process, once the pool has forked: drop its copies of the zygotes' descriptors (each
    grading process holds its own: a zygote whose grading process has ended sees its socket close, and exits)."""
    _NEXT.clear()         # a pool started again after a crash forks processes that launch their own
    for handed in _HANDED:
        for zygote in handed.values():
            zygote.let_go()


def stop_launched() -> None:
    """In the batch's process, when the batch ends: stop every zygote it launched (idempotent)."""
    handed, _HANDED[:] = list(_HANDED), []
    _NEXT.clear()
    for zygotes in handed:
        for zygote in zygotes.values():
            zygote.let_go()
            sandbox.stop(zygote.box)

"""One budget for the whole sandbox: whatever student code does (tmpfs writes, forked children, a fork bomb), the
memory of all the sandbox's processes together, measured from the host, stays within ``Limits.memory_bytes``; the
cell ends with a clear message, and the sandbox is still there to answer."""
from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from autograder.isolation import sandbox, stubs, zygote
from autograder.isolation.protocol import pack, unpack

BWRAP = sandbox.isolation_mode()[0] == "bwrap"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not BWRAP, reason="bubblewrap is not available here")]
BUDGET = 1 << 30


def _pss_bytes(pid: int) -> int:
    """The memory ``pid`` made (anonymous and shared-memory pages, shared ones divided among their users), not
    the read-only library files it maps (the host's page cache, shared with the grader itself)."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Pss_Anon:", "Pss_Shmem:")):
                total += int(line.split()[1]) << 10
    except (OSError, ValueError, IndexError):
        pass
    return total


def _tmpfs_bytes(pid: int) -> int:
    """What the sandbox's writable tmpfs holds, read through its worker's root."""
    try:
        st = os.statvfs(f"/proc/{pid}/root{sandbox.WORKDIR}")
    except OSError:
        return 0
    return (st.f_blocks - st.f_bfree) * st.f_frsize


class PeakMeter:
    """Samples the sandbox's memory (every process below bubblewrap, and its tmpfs) every 20 ms."""

    def __init__(self, box: sandbox.Sandbox):
        self.box, self.peak, self.most_processes, self._stop = box, 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = sandbox.descendants(self.box.process.pid)
            total = sum(_pss_bytes(p) for p in pids) + max((_tmpfs_bytes(p) for p in pids[-1:]), default=0)
            self.peak, self.most_processes = max(self.peak, total), max(self.most_processes, len(pids))
            self._stop.wait(0.02)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


def _measure(source: str, timeout: float = 60.0, forked: bool = False, profile: str = "scratch",
             budget: int = BUDGET) -> tuple[dict, PeakMeter]:
    """Run ``source`` in a fresh sandbox of ``profile``, or (``forked``) in one forked from a zygote, whose whole
    sandbox (the zygote too) is measured."""
    zygote.enable(forked)
    try:
        box = sandbox.start(stubs.layout(), profile, "bwrap", sandbox.Limits(memory_bytes=budget))
    finally:
        zygote.enable(False)
    assert isinstance(box, zygote.ForkedSandbox) == forked
    try:
        with PeakMeter(box.zygote.box if forked else box) as meter:
            box.channel.send(pack({"op": "exec", "name": "attack", "source": source, "trusted": False}),
                             time.monotonic() + timeout)
            reply = unpack(*box.channel.receive(time.monotonic() + timeout))
        box.channel.send(pack({"op": "echo", "value": "still here"}), time.monotonic() + 10)
        assert unpack(*box.channel.receive(time.monotonic() + 10))["value"] == "still here"
        return reply, meter
    finally:
        sandbox.stop(box)
        zygote.stop_all()


ATTACKS = {
    "tmpfs-fill": ('''
import os
done = {}
for target in ("/dev/shm/fill", "/tmp/fill", "fill", "/fill"):
    try:
        with open(target, "wb") as fh:
            for _ in range(48):                   # 3 GB
                fh.write(b"\\0" * (64 << 20))
        done[target] = "written"
    except OSError as e:
        done[target] = e.strerror
print(done)
''', "written"),
    "fork-hold": ('''
import os, time
import numpy as np


def hold_all_you_can():
    blocks = []
    try:
        for _ in range(16):                       # 1 GB, 64 MB at a time
            blocks.append(np.ones(1 << 23))
    except MemoryError:
        pass
    return blocks


started, refused = 0, None
for _ in range(4):                                # four children holding 1 GB each
    try:
        pid = os.fork()
    except OSError as e:
        refused = e.strerror
        break
    if pid == 0:
        held = hold_all_you_can()
        time.sleep(3)
        os._exit(0)
    started += 1
held = hold_all_you_can()                         # and the parent too
time.sleep(2)
print("started", started, "refused:", refused, "parent held", len(held) * 64, "MB")
''', "started 4"),
    "fork-bomb": ('''
import os, time
started, end, refused = 0, time.monotonic() + 10, 0
while time.monotonic() < end and started < 1200:
    try:
        if os.fork() == 0:
            time.sleep(5)
            os._exit(0)
        started += 1
    except OSError:
        refused += 1
        if refused > 1000:
            break
print("started", started, "refused", refused)
''', "started 1200"),
    "one-big-process": ('''
import numpy as np, threading, time
blocks = []
try:
    for _ in range(48):                           # 3 GB, 64 MB at a time
        blocks.append(np.ones(1 << 23))
    print("allocated 3 GB")
except MemoryError:
    print("MemoryError after", len(blocks) * 64, "MB")
time.sleep(0.5)
''', "allocated"),
}


FORKED = [False, True] if sandbox.drops_to_own_user() else [False]


@pytest.mark.parametrize("forked", FORKED, ids=lambda forked: "forked" if forked else "fresh")
@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_the_sandbox_stays_within_its_memory_budget(attack, forked):
    source, success = ATTACKS[attack]
    reply, meter = _measure(source, forked=forked)
    out = reply.get("stdout", "") + str(reply.get("error"))
    print(f"{attack} ({'forked' if forked else 'fresh'}): peak {meter.peak / 2**20:.0f} MiB, at most "
          f"{meter.most_processes} processes; {out.strip()}")
    assert success not in out, out
    assert meter.peak <= BUDGET, f"{attack}: the sandbox held {meter.peak / 2**20:.0f} MiB"
    # bwrap's init, (the zygote,) the worker, its child, the spare
    assert meter.most_processes <= 2 + forked + 1 + sandbox.Limits().spare_tasks


def test_the_meter_sees_what_a_sandbox_holds():
    """The measurement itself: 150 MB held by the worker shows in the peak."""
    reply, meter = _measure("import numpy as np, time\nblock = np.ones((150 << 20) // 8)\ntime.sleep(0.5)\n")
    assert reply.get("error") is None, reply
    assert meter.peak >= 150 << 20


ROOM = r'''
import json
import numpy as np
blocks = []
try:
    while len(blocks) < 4096:
        blocks.append(np.ones(1 << 17))           # 1 MiB at a time
except MemoryError:
    pass
print(json.dumps(len(blocks)))
'''


@pytest.fixture
def preloaded_models():
    """06's ``fuse_sequential`` and ``feature_maps`` calls encoded, as a grading process has them before its zygote
    becomes one: a torch zygote then preloads them (~20 MB of models that each notebook's processes inherit)."""
    from autograder import registry
    from autograder.isolation import grader, remote

    for ex in registry.assignments()["06-conv-bn-fusion"]:
        if ex.name in ("fuse_sequential", "feature_maps"):
            remote.encode_ahead([case.call for case in grader.grading_cases(ex, 77, 10)])
    yield
    remote._CHUNKS.clear()
    zygote.stop_all()


def _preloaded_zygote() -> zygote.Zygote:
    (known,) = zygote._ZYGOTES.values()
    assert known.preloaded, "the zygote preloaded nothing"
    return known


@pytest.mark.skipif(not sandbox.drops_to_own_user(), reason="zygotes are used only with bubblewrap as root")
def test_a_notebook_forked_after_a_preload_has_the_room_of_a_fresh_one(preloaded_models):
    """Student code can allocate as much in a notebook forked from a zygote holding preloaded models as in a fresh
    sandbox: its limits are higher by exactly what the preload added (``budget.py``)."""
    budget = 2 << 30
    fresh = _measure(ROOM, profile="torch", budget=budget)[0]
    forked = _measure(ROOM, forked=True, profile="torch", budget=budget)[0]
    fresh_mb, forked_mb = (int(reply["stdout"].strip().splitlines()[-1]) for reply in (fresh, forked))
    print(f"room: fresh {fresh_mb} MiB, forked after a preload {forked_mb} MiB")
    assert 100 < fresh_mb < 4096
    assert abs(forked_mb - fresh_mb) <= 2, (fresh_mb, forked_mb)    # without the higher limits: ~20 MiB less


@pytest.mark.skipif(not sandbox.drops_to_own_user(), reason="zygotes are used only with bubblewrap as root")
def test_a_sandbox_forked_after_a_preload_stays_within_its_budget(preloaded_models):
    """Every process may hold the preload's share more (copied on write): the zygote keeps a preload only when
    that fits (``Limits.preload_fits``), so four processes holding all they can stay within the budget."""
    budget = 2 << 30
    source, success = ATTACKS["fork-hold"]
    zygote.enable(True)
    try:
        sandbox.stop(sandbox.start(stubs.layout(), "torch", "bwrap", sandbox.Limits(memory_bytes=budget)))
        assert _preloaded_zygote().preloaded
    finally:
        zygote.enable(False)
    reply, meter = _measure(source, forked=True, profile="torch", budget=budget)
    print(f"fork-hold after a preload: peak {meter.peak / 2**20:.0f} MiB; {reply.get('stdout', '').strip()}")
    assert success not in reply.get("stdout", "") + str(reply.get("error"))
    assert meter.peak <= budget, f"the sandbox held {meter.peak / 2**20:.0f} MiB"


@pytest.mark.skipif(not sandbox.drops_to_own_user(), reason="zygotes are used only with bubblewrap as root")
def test_a_preload_that_does_not_fit_is_never_used(preloaded_models, monkeypatch):
    """A budget too small for every process to copy the preload: that zygote is stopped, the notebook gets a fresh
    sandbox, and this process preloads nothing more."""
    monkeypatch.setitem(zygote._STATE, "preload", True)
    limits = sandbox.Limits(memory_bytes=1 << 30)
    monkeypatch.setattr(type(limits), "preload_fits", lambda self, before, added: added == 0)
    zygote.enable(True)
    try:
        box = sandbox.start(stubs.layout(), "torch", "bwrap", limits)
        try:
            assert not isinstance(box, zygote.ForkedSandbox)
            assert zygote._STATE["preload"] is False
        finally:
            sandbox.stop(box)
        again = sandbox.start(stubs.layout(), "torch", "bwrap", limits)     # a zygote without a preload
        try:
            assert isinstance(again, zygote.ForkedSandbox) and not again.zygote.preloaded
        finally:
            sandbox.stop(again)
    finally:
        zygote.enable(False)

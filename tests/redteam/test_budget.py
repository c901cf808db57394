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


def _measure(source: str, timeout: float = 60.0, forked: bool = False) -> tuple[dict, PeakMeter]:
    """Run ``source`` in a fresh sandbox, or (``forked``) in one forked from a zygote, whose whole sandbox (the
    zygote too) is measured."""
    zygote.enable(forked)
    try:
        box = sandbox.start(stubs.layout(), "scratch", "bwrap", sandbox.Limits(memory_bytes=BUDGET))
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

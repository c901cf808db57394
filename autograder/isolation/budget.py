"""One budget for the whole sandbox: how its memory limit is shared out so that nothing inside can exceed it.

The sandbox's memory is what its processes hold plus what its writable filesystem holds; nothing else can grow
(the seccomp filter of :mod:`.seccomp` denies shared writable mappings, ``memfd_create`` and System V shared
memory; ``/``, ``/dev``, ``/proc`` and ``/tmp`` are read-only). So the budget binds, with or without cgroups, when

- processes are few: ``RLIMIT_NPROC`` caps the tasks of the sandbox's user (threads included) at the worker, the
  exercise child it forks, and :attr:`Limits.spare_tasks` more; a zygote (root, which forked the worker:
  :mod:`.zygote`) may be one more, and the budget counts it in every sandbox. The limit binds a user other than
  root: under bubblewrap as root the worker drops to a user id of its own (:func:`sandbox_uid`), so that the count
  is this sandbox's alone; without root, bubblewrap's user namespace already runs it as the grader's (non-root) user;
- each process holds at most its share: ``RLIMIT_DATA`` (every private writable byte: heap, arrays, anonymous
  mappings, thread stacks) plus ``RLIMIT_STACK`` is the budget less the writable tmpfs, divided by the most
  processes there can be;
  ``RLIMIT_AS`` (the address space, libraries included) is the whole budget, so one process cannot map more;
- the writable tmpfs (the working directory) is sized, and ``RLIMIT_FSIZE`` (0 by default: files can be created
  but hold nothing) keeps any file from holding data, a native library included.

Worst case: ``processes * (data + stack) + tmp <= memory``. A forked child shares its parent's pages until it
writes them; each copy it makes is within its own ``RLIMIT_DATA``, so the sum holds.

A zygote (:mod:`.zygote`) may hold its children's call arguments, rebuilt once (``added`` bytes of private memory
that every notebook's processes inherit). So that a forked notebook has exactly the room of a fresh one, its
processes' ``RLIMIT_DATA`` and ``RLIMIT_AS`` are ``added`` higher (the zygote's hard limits allow up to
:attr:`Limits.preload_bytes` more). The sum still holds when :meth:`Limits.preload_fits`: the zygote, which runs no
student code, holds ``before + added``; each other process at most ``data + added``; so
``before + added + (processes - 1) * (data + added) <= processes * data`` when ``before + processes * added <=
data``. A zygote whose preload does not fit is never used.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

#: the user ids a sandbox may run as when the grader is root (one per sandbox: RLIMIT_NPROC counts per user)
UID_RANGE = (0x7A000000, 0x7AFFFFFF)


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox. Times are wall-clock seconds unless named cpu; sizes are bytes."""

    memory_bytes: int = 2 << 30   # the whole sandbox: every process and its writable tmpfs
    cpu_seconds: int = 900
    file_bytes: int = 0           # the largest file a process may write (0: no file holds data)
    open_files: int = 256
    tmp_bytes: int = 8 << 20      # the writable working directory (a tmpfs)
    stack_bytes: int = 8 << 20    # each process's main stack (outside RLIMIT_DATA)
    spare_tasks: int = 1          # tasks beyond the worker and its exercise child (a thread, or one process)
    output_bytes: int = 64 << 10
    startup_timeout: float = 30.0

    @property
    def processes(self) -> int:
        """The most processes the sandbox can hold at once: its user's (the worker, its exercise child, the spare
        tasks) and the zygote it may have been forked from (:mod:`.zygote`; counted in every sandbox, so that the
        limits, and the scores, never depend on whether one was used)."""
        return 3 + self.spare_tasks

    @property
    def data_bytes(self) -> int:
        """Each process's private memory (``RLIMIT_DATA``): its share of the budget, less its stack."""
        return max(64 << 20, (self.memory_bytes - self.tmp_bytes) // self.processes - self.stack_bytes)

    @property
    def preload_bytes(self) -> int:
        """The most a zygote's preloaded arguments may add to its private memory (its hard limits allow that much
        more, for its children's raised limits)."""
        return self.memory_bytes // 32

    def preload_fits(self, before: int, added: int) -> bool:
        """Whether a zygote that held ``before`` bytes of private memory (``VmData``) before its preload, which
        added ``added``, keeps the sandbox within its budget with every process's limit ``added`` higher (the
        module docstring)."""
        return 0 <= added <= self.preload_bytes and before + self.processes * added <= self.data_bytes

    def argv(self) -> list[str]:
        """The worker's ``--limits``: data, stack, address space, cpu seconds, file size, open files."""
        values = (self.data_bytes, self.stack_bytes, self.memory_bytes, self.cpu_seconds, self.file_bytes,
                  self.open_files)
        return ["--limits", ",".join(str(v) for v in values)]

    def zygote_argv(self) -> list[str]:
        """A zygote's ``--preload``: how much higher its hard memory limits are (:attr:`preload_bytes`)."""
        return ["--preload", str(self.preload_bytes)]

    def tasks_argv(self) -> list[str]:
        """The worker's ``--tasks``: how many tasks its user may add to those it has at start."""
        return ["--tasks", str(1 + self.spare_tasks)]


def sandbox_uid() -> int:
    """A fresh user id for one sandbox (used only when the grader runs as root)."""
    return UID_RANGE[0] + secrets.randbelow(UID_RANGE[1] - UID_RANGE[0])


def running_as_root() -> bool:
    return os.geteuid() == 0

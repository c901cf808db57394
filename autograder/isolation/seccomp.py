"""The sandbox's seccomp filter: classic BPF, assembled here (trusted side) and handed to bubblewrap (``--seccomp FD``).

bubblewrap installs it right before it executes the worker, so it binds every process of the sandbox from the
first instruction on, and no process inside can remove it. It denies (``EPERM``) the system calls that would let
student code escape the sandbox's single budget or bring in native code:

- new memory that no per-process limit counts: ``memfd_create``, ``memfd_secret``, System V shared memory
  (``shmget``), and any ``mmap`` that is both shared and writable (shared anonymous memory, ``/dev/zero``): with
  these gone, every byte a process can hold is private and counted by its ``RLIMIT_DATA``;
- new namespaces or mounts (``unshare``, ``setns``, ``mount``, ``clone`` with a namespace flag; ``clone3``, whose
  flags a filter cannot read, answers ``ENOSYS`` so that the C library falls back to ``clone``), and the kernel
  interfaces a sandbox never needs (``ptrace``, ``bpf``, ``userfaultfd``, ``perf_event_open``, ``keyctl``,
  ``io_uring``, ``kexec``...);
- every call of another ABI (32-bit, x32), so that the numbers checked here are the only numbers there are.

A new native library cannot be loaded because nothing in the sandbox is writable: there is no file to map (the
filesystem is read-only, ``memfd_create`` is denied). x86-64 and aarch64 are supported; elsewhere there is no
filter (:func:`program` returns ``None``) and the report says so.
"""
from __future__ import annotations

import errno
import platform
import struct

# classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h)
_LD_W_ABS = 0x20      # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15         # BPF_JMP | BPF_JEQ | BPF_K
_JSET_K = 0x45        # BPF_JMP | BPF_JSET | BPF_K
_JGE_K = 0x35         # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06         # BPF_RET | BPF_K
_ALLOW = 0x7FFF0000
_KILL = 0x80000000    # SECCOMP_RET_KILL_PROCESS
_DENY = 0x00050000 | errno.EPERM  # SECCOMP_RET_ERRNO | EPERM
_NOSYS = 0x00050000 | errno.ENOSYS  # clone3: its flags are out of a filter's reach; glibc then uses clone

# offsets in struct seccomp_data: nr (u32), arch (u32), instruction_pointer (u64), args[6] (u64, little endian)
_NR, _ARCH = 0, 4


def _arg(i: int) -> int:
    return 16 + 8 * i  # the low 32 bits of argument i


_CLONE_NAMESPACES = 0x7E020000  # CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET
_MAP_SHARED = 0x01               # also set in MAP_SHARED_VALIDATE
_PROT_WRITE = 0x02

#: per architecture: the audit arch, the first number of a foreign ABI (x32) or None, and the syscall numbers
_ARCHES = {
    "x86_64": (0xC000003E, 0x40000000, {
        "mmap": 9, "clone": 56, "clone3": 435, "shmget": 29, "ptrace": 101, "mount": 165, "umount2": 166,
        "pivot_root": 155, "chroot": 161, "unshare": 272, "setns": 308, "memfd_create": 319, "bpf": 321, "userfaultfd": 323,
        "perf_event_open": 298, "keyctl": 250, "add_key": 248, "request_key": 249, "kexec_load": 246,
        "kexec_file_load": 320, "process_vm_writev": 311, "io_uring_setup": 425, "memfd_secret": 447,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsmount": 432, "mount_setattr": 442}),
    "aarch64": (0xC00000B7, None, {
        "mmap": 222, "clone": 220, "clone3": 435, "shmget": 194, "ptrace": 117, "mount": 40, "umount2": 39,
        "pivot_root": 41, "chroot": 51, "unshare": 97, "setns": 268, "memfd_create": 279, "bpf": 280, "userfaultfd": 282,
        "perf_event_open": 241, "keyctl": 219, "add_key": 217, "request_key": 218, "kexec_load": 104,
        "kexec_file_load": 294, "process_vm_writev": 271, "io_uring_setup": 425, "memfd_secret": 447,
        "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsmount": 432, "mount_setattr": 442}),
}
#: denied outright (the other checks are on arguments)
DENIED = ("shmget", "ptrace", "mount", "umount2", "pivot_root", "chroot", "unshare", "setns", "memfd_create",
          "bpf", "userfaultfd", "perf_event_open", "keyctl", "add_key", "request_key", "kexec_load",
          "kexec_file_load", "process_vm_writev", "io_uring_setup", "memfd_secret", "open_tree", "move_mount",
          "fsopen", "fsmount", "mount_setattr")


def _op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
    return struct.pack("<HBBI", code, jt, jf, k)


def program(machine: str | None = None) -> bytes | None:
    """The filter as the bytes of a ``struct sock_filter`` array (what ``bwrap --seccomp`` reads), or None on an
    architecture this module does not know."""
    arch = _ARCHES.get(machine or platform.machine())
    if arch is None:
        return None
    audit_arch, foreign, numbers = arch
    ops = [_op(_LD_W_ABS, _ARCH), _op(_JEQ_K, audit_arch, 1, 0), _op(_RET_K, _KILL), _op(_LD_W_ABS, _NR)]
    if foreign is not None:
        ops += [_op(_JGE_K, foreign, 0, 1), _op(_RET_K, _DENY)]
    for name in DENIED:
        ops += [_op(_JEQ_K, numbers[name], 0, 1), _op(_RET_K, _DENY)]
    ops += [_op(_JEQ_K, numbers["clone3"], 0, 1), _op(_RET_K, _NOSYS)]
    # clone(flags, ...): no new namespaces (flags are the first argument on both architectures)
    ops += [_op(_JEQ_K, numbers["clone"], 0, 4), _op(_LD_W_ABS, _arg(0)), _op(_JSET_K, _CLONE_NAMESPACES, 0, 1),
            _op(_RET_K, _DENY), _op(_RET_K, _ALLOW)]
    # mmap(addr, length, prot, flags, fd, offset): nothing both shared and writable
    ops += [_op(_JEQ_K, numbers["mmap"], 0, 6), _op(_LD_W_ABS, _arg(3)), _op(_JSET_K, _MAP_SHARED, 0, 3),
            _op(_LD_W_ABS, _arg(2)), _op(_JSET_K, _PROT_WRITE, 0, 1), _op(_RET_K, _DENY), _op(_RET_K, _ALLOW)]
    ops.append(_op(_RET_K, _ALLOW))
    return b"".join(ops)

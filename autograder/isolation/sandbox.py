"""Start the worker in a limited process, and make sure that every process it starts is gone afterwards.

Two isolation levels:

- ``bwrap`` (bubblewrap present): started with nothing of the grader's environment; new pid, network, ipc and
  uts namespaces (and a user namespace, or, as root, a user id of the sandbox's own); a read-only filesystem
  built from binds of the system and the Python installation, where the repository, ``solutions/``, the
  gradebook, the output directory and every other student's files simply do not exist; a small tmpfs as the
  one writable place (working directory); the modules a profile forbids replaced by directories whose
  ``__init__`` raises ``ModuleNotFoundError`` (absent, not hooked); the seccomp filter of :mod:`.seccomp`; the
  one memory budget of :mod:`.budget`. Killing the outer ``bwrap`` kills the namespace's init and with
  it every process inside, ``setsid`` and double forks included (the kernel tears the pid namespace down).
- ``reduced`` (no bubblewrap, or ``CONVLAB_ISOLATION=reduced``): the same worker in a new session with the same
  rlimits, a private working directory, a clean environment and an import blocker; cleanup kills the process
  group, the session, every process carrying the sandbox's token in its environment and orphans re-parented to
  the worker's shim (a child subreaper that also kills them). Files are not hidden: the report says that isolation is reduced.

In both, the worker sets its own rlimits (private memory, address space, CPU time, file size, open files, no core
dumps) before it reads its first message, i.e. before any student code exists in the process; its stdout and stderr go to a pipe
that the grader drains and caps, and that nothing ever parses.
"""
from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from . import seccomp, stubs, unprivileged
from .budget import Limits, running_as_root, sandbox_uid
from .interpreter import python_executable, python_roots, site_dirs, site_like_dirs
from .protocol import Channel, pack, unpack

SANDBOX_ROOT = stubs.SANDBOX_ROOT   # where the layout appears inside the bwrap sandbox
WORKDIR = "/home/student"        # the private working directory inside the bwrap sandbox
EXIT_GRACE = 0.05                # seconds an idle worker has to exit by itself before it is killed


# ------------------------------------------------------------------------------------------ detection

_BWRAP_STATE: dict[str, object] = {}


def isolation_mode(requested: str | None = None) -> tuple[str, str]:
    """``(mode, why)``: ``"bwrap"`` or ``"reduced"``. ``requested`` (or ``$CONVLAB_ISOLATION``) is ``auto``,
    ``bwrap`` (fail if unavailable) or ``reduced``."""
    want = (requested or os.environ.get("CONVLAB_ISOLATION") or "auto").lower()
    if want not in ("auto", "bwrap", "reduced"):
        raise ValueError(f"isolation must be auto, bwrap or reduced, not {want!r}")
    if want == "reduced":
        return "reduced", "reduced isolation was requested"
    ok, why = bwrap_works()
    if ok:
        return "bwrap", "bubblewrap"
    if want == "bwrap":
        raise RuntimeError(f"bubblewrap isolation was requested but is unavailable: {why}")
    return "reduced", why


def bwrap_works() -> tuple[bool, str]:
    """Whether bubblewrap can start a sandbox here (probed once per process), and which flags it accepts."""
    if "ok" in _BWRAP_STATE:
        return bool(_BWRAP_STATE["ok"]), str(_BWRAP_STATE["why"])
    exe = shutil.which("bwrap")
    if not exe:
        _BWRAP_STATE.update(ok=False, why="bubblewrap (bwrap) is not installed")
        return False, str(_BWRAP_STATE["why"])
    last = ""
    for userns in _namespace_variants():
        cmd = [exe, *userns, "--unshare-pid", "--unshare-net", "--die-with-parent", *_system_binds(),
               "--proc", "/proc", "--dev", "/dev", "--", "/bin/true"]
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=20)
        except (OSError, subprocess.TimeoutExpired) as exc:
            last = str(exc)
            continue
        if r.returncode == 0:
            _BWRAP_STATE.update(ok=True, why="bubblewrap", exe=exe, userns=userns)
            return True, "bubblewrap"
        last = r.stderr.decode(errors="replace").strip()[:200]
    _BWRAP_STATE.update(ok=False, why=f"bubblewrap cannot start a sandbox here ({last})")
    return False, str(_BWRAP_STATE["why"])


#: as root, bubblewrap runs without a user namespace and keeps only what the worker needs to drop to a user id of
#: its own (so that RLIMIT_NPROC binds, which it never does for root); otherwise it runs in a user namespace
_DROP_TO_SANDBOX_USER = ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]


def _namespace_variants() -> list[list[str]]:
    userns = [["--unshare-user", "--disable-userns"], ["--unshare-user"]]
    return [_DROP_TO_SANDBOX_USER, *userns] if running_as_root() else [*userns, []]


def _system_binds() -> list[str]:
    """Read-only system directories: /usr, and /bin /lib /lib64 /sbin as the host has them (links or dirs)."""
    args = ["--ro-bind", "/usr", "/usr"]
    for name in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(name):
            args += ["--symlink", os.readlink(name), name]
        elif os.path.isdir(name):
            args += ["--ro-bind", name, name]
    for name in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        if os.path.exists(name):
            args += ["--ro-bind", name, name]
    return args


# ------------------------------------------------------------------------------------------ processes

def stat_fields(pid: int) -> list[str]:
    """The fields of ``/proc/PID/stat`` after the command name (``[0]`` the state, ``[11:15]`` the CPU ticks:
    utime stime cutime cstime), or ``[]`` when there is no such process."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return []
    return raw[raw.rfind(")") + 2:].split()


def _proc_stat(pid: int) -> tuple[int, int, int, int] | None:
    """``(ppid, pgrp, session, starttime)`` of a live (not zombie) process, or None."""
    fields = stat_fields(pid)
    if not fields or fields[0] in ("Z", "X"):
        return None
    try:
        return int(fields[1]), int(fields[2]), int(fields[3]), int(fields[19])
    except (IndexError, ValueError):
        return None


def _all_pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (from the host's /proc)."""
    children: dict[int, list[int]] = {}
    for p in _all_pids():
        st = _proc_stat(p)
        if st:
            children.setdefault(st[0], []).append(p)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def _has_token(pid: int, token: bytes) -> bool:
    try:
        return token in Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return False


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


# ------------------------------------------------------------------------------------------ the sandbox

@dataclass
class Sandbox:
    """One running worker: its process, its channel, and its captured output."""

    mode: str
    process: subprocess.Popen
    channel: Channel
    token: bytes
    workdir: str | None
    started: float = field(default_factory=time.monotonic)
    output: bytearray = field(default_factory=bytearray)
    output_dropped: int = 0
    cpu_seconds: float = 0.0          # of its processes, measured when it was stopped
    _drain: threading.Thread | None = None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output_text(self) -> str:
        text = self.output.decode(errors="replace")
        return text + (f"\n... ({self.output_dropped} more bytes)" if self.output_dropped else "")

    def note_cpu(self) -> None:
        """Record the CPU seconds the sandbox has used so far (read from /proc while it still runs)."""
        if self.alive:
            self.cpu_seconds = max(self.cpu_seconds, tree_cpu_seconds(self.process.pid))

    def kill(self) -> None:
        """Kill the worker and every process it started (idempotent)."""
        self.note_cpu()
        self.channel.close()
        self._let_exit()
        self._kill_processes()
        if self._drain is not None:
            self._drain.join(timeout=2)
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _kill_processes(self) -> None:
        """Kill the worker's process and everything it started, and reap it."""
        if self.mode == "bwrap":
            _kill(self.process.pid)  # bwrap's init dies with it (--die-with-parent), and the pid namespace too
            self._reap()
            # belt and braces: anything still below the outer bwrap
            for pid in descendants(self.process.pid):
                _kill(pid)
        else:
            self._kill_reduced()
        self._reap()

    def _let_exit(self) -> None:
        """Give an idle worker a moment to end by itself (its request pipe is closed: it exits at once), so that
        its process is reaped with its CPU time counted in the grader's (``RUSAGE_CHILDREN``); whatever is
        still running after :data:`EXIT_GRACE` seconds is killed as usual."""
        try:
            self.process.wait(timeout=EXIT_GRACE)
        except subprocess.TimeoutExpired:
            pass

    def _reap(self) -> None:
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass

    def _kill_reduced(self) -> None:
        pid = self.process.pid
        me = os.getpid()
        for _ in range(10):
            victims = set(descendants(pid))
            for p in _all_pids():
                st = _proc_stat(p)
                if p == me or st is None:
                    continue
                ppid, pgrp, sid, start = st
                if p == pid or pgrp == pid or sid == pid or _has_token(p, self.token):
                    victims.add(p)
            victims.discard(me)
            if not victims:
                break
            for p in victims:
                _kill(p)
            time.sleep(0.02)


_LIVE: set = set()


_MOUNTS: dict[tuple, list[str]] = {}


def _bwrap_mounts(layout: stubs.Layout, profile: str) -> list[str]:
    """The filesystem part of the bwrap command line (computed once per layout and profile)."""
    key = (str(layout.root), profile)
    if key in _MOUNTS:
        return _MOUNTS[key]
    args = _system_binds()
    args += _parent_dirs(python_roots() + site_dirs() + [SANDBOX_ROOT])
    for root in python_roots():
        args += ["--ro-bind", root, root]
    for d in site_dirs():
        args += ["--ro-bind", d, d]
    visible = python_roots() + site_dirs() + ["/usr"]
    for target, source in layout.hidden(profile, site_like_dirs()):
        if any(target == v or target.startswith(v.rstrip("/") + "/") for v in visible):
            args += ["--ro-bind", source, target]
    args += ["--ro-bind", str(layout.root), SANDBOX_ROOT]
    if layout.datasets:
        args += ["--ro-bind", str(layout.datasets), f"{SANDBOX_ROOT}/datasets"]
    _MOUNTS[key] = args
    return args


def _parent_dirs(targets: list[str]) -> list[str]:
    """``--dir`` for every missing ancestor of the bind targets, world-readable (bubblewrap would copy the host's
    modes, and a private ``/root`` would hide a Python installed under it from the sandbox's own user)."""
    made: list[str] = []
    for target in targets:
        parts = Path(target).parts[1:-1]
        for i in range(1, len(parts) + 1):
            d = "/" + "/".join(parts[:i])
            system = d in ("/usr", "/tmp", "/proc", "/dev") or d.startswith("/usr/") or os.path.islink(d)
            if d not in made and not system:
                made.append(d)
    args: list[str] = []
    for d in made:
        args += ["--perms", "0755", "--dir", d]
    return args


def _bwrap_command(layout: stubs.Layout, profile: str, limits: Limits, fds: tuple[int, ...],
                   zygote_fd: int | None = None) -> list[str]:
    """The bubblewrap command line; ``fds`` are the request and reply pipes and the seccomp program's pipe;
    ``zygote_fd``: the socket of a zygote (:mod:`.zygote`), which keeps root to give each notebook a user of its
    own (it drops no user id, caps no tasks: each notebook's worker does)."""
    bwrap_works()  # which variant works here (probed once)
    exe = str(_BWRAP_STATE.get("exe") or shutil.which("bwrap"))
    variant = list(_BWRAP_STATE.get("userns") or [])
    args = [exe, *variant, "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--hostname", "sandbox", "--die-with-parent", "--new-session"]
    # /tmp comes first: a bind that follows may live under /tmp (a checkout and its .venv in /tmp, as on CI
    # machines) and must stay visible on top of it, not be shadowed by it
    args += ["--proc", "/proc", "--dev", "/dev", "--ro-bind", "/dev/null", "/dev/zero",
             "--size", str(64 << 10), "--tmpfs", "/tmp", "--dir", WORKDIR]
    args += _bwrap_mounts(layout, profile)
    # everything so far read-only (the root, /dev and its shm, /proc and /proc/self/mem, /tmp); then the one
    # writable place, sized: the working directory
    for mount in ("/proc", "/dev", "/tmp", "/"):  # a remount is not recursive
        args += ["--remount-ro", mount]
    args += ["--size", str(limits.tmp_bytes), "--perms", "0777", "--tmpfs", WORKDIR]
    if len(fds) > 2:
        args += ["--seccomp", str(fds[2])]
    args += ["--chdir", WORKDIR, "--clearenv"]
    for key, value in _environment(f"{SANDBOX_ROOT}/datasets" if layout.datasets else "", WORKDIR).items():
        args += ["--setenv", key, value]
    path = os.pathsep.join([f"{SANDBOX_ROOT}/stub", *site_dirs()])
    args += ["--", *worker_command(f"{SANDBOX_ROOT}/lib"),
             "--in", str(fds[0]), "--out", str(fds[1]), "--path", path, *limits.argv()]
    if zygote_fd is not None:
        return args + ["--zygote", str(zygote_fd), *limits.zygote_argv()]
    args += limits.tasks_argv()
    if variant == _DROP_TO_SANDBOX_USER:
        args += ["--uid", str(sandbox_uid())]
    return args


def drops_to_own_user() -> bool:
    """Whether bubblewrap runs here as root without a user namespace, each worker dropping to a user id of its own
    (the only setting in which a zygote is used: :mod:`.zygote`)."""
    return bwrap_works()[0] and list(_BWRAP_STATE.get("userns") or []) == _DROP_TO_SANDBOX_USER


def worker_command(lib: str) -> list[str]:
    """The interpreter running the worker from ``lib`` (its arguments follow): isolated (``-I``: no environment
    variables, no user site, no script directory on ``sys.path``), without ``site`` (``-S``: the worker adds the
    site-packages it needs itself), writing no bytecode (``-B``). The worker is imported as a module, not run as
    a script, so that its precompiled bytecode (:func:`stubs.layout`) is used; ``lib`` leaves ``sys.path`` again
    before any cell runs."""
    boot = (f"import sys; sys.path.insert(0, {lib!r}); import worker; sys.path.remove({lib!r}); "
            "worker.main(sys.argv[1:])")
    return [python_executable(), "-I", "-S", "-B", "-c", boot]


#: what bubblewrap itself is started with: nothing of the grader's environment (bubblewrap stays the sandbox's
#: pid 1, and every process inside can read its /proc/1/environ)
BWRAP_ENVIRONMENT = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def _seccomp_pipe() -> int | None:
    """A pipe holding the seccomp program, for ``--seccomp`` (its read end), or None without a program."""
    program = seccomp.program()
    if program is None:
        return None
    r, w = os.pipe()
    try:
        os.write(w, program)  # a few hundred bytes: far below a pipe's capacity
    finally:
        os.close(w)
    return r


def _environment(datasets: str, home: str) -> dict[str, str]:
    """The worker's whole environment (nothing is inherited from the grader)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": home,
        "LANG": "C.UTF-8",
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": os.path.join(home, ".matplotlib"),
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "NUMEXPR_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "CONVLAB_SANDBOX": "1",
    }
    if datasets:
        env["CONVLAB_DATASETS"] = datasets
    return env


#: bytes a request or reply pipe holds (Linux's default 64 KiB made a 1 MB chunk of calls cross in ~20 wake-ups of
#: both sides); the kernel's ceiling for unprivileged users (``/proc/sys/fs/pipe-max-size``) is 1 MiB by default
PIPE_BYTES = 1 << 20


def pipe() -> tuple[int, int]:
    """``os.pipe()`` holding :data:`PIPE_BYTES` where the kernel allows it (else its default: only slower)."""
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except (OSError, AttributeError):   # over the user's pipe budget, or not Linux
        pass
    return r, w


def _spawn(layout: stubs.Layout, profile: str, mode: str, limits: Limits,
           zygote_fd: int | None = None) -> tuple[Sandbox, list[str]]:
    """The worker's process for ``profile``, started (not yet greeted); also the modules it must block itself
    (reduced isolation only). ``zygote_fd``: the socket end a zygote's worker keeps (bubblewrap only)."""
    req_r, req_w = pipe()
    rep_r, rep_w = pipe()
    out_r, out_w = os.pipe()
    token = os.urandom(12).hex().encode()
    workdir = None
    filter_fd = _seccomp_pipe() if mode == "bwrap" else None
    inherited = (req_r, rep_w) + ((filter_fd,) if filter_fd is not None else ())
    kept = inherited + ((zygote_fd,) if zygote_fd is not None else ())
    try:
        if mode == "bwrap":
            cmd = _bwrap_command(layout, profile, limits, inherited, zygote_fd)
            env = dict(BWRAP_ENVIRONMENT)
            cwd = None
            block: list[str] = []
        else:
            workdir = tempfile.mkdtemp(prefix="convlab-work-")
            os.makedirs(os.path.join(workdir, "tmp"))
            path = os.pathsep.join([str(layout.root / "stub"), *site_dirs()])
            cmd = [*worker_command(str(layout.root / "lib")), "--shim",
                   "--in", str(req_r), "--out", str(rep_w), "--path", path, *limits.argv()]
            env = _environment(str(layout.datasets or ""), workdir)
            env["CONVLAB_SANDBOX_TOKEN"] = token.decode()
            cwd = workdir
            block = [m for m in stubs.hidden_modules(profile) if m != "autograder"] + ["__editable__"]
            cmd = unprivileged.wrap(cmd, workdir)     # as another user, where the deployment asks for it
        process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out_w, stderr=out_w, cwd=cwd, env=env,
                                   pass_fds=kept, start_new_session=True, close_fds=True)
    finally:
        for fd in (*inherited, out_w):
            os.close(fd)
    token_line = b"CONVLAB_SANDBOX_TOKEN=" + token if mode == "reduced" else token
    box = Sandbox(mode, process, Channel(rep_r, req_w), token_line, workdir)
    _LIVE.add(process)
    box._drain = threading.Thread(target=_drain_output, args=(out_r, box, limits.output_bytes), daemon=True)
    box._drain.start()
    return box, block


def _failed(box: Sandbox, exc: BaseException) -> RuntimeError:
    """Stop a sandbox that could not start; the error that says so (a grader failure, not the student's)."""
    stop(box)
    return RuntimeError(f"the sandbox did not start ({type(exc).__name__}: {exc}); its output: "
                        f"{box.output_text()[-800:]}")


def launch(layout: stubs.Layout, profile: str, mode: str, limits: Limits, zygote_fd: int | None = None) -> Sandbox:
    """Start a worker for ``profile`` (``"scratch"`` or ``"torch"``) and send its hello, without waiting for the
    answer: the worker sets its limits, imports what the profile needs and removes the ready-made functions while
    the caller does something else; :func:`ready` waits for it. Raises RuntimeError when the worker cannot be
    started. ``zygote_fd``: start it as a zygote (:mod:`.zygote`; the caller closes its copy)."""
    box, block = _spawn(layout, profile, mode, limits, zygote_fd)
    hello = {"op": "hello", "block": block, "remove": list(stubs.removed_names(profile)), "sweep": mode == "bwrap"}
    try:
        box.channel.send(pack(hello), time.monotonic() + limits.startup_timeout)
    except Exception as exc:  # noqa: BLE001
        raise _failed(box, exc) from None
    return box


def ready(box: Sandbox, limits: Limits) -> Sandbox:
    """The launched ``box`` once its worker has answered hello (within ``limits.startup_timeout`` from now);
    RuntimeError, with the sandbox stopped, when it does not."""
    waiting = time.monotonic()
    try:
        reply = unpack(*box.channel.receive(waiting + limits.startup_timeout))
        if not reply.get("ok"):
            raise RuntimeError(str(reply.get("error")))
    except Exception as exc:  # noqa: BLE001 - the sandbox could not start: a grader failure
        raise _failed(box, exc) from None
    finally:
        _ACCOUNTS["waited"] += time.monotonic() - waiting
    return box


def start(layout: stubs.Layout, profile: str, mode: str, limits: Limits) -> Sandbox:
    """A ready worker for ``profile``: one forked from this process's zygote where zygotes are used
    (:mod:`.zygote`), else the one :func:`prestarted` launched for this thread, if there is one (a fresh process in
    which nothing else ever ran), or a new one. Raises RuntimeError when the worker cannot start (a grader
    failure, not the student's)."""
    from . import zygote

    if zygote.used_for(mode):
        forked = zygote.fork(layout, profile, limits)
        if forked is not None:
            return forked
    early = _PRESTARTED.pop(_prestart_key(layout, profile, mode, limits), None)
    if early is not None:
        try:
            if ready(early, limits).alive:  # it may have answered, then died while it waited to be taken
                return early
            stop(early)
        except RuntimeError:
            pass  # launched too early to tell what went wrong: a new one says it, or works
    return ready(launch(layout, profile, mode, limits), limits)


def stop(box: Sandbox) -> None:
    box.kill()
    _LIVE.discard(box.process)
    _ACCOUNTS["cpu"] += box.cpu_seconds


def disown(box: Sandbox) -> None:
    """Forget ``box``'s process as one of this process's children (it was started by the process this one was
    forked from, which reaps it); the caller watches it by pid from now on."""
    _LIVE.discard(box.process)


# ------------------------------------------------------------------------------------------ ahead of need

_PRESTARTED: dict[tuple, Sandbox] = {}


def _prestart_key(layout: stubs.Layout, profile: str, mode: str, limits: Limits) -> tuple:
    return threading.get_ident(), str(layout.root), profile, mode, limits


@contextlib.contextmanager
def prestarted(layout: stubs.Layout, profiles: list[str], mode: str, limits: Limits) -> Iterator[None]:
    """Launch a sandbox of each of ``profiles`` now, so that each starts (imports NumPy or torch) while the
    grader prepares and while it grades the profile before; the next :func:`start` of that profile in this thread
    takes it. Each is a fresh process for one notebook, under its own limits, exactly as :func:`start` would
    make it, only earlier. On leaving, on every path, the ones no session took are stopped."""
    from . import zygote

    keys = []
    try:
        for profile in profiles:
            if zygote.used_for(mode):
                zygote.prepare(layout, profile, limits)   # its first notebook's start, the others' nothing
                continue
            key = _prestart_key(layout, profile, mode, limits)
            if key not in _PRESTARTED:
                try:
                    _PRESTARTED[key] = launch(layout, profile, mode, limits)
                except Exception:  # noqa: BLE001 - start() tries again, and reports what fails
                    continue
                keys.append(key)
        yield
    finally:
        for key in keys:
            box = _PRESTARTED.pop(key, None)
            if box is not None:
                stop(box)


# ------------------------------------------------------------------------------------------ accounting

_ACCOUNTS = {"cpu": 0.0, "waited": 0.0}


def charge_cpu(seconds: float) -> None:
    """Add CPU seconds of a sandbox's process measured elsewhere (a zygote's own: :mod:`.zygote`)."""
    _ACCOUNTS["cpu"] += seconds


def note_waited(seconds: float) -> None:
    _ACCOUNTS["waited"] += seconds


def cpu_seconds() -> float:
    """CPU seconds of every sandbox of this process stopped so far (read from the host's ``/proc`` just before
    each was stopped: the sandbox's processes are never reaped by the grader, so its own rusage misses them)."""
    return _ACCOUNTS["cpu"]


def waited_seconds() -> float:
    """Seconds this process has waited so far for sandboxes to finish starting (what launching them ahead saves
    shows here)."""
    return _ACCOUNTS["waited"]


def _children(pid: int) -> list[int]:
    """The children of ``pid`` (``/proc/PID/task/*/children``: a walk of one tree, not of every process)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(c) for c in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except (OSError, ValueError):
            continue
    return found


def subtree(pid: int) -> list[int]:
    """The live descendants of ``pid``, found by walking its children's links (no scan of every process)."""
    found, todo = [], [pid]
    while todo:
        children = _children(todo.pop())
        found += children
        todo += children
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, plus those of reaped children) of ``pid`` and its live descendants."""
    total = 0
    for current in [pid, *subtree(pid)]:
        try:
            total += sum(int(v) for v in stat_fields(current)[11:15])  # utime stime cutime cstime
        except ValueError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


def _drain_output(fd: int, box: Sandbox, cap: int) -> None:
    try:
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except InterruptedError:
                continue
            except OSError:
                break
            if not chunk:
                break
            room = cap - len(box.output)
            if room > 0:
                box.output += chunk[:room]
            box.output_dropped += max(0, len(chunk) - max(room, 0))
    finally:
        os.close(fd)


@atexit.register
def _kill_all_live() -> None:
    for process in list(_LIVE):
        try:
            process.kill()
        except OSError:
            pass

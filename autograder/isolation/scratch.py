"""One scratch folder per grading run, swept when its owner is gone.

Everything a run writes to the temporary directory (the sandbox layout, reduced-isolation work folders, a batch
task's copy of the notebooks, torch's compile caches) goes under ``$TMPDIR/convlab-run-<random>/``, which records
its owner's pid and start time. The run removes it when it ends; a run killed with ``kill -9`` cannot, so every
run first removes the folders whose owner is no longer alive. Nothing of a killed run (students' notebooks
included) outlives the next run.

:func:`run_scratch` points ``tempfile``, ``TMPDIR`` and the cache variables of torch (Inductor, Triton) at the
run's folder for the run's duration; child processes inherit them.
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

RUN_PREFIX = "convlab-run-"
OWNER_FILE = ".owner.json"
#: environment variables that point a library's scratch files into the run's folder (relative names inside it)
CACHE_VARIABLES = {"TORCHINDUCTOR_CACHE_DIR": "torchinductor", "TRITON_CACHE_DIR": "triton",
                   "MPLCONFIGDIR": "matplotlib"}


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22), None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def owner_alive(owner: dict) -> bool:
    """Whether the process that made a run folder still runs (the same process, not a reuse of its pid)."""
    pid = owner.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    started = _start_time(pid)
    if started is None:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not os.path.exists("/proc/self/stat")  # no /proc here: trust the pid
    return owner.get("start") in (None, started)


def _owner(folder: Path) -> dict:
    try:
        owner = json.loads((folder / OWNER_FILE).read_text())
        return owner if isinstance(owner, dict) else {}
    except (OSError, ValueError):
        return {}


def sweep(base: Path) -> list[Path]:
    """Remove the run folders under ``base`` whose owner is dead; returns them. A folder whose owner record is
    missing is removed only once it is older than a minute (its owner may be writing it right now)."""
    import time

    removed = []
    for folder in Path(base).glob(f"{RUN_PREFIX}*"):
        owner = _owner(folder)
        try:
            fresh = time.time() - folder.stat().st_mtime < 60
        except OSError:
            continue
        if owner_alive(owner) or (not owner and fresh):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


def new_run_folder(base: Path) -> Path:
    root = Path(tempfile.mkdtemp(prefix=RUN_PREFIX, dir=base))
    (root / OWNER_FILE).write_text(json.dumps({"pid": os.getpid(), "start": _start_time(os.getpid())}))
    return root


@contextlib.contextmanager
def run_scratch() -> Iterator[Path]:
    """A scratch folder for this run (see the module docstring); removed, and the environment restored, on exit."""
    base = Path(tempfile.gettempdir())
    sweep(base)
    root = new_run_folder(base)
    variables = {"TMPDIR": str(root), **{k: str(root / v) for k, v in CACHE_VARIABLES.items()}}
    saved_env = {k: os.environ.get(k) for k in variables}
    saved_tempdir = tempfile.tempdir
    os.environ.update(variables)
    tempfile.tempdir = str(root)
    try:
        yield root
    finally:
        tempfile.tempdir = saved_tempdir
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(root, ignore_errors=True)

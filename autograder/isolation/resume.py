"""What makes ``batch`` safe to interrupt and to run again: an exclusive lock on the output folder, content keys,
and result records that say which results are complete.

- :class:`OutputLock`: ``OUT_DIR/.instructor/batch.lock``, held with ``fcntl.flock`` for the whole run. The kernel
  drops a flock when the last descriptor of the holder closes, so a batch killed with ``kill -9`` (or a crashed
  machine's NFS client) leaves nothing stale behind; a second batch on the same folder is refused at once
  (:class:`BatchLocked`) instead of interleaving its writes with the first.
- Keys: a submission's **content key** hashes its notebooks' names and bytes (SHA-256); the run's **settings key**
  hashes everything else a grade depends on (the grader's code, the course's source notebooks, the seed, the case
  factor, the device, the isolation level, the limits). A result is reused only when both match.
- Records: each result is written as ``OUT_DIR/<student>/<assignment>.json`` (what students get) and then
  ``OUT_DIR/.instructor/<student>/<assignment>.json`` (the instructor's record, written last, atomically). The record
  holds both keys, a random ``result_id`` and the SHA-256 of the student's file, so a result is *complete* exactly
  when its record exists, matches the keys, and its student file has that digest. A crash between the two writes
  leaves an out-of-date record: that submission is graded again, never half-reused.
"""
from __future__ import annotations

import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from .. import __version__, registry

LOCK_NAME = "batch.lock"
STATE_NAME = "batch.state"  # JSON; not *.json, so that OUT_DIR/*/*.json stays the reports
#: only this much of an oversized notebook travels to a grader (the grader rejects it by its size anyway)
SHIP_LIMIT = 32 << 20


class BatchLocked(RuntimeError):
    """Another ``batch`` holds the output folder."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------------------------------ the lock

class OutputLock:
    """An exclusive, non-blocking ``flock`` on ``OUT_DIR/.instructor/batch.lock`` (use as a context manager)."""

    def __init__(self, out: Path):
        self.path = Path(out) / ".instructor" / LOCK_NAME
        self.fd: int | None = None

    def acquire(self, what: str = "") -> "OutputLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_holder(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise BatchLocked(
                    f"another batch is already grading into {self.path.parent.parent}{holder}; refusing to run "
                    f"two at once on the same output folder (wait for it to finish, or stop it: a stopped or "
                    f"killed batch releases the lock at once, and the next run resumes where it stopped)") from None
            raise
        os.ftruncate(fd, 0)
        os.write(fd, (json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                  "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": what}) + "\n").encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            fd, self.fd = self.fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __enter__(self) -> "OutputLock":
        return self.acquire() if self.fd is None else self

    def __exit__(self, *exc) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        return ""
    if not isinstance(info, dict) or "pid" not in info:
        return ""
    return f" (pid {info['pid']} on {info.get('host', '?')}, started {info.get('started', '?')})"


# ------------------------------------------------------------------------------------------ keys

_CODE_HASH: dict[str, str] = {}


def grader_code_hash() -> str:
    """SHA-256 of the grader's own source (``autograder/**/*.py`` except the integrations), once per process."""
    if "code" not in _CODE_HASH:
        package = Path(__file__).resolve().parents[1]
        h = hashlib.sha256(__version__.encode())
        for path in sorted(package.rglob("*.py")):
            rel = path.relative_to(package).as_posix()
            if rel.startswith("integrations/") or "__pycache__" in rel:
                continue
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
        _CODE_HASH["code"] = h.hexdigest()
    return _CODE_HASH["code"]


def course_hash(course: Path) -> str:
    """SHA-256 of the course's source notebooks (``solutions/<id>/<id>.ipynb``) for every known assignment."""
    h = hashlib.sha256()
    for aid in sorted(registry.assignments()):
        path = Path(course) / "solutions" / aid / f"{aid}.ipynb"
        try:
            data = path.read_bytes()
        except OSError:
            data = b"<missing>"
        h.update(aid.encode() + b"\0" + data + b"\0")
    return h.hexdigest()


def environment(course: Path) -> dict:
    """What a grader process must agree on with the others of a run (checked on every Dask worker)."""
    return {"code": grader_code_hash(), "course": course_hash(course)}


def settings_key(options, seed: int, mode: str, course_digest: str | None = None) -> str:
    """Everything besides the notebooks that a grade depends on, hashed."""
    settings = dataclasses.asdict(options.settings)
    blob = {"grader": grader_code_hash(), "course": course_digest or course_hash(options.course), "seed": seed,
            "case_factor": options.case_factor, "device": options.device, "isolation": mode,
            "settings": settings, "shrink_budget": options.shrink_budget,
            "notebook_budget": options.notebook_budget}
    return sha256_bytes(json.dumps(blob, sort_keys=True, default=str).encode())


def read_for_grading(path: Path) -> tuple[bytes, int, str]:
    """``(bytes to ship, true size, sha256 of the whole file)``; an oversized file ships only its head (the grader
    refuses it by its size), but its digest covers every byte."""
    h = hashlib.sha256()
    head = bytearray()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
            if len(head) <= SHIP_LIMIT:
                head += chunk[:SHIP_LIMIT + 1 - len(head)]
    return bytes(head), size, h.hexdigest()


def content_key(assignment: str, digests: list[tuple[str, str]]) -> str:
    """A submission's key: its assignment folder and its notebooks' names and digests, in grading order."""
    return sha256_bytes(json.dumps([assignment, digests]).encode())


# ------------------------------------------------------------------------------------------ records

def record_path(out: Path, student: str, assignment: str) -> Path:
    return Path(out) / ".instructor" / student / f"{assignment}.json"


def result_path(out: Path, student: str, assignment: str) -> Path:
    return Path(out) / student / f"{assignment}.json"


def load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def complete_record(out: Path, student: str, assignment: str, content: str | None = None,
                    settings: str | None = None) -> dict | None:
    """The instructor's record of this submission when its result is complete, valid and (when keys are given)
    graded from the same notebooks with the same settings; else None."""
    record = load_json(record_path(out, student, assignment))
    if not isinstance(record, dict) or not isinstance(record.get("key"), dict):
        return None
    key = record["key"]
    if content is not None and key.get("content") != content:
        return None
    if settings is not None and key.get("settings") != settings:
        return None
    if record.get("errors"):
        return None           # a grader failure is retried, not kept
    try:
        data = result_path(out, student, assignment).read_bytes()
    except OSError:
        return None
    if sha256_bytes(data) != record.get("result_sha256"):
        return None
    return record


def remove_partial_writes(out: Path) -> int:
    """Delete temporary files that an interrupted atomic write left behind (``.<name>.<random>.tmp``)."""
    removed = 0
    out = Path(out)
    for folder in [out, out / ".instructor", *out.glob("*/"), *(out / ".instructor").glob("*/")]:
        if not folder.is_dir():
            continue
        for tmp in folder.glob(".*.tmp"):
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass
    return removed


def read_state(out: Path) -> dict:
    state = load_json(Path(out) / ".instructor" / STATE_NAME)
    return state if isinstance(state, dict) else {}

"""``batch`` survives faults: an exclusive lock on OUT_DIR, results keyed by the content of the notebooks they
graded, reuse of finished unchanged results after ``kill -9``, regrading of a changed notebook only.

The fast tests exercise the lock and the keys in this process; the end-to-end ones (``slow``) run the real command
on a small class where some students have a slow added cell, so that a batch is reliably caught mid-run.
"""
from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from autograder.isolation import resume
from redteam import support

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--cases-factor", "1", "--call-timeout", "5", "--cell-timeout", "10"]
A01 = support.A01
SLOW_CELL = "import time\ntime.sleep(1.0)\n"


def _env() -> dict:
    return dict(os.environ, PYTHONNOUSERSITE="1", MPLBACKEND="Agg")


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", *args], capture_output=True, text=True, env=_env(),
                          cwd=ROOT, timeout=timeout)


def start(*args: str) -> subprocess.Popen:
    """The CLI in a process of its own, with Ctrl-C's default action even where this one ignores SIGINT (a
    non-interactive shell's background job does, e.g. ``make test &``; the CLI would inherit that)."""
    return subprocess.Popen([sys.executable, "-m", "autograder", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_env(), cwd=ROOT,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


# ------------------------------------------------------------------------------------------------ fast tests

HOLDER = """
import sys, time
from autograder.isolation.resume import OutputLock
lock = OutputLock(sys.argv[1]).acquire("holder")
print("locked", flush=True)
time.sleep(60)
"""


def test_lock_is_exclusive_and_released_when_its_holder_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                              env=_env(), cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(resume.BatchLocked, match=rf"already grading into .*\(pid {holder.pid} on "):
            resume.OutputLock(tmp_path).acquire()
    finally:
        holder.kill()                              # kill -9: the kernel drops the flock with the process
        holder.wait()
    with resume.OutputLock(tmp_path) as lock:      # no stale lock to clean up
        assert lock.fd is not None
        with pytest.raises(resume.BatchLocked):
            resume.OutputLock(tmp_path).acquire()  # exclusive within one process too (a separate open file)
    with resume.OutputLock(tmp_path):
        pass


def test_a_locked_output_folder_is_refused_by_the_command_line(tmp_path):
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    (submitted / "carol" / A01).mkdir(parents=True)
    with resume.OutputLock(out):
        proc = cli("batch", str(submitted), "--out", str(out), *FAST)
    assert proc.returncode == 3, proc.stderr
    assert f"another batch is already grading into {out}" in proc.stderr and f"pid {os.getpid()}" in proc.stderr
    assert not (out / "grades.csv").exists() and not (out / "carol").exists()


def test_content_and_settings_keys():
    a = resume.content_key(A01, [("a.ipynb", "1" * 64)])
    assert a == resume.content_key(A01, [("a.ipynb", "1" * 64)])
    assert a != resume.content_key(A01, [("a.ipynb", "2" * 64)])          # other bytes
    assert a != resume.content_key(A01, [("b.ipynb", "1" * 64)])          # other name
    assert a != resume.content_key("02-channels-batch", [("a.ipynb", "1" * 64)])
    options = support.options()
    base = resume.settings_key(options, 1, "bwrap")
    assert base == resume.settings_key(support.options(), 1, "bwrap")
    assert base != resume.settings_key(options, 2, "bwrap")
    assert base != resume.settings_key(options, 1, "reduced")
    assert base != resume.settings_key(support.options(case_factor=2), 1, "bwrap")
    assert base != resume.settings_key(support.options(call_timeout=9.0), 1, "bwrap")
    assert base != resume.settings_key(support.options(device="cuda"), 1, "bwrap")


def test_an_oversized_notebook_ships_its_head_and_keeps_its_size(tmp_path, monkeypatch):
    monkeypatch.setattr(resume, "SHIP_LIMIT", 1000)
    path = tmp_path / "big.ipynb"
    path.write_bytes(os.urandom(5000))
    head, size, digest = resume.read_for_grading(path)
    assert len(head) == 1001 and size == 5000 and head == path.read_bytes()[:1001]
    assert digest == resume.sha256_bytes(path.read_bytes())


def _write_result(out: Path, student: str, errors=()) -> dict:
    text = json.dumps({"score": 1, "tests": []}) + "\n"
    path = resume.result_path(out, student, A01)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    record = {"key": {"content": "c", "settings": "s"}, "result_sha256": resume.sha256_bytes(text.encode()),
              "result_id": "r1", "errors": list(errors)}
    rpath = resume.record_path(out, student, A01)
    rpath.parent.mkdir(parents=True, exist_ok=True)
    rpath.write_text(json.dumps(record))
    return record


def test_only_complete_matching_results_count(tmp_path):
    _write_result(tmp_path, "ann")
    assert resume.complete_record(tmp_path, "ann", A01, "c", "s")["result_id"] == "r1"
    assert resume.complete_record(tmp_path, "ann", A01, "other", "s") is None       # the notebook changed
    assert resume.complete_record(tmp_path, "ann", A01, "c", "other") is None       # other seed, code, limits...
    resume.result_path(tmp_path, "ann", A01).write_text("{}")                        # written, record out of date
    assert resume.complete_record(tmp_path, "ann", A01, "c", "s") is None
    _write_result(tmp_path, "ben", errors=["the grader failed"])                     # grader failures are retried
    assert resume.complete_record(tmp_path, "ben", A01, "c", "s") is None
    assert resume.complete_record(tmp_path, "nobody", A01, "c", "s") is None
    leftover = tmp_path / "ann" / f".{A01}.json.abc123.tmp"                          # an interrupted atomic write
    leftover.write_text("{")
    (tmp_path / ".instructor" / "ann" / f".{A01}.json.x.tmp").write_text("{")
    assert resume.remove_partial_writes(tmp_path) == 2 and not leftover.exists()


# ------------------------------------------------------------------------------------------------ end to end

def _class(root: Path, fast: int, slow: int) -> dict[str, Path]:
    """``fast`` students cycling over correct / buggy / cheating answers, then ``slow`` correct ones whose added
    cell sleeps (sorted after the fast ones, so a batch is still busy with them when the first results appear)."""
    from redteam.support import examples_module

    students = examples_module()._students()
    variants = [support.submission(), support.submission(students["bob"][A01]),
                support.submission(students["mallory"][A01])]
    paths = {}
    for i in range(fast):
        paths[f"a{i:02d}"] = support.write(variants[i % 3], root / f"a{i:02d}" / A01 / f"{A01}.ipynb")
    slow_nb = support.submission(added=[("corr2d", SLOW_CELL)])
    for i in range(slow):
        paths[f"z{i:02d}"] = support.write(slow_nb, root / f"z{i:02d}" / A01 / f"{A01}.ipynb")
    return paths


def _complete(out: Path, students) -> dict[str, tuple[str, int]]:
    """student -> (result_id, mtime_ns of the student's file) for every complete result."""
    found = {}
    for s in students:
        record = resume.complete_record(out, s, A01)
        if record:
            found[s] = (record["result_id"], resume.result_path(out, s, A01).stat().st_mtime_ns)
    return found


def _counts(stdout: str) -> tuple[int, int]:
    m = re.search(r"graded (\d+) submission\(s\), reused (\d+) unchanged", stdout)
    assert m, stdout
    return int(m.group(1)), int(m.group(2))


def _check_every_student_has_one_complete_result(out: Path, students) -> None:
    for s in students:
        assert sorted(p.name for p in (out / s).iterdir()) == [f"{A01}.json"], s      # one file, no temporaries
        assert sorted(p.name for p in (out / ".instructor" / s).iterdir()) == [f"{A01}.json"], s
        assert resume.complete_record(out, s, A01), f"{s}: incomplete result"
    rows = list(csv.DictReader((out / "grades.csv").read_text().splitlines()))
    assert sorted(r["student"] for r in rows) == sorted(students)                       # each exactly once
    for r in rows:
        result = json.loads(resume.result_path(out, r["student"], A01).read_text())
        assert float(r["score"]) == result["score"]


def _graders_of(out: Path) -> list[str]:
    return support.leftover_processes(f"--out {out}")


@pytest.mark.slow
def test_kill_9_mid_batch_then_resume_then_regrade_only_a_changed_notebook(tmp_path):
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    paths = _class(submitted, fast=4, slow=5)
    args = ("batch", str(submitted), "--out", str(out), "--workers", "2", *FAST)
    first = start(*args)
    try:
        assert support.wait_until(lambda: _complete(out, paths), timeout=120), "no result appeared"
        assert first.poll() is None, "the batch finished before it could be interrupted"
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    assert support.wait_until(lambda: not _graders_of(out), timeout=10), _graders_of(out)  # graders died with it
    assert not (out / "grades.csv").exists()            # only a complete run writes it
    done = _complete(out, paths)
    assert 0 < len(done) < len(paths)

    again = cli(*args)                                   # the lock died with the killed batch: no refusal
    assert again.returncode == 0, again.stderr
    graded, reused = _counts(again.stdout)
    assert (graded, reused) == (len(paths) - len(done), len(done))
    assert f"{len(done)} of {len(paths)} submission(s) already graded and unchanged (reused)" in again.stdout
    _check_every_student_has_one_complete_result(out, paths)
    after = _complete(out, paths)
    assert {s: after[s] for s in done} == done           # same result_id, same file (mtime): not regraded
    seeds = [json.loads(line) for line in (out / ".instructor" / "seeds.jsonl").read_text().splitlines()]
    assert len(seeds) == 2 and seeds[0]["seeds"] == seeds[1]["seeds"]   # the course seeds, both runs

    changed = "a01"                                      # bob's buggy notebook, now corrected
    before_score = json.loads(resume.result_path(out, changed, A01).read_text())["score"]
    support.write(support.submission(), paths[changed])
    third = cli(*args)
    assert third.returncode == 0, third.stderr
    assert _counts(third.stdout) == (1, len(paths) - 1)
    final = _complete(out, paths)
    assert final[changed][0] != after[changed][0]
    assert {s: v for s, v in final.items() if s != changed} == {s: v for s, v in after.items() if s != changed}
    score = json.loads(resume.result_path(out, changed, A01).read_text())["score"]
    assert before_score < score == 7
    _check_every_student_has_one_complete_result(out, paths)

    fresh = cli(*args, "--fresh", "--quiet")             # --fresh regrades everything
    assert fresh.returncode == 0 and fresh.stdout == "", fresh.stderr
    assert all(_complete(out, paths)[s][0] != final[s][0] for s in paths)


@pytest.mark.slow
def test_a_second_batch_on_the_same_folder_is_refused_while_the_first_keeps_going(tmp_path):
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    paths = _class(submitted, fast=2, slow=4)
    args = ("batch", str(submitted), "--out", str(out), "--workers", "2", *FAST)
    first = start(*args)
    try:
        assert support.wait_until(lambda: _complete(out, paths), timeout=120), "no result appeared"
        second = cli(*args)
        assert second.returncode == 3
        assert f"another batch is already grading into {out} (pid {first.pid} on" in second.stderr
        assert first.poll() is None, "the first batch stopped"
        stdout, stderr = first.communicate(timeout=120)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert _counts(stdout) == (len(paths), 0)
    _check_every_student_has_one_complete_result(out, paths)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_or_sigterm_stops_the_graders_and_says_how_to_resume(tmp_path, sig):
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    paths = _class(submitted, fast=1, slow=3)
    first = start("batch", str(submitted), "--out", str(out), "--workers", "2", *FAST)
    try:
        assert support.wait_until(lambda: _complete(out, paths), timeout=120), "no result appeared"
        first.send_signal(sig)
        stdout, stderr = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 130, stderr
    assert "run the same command again to grade the" in stdout and "interrupted" in stderr
    assert support.wait_until(lambda: not _graders_of(out), timeout=10), _graders_of(out)
    with resume.OutputLock(out):
        pass
    assert not (out / "grades.csv").exists() and 0 < len(_complete(out, paths)) < len(paths)

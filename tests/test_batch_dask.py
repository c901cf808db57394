"""``batch --executor dask``: the same grading on a Dask distributed cluster, here a ``LocalCluster`` of two worker
processes with one thread each. Each submission is one task, graded (sandbox included) on a worker; the results
come back as plain dicts and are written by the batch process, exactly as with local processes.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

distributed = pytest.importorskip("distributed",
                                  reason="Dask distributed is not installed (pip install -e '.[cluster]')")

from autograder.isolation import resume  # noqa: E402
from redteam import support  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
A01 = support.A01
FAST = ["--cases-factor", "1", "--call-timeout", "5", "--cell-timeout", "10"]
SEED = 20261123


def cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONNOUSERSITE="1", MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "autograder", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as c, distributed.Client(c, set_as_default=False) as client:
        yield c, client


def _class(root: Path) -> list[str]:
    from redteam.support import examples_module

    students = examples_module()._students()
    support.write(support.submission(), root / "alice" / A01 / f"{A01}.ipynb")
    support.write(support.submission(students["bob"][A01]), root / "bob" / A01 / "homework.ipynb")
    support.write(support.submission(students["mallory"][A01]), root / "mallory" / A01 / f"{A01}.ipynb")
    (root / "carol" / A01).mkdir(parents=True)                                    # nothing submitted
    (root / "dave" / A01).mkdir(parents=True)
    (root / "dave" / A01 / f"{A01}.ipynb").write_text("garbage")
    return ["alice", "bob", "carol", "dave", "mallory"]


def _tests(out: Path, student: str) -> list[tuple]:
    result = json.loads(resume.result_path(out, student, A01).read_text())
    return [(t["name"], t["score"], t["output"]) for t in result["tests"]]


@pytest.mark.slow
def test_dask_batch_grades_like_local_processes_and_resumes(cluster, tmp_path):
    from autograder.isolation.batch import run_batch

    c, client = cluster
    submitted = tmp_path / "submitted"
    students = _class(submitted)
    out = tmp_path / "dask"
    proc = cli("batch", str(submitted), "--out", str(out), "--executor", "dask", "--scheduler",
               c.scheduler_address, "--seed", str(SEED), *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "graded 5 submission(s), reused 0" in proc.stdout and "Dask at tcp://" in proc.stdout, proc.stdout
    assert "grading" not in proc.stderr

    local = tmp_path / "local"
    summary = run_batch(submitted, local, support.options(seed=SEED, call_timeout=5.0, cell_timeout=10.0,
                                                          shrink_budget=80), workers=1, progress=False)
    assert summary.graded == 5 and not summary.errors
    for s in students:
        assert _tests(out, s) == _tests(local, s), s                # same cases, same verdicts, same feedback
    assert _tests(out, "alice")[0][1] == 3 and [t[1] for t in _tests(out, "bob")][2] == 0
    assert (out / "grades.csv").read_text() == (local / "grades.csv").read_text()

    worker_pids = set(client.run(os.getpid).values())
    graded_by = {json.loads(resume.record_path(out, s, A01).read_text())["graded_by"]["pid"] for s in students}
    assert graded_by <= worker_pids, (graded_by, worker_pids)       # the sandboxes ran on the workers

    again = cli("batch", str(submitted), "--out", str(out), "--executor", "dask", "--scheduler",
                c.scheduler_address, *FAST)                         # the seed of the first run is kept
    assert again.returncode == 0, again.stderr
    assert re.search(r"graded 0 submission\(s\), reused 5 unchanged", again.stdout), again.stdout


def test_workers_with_another_checkout_are_refused(cluster, tmp_path):
    from autograder.isolation.batch import run_batch

    c, client = cluster
    submitted = tmp_path / "submitted"
    (submitted / "carol" / A01).mkdir(parents=True)

    def pretend(value):
        from autograder.isolation import resume as r

        r._CODE_HASH.clear()
        if value:
            r._CODE_HASH["code"] = value

    client.run(pretend, "an-older-grader")
    try:
        with pytest.raises(RuntimeError, match="different convlab checkout"):
            run_batch(submitted, tmp_path / "out", support.options(), executor="dask", scheduler=c.scheduler_address)
    finally:
        client.run(pretend, None)
    assert not (tmp_path / "out" / "carol").exists()
    with resume.OutputLock(tmp_path / "out"):                       # and the lock was released
        pass


def test_dask_options_are_checked(tmp_path):
    proc = cli("batch", str(tmp_path), "--out", str(tmp_path / "o"), "--scheduler", "tcp://127.0.0.1:8786")
    assert proc.returncode == 2 and "--scheduler needs --executor dask" in proc.stderr
    proc = cli("batch", str(tmp_path), "--out", str(tmp_path / "o"), "--executor", "dask")
    assert proc.returncode == 2 and "--executor dask needs --scheduler" in proc.stderr

"""The grader's garbage-collector setting (autograder.collector): applied by the command line, Python's default
older thresholds kept."""
import gc
import subprocess
import sys
from pathlib import Path

from autograder import collector

ROOT = Path(__file__).resolve().parents[1]


def test_tune_raises_only_the_young_threshold():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        collector.tune()
        assert gc.get_threshold() == (collector.YOUNG, 10, 10)
        gc.set_threshold(50_000, 7, 3)          # never lowers a larger setting
        collector.tune()
        assert gc.get_threshold() == (50_000, 7, 3)
    finally:
        gc.set_threshold(*before)


def test_the_command_line_runs_with_it():
    probe = ("import atexit, gc, runpy, sys; atexit.register(lambda: print('young', gc.get_threshold()[0])); "
             "sys.argv = ['autograder', '--help']; runpy.run_module('autograder', run_name='__main__')")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert f"young {collector.YOUNG}" in out.stdout.splitlines()


def test_every_grading_process_runs_with_it(monkeypatch):
    """A pool process that was spawned, or a Dask worker, sets it when it grades (a forked one inherits it)."""
    from autograder.isolation import executors

    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        monkeypatch.setattr("autograder.isolation.jobs.grade_job", lambda job: {"results": []})
        try:
            executors.grade_task({"student": "s", "notebooks": []}, {}, 0)
        except Exception:  # noqa: BLE001 - only the setting matters here
            pass
        assert gc.get_threshold()[0] == collector.YOUNG
    finally:
        gc.set_threshold(*before)

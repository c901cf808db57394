"""Red team, the trusted side: what a submission can do to the grader outside the sandbox.

- a class of malformed notebooks (nested 100,000 deep, truncated, empty, binary, BOM, nbformat 3, R kernel, 4,000
  cells, 30 MB of outputs) graded by ``batch``, killed with ``kill -9`` half-way and resumed: a complete report for
  each, exit 0, and nothing of either run left in TMPDIR;
- an answer that writes a forged "joined" and forged replies on the worker's channel: they are never read by the
  next exercise;
- an answer whose continuation line starts with ``%`` keeps its marks;
- an answer that forks and returns in both copies keeps its marks: only the process the grader called answers;
- a student model with a 1x1 convolution padded by 1100 is refused before the grader runs it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from . import support

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not support.SOURCE_01.is_file(), reason="assignment 01 is not written yet")]

FAST = ["--cases-factor", "1", "--call-timeout", "5", "--cell-timeout", "10", "--seed", "11"]


def _malformed_class(submitted: Path) -> dict[str, Path]:
    """``student -> notebook``: one malformed notebook per student, all claiming assignment 01."""
    good = support.submission()
    many = support.submission(added=[("setup", f"x{i} = {i}\n") for i in range(4000)])
    heavy = support.submission()
    blob = "A" * (1 << 20)
    heavy["cells"][0].setdefault("outputs", []).extend(
        {"output_type": "stream", "name": "stdout", "text": blob} for _ in range(30))
    r_kernel = support.submission()
    r_kernel["metadata"]["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    text = json.dumps(good)
    contents = {
        "deep": ("[" * 100_000 + "]" * 100_000).encode(),
        "truncated": text[: len(text) // 2].encode(),
        "empty": b"",
        "binary": os.urandom(4096),
        "bom": b"\xef\xbb\xbf" + text.encode(),
        "nbformat3": json.dumps({"nbformat": 3, "worksheets": [{"cells": []}], "metadata": {}}).encode(),
        "rkernel": json.dumps(r_kernel).encode(),
        "cells4000": json.dumps(many).encode(),
        "outputs30mb": json.dumps(heavy).encode(),
    }
    paths = {}
    for student, data in contents.items():
        path = submitted / student / support.A01 / f"{support.A01}.ipynb"
        path.parent.mkdir(parents=True)
        path.write_bytes(data)
        paths[student] = path
    return paths


def _batch(submitted: Path, out: Path, tmp: Path) -> subprocess.Popen:
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONNOUSERSITE="1")
    return subprocess.Popen([sys.executable, "-m", "autograder", "batch", str(submitted), "--out", str(out),
                             "--workers", "1", "--quiet", *FAST], cwd=support.REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _leftovers(tmp: Path) -> list[str]:
    return sorted(p.name for p in tmp.iterdir())


def test_a_class_of_malformed_notebooks_killed_and_resumed(tmp_path):
    submitted, out, tmp = tmp_path / "submitted", tmp_path / "out", tmp_path / "tmp"
    tmp.mkdir()
    students = _malformed_class(submitted)
    first = _batch(submitted, out, tmp)
    graded_one = out / "bom" / f"{support.A01}.json"        # then cells4000 runs: kill it in the middle
    assert support.wait_until(lambda: graded_one.is_file(), timeout=240), first.communicate(timeout=5)
    os.kill(first.pid, signal.SIGKILL)                 # the batch process only, as `kill -9 PID` would
    first.wait(timeout=30)
    time.sleep(1.0)
    assert not (out / "grades.csv").exists()          # killed before the end
    assert any(p.name.startswith("convlab-run-") for p in tmp.iterdir())   # a killed run cannot clean up...
    second = _batch(submitted, out, tmp)
    stdout, stderr = second.communicate(timeout=600)
    assert second.returncode == 0, stderr
    support.wait_until(lambda: not _leftovers(tmp), timeout=10)
    assert _leftovers(tmp) == []                       # ... the next run removes what it left
    for student in students:
        report = json.loads((out / student / f"{support.A01}.json").read_text())
        assert [t["name"] for t in report["tests"]] == list(support.EXERCISES_01), student
    scores = {s: json.loads((out / s / f"{support.A01}.json").read_text())["score"] for s in students}
    assert scores["bom"] == scores["cells4000"] == scores["outputs30mb"] == 7, scores
    for student in ("deep", "truncated", "empty", "binary", "nbformat3", "rkernel"):
        assert scores[student] == 0, (student, scores)
    deep = json.loads((out / "deep" / f"{support.A01}.json").read_text())
    assert "unreadable notebook" in deep["output"]
    grades = (out / "grades.csv").read_text().splitlines()
    assert len(grades) == 1 + len(students) and not any("grader error" in line for line in grades)


FORGER = '''def convolve2d(x, k):
    import gc
    import os
    import sys
    gc.unfreeze()   # the sandbox froze its startup objects (a speed-up, not a barrier)
    worker = next(o for o in gc.get_objects() if type(o).__name__ == "Worker")
    protocol = sys.modules.get("protocol") or sys.modules["autograder.isolation.protocol"]
    frames = [protocol.pack({"op": "joined", "how": "forged", "clean": True, "re": worker.request_id})]
    for guess in (None, worker.request_id, "0" * 16):
        for i in range(40):
            frames.append(protocol.pack({"value": 0.0, "seconds": 0.0, "i": i, "re": guess}))
            frames.append(protocol.pack({"ok": True, "found": {"sobel_magnitude": "callable"}, "re": guess}))
    protocol.write_all(worker.fd_out, b"".join(frames))
    os._exit(0)
'''

PERCENT = '''def corr2d(x, k):
    windows = np.lib.stride_tricks.sliding_window_view(x, k.shape)
    total = (7
% 4)
    return np.einsum("ijab,ab->ij", windows, k) * (total / 3)
'''


def test_forged_frames_are_never_read_by_the_next_exercise_and_percent_lines_are_python(tmp_path):
    from autograder.isolation.grader import grade

    nb = support.write(support.submission({"convolve2d": FORGER, "corr2d": PERCENT}), tmp_path / "nb.ipynb")
    result = grade([nb], support.options())
    scores = {p.name: p.score for _, p in result.parts}
    assert not result.grader_failed, result.notebooks[0].grader_errors
    assert scores["corr2d"] == 3, result.notebooks[0].exercises[0].text
    assert scores["convolve2d"] == 0
    assert scores["sobel_magnitude"] == 2, result.notebooks[0].exercises[2].text


def test_a_student_model_padded_by_1100_is_refused_before_it_runs():
    torch = pytest.importorskip("torch")
    from tests.harness import assert_fails

    def fuse_sequential(model):
        return torch.nn.Sequential(torch.nn.Conv2d(model[0].in_channels, 3, 1, padding=1100, dtype=torch.float64),
                                   torch.nn.Flatten())

    assert_fails("fuse_sequential", fuse_sequential, "layer output")


def _frame_writer(name: str, frame_code: str) -> str:
    """An answer that writes a hand-made frame on the worker's reply channel, then waits to be read."""
    return f'''def {name}(*args):
    import gc
    import struct
    import sys
    import time
    gc.unfreeze()   # the sandbox froze its startup objects (a speed-up, not a barrier)
    worker = next(o for o in gc.get_objects() if type(o).__name__ == "Worker")
    protocol = sys.modules.get("protocol") or sys.modules["autograder.isolation.protocol"]
{frame_code}
    protocol.write_all(worker.fd_out, struct.pack(">4sI", b"CVL1", len(header)) + header + blob)
    time.sleep(30)
'''


DEEP_JSON = '''    header = b'{"m": ' + b"[" * 200000 + b"]" * 200000 + b', "b": []}'
    blob = b""'''
HUGE_NPY = '''    text = "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 100000000000000000000), }"
    text += " " * ((64 - (10 + len(text) + 1) % 64) % 64) + "\\n"
    blob = b"\\x93NUMPY\\x01\\x00" + struct.pack("<H", len(text)) + text.encode()
    header = ('{"m": {"value": {"$npy": 0}, "re": "%s"}, "b": [%d]}' % (worker.request_id, len(blob))).encode()'''


def test_hostile_frames_from_the_sandbox_cost_only_the_exercise_that_sent_them(tmp_path):
    from autograder.isolation.grader import grade

    answers = {"convolve2d": _frame_writer("convolve2d", DEEP_JSON),
               "sobel_magnitude": _frame_writer("sobel_magnitude", HUGE_NPY)}
    nb = support.write(support.submission(answers), tmp_path / "nb.ipynb")
    result = grade([nb], support.options())
    texts = {ex.parts[0].name: ex.text for ex in result.notebooks[0].exercises}
    scores = {p.name: p.score for _, p in result.parts}
    assert not result.grader_failed, result.notebooks[0].grader_errors
    assert scores == {"corr2d": 3, "convolve2d": 0, "sobel_magnitude": 0}, texts
    assert "malformed header" in texts["convolve2d"] and "impossible shape" in texts["sobel_magnitude"], texts


FORK_AND_RETURN = support.CORRECT["sobel_magnitude"].replace("""def sobel_magnitude(img):
""", """def sobel_magnitude(img):
    import os
    try:
        os.fork()          # both copies return into the worker; the copy must never answer
    except OSError:
        pass               # the sandbox's process cap
""")


def test_a_forked_copy_that_returns_never_answers(tmp_path):
    from autograder.isolation.grader import grade

    assert "os.fork()" in FORK_AND_RETURN
    nb = support.write(support.submission({"sobel_magnitude": FORK_AND_RETURN}), tmp_path / "nb.ipynb")
    result = grade([nb], support.options())
    texts = {ex.parts[0].name: ex.text for ex in result.notebooks[0].exercises}
    scores = {p.name: p.score for _, p in result.parts}
    assert not result.grader_failed, result.notebooks[0].grader_errors
    assert scores["sobel_magnitude"] == 2 and "protocol" not in texts["sobel_magnitude"], texts

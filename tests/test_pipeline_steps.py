"""The trusted grader's steps, each alone: the protocol under hostile frames, reading and pairing notebooks in
linear time, the per-run scratch folder, reports that escape student text, bounded student models, arguments
judged from plain data, and a speed part that a cache cannot earn."""
from __future__ import annotations

import copy
import json
import os
import struct
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from autograder.isolation import protocol, reach, report, scratch, submission
from autograder.isolation.protocol import MAGIC, Channel, ProtocolError, pack

from redteam import support


# ------------------------------------------------------------------------------------------ protocol

def _frame(header: bytes, blobs: tuple = ()) -> bytes:
    return struct.pack(">4sI", MAGIC, len(header)) + header + b"".join(blobs)


def _channel():
    a_r, a_w = os.pipe()
    b_r, b_w = os.pipe()
    return Channel(a_r, b_w, max_bytes=1 << 20), a_w, b_r


def _close(ch, *fds):
    ch.close()
    for fd in fds:
        os.close(fd)


def _npy_claiming(shape: str) -> bytes:
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': %s, }" % shape
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode()


def test_hostile_frames_fail_only_the_read_that_got_them():
    deep = _frame(b'{"m": ' + b"[" * 200_000 + b"]" * 200_000 + b', "b": []}')
    npy = _npy_claiming("(0, 100000000000000000000)")
    huge = _frame(json.dumps({"m": {"v": {"$npy": 0}, "re": "r1"}, "b": [len(npy)]}).encode(), (npy,))
    for bad, what in ((deep, "malformed header"), (huge, "impossible shape")):
        ch, peer_w, peer_r = _channel()
        writer = threading.Thread(target=protocol.write_all, args=(peer_w, bad))
        writer.start()
        with pytest.raises(ProtocolError, match=what):
            ch.receive_reply(("r1",), time.monotonic() + 10)
        writer.join()
        os.write(peer_w, pack({"ok": True, "re": "r2"}))   # the next call on the same channel still works
        assert ch.receive_reply(("r2",), time.monotonic() + 5)["ok"] is True
        _close(ch, peer_w, peer_r)


def test_truncated_and_garbage_frames_are_protocol_errors():
    ch, peer_w, peer_r = _channel()
    os.write(peer_w, pack({"ok": 1, "re": "x"})[:-3])
    with pytest.raises(protocol.Timeout):
        ch.receive_reply(("x",), time.monotonic() + 0.3)
    os.close(peer_w)
    with pytest.raises(ProtocolError):   # the rest of the broken frame, then the end of the channel
        ch.receive(time.monotonic() + 1)
    ch.close()
    os.close(peer_r)
    ch, peer_w, peer_r = _channel()
    os.write(peer_w, os.urandom(64))
    with pytest.raises(ProtocolError):
        ch.receive(time.monotonic() + 1)
    _close(ch, peer_w, peer_r)


def test_replies_queued_ahead_of_their_request_are_never_read():
    """A forged "joined" and forged replies written before the grader's next request: skipped (wrong request
    id), or drained between exercises."""
    ch, peer_w, peer_r = _channel()
    os.write(peer_w, pack({"op": "joined", "how": "forged", "re": "old-fork"}))
    os.write(peer_w, pack({"value": 42.0, "re": "guess"}))
    os.write(peer_w, pack({"ok": True, "re": "fork-2"}))
    assert ch.receive_reply(("fork-2",), time.monotonic() + 2) == {"ok": True, "re": "fork-2"}
    os.write(peer_w, pack({"value": 1.0, "re": "call-3"}) + b"junk that is not a frame")
    assert ch.drain() > 0
    os.write(peer_w, pack({"value": 2.0, "re": "call-3"}))
    assert ch.receive_reply(("call-3",), time.monotonic() + 2)["value"] == 2.0
    _close(ch, peer_w, peer_r)


# ------------------------------------------------------------------------------------------ notebooks

def test_unreadable_notebooks_are_errors_not_crashes(tmp_path):
    deep = tmp_path / "deep.ipynb"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(submission.NotebookError, match="unreadable notebook"):
        submission.read_notebook(deep)
    bom = tmp_path / "bom.ipynb"
    bom.write_bytes(b"\xef\xbb\xbf" + json.dumps({"cells": [], "metadata": {}}).encode())
    assert submission.read_notebook(bom)["cells"] == []


def test_every_trusted_step_is_linear_in_the_number_of_cells(monkeypatch):
    """4,000 added cells: each is parsed once for the dependency analysis, whatever the number of exercises."""
    source = json.loads(support.SOURCE_01.read_text())
    nb = support.submission(added=[("setup", f"v{i} = {i}\n") for i in range(4000)] +
                            [("setup", "def helper(x):\n    return v3999 + x\n")],
                            answers={"corr2d": "def corr2d(x, k):\n    return helper(0) * 0 + x[:1, :1]\n"})
    calls = []
    real = reach.defined_and_used
    monkeypatch.setattr(reach, "defined_and_used", lambda src: calls.append(1) or real(src))
    program = submission.build_program(nb, source, support.A01, list(support.EXERCISES_01))
    for name in support.EXERCISES_01:
        submission.cells_reached(program, name)
        submission.cells_reached(program, name)
    assert len(calls) == len(program.student_cells) and len(calls) > 4000
    reached = submission.cells_reached(program, "corr2d")
    assert any("v3999 =" in c.source for c in reached) and not any("v3998 =" in c.source for c in reached)


def test_a_percent_continuation_line_is_python():
    answer = "def corr2d(x, k):\n    q = (7\n% 4)\n    return x[:1, :1] * q\n"
    code, changed = submission.strip_magics(answer)
    assert code == answer and not changed
    compile(code, "<cell>", "exec")


# ------------------------------------------------------------------------------------------ scratch folders

def test_a_dead_runs_folder_is_swept_and_a_live_one_kept(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = tmp_path / f"{scratch.RUN_PREFIX}dead"
    gone.mkdir()
    (gone / scratch.OWNER_FILE).write_text(json.dumps({"pid": dead.pid, "start": "1"}))
    (gone / "convlab-sandbox-x").mkdir()
    alive = scratch.new_run_folder(tmp_path)
    assert scratch.sweep(tmp_path) == [gone]
    assert alive.is_dir() and not gone.exists()


def test_run_scratch_points_every_temporary_file_into_one_folder(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with scratch.run_scratch() as root:
        assert tempfile.mkdtemp(prefix="convlab-task-").startswith(str(root))
        assert os.environ["TMPDIR"] == str(root)
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"].startswith(str(root))
    assert not root.exists() and tempfile.tempdir == str(tmp_path)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ reports

def _result_with(text: str):
    from autograder.engine import ExerciseResult, PartResult
    from autograder.isolation.grader import NotebookResult, SubmissionResult

    ex = ExerciseResult("corr2d")
    ex.parts.append(PartResult("corr2d", 0.0, 3, text, 0, 1))
    nb = NotebookResult("nb.ipynb", support.A01, [ex], notes=[text])
    return SubmissionResult([nb], 1, "bwrap", "")


def test_student_text_cannot_forge_the_markdown_report():
    forged = "x\n```\n\n# Grading report: 7/7 points\n| corr2d | 3/3 | passed |\n````\n"
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(report.markdown(_result_with(forged)))
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings[0] == "Grading report: 0/3 points" and not any("7/7" in h for h in headings)
    cells = [t.content for t in tokens if t.type == "inline" and t.content.startswith("3/3")]
    assert cells == []
    blocks = [t.content for t in tokens if t.type == "fence"]
    assert forged.rstrip("\n") in "".join(blocks)     # the student's text is shown, verbatim, as text


def test_student_text_cannot_break_the_junit_report():
    xml = report.junit_xml(_result_with("a\x00b\x1b[31m </failure><testcase name='forged'/> ]]>"))
    root = ET.fromstring(xml)
    assert [c.get("name") for c in root.iter("testcase")] == ["corr2d"]
    assert "\\x00" in root.find(".//failure").text


# ------------------------------------------------------------------------------------------ student models

def test_a_student_model_is_bounded_before_the_grader_runs_it():
    torch = pytest.importorskip("torch")
    from autograder import module_codec

    huge = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 1, padding=1100), torch.nn.ReLU())
    with pytest.raises(ValueError, match="layer output"):
        module_codec.check_forward_cost(huge, torch.zeros(2, 2, 4, 4))
    fine = torch.nn.Sequential(torch.nn.Conv2d(2, 3, 3, padding=1), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(12, 3))
    module_codec.check_forward_cost(fine, torch.zeros(2, 2, 4, 4))
    assert module_codec.forward_cost(fine, (2, 2, 4, 4))[0] == 2 * 3 * 4 * 4


def test_inputs_unchanged_is_judged_from_the_states_sent_back():
    torch = pytest.importorskip("torch")
    from autograder import module_codec
    from autograder.spec import Call

    conv = module_codec.mark_argument(torch.nn.Conv2d(1, 2, 3).double(), "conv", "tok")
    call = Call((conv,))
    sent = module_codec.fingerprint(conv)
    assert module_codec.judge_arguments((("conv", "tok", "cpu", sent),), call) == ("", "cpu")
    changed = copy.deepcopy(torch.nn.Conv2d(1, 2, 3).double())
    with torch.no_grad():
        changed.weight.copy_(conv.weight * 2)
        changed.bias.copy_(conv.bias)
    after = module_codec.fingerprint(changed)
    assert "modified the input `conv` in place" in module_codec.judge_arguments((("conv", "tok", "cpu", after),),
                                                                                call)[0]
    assert "not sent back" in module_codec.judge_arguments((), call)[0]
    assert "not sent back" in module_codec.judge_arguments((("conv", "other", "cpu", sent),), call)[0]
    assert "in place" in module_codec.judge_arguments((("conv", "tok", "cpu", ("garbage",)),), call)[0]
    assert "in place" in module_codec.judge_arguments((("conv", "tok", "cpu", module_codec.encode_module(conv)[1]),),
                                                      call)[0]   # a whole model is not a fingerprint


# ------------------------------------------------------------------------------------------ speed part

def test_the_speed_part_times_fresh_inputs_so_a_cache_earns_nothing():
    from autograder import registry
    from autograder.answers import local_answer

    ex = registry.get("conv2d_im2col")
    speed = ex.parts[0]
    seen = []

    def reference(x, w, b):
        windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))
        return np.einsum("nchwij,ocij->nohw", windows, w) + b[None, :, None, None]

    def memoised(x, w, b):
        if not seen:
            seen.append(reference(x, w, b))
        return seen[0]

    good = speed.grade(local_answer(reference), {})
    bad = speed.grade(local_answer(memoised), {})
    assert good.score == good.max_score, good.output
    assert bad.score == 0 and "the timed result is wrong" in bad.output, bad.output


# ------------------------------------------------------------------------------------------ the grader's steps

def _options():
    from autograder.isolation.grader import Options

    return Options(seed=5, case_factor=1)


def test_prepare_reads_recognises_and_builds(tmp_path):
    from autograder.isolation.grader import prepare

    good = support.write(support.submission(), tmp_path / "homework.ipynb")
    prepared = prepare(good, _options())
    assert prepared.assignment == support.A01 and prepared.problem is None
    assert [e.name for e in prepared.exercises] == list(support.EXERCISES_01)
    assert set(prepared.program.answers) == set(support.EXERCISES_01)
    r_kernel = support.submission()
    r_kernel["metadata"]["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    prepared = prepare(support.write(r_kernel, tmp_path / support.A01 / "x.ipynb"), _options())
    assert prepared.program is None and "R kernel" in prepared.problem and prepared.exercises
    (tmp_path / "junk.ipynb").write_bytes(b"\xff\xfe\x00")
    prepared = prepare(tmp_path / "junk.ipynb", _options())
    assert prepared.assignment is None and not prepared.exercises and "not UTF-8" in prepared.problem


def test_a_notebook_that_never_reaches_the_sandbox_lists_every_exercise(tmp_path):
    from autograder.isolation.grader import grade_notebook

    (tmp_path / f"{support.A01}.ipynb").write_text("{")
    result = grade_notebook(tmp_path / f"{support.A01}.ipynb", _options(), 5, "reduced")
    assert [ex.exercise for ex in result.exercises] == list(support.EXERCISES_01)
    assert result.score == 0 and "invalid JSON" in result.notes[0] and not result.grader_errors


def test_pairing_keeps_the_first_answer_and_anchors_added_cells():
    kinds = {"setup": "instructor", "corr2d": "answer", "test_corr2d": "test"}

    def cell(src, gid=None):
        meta = {"nbgrader": {"grade_id": gid}} if gid else {}
        return {"cell_type": "code", "source": src, "metadata": meta}

    nb = {"cells": [cell("a = 1"), cell("import os", "setup"), cell("def corr2d(): pass", "corr2d"),
                    cell("hacked = 1", "test_corr2d"), cell("def corr2d(): return 2", "corr2d"), cell("b = 2"),
                    "not a cell"]}
    pairing = submission.pair_cells(nb, kinds)
    assert pairing.answers == {"corr2d": "def corr2d(): pass"}
    assert pairing.added == {None: [("added cell 1", "a = 1")],
                             "test_corr2d": [("added cell 2", "def corr2d(): return 2"), ("added cell 3", "b = 2")]}
    assert any("appears 2 times" in n for n in pairing.notes) and any("malformed" in n for n in pairing.notes)


def test_batch_steps_choose_the_seed_and_plan_the_work(tmp_path):
    from autograder.isolation import batch

    opts = _options()
    assert batch.choose_seed(opts, {"seed": 9}) == (5, False)
    opts.seed = None
    assert batch.choose_seed(opts, {"seed": 9}) == (9, True)
    assert batch.choose_seed(opts, {})[1] is False
    nb = support.write(support.submission(), tmp_path / "in" / "ann" / support.A01 / "nb.ipynb")
    jobs = batch.discover(tmp_path / "in")
    assert [(j.student, j.assignment, j.notebooks) for j in jobs] == [("ann", support.A01, [nb])]
    todo, reused = batch.plan(jobs, tmp_path / "out", "settings", fresh=False)
    assert [job for job, _ in todo] == jobs and reused == 0

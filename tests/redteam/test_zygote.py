"""Zygotes (:mod:`autograder.isolation.zygote`): notebooks whose sandboxes are forked from the same pristine one
cannot reach each other or the zygote, whatever the first leaves behind; a zygote that cannot be trusted to be
clean is replaced by a fresh sandbox; and a notebook scores the same forked or fresh."""
from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path

import pytest

from autograder.isolation import grader, sandbox, stubs, zygote
from autograder.isolation.protocol import pack, unpack

ROOT = Path(__file__).resolve().parents[2]
BWRAP = sandbox.isolation_mode()[0] == "bwrap"
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (BWRAP and sandbox.drops_to_own_user()),
                                 reason="zygotes are used only with bubblewrap as root")]
LIMITS = sandbox.Limits()


@pytest.fixture
def zygotes():
    zygote.enable()
    try:
        yield
    finally:
        zygote.enable(False)
        zygote.stop_all()


def _forked() -> zygote.ForkedSandbox:
    box = sandbox.start(stubs.layout(), "scratch", "bwrap", LIMITS)
    assert isinstance(box, zygote.ForkedSandbox), "the sandbox was not forked from a zygote"
    return box


def _run(box: sandbox.Sandbox, source: str) -> dict:
    """Execute ``source`` as a student cell; what it printed last, as JSON."""
    box.channel.send(pack({"op": "exec", "name": "probe", "source": source, "trusted": False}),
                     time.monotonic() + 30)
    reply = unpack(*box.channel.receive(time.monotonic() + 30))
    assert reply.get("error") is None, reply
    return json.loads(reply["stdout"].strip().splitlines()[-1])


def _only_zygote() -> zygote.Zygote:
    (known,) = zygote._ZYGOTES.values()
    return known


LEAVE_BEHIND = r'''
import json, os, time
# files, a directory its owner made unreadable, a deep tree, a link out of the sandbox's working directory
for i in range(300):
    open(f"left-{i}", "w").close()
os.makedirs("locked/inner")
open("locked/inner/secret-name", "w").close()
os.chmod("locked/inner", 0); os.chmod("locked", 0)
deep = "d"
for _ in range(60):
    os.mkdir(deep); deep += "/d"
os.symlink("/etc", "etc-link")
# a detached process (double fork, new session) that would wait for the next notebook
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        time.sleep(60)
    os._exit(0)
os.wait()
print(json.dumps({"uid": os.getuid(), "zygote": os.getppid()}))
'''

LOOK_AROUND = r'''
import json, os
procs = {}
for entry in os.listdir("/proc"):
    if entry.isdigit():
        try:
            with open(f"/proc/{entry}/status") as fh:
                procs[entry] = int(dict(l.split(":", 1) for l in fh if ":" in l)["Uid"].split()[0])
        except OSError:
            pass
open("mine", "w").close()
print(json.dumps({"uid": os.getuid(), "files": sorted(os.listdir(".")), "procs": procs, "zygote": os.getppid()}))
'''


def test_the_next_notebook_finds_nothing_of_the_last(zygotes):
    first = _forked()
    left = _run(first, LEAVE_BEHIND)
    sandbox.stop(first)
    second = _forked()
    try:
        seen = _run(second, LOOK_AROUND)
    finally:
        sandbox.stop(second)
    assert seen["zygote"] == left["zygote"], "not forked from the same zygote"
    assert seen["uid"] != left["uid"] and left["uid"] != 0
    assert seen["files"] == ["mine"], "the last notebook's files are still there"
    # bubblewrap's init and the zygote (root), and this worker: nothing of the first notebook's user
    assert set(seen["procs"].values()) == {0, seen["uid"]}, seen["procs"]
    assert left["uid"] not in seen["procs"].values()


ATTACK_ZYGOTE = r'''
import json, os, signal
z, tried = os.getppid(), {}


def zygote_socket():
    """Whether this process still holds the zygote's socket (it would send fork requests of its own)."""
    held = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")]
    if not any(h.startswith("socket:") for h in held):
        raise FileNotFoundError("no socket held")


for name, act in [("kill", lambda: os.kill(z, signal.SIGKILL)), ("stop", lambda: os.kill(z, signal.SIGSTOP)),
                  ("environ", lambda: open(f"/proc/{z}/environ", "rb").read()),
                  ("mem", lambda: open(f"/proc/{z}/mem", "rb").read(1)),
                  ("fds", lambda: os.listdir(f"/proc/{z}/fd")),
                  ("socket", zygote_socket),
                  ("setuid", lambda: os.setuid(0))]:
    try:
        act()
        tried[name] = "done"
    except OSError as e:
        tried[name] = type(e).__name__
print(json.dumps(tried))
'''


def test_a_notebook_cannot_touch_the_zygote(zygotes):
    box = _forked()
    try:
        tried = _run(box, ATTACK_ZYGOTE)
    finally:
        sandbox.stop(box)
    assert "done" not in tried.values(), tried
    assert zygote._ZYGOTES, "the zygote was stopped: something went wrong with it"
    again = _forked()
    sandbox.stop(again)


@pytest.mark.parametrize("how", [signal.SIGSTOP, signal.SIGKILL], ids=["stopped", "dead"])
def test_a_zygote_that_is_not_clean_is_replaced(zygotes, how):
    box = _forked()
    sandbox.stop(box)
    stale = _only_zygote()
    os.kill(stale.pid, how)                     # a zygote that cannot answer (stopped or killed, from the host)
    try:
        fresh = sandbox.start(stubs.layout(), "scratch", "bwrap", LIMITS)
        try:
            assert not isinstance(fresh, zygote.ForkedSandbox)
            fresh.channel.send(pack({"op": "echo", "value": "here"}), time.monotonic() + 10)
            assert unpack(*fresh.channel.receive(time.monotonic() + 10))["value"] == "here"
        finally:
            sandbox.stop(fresh)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stale.pid, signal.SIGCONT)
    assert not stale.box.alive, "the suspicious zygote is still running"
    assert stale not in zygote._ZYGOTES.values()
    sandbox.stop(_forked())                       # the next notebook: a new zygote
    assert _only_zygote() is not stale


def _graded(path: Path, forked: bool, preloaded: bool = False) -> list:
    """Every part's report of a notebook graded by a process that uses zygotes (its second notebook is forked) or
    not; ``preloaded``: forked from a zygote that preloaded the calls the first notebook encoded, and took them."""
    from autograder.isolation import remote

    zygote.enable(forked)
    sent: list = []
    named: list = []
    if preloaded:
        remote._CHUNKS.clear()                          # only this notebook's calls (not an earlier test's)
    try:
        options = grader.Options(course=ROOT)
        grader.grade([path], options)                   # the first notebook starts the zygotes
        if preloaded:
            zygote.stop_all()                           # the next ones preload what the first encoded
            with _chunks_sent(sent, named):
                result = grader.grade([path], options).notebooks[0]
            held = {key for z in zygote._ZYGOTES.values() for key in z.preloaded}
            assert held and held <= set(sent), "the zygote preloaded nothing, or chunks that were never sent"
            assert set(named) == held, "every preloaded chunk is named (sent by reference) the first time"
        else:
            result = grader.grade([path], options).notebooks[0]
    finally:
        zygote.enable(False)
        zygote.stop_all()
    return [part.to_json() for ex in result.exercises for part in ex.parts]


@contextlib.contextmanager
def _chunks_sent(sent: list, named: list | None = None):
    """Record the key of every chunk of calls the grader sends (``"chunk"``: a preloaded one is taken as it is), in
    full in ``sent``, and also in ``named`` when it only names it (``"count"``: the process holds it)."""
    from autograder.isolation import remote

    real_frame, real_pack = remote.frame_with, remote.pack

    def recording(tree, key, text, blobs):
        sent.append(tree.get("chunk"))
        return real_frame(tree, key, text, blobs)

    def naming(message, *args, **kwargs):
        if message.get("op") == "calls" and "count" in message:
            sent.append(message["chunk"])
            if named is not None:
                named.append(message["chunk"])
        return real_pack(message, *args, **kwargs)

    remote.frame_with, remote.pack = recording, naming
    try:
        yield
    finally:
        remote.frame_with, remote.pack = real_frame, real_pack


@pytest.mark.parametrize("student, assignment", [("mallory", "01-single-channel"), ("bob", "06-conv-bn-fusion")])
def test_a_notebook_scores_the_same_forked_or_fresh(student, assignment):
    """mallory attacks the sandbox; bob's 06 has wrong answers (feedback with failing cases)."""
    path = ROOT / "examples" / "submitted" / student / assignment / f"{assignment}.ipynb"
    forked, fresh = _graded(path, forked=True), _graded(path, forked=False)
    assert forked == fresh
    assert any(part["score"] < part["max_score"] for part in fresh)


@pytest.mark.parametrize("student", ["bob", "alice"])
def test_a_notebook_scores_the_same_with_preloaded_calls(student):
    """06's models, rebuilt once by the zygote and taken as they are: bob's wrong answers (one changes its argument
    in place) and alice's right ones get the same reports as in a fresh sandbox."""
    assignment = "06-conv-bn-fusion"
    path = ROOT / "examples" / "submitted" / student / assignment / f"{assignment}.ipynb"
    preloaded, fresh = _graded(path, forked=True, preloaded=True), _graded(path, forked=False)
    assert preloaded == fresh
    assert any(part["score"] < part["max_score"] for part in fresh) == (student == "bob")


CHANGE_EVERY_MODEL = r'''
import gc, json, torch
gc.unfreeze()
changed = 0
for obj in gc.get_objects():
    if isinstance(obj, torch.nn.Parameter):
        with torch.no_grad():
            obj.zero_()
        changed += 1
print(json.dumps(changed))
'''

COUNT_ZEROED_MODELS = r'''
import gc, json, torch
gc.unfreeze()
params = [o for o in gc.get_objects() if isinstance(o, torch.nn.Parameter) and o.device.type == "cpu"]
print(json.dumps([len(params), sum(1 for p in params if p.numel() and not p.any())]))
'''


def test_what_a_notebook_does_to_the_preloaded_calls_stays_in_it(zygotes):
    """A cell finds every preloaded model (``gc``) and zeroes it: the next notebook, forked from the same zygote,
    finds them as the zygote built them."""
    from autograder.isolation import remote

    _encode_models()
    first = sandbox.start(stubs.layout(), "torch", "bwrap", LIMITS)
    try:
        assert _only_zygote().preloaded
        built = _run(first, COUNT_ZEROED_MODELS)
        assert built[0] > 100 and built[1] < built[0]
        assert _run(first, CHANGE_EVERY_MODEL) >= built[0]
        assert _run(first, COUNT_ZEROED_MODELS)[1] >= built[0]
    finally:
        sandbox.stop(first)
    second = sandbox.start(stubs.layout(), "torch", "bwrap", LIMITS)
    try:
        assert _run(second, COUNT_ZEROED_MODELS) == built
    finally:
        sandbox.stop(second)
        remote._CHUNKS.clear()


def _encode_models() -> None:
    """Encode the chunks of 06's ``fuse_sequential`` calls (models), as a grading process has before its zygote
    becomes one."""
    from autograder import registry
    from autograder.isolation import remote

    (ex,) = [e for e in registry.assignments()["06-conv-bn-fusion"] if e.name == "fuse_sequential"]
    remote.encode_ahead([case.call for case in grader.grading_cases(ex, 99, 1)])


def test_a_batch_forks_its_sandboxes_and_stops_its_zygotes(monkeypatch):
    """In a batch's grading process notebooks are forked from zygotes (here the batch process itself, one worker);
    when the batch ends, its zygotes end with it and `grade` starts fresh sandboxes again."""
    from autograder.isolation import executors

    seen = []

    def grade_task(task, options_plain, seed, expect=None):
        box = sandbox.start(stubs.layout(), "scratch", "bwrap", LIMITS)
        seen.append(type(box).__name__)
        sandbox.stop(box)
        return {}

    monkeypatch.setattr(executors, "grade_task", grade_task)
    done = list(executors.SerialExecutor().map([{"student": "a"}, {"student": "b"}], {}, 0, None, 2))
    assert len(done) == 2 and seen == ["ForkedSandbox", "ForkedSandbox"]
    assert not zygote._ZYGOTES and not zygote.used_for("bwrap")


def test_only_a_pristine_worker_becomes_a_zygote():
    """Once a cell has run in a worker, it refuses to become a zygote (whatever ran would be in every fork)."""
    import socket

    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    box = sandbox.launch(stubs.layout(), "scratch", "bwrap", LIMITS, zygote_fd=theirs.fileno())
    theirs.close()
    try:
        sandbox.ready(box, LIMITS)
        _run(box, "import json\nsecret = 42\nprint(json.dumps(secret))")
        box.channel.send(pack({"op": "zygote", "id": "z"}), time.monotonic() + 10)
        reply = unpack(*box.channel.receive(time.monotonic() + 10))
        assert "pristine" in reply.get("error", ""), reply
    finally:
        mine.close()
        sandbox.stop(box)


def test_a_working_directory_the_cleaner_cannot_empty_retires_the_zygote(zygotes):
    """A tree deeper than a path can name (PATH_MAX): the cleaner fails, so the zygote is stopped and the next
    notebook gets a fresh sandbox, with an empty working directory."""
    first = _forked()
    _run(first, "import json, os\nfor _ in range(1500):\n    os.mkdir('ddd'); os.chdir('ddd')\nprint(json.dumps(1))")
    sandbox.stop(first)
    assert not zygote._ZYGOTES, "a zygote whose working directory could not be emptied was kept"
    second = sandbox.start(stubs.layout(), "scratch", "bwrap", LIMITS)
    try:
        assert _run(second, "import json, os\nprint(json.dumps(os.listdir('.')))") == []
    finally:
        sandbox.stop(second)


def _report_sandbox(task, options_plain, seed, expect=None):
    """A pool's task (in place of ``grade_task``): which zygote forked this grading process's sandbox."""
    box = sandbox.start(stubs.layout(), "scratch", "bwrap", LIMITS)
    time.sleep(0.2)                 # long enough for both grading processes to take tasks
    try:
        (own,) = zygote._ZYGOTES.values()
        bwrap = own.box.process.pid
        return {"forked": isinstance(box, zygote.ForkedSandbox), "grader": os.getpid(), "bwrap": bwrap,
                "launched_by": int(sandbox.stat_fields(bwrap)[1]),
                "uid": _run(box, "import json, os\nprint(json.dumps(os.getuid()))")}
    finally:
        sandbox.stop(box)


def test_each_grading_process_takes_the_zygotes_the_batch_launched(monkeypatch):
    """The batch launches each grading process's zygotes before it forks them (:mod:`.head_start`): every process
    forks its notebooks from a set of its own (never another's), and the batch stops them all at the end."""
    from autograder.isolation import executors

    monkeypatch.setattr(executors, "grade_task", _report_sandbox)
    options = grader.Options(case_factor=1)
    plan = [("02-channels-batch", 1234)]
    done = list(executors.PoolExecutor(2).map([{"student": f"s{i}"} for i in range(6)],
                                              executors.options_to_plain(options), 1234, None, 6, plan))
    reports = [outcome for _task, outcome in done]
    assert len(reports) == 6 and all(r["forked"] and r["launched_by"] == os.getpid() for r in reports)
    zygote_of = {}
    for r in reports:
        assert zygote_of.setdefault(r["grader"], r["bwrap"]) == r["bwrap"]    # one zygote per grading process
    assert len(zygote_of) == 2 and len(set(zygote_of.values())) == 2          # never another's
    assert len({r["uid"] for r in reports}) == 6 and all(r["uid"] > 0 for r in reports)
    assert not zygote._HANDED
    assert all(sandbox._proc_stat(pid) is None for pid in zygote_of.values())  # stopped with the batch


def test_a_serial_batch_forks_every_notebook_from_the_same_zygotes(monkeypatch):
    """``batch --workers 1``: each ``grade`` has a scratch folder of its own, which a sandbox layout made there
    would not outlive; the batch's layout does, so every notebook is forked from the same zygotes (one per
    profile), not from new ones that pile up until the batch ends."""
    from autograder.isolation import executors, scratch

    launched: list[str] = []
    real = zygote.Zygote.__init__

    def counting(self, layout, profile, limits):
        launched.append(profile)
        real(self, layout, profile, limits)

    monkeypatch.setattr(zygote.Zygote, "__init__", counting)
    monkeypatch.setattr(stubs, "_LAYOUT", None)              # as in a new batch process
    path = ROOT / "examples" / "submitted" / "alice" / "01-single-channel" / "01-single-channel.ipynb"
    notebook = {"name": path.name, "data": path.read_bytes(), "size": path.stat().st_size}
    tasks = [{"student": s, "assignment": "01-single-channel", "notebooks": [notebook]} for s in "abc"]
    options = executors.options_to_plain(grader.Options(course=ROOT, case_factor=1))
    with scratch.run_scratch():                              # the batch's own
        done = list(executors.SerialExecutor().map(tasks, options, 7, None, len(tasks)))
    assert [type(outcome) for _, outcome in done] == [dict] * 3 and not any(o["errors"] for _, o in done)
    assert launched and sorted(launched) == sorted(set(launched)), launched

"""The sandbox answers a chunk of calls with groups of replies (``worker.Worker.calls``), and the grader reads them
one by one (``remote.RemoteAnswer._reply``). A group leaves when it is ``GROUP_HOLD`` old, after a call that took
that long, or when it is full; replies still held when a call never returns (or the process dies) are lost with
the process, so the grader grades that exercise again with one reply per frame (``remote.RepliesLost``): the
score never depends on how the replies happened to be grouped."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from autograder.isolation import protocol, remote, worker
from tests.redteam import support


def _frames(calls_tree: dict, fn) -> list[dict]:
    """The reply frames of the worker's ``calls`` for a request ``calls_tree`` served by ``fn``."""
    r, w = os.pipe()
    box = worker.Worker(0, w)
    box.ns["f"] = fn
    box.request_id = "rid"
    box.calls(calls_tree, [])
    os.close(w)
    frames = []
    try:
        while True:
            tree, blobs = protocol.read_frame(r)
            frames.append(protocol.unpack(tree, blobs))
    except protocol.Closed:
        pass
    finally:
        os.close(r)
    return frames


def _request(n: int, **extra) -> dict:
    return {"op": "calls", "fn": "f", "calls": [{"args": [i], "kwargs": {}} for i in range(n)], **extra}


def test_fast_calls_come_back_as_one_group_in_order():
    frames = _frames(_request(40), lambda i: i * i)
    assert len(frames) == 1 and frames[0]["re"] == "rid"
    replies = frames[0]["replies"]
    assert [r["i"] for r in replies] == list(range(40)) and [r["value"] for r in replies] == [i * i for i in range(40)]
    assert all("warnings" not in r for r in replies)          # nothing to report: nothing sent


def test_one_reply_per_frame_when_asked():
    frames = _frames(_request(5, group=False), lambda i: -i)
    assert [[r["i"] for r in f["replies"]] for f in frames] == [[0], [1], [2], [3], [4]]


def test_a_slow_call_sends_its_group_at_once():
    def f(i):
        if i == 2:
            time.sleep(worker.GROUP_HOLD * 1.5)
        return i

    frames = _frames(_request(6), f)
    assert [r["i"] for r in frames[0]["replies"]] == [0, 1, 2]          # not held behind the slow call
    assert [r["i"] for f in frames[1:] for r in f["replies"]] == [3, 4, 5]


def test_groups_stay_small_in_bytes_and_count(monkeypatch):
    monkeypatch.setattr(worker, "GROUP_BYTES", 3 * 8000)
    frames = _frames(_request(7), lambda i: np.full(1000, float(i)))   # 8000 bytes each
    assert [len(f["replies"]) for f in frames] == [3, 3, 1]
    monkeypatch.setattr(worker, "GROUP_MAX", 4)
    frames = _frames(_request(9), lambda i: i)
    assert [len(f["replies"]) for f in frames] == [4, 4, 1]


def test_each_call_reports_its_own_warnings_and_errors():
    def f(i):
        import warnings

        if i == 1:
            warnings.warn("careful")
        if i == 2:
            raise ValueError("no")
        return i

    replies = _frames(_request(4), f)[0]["replies"]
    assert "warnings" not in replies[0] and "warnings" not in replies[3]
    assert replies[1]["warnings"] == ["UserWarning: careful"] and replies[1]["value"] == 1
    assert replies[2]["error"].startswith("ValueError: no") and replies[2]["raised"] is True


# ------------------------------------------------------------------------------------------ in a real sandbox

#: corr2d, correct, except that its CALL-th call (case CALL - 1) never returns or kills its process
_FAULTY = '''_calls = [0]


def corr2d(x, k):
    import os
    _calls[0] += 1
    if _calls[0] == CALL:
        FAULT
    windows = np.lib.stride_tricks.sliding_window_view(x, k.shape)
    return np.einsum("ijab,ab->ij", windows, k)
'''


@pytest.mark.slow
@pytest.mark.parametrize("fault, says", [("while True: pass", "did not return within"),
                                         ("os._exit(3)", "ended")])
def test_a_fault_mid_group_scores_every_case_before_it(tmp_path, fault, says):
    """The faulty call comes after 19 fast correct ones, whose replies the sandbox is still holding in a group:
    the exercise is graded again one reply per frame, so exactly those 19 cases pass, as without groups."""
    from autograder.isolation.grader import grade

    source = _FAULTY.replace("CALL", "20").replace("FAULT", fault)
    path = support.write(support.submission({"corr2d": source}), tmp_path / "nb.ipynb")
    result = grade([path], support.options(call_timeout=1.5))
    corr2d = next(e for e in result.notebooks[0].exercises if e.exercise == "corr2d")
    assert corr2d.parts[0].passed == 19 and corr2d.parts[0].total > 19
    assert says in corr2d.parts[0].output
    others = [e for e in result.notebooks[0].exercises if e.exercise != "corr2d"]
    assert others and all(e.score == e.max_score for e in others)


def test_the_grader_refuses_replies_out_of_order():
    class _Channel:
        def __init__(self, replies):
            self.replies = replies

        def receive_reply(self, ids, deadline):
            return {"re": "rid", "replies": self.replies}

    class _Handle:
        box = type("Box", (), {})()
        fork_id = "fork"

    answer = remote.RemoteAnswer.__new__(remote.RemoteAnswer)
    answer.handle, answer._held = _Handle(), remote.deque()
    _Handle.box.channel = _Channel([{"i": 0, "value": 1}, {"i": 2, "value": 3}])
    assert answer._reply("rid", 0, time.monotonic() + 1)["value"] == 1
    with pytest.raises(protocol.ProtocolError, match="out of order"):
        answer._reply("rid", 1, time.monotonic() + 1)
    _Handle.box.channel = _Channel("not a group")
    answer._held.clear()
    with pytest.raises(protocol.ProtocolError, match="without a group"):
        answer._reply("rid", 0, time.monotonic() + 1)


def test_an_error_names_the_students_lines():
    import linecache

    source = "def f(i):\n    return g(i + 1)\n\n\ndef g(j):\n    raise ValueError(f'bad {j}')\n"
    linecache.cache["<cell-7>"] = (len(source), None, source.splitlines(True), "<cell-7>")
    namespace: dict = {}
    exec(compile(source, "<cell-7>", "exec"), namespace)
    reply = _frames(_request(1), namespace["f"])[0]["replies"][0]
    assert reply["error"] == ("ValueError: bad 1  (at line 2 in f: return g(i + 1); line 6 in g: "
                              "raise ValueError(f'bad {j}'))")

"""A zygote's preloaded calls (``worker.Worker.preload``): the arguments of a chunk of calls rebuilt once, before
any notebook exists, and taken as they are by each exercise process that receives that chunk. Nothing a student
can observe may differ from rebuilding them: the same replies (values, argument states, verdicts), arguments live
only once handed over, each call's argument dropped after its call, and anything that does not match rebuilt as
before. (The sandbox side, a real zygote under bubblewrap and its memory limits: tests/redteam/test_zygote.py and
tests/redteam/test_budget.py.)"""
from __future__ import annotations

import json
import os
import weakref

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from autograder import module_codec as mc, registry  # noqa: E402
from autograder.isolation import protocol, remote, worker  # noqa: E402
from autograder.isolation.budget import Limits  # noqa: E402
from autograder.isolation.grader import grading_cases  # noqa: E402

ASSIGNMENT = "06-conv-bn-fusion"


def _exercise(name: str):
    return next(ex for ex in registry.assignments()[ASSIGNMENT] if ex.name == name)


def _chunk(name: str, count: int = 12):
    """``(key, tree, blobs, calls)`` of a chunk of ``name``'s grading calls, as the grader encodes and sends it."""
    calls = [case.call for case in grading_cases(_exercise(name), 2024, 1)][:count]
    text, blobs = remote.encoded_chunk(calls)
    ((key, _, _),) = [entry for entry in remote.preloadable(1 << 30) if entry[1] == text]
    return key, json.loads(text), blobs, calls


def _zygote_to_be() -> worker.Worker:
    box = worker.Worker(0, os.open(os.devnull, os.O_WRONLY))
    box.zygote_fd, box.limits = -1, (1 << 30, 2 << 30, 64 << 20)
    return box


def _serve(box: worker.Worker, message: dict, blobs: list, fn) -> list[dict]:
    """The replies of ``box`` to ``message`` (a ``calls`` or ``preload`` request), its functions ``fn``."""
    r, w = os.pipe()
    box.fd_out, box.request_id = w, "rid"
    box.ns.update(fn)
    try:
        (box.calls if message["op"] == "calls" else box.preload)(message, blobs)
    finally:
        os.close(w)
    replies = []
    try:
        while True:
            frame = protocol.unpack(*protocol.read_frame(r))
            replies += frame.get("replies", [frame])
    except protocol.Closed:
        pass
    finally:
        os.close(r)
    return replies


def _request(name: str, key: str | None, tree: list) -> dict:
    message = {"op": "calls", "id": "rid", "fn": name, "calls": tree,
               "encode": remote.encode_reference(_exercise(name))}
    return {**message, "chunk": key} if key is not None else message


def _fused(model):
    """An answer that leaves its argument alone: a copy (the grader reads any model)."""
    import copy

    return copy.deepcopy(model)


def _in_place(model):
    """A plausible bug: it changes its argument."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2)
    return model


@pytest.mark.parametrize("answer", [_fused, _in_place], ids=["leaves-its-argument", "changes-its-argument"])
def test_preloaded_calls_get_the_replies_rebuilt_ones_get(answer):
    key, tree, blobs, calls = _chunk("fuse_sequential")
    zygote = _zygote_to_be()
    (ack,) = _serve(zygote, {"op": "preload", "key": key, "calls": tree}, blobs, {})
    assert ack["ok"] and ack["added"] >= 0 and ack["before"] > 0
    assert not mc.argument_states()                           # preloaded, not live
    preloaded = _serve(zygote, _request("fuse_sequential", key, tree), blobs, {"fuse_sequential": answer})
    assert zygote.prebuilt == {}                              # taken for this chunk
    rebuilt = _serve(worker.Worker(0, 1), _request("fuse_sequential", None, tree), blobs,
                     {"fuse_sequential": answer})
    assert len(preloaded) == len(rebuilt) == len(calls)
    np.testing.assert_equal(preloaded, rebuilt)
    verdicts = [mc.argument_verdicts(reply["value"][2], call) for reply, call in zip(preloaded, calls)]
    changed = answer is _in_place
    assert all(bool(problem) == changed for v in verdicts for _, problem, _ in v) and all(verdicts)


def test_an_argument_is_live_from_its_hand_over_and_dropped_after_its_call():
    key, tree, blobs, _ = _chunk("fuse_conv_bn_module", 4)
    zygote = _zygote_to_be()
    _serve(zygote, {"op": "preload", "key": key, "calls": tree}, blobs, {})
    args = [[weakref.ref(a) for a in entry[0]["args"]] for entry in zygote.prebuilt[key]]
    chunk, seen = zygote.prebuilt[key], []

    def look(conv, bn):
        live = {id(ref()) for _name, _token, ref, _device in mc._ARGUMENTS if ref() is not None}
        seen.append(([[id(r()) in live for r in refs] for refs in args], sum(e is not None for e in chunk)))
        return torch.nn.Conv2d(1, 1, 1)

    _serve(zygote, _request("fuse_conv_bn_module", key, tree), blobs, {"fuse_conv_bn_module": look})
    # during call i: that call's arguments are live, the earlier ones gone, the later ones held but not live
    assert [left for _, left in seen] == [3, 2, 1, 0]
    for i, (live, _) in enumerate(seen):
        assert live == [[j == i] * 2 for j in range(4)]
    assert all(ref() is None for refs in args for ref in refs)       # nothing keeps an argument after its call


def test_what_does_not_match_is_rebuilt():
    key, tree, blobs, _ = _chunk("fuse_sequential", 6)
    zygote = _zygote_to_be()
    _serve(zygote, {"op": "preload", "key": key, "calls": tree}, blobs, {})
    assert zygote._prebuilt_chunk({"chunk": "another", "calls": tree}) is None
    assert zygote._prebuilt_chunk({"chunk": key, "calls": tree[:-1]}) is None       # taken, and of another length
    assert zygote._prebuilt_chunk({"chunk": key, "calls": tree}) is None            # gone: one chunk, one use


def test_only_a_pristine_zygote_to_be_preloads():
    key, tree, blobs, _ = _chunk("fuse_sequential", 2)
    for box in (worker.Worker(0, 1), _zygote_to_be()):
        if box.zygote_fd is not None:
            box.pristine = False                              # a cell ran
        (reply,) = _serve(box, {"op": "preload", "key": key, "calls": tree}, blobs, {})
        assert "error" in reply and not box.prebuilt


def test_a_preload_fits_only_when_every_process_may_copy_it():
    limits = Limits()
    data, processes = limits.data_bytes, limits.processes
    before = 200 << 20
    most = (data - before) // processes
    assert limits.preload_fits(before, 0) and limits.preload_fits(before, min(most, limits.preload_bytes))
    assert not limits.preload_fits(before, limits.preload_bytes + 1)
    assert not limits.preload_fits(data - processes * (1 << 20) + 1, 1 << 20)
    assert not limits.preload_fits(before, -1)
    # the sum: the zygote holds before + added, every other process its limit, data + added
    added = min(most, limits.preload_bytes)
    assert before + added + (processes - 1) * (data + added) <= processes * data



def _read(data: bytes) -> tuple:
    """The ``(tree, blobs)`` of one frame's bytes, read as a worker reads its requests."""
    r, w = os.pipe()
    try:
        os.write(w, data)
        os.close(w)
        return protocol.read_frame(r)
    finally:
        os.close(r)


def _by_reference(name: str, key: str, count: int) -> dict:
    """A ``calls`` request that names a preloaded chunk instead of carrying it (what the grader sends once to an
    exercise process that holds it), as the worker reads it."""
    request = {k: v for k, v in _request(name, key, []).items() if k != "calls"}
    tree, _ = _read(protocol.pack({**request, "count": count}))
    return tree


def test_a_chunk_sent_by_reference_gets_the_replies_the_full_chunk_gets():
    key, tree, blobs, calls = _chunk("fuse_sequential")
    zygote = _zygote_to_be()
    _serve(zygote, {"op": "preload", "key": key, "calls": tree}, blobs, {})
    request = _by_reference("fuse_sequential", key, len(calls))
    assert worker._by_reference(request) and not worker._by_reference({**request, "calls": tree})
    referenced = _serve(zygote, request, [], {"fuse_sequential": _in_place})
    full = _serve(worker.Worker(0, 1), _request("fuse_sequential", None, tree), blobs, {"fuse_sequential": _in_place})
    assert len(referenced) == len(calls) and zygote.prebuilt == {}
    np.testing.assert_equal(referenced, full)


def test_a_chunk_named_but_not_held_fails_its_calls_one_by_one():
    """Only the process's own code can take a preloaded chunk away (the grader names one only once, to a process
    forked from a zygote that preloaded it): each of its calls then fails, and nothing else does."""
    key, _, _, calls = _chunk("fuse_conv_bn_module", 5)
    replies = _serve(worker.Worker(0, 1), _by_reference("fuse_conv_bn_module", key, len(calls)), [],
                     {"fuse_conv_bn_module": _fused})
    assert [r["i"] for r in replies] == list(range(5))
    assert all("not in this process" in r["error"] for r in replies)
    for count in (0, -1, worker.MAX_REFERENCED_CALLS + 1, "3"):
        assert not worker._by_reference({"op": "calls", "chunk": key, "count": count})


def test_the_grader_names_a_preloaded_chunk_once_per_exercise_process():
    from types import SimpleNamespace

    key, tree, _, calls = _chunk("fuse_sequential", 6)
    session = SimpleNamespace(box=SimpleNamespace(zygote=SimpleNamespace(preloaded=[key])), settings=None)
    handle = remote.ExerciseHandle(session, _exercise("fuse_sequential"))
    answer = remote.RemoteAnswer(handle)
    first, second = (_read(answer._frame(calls, "r"))[0] for _ in range(2))
    assert first["chunk"] == second["chunk"] == key and handle.referenced == {key}
    assert first["count"] == len(calls) and "calls" not in first                # by reference
    assert len(second["calls"]) == len(calls) and "count" not in second         # then in full
    elsewhere = SimpleNamespace(box=SimpleNamespace(zygote=None), settings=None)  # a sandbox started fresh
    assert not remote.ExerciseHandle(elsewhere, _exercise("fuse_sequential")).holds(key)

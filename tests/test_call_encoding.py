"""How the grader sends a correctness check's calls: in chunks, each encoded once per process and reused for every
notebook (``remote.encoded_calls``), on read-only cases (``grader.grading_cases``)."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from autograder import registry
from autograder.isolation import protocol, remote
from autograder.isolation.grader import grading_cases
from autograder.spec import Call


def _decoded(tree, blobs):
    return protocol.from_tree(tree, blobs, lambda kind, payload: (kind, payload))


def test_the_grading_cases_cannot_be_changed_in_place():
    for name in ("conv2d_multi", "conv2d_backward"):
        ex = registry.get(name)
        arrays = [a for c in grading_cases(ex, 7, 1) for a in c.call.args if isinstance(a, np.ndarray)]
        assert arrays
        with pytest.raises(ValueError, match="read-only"):
            arrays[0][...] = 0.0


def test_the_same_calls_are_encoded_once_and_decode_to_the_same_values():
    ex = registry.get("conv2d_multi")
    calls = [c.call for c in grading_cases(ex, 7, 1)[:8]]
    tree, blobs = remote.encoded_calls(calls)
    again = remote.encoded_calls(calls)
    assert again[0] is tree and again[1] is blobs
    decoded = _decoded(tree, blobs)
    assert len(decoded) == len(calls)
    for call, sent in zip(calls, decoded):
        assert all(np.array_equal(a, b) for a, b in zip(call.args, sent["args"]))
    other = [Call(tuple(a.copy() if isinstance(a, np.ndarray) else a for a in c.args), dict(c.kwargs))
             for c in calls]  # equal calls, not the same objects
    assert remote.encoded_calls(other)[0] is not tree


def test_a_module_argument_changed_in_place_is_encoded_again():
    conv = torch.nn.Conv2d(1, 1, 1, bias=False).double()
    calls = [Call((conv,), {}), Call((conv, np.zeros(2)), {})]
    tree, blobs = remote.encoded_calls(calls)
    with torch.no_grad():
        conv.weight.fill_(2.5)
    new_tree, new_blobs = remote.encoded_calls(calls)
    assert new_tree is not tree
    weights = [a for a in new_blobs if protocol._npy_array(a).shape == (1, 1, 1, 1)]
    assert weights and all(protocol._npy_array(a).item() == 2.5 for a in weights)


def test_calls_without_torch_objects_never_touch_a_half_imported_torch(monkeypatch):
    """While another thread imports torch (the expected values' thread), ``sys.modules`` holds a half-initialised
    module: encoding NumPy-only calls must not look into it (it once raised AttributeError: torch.nn, a grader
    error for the whole exercise)."""
    import sys
    import types

    monkeypatch.setitem(sys.modules, "torch", types.ModuleType("torch"))    # no attributes yet
    calls = [Call((np.ones((1, 2, 3, 3)), np.ones((2, 2, 1, 1))), {"stride": 1}) for _ in range(3)]
    tree, blobs = remote.encoded_calls(calls)
    assert len(_decoded(tree, blobs)) == 3


def test_a_chunk_goes_out_as_the_frame_of_its_message_with_the_calls_written_once():
    ex = registry.get("conv2d_multi")
    calls = [c.call for c in grading_cases(ex, 7, 1)[:8]]
    text, blobs = remote.encoded_chunk(calls)
    assert remote.encoded_chunk(calls)[0] is text                       # written once, reused
    message = {"op": "calls", "id": "r1", "fn": "conv2d_multi", "encode": None, "group": True}
    spliced = protocol.frame_with(message, "calls", text, blobs)
    tree, sent = remote.encoded_calls(calls)
    plain = protocol.frame({**message, "calls": tree}, blobs)
    r, w = os.pipe()
    os.write(w, spliced + plain)
    os.close(w)
    got = [protocol.unpack(*protocol.read_frame(r), lambda kind, payload: (kind, payload)) for _ in range(2)]
    os.close(r)
    assert list(got[0]) == list(got[1])
    assert got[0]["id"] == "r1" and len(got[0]["calls"]) == len(calls)
    for a, b in zip(got[0]["calls"], got[1]["calls"]):
        assert a["kwargs"] == b["kwargs"] and all(np.array_equal(x, y) for x, y in zip(a["args"], b["args"]))
    assert protocol.unpack(*_one_frame(protocol.frame_with({"op": "x"}, "calls", "[]", [])))["calls"] == ()
    with pytest.raises(ValueError):
        protocol.frame_with(message, 'calls":1,"x', "[]", [])


def _one_frame(data: bytes):
    r, w = os.pipe()
    os.write(w, data)
    os.close(w)
    try:
        return protocol.read_frame(r)
    finally:
        os.close(r)

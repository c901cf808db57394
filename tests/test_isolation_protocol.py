"""The plain-data boundary: arrays as .npy (never pickle), everything else as JSON, bounded frames and deadlines."""
from __future__ import annotations

import io
import json
import os
import pickle
import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.isolation import protocol
from autograder.isolation.protocol import Channel, Closed, ProtocolError, Timeout, pack


def roundtrip(message: dict, resolve=None) -> dict:
    data = pack(message)
    r, w = os.pipe()
    try:
        os.write(w, data) if len(data) < 60000 else None
        if len(data) >= 60000:
            pytest.skip("large frames are covered by test_large_frame")
        return protocol.unpack(*protocol.read_frame(r), resolve)
    finally:
        os.close(r)
        os.close(w)


ARRAYS = [np.arange(6.0).reshape(2, 3), np.array(3.5), np.zeros((0, 4)), np.ones((2, 3, 4), np.float32),
          np.array([True, False]), np.arange(5, dtype=np.int32), np.asfortranarray(np.arange(6.0).reshape(2, 3)),
          np.arange(12.0).reshape(3, 4)[::2, ::3], np.arange(4.0).astype(">f8"), np.array([255], np.uint8)]


@pytest.mark.parametrize("arr", ARRAYS, ids=lambda a: f"{a.dtype}{a.shape}")
def test_arrays_roundtrip_exactly(arr):
    got = roundtrip({"v": arr})["v"]
    assert type(got) is np.ndarray and got.shape == arr.shape and got.dtype.kind == arr.dtype.kind
    assert got.dtype.itemsize == arr.dtype.itemsize and np.array_equal(got, arr)
    assert got.flags.c_contiguous and got.flags.writeable and got.flags.owndata


def test_python_values_roundtrip_with_their_types():
    value = {"none": None, "t": True, "i": 2**80, "f": 1.5, "nan": float("nan"), "inf": float("-inf"),
             "s": "é$", "tuple": (1, (2.0, "x")), "list": [1, [2]], "dict": {1: "a", "$k": 2},
             "np": (np.float32(1.25), np.int64(7), np.bool_(True))}
    got = roundtrip({"v": value})["v"]
    assert got["none"] is None and got["t"] is True and got["i"] == 2**80 and got["f"] == 1.5
    assert np.isnan(got["nan"]) and got["inf"] == float("-inf") and got["s"] == "é$"
    assert got["tuple"] == (1, (2.0, "x")) and type(got["list"]) is list and got["list"] == [1, [2]]
    assert got["dict"] == {1: "a", "$k": 2}
    assert got["np"] == (1.25, 7, True) and type(got["np"][1]) is int and type(got["np"][2]) is bool


@settings(max_examples=60, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8)
                    | st.floats(allow_nan=False),
                    lambda inner: st.lists(inner, max_size=4).map(tuple) | st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=12))
def test_any_plain_structure_roundtrips(value):
    blobs: list = []
    tree = protocol.to_tree(value, blobs)
    assert protocol.from_tree(tree, blobs) == value


def _layer(name="Conv2d", hyper=(("kernel_size", (3, 3)), ("eps", 1e-5), ("bias", True), ("mode", "zeros")),
           params=(("weight", np.ones((2, 1, 3, 3))), ("bias", None)), buffers=(), children=()):
    return ("module", name, hyper, params, buffers, "cpu", False, children)


def _same(a, b) -> bool:
    """Equal values, arrays compared by content (``==`` on tuples holding arrays is ambiguous)."""
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


WRITTEN_FAST = 3
LAYERS = [
    _layer(),
    _layer("Sequential", (), (), (), (("0", _layer()), ("1", _layer("ReLU", (("inplace", False),), ())),
                                      ("2", _layer("Sequential", children=(("0", _layer()),))))),
    _layer("BatchNorm2d", (("num_features", 2), ("momentum", None)), (("weight", np.ones(2, np.float32)),),
           (("running_mean", np.zeros(2)), ("num_batches_tracked", np.array(3)))),
    # not exactly a layer as the codec writes it: the generic walk writes these, and they come back the same
    _layer(hyper=(("eps", float("nan")),)), _layer(hyper=(("stride", [1, 1]),)), _layer(hyper=(("x", np.int64(3)),)),
    _layer(params=(("weight", [np.ones(2)]),)), _layer(children=(("0", ("module", "ReLU")),)),
    _layer(children=(("0", _layer(hyper=((1, 2),))),)), ("module", np.ones(3), (), (), (), None, False, ()),
    _layer(name=np.ones(2)),
]


@pytest.mark.parametrize("index", range(len(LAYERS)))
def test_a_layer_tree_is_written_as_the_generic_walk_writes_it(index, monkeypatch):
    """An encoded layer (module_codec's, the bulk of 06's messages) has a writer of its own: what it sends decodes
    to what the generic walk's decodes to, and anything that is not exactly such a layer goes the generic way."""
    layer = LAYERS[index]
    assert (protocol._is_layer(layer) and protocol._layer_tree(layer, [], 0) is not None) == (index < WRITTEN_FAST)
    fast_blobs: list = []
    fast = protocol.from_tree(protocol.to_tree(layer, fast_blobs), fast_blobs)
    as_json = json.loads(json.dumps(protocol.to_tree(layer, [])))
    read_by_itself = type(as_json) is list and protocol._layer_from_tree(as_json, fast_blobs, 0) is not None
    assert read_by_itself or index >= WRITTEN_FAST      # (a NumPy integer setting is written as a plain one)
    read_fast = roundtrip({"v": layer})["v"]             # through JSON: the layer's own reader too
    monkeypatch.setattr(protocol, "_is_layer", lambda value: False)
    monkeypatch.setattr(protocol, "_layer_from_tree", lambda tree, blobs, depth: None)
    slow_blobs: list = []
    slow = protocol.from_tree(protocol.to_tree(layer, slow_blobs), slow_blobs)
    assert _same(fast, slow) and _same(read_fast, slow) and _same(roundtrip({"v": layer})["v"], slow)
    assert len(fast_blobs) == len(slow_blobs)


@pytest.mark.parametrize("bad", [
    ["module", "Conv2d", [], [["weight", {"$npy": 5}]], [], None, False, []],     # no such array
    ["module", "Conv2d", [], [["weight", {"$npy": "0"}]], [], None, False, []],
])
def test_a_layer_tree_with_a_bad_array_reference_is_refused(bad):
    with pytest.raises(protocol.ProtocolError):
        protocol.from_tree(bad, [protocol._npy_bytes(np.ones(2))])


def test_objects_and_object_arrays_are_refused():
    with pytest.raises(TypeError):
        pack({"v": object()})
    with pytest.raises(TypeError):
        pack({"v": np.array([object()], dtype=object)})
    with pytest.raises(TypeError):
        pack({"v": np.array(["a"])})


def test_pickled_payload_is_never_unpickled():
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > /tmp/convlab-pwned",))

    buf = io.BytesIO()
    np.save(buf, np.array([Boom()], dtype=object), allow_pickle=True)
    with pytest.raises(ProtocolError):
        protocol.from_tree({"$npy": 0}, [buf.getvalue()])
    raw = pickle.dumps(Boom())
    with pytest.raises(ProtocolError):
        protocol.from_tree({"$npy": 0}, [raw])
    assert not os.path.exists("/tmp/convlab-pwned")


def test_malformed_trees_and_headers():
    good = protocol._npy_bytes(np.ones((2, 2)))
    for tree, blobs in [({"$npy": 1}, [good]), ({"$npy": "0"}, [good]), ({"$float": "1e5"}, []),
                        ({"$weird": 1}, []), ({"$fn": "os:system"}, []), ({"$list": 3}, []),
                        ({"$dict": [[1]]}, [])]:
        with pytest.raises(ProtocolError):
            protocol.from_tree(tree, blobs)
    truncated = good[:-8]
    with pytest.raises(ProtocolError):
        protocol.from_tree({"$npy": 0}, [truncated])
    lying = good.replace(b"(2, 2)", b"(9, 9)")
    with pytest.raises(ProtocolError):
        protocol.from_tree({"$npy": 0}, [lying])


def _write_quietly(fd: int, data: bytes) -> None:
    try:
        protocol.write_all(fd, data)
    except OSError:
        pass


def _channel():
    a_r, a_w = os.pipe()  # peer -> grader
    b_r, b_w = os.pipe()  # grader -> peer
    return Channel(a_r, b_w, max_bytes=1 << 20), a_w, b_r


def test_channel_deadline_and_close():
    ch, peer_w, peer_r = _channel()
    start = time.monotonic()
    with pytest.raises(Timeout):
        ch.receive(time.monotonic() + 0.2)
    assert time.monotonic() - start < 1.0
    os.write(peer_w, pack({"ok": 1})[:10])  # half a frame, then silence
    with pytest.raises(Timeout):
        ch.receive(time.monotonic() + 0.2)
    os.close(peer_w)
    with pytest.raises(Closed):
        ch.receive(time.monotonic() + 1)
    ch.close()
    os.close(peer_r)


def test_channel_refuses_oversized_and_garbage_frames():
    ch, peer_w, peer_r = _channel()
    big = pack({"v": np.zeros(200_000)})  # 1.6 MB of payload, over the 1 MiB limit: refused from the header
    writer = threading.Thread(target=lambda: _write_quietly(peer_w, big), daemon=True)
    writer.start()
    with pytest.raises(ProtocolError):
        ch.receive(time.monotonic() + 2)
    ch.close()
    os.close(peer_r)
    writer.join(timeout=2)
    os.close(peer_w)
    ch, peer_w, peer_r = _channel()
    os.write(peer_w, b"NOPE" + b"\0" * 20)
    with pytest.raises(ProtocolError):
        ch.receive(time.monotonic() + 2)
    ch.close()
    os.close(peer_w)
    os.close(peer_r)


def test_channel_send_never_blocks_past_deadline():
    ch, peer_w, peer_r = _channel()
    with pytest.raises(Timeout):  # nobody reads: the pipe fills up
        ch.send(b"x" * (4 << 20), time.monotonic() + 0.3)
    ch.close()
    os.close(peer_w)
    os.close(peer_r)


def test_channel_send_reads_replies_meanwhile_so_neither_side_blocks():
    """The grader sends a batch's next chunk while the sandbox still answers the previous one: a peer that writes
    more replies than a pipe holds before it reads the next request must not deadlock the two (without reading
    while sending, both writes block and the send times out)."""
    ch, peer_w, peer_r = _channel()
    replies = [pack({"re": "a", "i": i, "value": np.full(4096, float(i))}) for i in range(8)]  # ~260 KB
    request = pack({"op": "calls", "calls": np.zeros(200_000)})                                 # ~1.6 MB

    def peer() -> None:  # answers first, reads afterwards (as the worker does between requests)
        for frame in replies:
            protocol.write_all(peer_w, frame)
        protocol.read_frame(peer_r, max_bytes=8 << 20)

    thread = threading.Thread(target=peer, daemon=True)
    thread.start()
    ch.send(request, time.monotonic() + 5)
    got = [ch.receive_reply(("a",), time.monotonic() + 5) for _ in replies]
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert [m["i"] for m in got] == list(range(8))
    assert all(np.array_equal(m["value"], np.full(4096, float(i))) for i, m in enumerate(got))
    ch.close()
    os.close(peer_w)
    os.close(peer_r)


@pytest.mark.parametrize("arr", ARRAYS + [np.zeros((1, 1, 3, 3)), np.array(7, np.int64)],
                         ids=lambda a: f"{a.dtype}{a.shape}")
def test_npy_payloads_are_what_numpy_saves(arr):
    """The sender's own ``.npy`` writer (headers cached by dtype and shape) writes exactly NumPy's bytes."""
    expected = io.BytesIO()
    np.save(expected, np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")) if arr.ndim else
            arr.astype(arr.dtype.newbyteorder("<")))
    assert protocol._npy_bytes(arr) == protocol._npy_bytes(arr) == expected.getvalue()

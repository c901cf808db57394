"""Plain-data messages between the trusted grader and the sandboxed worker.

STANDALONE: this file imports only the standard library and NumPy, because it is copied into the sandbox next to
``worker.py``. Nothing here ever unpickles: arrays travel as ``.npy`` bytes loaded with ``allow_pickle=False``,
everything else as JSON.

A frame is ``MAGIC | u32 header length | header JSON | blob 0 | blob 1 | ...``; the header is
``{"m": <message tree>, "b": [blob lengths]}``. A message tree is JSON where

- a JSON array is a tuple, ``{"$list": [...]}`` a list, ``{"$dict": [[k, v], ...]}`` a dict with keys that are not
  plain strings (or start with ``$``), any other JSON object a dict with string keys;
- ``{"$npy": i}`` is the array stored in blob ``i`` (dtype bool, int, uint or float only);
- ``{"$float": "nan" | "inf" | "-inf"}`` a non-finite float;
- ``{"$fn": "module:name"}``, ``{"$module": tree}`` and ``{"$tensor": array}`` are references the receiving side
  resolves (a test function passed as an argument, an ``nn.Module`` encoded as plain data, a tensor argument); a
  side without a resolver rejects them.

A request carries ``"id"`` (:func:`new_id`) and its replies ``"re"``; :meth:`Channel.receive_reply` reads only
replies to the requests it names. Parsing never raises anything but :class:`ProtocolError` (JSON nested too deeply,
an array header claiming an impossible shape, a truncated payload).
"""
from __future__ import annotations

import io
import json
import math
import os
import re
import secrets
import select
import struct
import time
from typing import Any, Callable, NamedTuple

import numpy as np

MAGIC = b"CVL1"
MAX_HEADER = 16 << 20
DEFAULT_MAX_BYTES = 512 << 20
#: the most one reply from the sandbox may carry: one call's result (the largest answer of the course is ~2 MB),
#: so that hostile replies cannot make the grader allocate much
MAX_REPLY_BYTES = 64 << 20
ARRAY_KINDS = "biuf"
#: an array's dimensions and element count, whatever its payload says (a header may claim shape (0, 10**20))
MAX_DIM, MAX_NDIM = 1 << 31, 32
_HEAD = struct.Struct(">4sI")


def new_id() -> str:
    """A fresh request id: a reply must echo it (``"re"``), so no reply can be written before its request."""
    return secrets.token_hex(8)


class ProtocolError(Exception):
    """A malformed, oversized or unexpected message."""


class Closed(ProtocolError):
    """The other side closed the channel (the process exited or was killed)."""


class Timeout(ProtocolError):
    """No complete message before the deadline."""


_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_NPY_HEADER = re.compile(rb"\{'descr': '([<>|][biuf][1248])', 'fortran_order': (False|True), "
                         rb"'shape': \(((?:\d+, )*(?:\d+,?)?)\), \} *\n")


def _npy_bytes(arr: np.ndarray) -> bytes:
    """A version 1.0 ``.npy`` file (what ``np.save`` writes), without NumPy's slower general path."""
    if arr.dtype.kind not in ARRAY_KINDS:
        raise TypeError(f"an array of dtype {arr.dtype} (expected numbers)")
    arr = np.ndarray.view(arr, np.ndarray)
    if not arr.flags.c_contiguous:
        arr = arr.copy(order="C")
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return _npy_header(arr.dtype.str, arr.shape) + arr.tobytes()


_NPY_HEADERS: dict = {}


def _npy_header(descr: str, shape: tuple) -> bytes:
    """The ``.npy`` prefix (magic, length, header) of a C-ordered array of this dtype and shape (cached)."""
    key = (descr, shape)
    prefix = _NPY_HEADERS.get(key)
    if prefix is None:
        dims = f"({shape[0]},)" if len(shape) == 1 else "(" + ", ".join(str(d) for d in shape) + ")"
        header = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {dims}, }}"
        total = len(_NPY_MAGIC) + 2 + len(header) + 1
        header += " " * ((64 - total % 64) % 64) + "\n"
        prefix = _NPY_MAGIC + struct.pack("<H", len(header)) + header.encode("latin1")
        if len(_NPY_HEADERS) < 4096:
            _NPY_HEADERS[key] = prefix
    return prefix


def _checked_shape(text: bytes) -> tuple:
    shape = tuple(int(d) for d in text.split(b",") if d.strip())
    if len(shape) > MAX_NDIM or any(d > MAX_DIM for d in shape) or math.prod(shape) > MAX_DIM:
        raise ProtocolError(f"array of an impossible shape ({text[:80].decode('latin1')})")
    return shape


#: parsed ``.npy`` headers, by their bytes: ``(dtype, shape, fortran order)`` (the same shapes come again and again)
_PARSED_HEADERS: dict = {}


def _parsed_header(header: bytes) -> tuple | None:
    """``(dtype, shape, fortran order)`` of a version 1.0 header this module writes (``None``: another form)."""
    parsed = _PARSED_HEADERS.get(header)
    if parsed is None:
        m = _NPY_HEADER.fullmatch(header)
        if not m:
            return None
        parsed = (np.dtype(m.group(1).decode()), _checked_shape(m.group(3)), m.group(2) == b"True")
        if len(_PARSED_HEADERS) < 4096:
            _PARSED_HEADERS[header] = parsed
    return parsed


def _npy_array(data: bytes) -> np.ndarray:
    """Parse ``.npy`` bytes strictly (never pickle); a fresh, writable, C-contiguous array."""
    if data[:8] == _NPY_MAGIC and len(data) >= 10:
        (hlen,) = struct.unpack("<H", data[8:10])
        parsed = _parsed_header(data[10:10 + hlen])
        if parsed is not None:
            dtype, shape, fortran = parsed
            count = math.prod(shape)
            if len(data) - 10 - hlen != count * dtype.itemsize:
                raise ProtocolError("array payload of the wrong size")
            arr = np.frombuffer(data, dtype, count=count, offset=10 + hlen)
            arr = arr.reshape(shape[::-1]).T if fortran else arr.reshape(shape)
            return np.array(arr, order="C", copy=True)
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
        if arr.ndim > MAX_NDIM or arr.size > MAX_DIM:
            raise ValueError("an impossible shape")
    except Exception as exc:  # noqa: BLE001 - any malformed payload
        raise ProtocolError(f"malformed array payload: {exc}") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in ARRAY_KINDS:
        raise ProtocolError("array payload of a non-numeric dtype")
    return arr


def _scalar_tree(value: Any) -> tuple[bool, Any]:
    """``(True, tree)`` for a scalar (Python or NumPy), else ``(False, None)``."""
    t = type(value)
    if value is None or t is bool or t is int or t is str:
        return True, value
    if t is float or isinstance(value, np.floating):
        value = float(value)
        return True, (value if math.isfinite(value) else {"$float": repr(value)})
    if isinstance(value, np.bool_):
        return True, bool(value)
    if isinstance(value, np.integer):
        return True, int(value)
    return False, None


def _dict_tree(value: dict, blobs: list, default: Callable[[Any], Any] | None, depth: int) -> Any:
    out, mark = {}, len(blobs)
    for k, v in value.items():
        if type(k) is not str or k[:1] == "$":
            del blobs[mark:]        # encoded again below, as a $dict
            break
        out[k] = v if type(v) in _PLAIN_ATOMS else to_tree(v, blobs, default, depth)
    else:
        return out
    return {"$dict": [[to_tree(k, blobs, default, depth), to_tree(v, blobs, default, depth)]
                      for k, v in value.items()]}


_PLAIN_ATOMS = frozenset((str, int, bool, type(None)))


def _plain_setting(v: Any) -> bool:
    """A layer setting JSON writes as it is: str, int, bool, None, a finite float or a tuple of ints."""
    t = type(v)
    if t in _PLAIN_ATOMS:
        return True
    if t is float:
        return v - v == 0.0
    return t is tuple and all(type(n) is int for n in v)


def _named(pairs: Any, value_ok: Callable[[Any], bool]) -> bool:
    """Whether ``pairs`` is a tuple of ``(str, value)`` pairs whose values pass ``value_ok``."""
    return type(pairs) is tuple and all(type(p) is tuple and len(p) == 2 and type(p[0]) is str and value_ok(p[1])
                                        for p in pairs)


def _tensor_slot(v: Any) -> bool:
    return v is None or type(v) is np.ndarray


def _is_layer(value: Any) -> bool:
    """Whether ``value`` looks like one layer of ``module_codec``'s encoding (``("module", ...)``, 8 long)."""
    return type(value) is tuple and len(value) == 8 and type(value[0]) is str and value[0] == "module"


def _layer_tree(value: tuple, blobs: list, depth: int) -> Any:
    """The tree of one layer of ``module_codec``'s encoding, ``("module", name, hyper, params, buffers, device,
    training, children)`` (the bulk of 06's messages), written without the generic walk: the same JSON as
    :func:`to_tree` writes (tuples and lists are both arrays). None when ``value`` is not exactly such a layer
    (the generic walk then writes it; nothing was added to ``blobs``)."""
    _, name, hyper, params, buffers, device, training, children = value
    if not (type(name) is str and (device is None or type(device) is str) and type(training) is bool
            and _named(hyper, _plain_setting) and _named(params, _tensor_slot) and _named(buffers, _tensor_slot)
            and type(children) is tuple and depth <= 64):
        return None
    kids = _children_trees(children, blobs, depth)
    if kids is None:
        return None
    return ("module", name, hyper, _slots(params, blobs), _slots(buffers, blobs), device, training, kids)


def _children_trees(children: tuple, blobs: list, depth: int) -> tuple | None:
    """``((name, layer tree), ...)`` of a layer's children; None (and ``blobs`` as it was) when one is not a
    layer exactly as ``module_codec`` writes it."""
    mark, kids = len(blobs), []
    for pair in children:
        ok = type(pair) is tuple and len(pair) == 2 and type(pair[0]) is str and _is_layer(pair[1])
        tree = _layer_tree(pair[1], blobs, depth + 1) if ok else None
        if tree is None:
            del blobs[mark:]
            return None
        kids.append((pair[0], tree))
    return tuple(kids)


def _slots(pairs: tuple, blobs: list) -> tuple:
    """``((name, {"$npy": i} or None), ...)`` of a layer's parameters or buffers, their arrays added to ``blobs``."""
    out = []
    for k, arr in pairs:
        if arr is None:
            out.append((k, None))
        else:
            blobs.append(_npy_bytes(arr))
            out.append((k, {"$npy": len(blobs) - 1}))
    return tuple(out)


def _tuple_tree(value: tuple, blobs: list, default: Callable[[Any], Any] | None, depth: int) -> Any:
    """A tuple's tree: an encoded layer by :func:`_layer_tree`; else plain values first, without a call each (the
    bulk of an encoded module's tree): a tuple of plain values is its own tree (JSON writes it as an array)."""
    if _is_layer(value):
        tree = _layer_tree(value, blobs, depth)
        if tree is not None:
            return tree
    for v in value:
        if type(v) not in _PLAIN_ATOMS:
            return [v if type(v) in _PLAIN_ATOMS else to_tree(v, blobs, default, depth + 1) for v in value]
    return value


def to_tree(value: Any, blobs: list, default: Callable[[Any], Any] | None = None, depth: int = 0) -> Any:
    """Encode ``value`` as a message tree, appending array payloads to ``blobs``. ``default(value)`` may encode
    other objects (returning a tree) or raise TypeError."""
    t = type(value)
    if t is str or t is int or t is bool or value is None:    # the common cases first: no other check needed
        return value
    if t is float:
        return value if value - value == 0.0 else {"$float": repr(value)}   # finite, else tagged
    if depth > 64:
        raise TypeError("nested too deeply")
    if t is tuple:
        return _tuple_tree(value, blobs, default, depth)
    if t is np.ndarray:
        blobs.append(_npy_bytes(value))
        return {"$npy": len(blobs) - 1}
    if t is list:
        return {"$list": [to_tree(v, blobs, default, depth + 1) for v in value]}
    if t is dict:
        return _dict_tree(value, blobs, default, depth + 1)
    is_scalar, tree = _scalar_tree(value)
    if is_scalar:
        return tree
    if isinstance(value, np.ndarray):
        blobs.append(_npy_bytes(value))
        return {"$npy": len(blobs) - 1}
    if default is not None:
        return default(value)
    raise TypeError(f"a {t.__module__}.{t.__qualname__}")


def _decode_npy(payload: Any, blobs: list, decode: Callable[[Any], Any]) -> Any:
    if type(payload) is not int or not 0 <= payload < len(blobs):
        raise ProtocolError("bad array reference")
    return _npy_array(blobs[payload])


def _decode_float(payload: Any, blobs: list, decode: Callable[[Any], Any]) -> Any:
    if payload not in ("nan", "inf", "-inf"):
        raise ProtocolError("bad float")
    return float(payload)


def _decode_list(payload: Any, blobs: list, decode: Callable[[Any], Any]) -> Any:
    if type(payload) is not list:
        raise ProtocolError("bad list")
    return [decode(v) for v in payload]


def _decode_dict(payload: Any, blobs: list, decode: Callable[[Any], Any]) -> Any:
    if type(payload) is not list or not all(type(p) is list and len(p) == 2 for p in payload):
        raise ProtocolError("bad dict")
    out = {}
    for k, v in payload:
        k = decode(k)
        try:
            out[k] = decode(v)
        except TypeError:
            raise ProtocolError("unhashable dict key") from None
    return out


#: the tagged values every side decodes by itself (``$fn``, ``$module`` and ``$tensor`` need a resolver)
_TAGGED = {"$npy": _decode_npy, "$float": _decode_float, "$list": _decode_list, "$dict": _decode_dict}


class MessageTree(NamedTuple):
    """A ``$module`` payload as the message carries it (JSON arrays for tuples, ``{"$npy": i}`` for arrays), for a
    resolver that rebuilds it without decoding it first: ``array(i)`` decodes blob ``i``, ``decode(tree)`` decodes
    any part of it as :func:`from_tree` would."""

    tree: Any
    array: Callable[[Any], Any]
    decode: Callable[[Any], Any]


def _decode_reference(key: str, payload: Any, resolve: Callable[[str, Any], Any] | None,
                      decode: Callable[[Any], Any], blobs: list) -> Any:
    if resolve is None:
        raise ProtocolError(f"unexpected reference {key}")
    if key == "$fn":
        return resolve(key, payload)
    if key == "$module":
        return resolve(key, MessageTree(payload, lambda i: _decode_npy(i, blobs, decode), decode))
    return resolve(key, decode(payload))


_JSON_ATOMS = frozenset((str, int, float, bool, type(None)))


def _json_setting(v: Any) -> Any:
    """A layer setting as JSON gave it (an atom, or a list of ints made a tuple); None when it is neither."""
    t = type(v)
    if t in _JSON_ATOMS:
        return (v,)
    if t is list and all(type(n) is int for n in v):
        return (tuple(v),)
    return None


def _json_pairs(pairs: Any, value: Callable[[Any], Any]) -> tuple | None:
    """``((name, value(v)[0]), ...)`` of JSON ``[[name, v], ...]``; None when a pair is not one or ``value(v)`` is
    None."""
    if type(pairs) is not list:
        return None
    out = []
    for p in pairs:
        if type(p) is not list or len(p) != 2 or type(p[0]) is not str:
            return None
        got = value(p[1])
        if got is None:
            return None
        out.append((p[0], got[0]))
    return tuple(out)


def _is_json_layer(tree: Any) -> bool:
    """Whether ``tree`` (JSON) looks like one layer of ``module_codec``'s encoding (:func:`_is_layer`'s, as
    written)."""
    return type(tree) is list and len(tree) == 8 and tree[0] == "module"


def _layer_from_tree(tree: list, blobs: list, depth: int) -> tuple | None:
    """One layer of ``module_codec``'s encoding as JSON gave it (:func:`_layer_tree` wrote it), decoded without the
    generic walk: what :func:`from_tree` makes of it. None when it is not exactly such a layer (the generic walk
    then decodes it: a malformed array reference raises there, as here)."""
    _, name, hyper, params, buffers, device, training, children = tree
    if not (type(name) is str and (device is None or type(device) is str) and type(training) is bool
            and type(children) is list and depth <= 64):
        return None

    def slot(v):
        if v is None:
            return (None,)
        if type(v) is dict and len(v) == 1 and "$npy" in v:
            return (_decode_npy(v["$npy"], blobs, None),)
        return None

    def child(v):
        layer = _layer_from_tree(v, blobs, depth + 1) if _is_json_layer(v) else None
        return None if layer is None else (layer,)

    parts = (_json_pairs(hyper, _json_setting), _json_pairs(params, slot), _json_pairs(buffers, slot),
             _json_pairs(children, child))
    if any(part is None for part in parts):
        return None
    return ("module", name, parts[0], parts[1], parts[2], device, training, parts[3])


def _sequence_from_tree(tree: list | tuple, blobs: list, resolve: Callable[[str, Any], Any] | None,
                        depth: int) -> tuple:
    """A JSON array decoded as a tuple: an encoded layer by :func:`_layer_from_tree`; else plain values (most of a
    module's tree) taken as they are, without a call each."""
    if _is_json_layer(tree):
        layer = _layer_from_tree(tree, blobs, depth)
        if layer is not None:
            return layer
    return tuple([v if type(v) in _JSON_ATOMS else from_tree(v, blobs, resolve, depth + 1) for v in tree])


def from_tree(tree: Any, blobs: list, resolve: Callable[[str, Any], Any] | None = None, depth: int = 0) -> Any:
    """Decode a message tree. ``resolve(kind, payload)`` handles ``$fn`` / ``$module`` / ``$tensor`` references (a
    ``$fn`` payload as it is, a ``$module`` one as a :class:`MessageTree`, a ``$tensor`` one decoded)."""
    t = type(tree)
    if t is str or t is int or t is float or t is bool or tree is None:
        return tree
    if depth > 64:
        raise ProtocolError("nested too deeply")
    if t is list or t is tuple:
        return _sequence_from_tree(tree, blobs, resolve, depth)
    if t is not dict:
        raise ProtocolError(f"unexpected JSON value {t.__name__}")

    def decode(v: Any) -> Any:
        return from_tree(v, blobs, resolve, depth + 1)

    if len(tree) == 1:
        (key, payload), = tree.items()
        if key in _TAGGED:
            return _TAGGED[key](payload, blobs, decode)
        if key in ("$fn", "$module", "$tensor"):
            return _decode_reference(key, payload, resolve, decode, blobs)
    out = {}
    for k, v in tree.items():
        if k[:1] == "$":
            raise ProtocolError("unknown tagged value")
        out[k] = v if type(v) in _JSON_ATOMS else from_tree(v, blobs, resolve, depth + 1)
    return out


#: one encoder and one decoder for every frame (``json.dumps`` with options builds a new encoder per call)
_ENCODE = json.JSONEncoder(allow_nan=False, separators=(",", ":")).encode
_DECODE = json.JSONDecoder().decode


def frame(tree: Any, blobs: list[bytes]) -> bytes:
    """The frame of a message tree and its blobs."""
    header = _ENCODE({"m": tree, "b": [len(b) for b in blobs]}).encode()
    return b"".join([_HEAD.pack(MAGIC, len(header)), header, *blobs])


def json_text(tree: Any) -> str:
    """The JSON text of a message tree, as :func:`frame` writes it."""
    return _ENCODE(tree)


def frame_with(tree: dict, key: str, text: str, blobs: list[bytes]) -> bytes:
    """:func:`frame` of ``tree`` with ``tree[key]`` given as its JSON text, written once (a chunk of calls that
    every notebook of a batch receives); ``key`` is a plain name."""
    if not key.isidentifier():
        raise ValueError(f"not a plain key: {key!r}")
    body = _ENCODE(tree)
    header = (f'{{"b":{_ENCODE([len(b) for b in blobs])},"m":{body[:-1]}{"," if len(body) > 2 else ""}'
              f'"{key}":{text}}}}}').encode()
    return b"".join([_HEAD.pack(MAGIC, len(header)), header, *blobs])


def pack(message: dict, default: Callable[[Any], Any] | None = None) -> bytes:
    """One frame for ``message`` (a dict of str keys)."""
    blobs: list[bytes] = []
    return frame(to_tree(message, blobs, default), blobs)


def _parse_header(header: bytes, max_bytes: int) -> tuple[Any, list[int]]:
    try:
        doc = _DECODE(header.decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ProtocolError(f"malformed header: {str(exc)[:200]}") from None
    if type(doc) is not dict or "m" not in doc or type(doc.get("b")) is not list:
        raise ProtocolError("malformed header")
    sizes = doc["b"]
    if not all(type(n) is int and n >= 0 for n in sizes) or sum(sizes) > max_bytes:
        raise ProtocolError("message too large or malformed")
    return doc["m"], sizes


def unpack(tree: Any, blobs: list, resolve: Callable[[str, Any], Any] | None = None) -> dict:
    """The message of a frame; any malformed content is a :class:`ProtocolError` (never another exception)."""
    try:
        message = from_tree(tree, blobs, resolve)
    except ProtocolError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as exc:
        raise ProtocolError(f"malformed message: {type(exc).__name__}: {str(exc)[:200]}") from None
    if type(message) is not dict:
        raise ProtocolError("a message must be a JSON object")
    return message


# ---------------------------------------------------------------- blocking I/O (the worker's side)

def _read_exact(fd: int, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise Closed("channel closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Any, list]:
    """Blocking read of one frame: ``(tree, blobs)``. The blobs are read together and cut apart here (a chunk of
    06's calls has ~3,000 arrays: one ``read`` each cost the sandbox ~0.1 CPU-second per exercise)."""
    magic, size = _HEAD.unpack(_read_exact(fd, _HEAD.size))
    if magic != MAGIC or size > MAX_HEADER:
        raise ProtocolError("bad frame")
    tree, sizes = _parse_header(_read_exact(fd, size), max_bytes)
    return tree, _cut(_read_exact(fd, sum(sizes)), sizes)


def _cut(payload: bytes, sizes: list[int]) -> list[bytes]:
    blobs, start = [], 0
    for n in sizes:
        blobs.append(payload[start:start + n])
        start += n
    return blobs


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view[: 1 << 20])
        view = view[n:]


# ---------------------------------------------------------------- I/O with deadlines (the grader's side)

class Channel:
    """The grader's end of a worker's two pipes: frames in, frames out, every operation bounded by a deadline
    and every incoming message bounded in size. A misbehaving peer can waste time until the deadline, never
    block the grader or make it allocate more than ``max_bytes``."""

    def __init__(self, read_fd: int, write_fd: int, max_bytes: int = MAX_REPLY_BYTES):
        self.read_fd, self.write_fd, self.max_bytes = read_fd, write_fd, max_bytes
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self._buf = bytearray()
        self._start = 0                 # bytes of _buf already taken (removed in bulk, not per frame)
        self._read_closed = False
        self.closed = False

    def _wait(self, fd: int, events: int, deadline: float) -> None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout("deadline passed")
        poller = select.poll()
        poller.register(fd, events)
        if not poller.poll(max(1, int(left * 1000))):
            raise Timeout("deadline passed")

    def send(self, data: bytes, deadline: float) -> None:
        """Write one frame. While the pipe is full, what the peer writes meanwhile is read into the receive buffer
        (up to ``max_bytes``): a peer that answers earlier requests while this one is still being sent never
        blocks on a full reply pipe (the grader sends a batch's calls in chunks while replies come back)."""
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.write_fd, view[: 1 << 20])
            except BlockingIOError:
                self._wait_to_write(deadline)
                continue
            except (BrokenPipeError, OSError) as exc:
                raise Closed(f"channel closed ({exc.__class__.__name__})") from None
            view = view[n:]

    def _wait_to_write(self, deadline: float) -> None:
        """Wait until the write end takes more, reading whatever arrives meanwhile (bounded by ``max_bytes``)."""
        if self._held() >= self.max_bytes or self._read_closed:
            self._wait(self.write_fd, select.POLLOUT, deadline)
            return
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout("deadline passed")
        poller = select.poll()
        poller.register(self.write_fd, select.POLLOUT)
        poller.register(self.read_fd, select.POLLIN)
        events = dict(poller.poll(max(1, int(left * 1000))))
        if not events:
            raise Timeout("deadline passed")
        if events.get(self.read_fd, 0) & (select.POLLIN | select.POLLHUP):
            self._read_available()

    def _read_available(self) -> None:
        try:
            chunk = os.read(self.read_fd, min(1 << 16, self.max_bytes - self._held()))
        except (BlockingIOError, OSError):
            return
        self._read_closed = not chunk   # the peer closed its end: receive() reports it; stop polling it here
        self._buf += chunk

    def _fill(self, need: int, deadline: float) -> None:
        while self._held() < need:
            try:
                chunk = os.read(self.read_fd, max(need - self._held(), 1 << 16))
            except BlockingIOError:
                self._wait(self.read_fd, select.POLLIN, deadline)
                continue
            if not chunk:
                raise Closed("channel closed")
            self._buf += chunk

    def _held(self) -> int:
        return len(self._buf) - self._start

    def _take(self, n: int, deadline: float) -> bytes:
        self._fill(n, deadline)
        out = bytes(self._buf[self._start:self._start + n])
        self._start += n
        if self._start >= 1 << 16 or self._start == len(self._buf):
            del self._buf[:self._start]
            self._start = 0
        return out

    def receive(self, deadline: float) -> tuple[Any, list]:
        """One frame ``(tree, blobs)`` before ``deadline`` (``time.monotonic()``), else :class:`Timeout`."""
        magic, size = _HEAD.unpack(self._take(_HEAD.size, deadline))
        if magic != MAGIC or size > MAX_HEADER:
            raise ProtocolError("bad frame")
        tree, sizes = _parse_header(self._take(size, deadline), self.max_bytes)
        blobs = [self._take(n, deadline) for n in sizes]
        return tree, blobs

    def drain(self) -> int:
        """Discard every byte already received or waiting in the pipe (between exercises nothing legitimate is
        in flight); returns how many were discarded."""
        dropped = self._held()
        self._buf.clear()
        self._start = 0
        while True:
            try:
                chunk = os.read(self.read_fd, 1 << 16)
            except (BlockingIOError, OSError):
                return dropped
            if not chunk:
                return dropped
            dropped += len(chunk)

    def receive_reply(self, request_ids: tuple, deadline: float, max_stale: int = 10_000) -> dict:
        """The next message answering one of ``request_ids`` (its ``"re"``); frames answering anything else
        (stale replies, forged ones written before their request existed) are skipped, up to ``max_stale``.
        Malformed content is a :class:`ProtocolError`."""
        for _ in range(max_stale + 1):
            message = unpack(*self.receive(deadline))
            if message.get("re") in request_ids:
                return message
        raise ProtocolError(f"more than {max_stale} unexpected messages")

    def close(self) -> None:
        """Close both ends, once (a second close could hit a descriptor number reused meanwhile)."""
        if self.closed:
            return
        self.closed = True
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass

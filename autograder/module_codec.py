"""Small torch models as plain data, and back: the bridge for exercises whose answer is an ``nn.Module``.

Standalone on purpose: this file imports only NumPy, torch (on first use, so that importing it is cheap) and the
standard library, so that the isolated grader can copy it into its sandbox. It must never import the rest of
``autograder``.

Plain data here means nested tuples of ``str``, ``int``, ``float``, ``bool``, ``None`` and NumPy arrays (what
``autograder.compare.to_plain`` accepts and what the isolated grader ships as JSON + ``.npy``). Never pickle.

Format (``encode_module``)::

    (FORMAT, tree, tag)
    tree = ("module", type_name, hyper, params, buffers, device, training, children)
        hyper    = ((name, value), ...)            constructor arguments, e.g. ("stride", (1, 1))
        params   = ((name, ndarray or None), ...)  e.g. ("weight", array), ("bias", None)
        buffers  = ((name, ndarray or None), ...)  e.g. BatchNorm's running_mean, running_var, num_batches_tracked
        device   = "cpu" / "cuda" / "mixed" / None (no tensors of its own)
        training = bool (this module's own flag)
        children = ((name, tree), ...)             only for Sequential
    tag  = None, or (name, token, meta) for a module that the grader built as a call argument (see below)

``decode_module(plain, device)`` rebuilds a model on ``device`` from an allow-list of layer types (:data:`LAYERS`);
anything else, a wrong shape, an unexpected parameter or an oversized model is rejected with ``ValueError`` and a
message that says what is wrong. Layers are first built on the ``meta`` device (no memory), then every tensor is
taken from the plain data, so hostile hyper-parameters cannot allocate memory.

Call arguments and mutation
---------------------------
An exercise like ``fuse_conv_bn_module(conv, bn)`` must return a new module and leave its inputs untouched. That
property counts for points, so it is judged by the trusted side from plain data, never from a record kept where the
student's code runs (a property judged inside the sandbox is feedback, never points):

1. The grader builds each module argument as a *template* and marks it with :func:`mark_argument` (an
   :class:`ArgumentTag` in the module's ``__dict__``: a name, a random token, plain metadata).
2. Where the student's code runs, the modules it receives are registered as arguments (weak references): in the
   sandbox ``decode_module`` registers what it rebuilds; in a notebook ``answers.local_answer`` deep-copies the call's
   arguments and the tag's ``__deepcopy__`` registers the copy.
3. :func:`encode_answer` (the exercise's ``encode``) sends back the returned model *and the state of every live
   argument after the call*, as plain data: its :func:`fingerprint` (a digest of the layers, hyper-parameters,
   parameters and buffers; the model itself is not needed to judge it, and sending it cost as much as the answer).
4. The trusted side (:func:`decode_judged` with the call) fingerprints its own templates and compares: an argument
   whose layers, hyper-parameters, parameters or buffers differ from what was sent was modified in place.
   Returning the input object itself shows up the same way (its weights are the unfused ones, or it was modified).

Student code can of course send back forged argument states (a full model or a digest alike: both come from the
sandbox); what it cannot do is make the trusted side accept a state that differs from the template, and the
forgery earns nothing a correct answer would not.
"""
from __future__ import annotations

import hashlib
import math
import warnings
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    import torch
    from torch import nn


_TORCH: list = []


def _torch():
    """torch, imported on first use: importing it costs over a second, and the grader's exercise specs (which
    import this module) must load without it. Kept once imported (decoding asks for it ~40 times an answer)."""
    if not _TORCH:
        import torch

        _TORCH.append(torch)
    return _TORCH[0]


FORMAT = "convlab-module/1"
ANSWER = "convlab-answer/2"
#: at most this many argument states travel back with an answer (the most recent ones)
MAX_REPORTED_ARGUMENTS = 8

MAX_DEPTH = 16
MAX_MODULES = 512
MAX_ELEMENTS = 20_000_000
#: the most a decoded model may cost to run once: elements of any layer's output, multiply-adds in all
MAX_ACTIVATION = 1 << 22
MAX_FLOPS = 1 << 30
DEVICE_KINDS = ("cpu", "cuda", "mixed", "mps", "xpu")

#: allowed layer types (names in ``torch.nn``): name -> (constructor arguments read back from the module, whether
#: the constructor takes ``device``/``dtype``)
LAYERS: dict[str, tuple[tuple[str, ...], bool]] = {
    "Sequential": ((), False),
    "Conv2d": (("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups", "bias",
                "padding_mode"), True),
    "ConvTranspose2d": (("in_channels", "out_channels", "kernel_size", "stride", "padding", "output_padding",
                         "groups", "bias", "dilation", "padding_mode"), True),
    "BatchNorm2d": (("num_features", "eps", "momentum", "affine", "track_running_stats", "bias"), True),
    "Linear": (("in_features", "out_features", "bias"), True),
    "ReLU": (("inplace",), False),
    "MaxPool2d": (("kernel_size", "stride", "padding", "dilation", "return_indices", "ceil_mode"), False),
    "AvgPool2d": (("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"), False),
    "AdaptiveAvgPool2d": (("output_size",), False),
    "Flatten": (("start_dim", "end_dim"), False),
    "Dropout": (("p", "inplace"), False),
    "Identity": ((), False),
}


def _layer_name(module) -> str | None:
    """The allow-list name of ``module``'s exact class (subclasses are not allowed), else None."""
    name = type(module).__name__
    return name if name in LAYERS and type(module) is getattr(_torch().nn, name) else None


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def allowed_layers() -> str:
    return ", ".join(LAYERS)


# ---------------------------------------------------------------------------------------------------------------
# encoding (runs where the student's code runs)
# ---------------------------------------------------------------------------------------------------------------

def _plain_value(value: Any, what: str) -> Any:
    if value is None or type(value) in (bool, int, str):
        return value
    if type(value) is float:
        if not math.isfinite(value):
            raise ValueError(f"{what} is {value}")
        return value
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, np.floating):
        return _plain_value(float(value), what)
    if isinstance(value, (tuple, list)):
        return tuple(_plain_value(v, what) for v in value)
    raise ValueError(f"{what} is a {type(value).__name__}, not a plain number, string or tuple")


def _array(t: torch.Tensor | None, what: tuple[str, str, str]) -> np.ndarray | None:
    """A copy of tensor ``t`` (``None`` stays ``None``) as an array; ``what``: (layer, slot, where) for the
    messages, written only when one is raised."""
    torch = _torch()
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{_slot(what)} is a {type(t).__name__}, not a tensor")
    if t.is_meta:
        raise ValueError(f"{_slot(what)} is on the meta device (it has no values)")
    if t.dtype not in (torch.float32, torch.float64, torch.int64, torch.int32):
        raise ValueError(f"{_slot(what)} has dtype {t.dtype}; only float32, float64 and integer tensors can be "
                         "graded")
    t = t.detach()
    return np.array((t if t.is_cpu else t.cpu()).numpy(), copy=True, order="C")


def _hyper(module: nn.Module, name: str) -> Any:
    if name == "bias":
        if isinstance(module, _torch().nn.BatchNorm2d) and not module.affine:
            return True
        return module.bias is not None
    return getattr(module, name)


def _hyper_value(module: nn.Module, name: str, h: str, where: str) -> Any:
    """``_plain_value`` of a hyper-parameter; the common ones (ints, bools, strings, tuples of ints) directly."""
    value = _hyper(module, h)
    t = type(value)
    if value is None or t is bool or t is int or t is str or (t is tuple and all(type(v) is int for v in value)):
        return value
    return _plain_value(value, f"{name}.{h}{where}")


def _device_of(tensors) -> str | None:
    kinds = {t.device.type for t in tensors if t is not None}
    return next(iter(kinds)) if len(kinds) == 1 else ("mixed" if kinds else None)


def _encode_tree(module: nn.Module, path: str, depth: int, count: list) -> tuple:
    count[0] += 1
    if count[0] > MAX_MODULES:
        raise ValueError(f"the model has more than {MAX_MODULES} layers")
    if depth > MAX_DEPTH:
        raise ValueError(f"the model is nested more than {MAX_DEPTH} levels deep")
    name = _layer_name(module)
    where = f" (at {path})" if path else ""
    if name is None:
        raise ValueError(f"layer type {type(module).__module__}.{type(module).__qualname__}{where} cannot be graded; "
                         f"the model may only contain: {allowed_layers()}")
    hyper_names, _ = LAYERS[name]
    hyper = tuple([(h, _hyper_value(module, name, h, where)) for h in hyper_names])
    params = tuple([(k, _array(v, (name, k, where))) for k, v in module._parameters.items()])
    buffers = tuple([(k, _array(v, (name, k, where))) for k, v in module._buffers.items()])
    if name == "Sequential":
        children = tuple([(str(k), _encode_tree(v, f"{path}.{k}" if path else str(k), depth + 1, count))
                          for k, v in module._modules.items() if v is not None])
    else:
        if any(v is not None for v in module._modules.values()):
            raise ValueError(f"a {name}{where} with sub-modules cannot be graded")
        children = ()
    device = _device_of([*module._parameters.values(), *module._buffers.values()])
    return ("module", name, hyper, params, buffers, device, bool(module.training), children)


def encode_module(module: nn.Module) -> tuple:
    """Plain data for ``module`` (see the module docstring); raises ``ValueError`` for a layer outside
    :data:`LAYERS` and ``TypeError`` for something that is not an ``nn.Module``."""
    if not isinstance(module, _torch().nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(module).__module__}.{type(module).__qualname__}")
    tag = module.__dict__.get(TAG_ATTR)
    if isinstance(tag, ArgumentTag) and tag.state == "template":
        plain_tag = (tag.name, tag.token, tuple((k, _plain_value(v, "tag")) for k, v in tag.meta))
        return (FORMAT, template_tree(module), plain_tag)
    return (FORMAT, _encode_tree(module, "", 0, [0]), None)


# ---------------------------------------------------------------------------------------------------------------
# decoding (the trusted side; also the sandbox, for call arguments)
# ---------------------------------------------------------------------------------------------------------------

def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise ValueError(message)


def _pairs(value: Any, what: str) -> list:
    _expect(isinstance(value, tuple) and all(isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str)
                                             for p in value), f"malformed {what}")
    names = [p[0] for p in value]
    _expect(len(set(names)) == len(names), f"duplicate names in {what}")
    return list(value)


def _check_hyper_value(value: Any, what: str) -> None:
    if value is None or type(value) in (bool, int, str):
        _expect(type(value) is not int or abs(value) <= 1 << 31, f"{what} is out of range")
        _expect(type(value) is not str or len(value) <= 64, f"{what} is too long")
        return
    if type(value) is float:
        _expect(math.isfinite(value), f"{what} is not finite")
        return
    _expect(isinstance(value, tuple) and len(value) <= 4, f"{what} has an unexpected value")
    for v in value:
        _expect(type(v) is int and abs(v) <= 1 << 31, f"{what} has an unexpected value")


def _tensor(arr: Any, like: torch.Tensor, what: tuple[str, str, str], device: str, budget: list) -> torch.Tensor:
    """A new tensor on ``device`` from the untrusted array ``arr`` for the slot that holds ``like`` (its shape, a
    float or integer dtype, finite; the model's element budget). ``what``: (layer, slot, where) for the messages,
    written only when one is raised (an answer's decode checks thousands of tensors)."""
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{_slot(what)} is not an array")
    if arr.shape != like.shape:
        raise ValueError(f"{_slot(what)} has shape {tuple(arr.shape)}, but this layer needs {tuple(like.shape)}")
    budget[0] += arr.size
    _expect(budget[0] <= MAX_ELEMENTS, f"the model has more than {MAX_ELEMENTS} numbers")
    if like.dtype.is_floating_point:
        if arr.dtype not in _FLOAT_DTYPES:     # a dtype's str is slow: only in the message
            raise ValueError(f"{_slot(what)} has dtype {arr.dtype}; expected float32 or float64")
        if not np.isfinite(arr).all():
            raise ValueError(f"{_slot(what)} contains NaN or Inf")
    elif arr.dtype.kind not in "iu":
        raise ValueError(f"{_slot(what)} has dtype {arr.dtype}; expected integers")
    return _rebuilt_tensor(arr, device, fresh=False)


def _slot(what: tuple[str, str, str]) -> str:
    layer, slot, where = what
    return f"{layer}.{slot}{where}"


def _construct(cls, kwargs: dict, factory: bool, name: str, where: str):
    """The layer built from its hyper-parameters, on the ``meta`` device when it takes one (no memory, and no
    random initialisation: :func:`_uninitialised`)."""
    try:
        if not factory:
            return cls(**kwargs)
        layer = _uninitialised(cls)(**kwargs, device="meta")
        layer.__class__ = cls
        return layer
    except Exception as exc:  # noqa: BLE001 - a constructor rejecting the hyper-parameters
        raise ValueError(f"cannot build {name}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}){where}: "
                         f"{exc}") from None


#: per layer class, a subclass whose ``reset_parameters`` does nothing (:func:`_uninitialised`)
_UNINITIALISED: dict = {}


def _uninitialised(cls):
    """``cls`` without its random initialisation: on ``meta`` tensors it writes nothing, yet it was half of a
    constructor's cost. The object built is given back its own class at once; every attribute is what the plain
    constructor sets (tested)."""
    sub = _UNINITIALISED.get(cls)
    if sub is None:
        sub = _UNINITIALISED[cls] = type(cls.__name__, (cls,), {"reset_parameters": lambda self: None})
    return sub


#: pristine layers already built and the keys of their containers, by (type, hyper-parameters): :func:`_fresh_layer`
#: copies them
_PROTOTYPES: dict = {}
MAX_PROTOTYPES = 2048   # 06's answers alone have over 256 kinds of layers: a cleared cache rebuilt them


def _fresh_copy(prototype: nn.Module, containers: tuple[tuple[str, ...], tuple[str, ...]]) -> nn.Module:
    """A new layer object equal to ``prototype`` (a pristine layer that no one else holds): every container of its
    ``__dict__`` (``containers``, :func:`_containers`: the parameter and buffer tables, hook tables, padding lists)
    is a new one, so nothing done to the copy reaches the prototype or another copy. Its tensors are still the
    prototype's (``meta``): the caller replaces them all."""
    fresh = object.__new__(type(prototype))
    state = fresh.__dict__
    state.update(prototype.__dict__)
    plain, other = containers
    for k in plain:
        state[k] = state[k].copy()
    for k in other:
        state[k] = type(state[k])(state[k])
    return fresh


#: containers whose ``copy()`` is a new one of the same type (twice as fast as calling the type)
_COPIED_BY_METHOD = (dict, list, set, OrderedDict)


def _containers(layer: nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The keys of ``layer.__dict__`` that hold a dict, list or set (:func:`_fresh_copy` copies those): those of
    exactly one of :data:`_COPIED_BY_METHOD`, then any other (a subclass: copied by calling its type)."""
    keys = [k for k, v in layer.__dict__.items() if isinstance(v, (dict, list, set))]
    plain = tuple(k for k in keys if type(layer.__dict__[k]) in _COPIED_BY_METHOD)
    return plain, tuple(k for k in keys if k not in plain)


_ATOMS = (type(None), bool, int, float, str)


def _copyable(layer: nn.Module) -> bool:
    """Whether :func:`_fresh_copy` makes an independent copy of ``layer``: its ``__dict__`` holds only plain values,
    tuples of them, and flat containers (as in every allowed layer of the torch versions known); else the
    constructor runs each time."""
    def flat(value) -> bool:
        items = value.values() if isinstance(value, dict) else value
        return all(isinstance(v, _ATOMS) or isinstance(v, _torch().Tensor) and v.device.type == "meta" for v in items)

    return all(isinstance(v, _ATOMS) or (isinstance(v, (tuple, dict, list, set)) and flat(v))
               for v in layer.__dict__.values())


def _fresh_layer(cls, kwargs: dict, factory: bool, name: str, where: str, key: tuple | None = None):
    """:func:`_construct`, at the cost of a copy when a layer of these exact hyper-parameters was built before
    (running a layer's constructor on ``meta`` costs ~0.2 ms). The key is the hyper-parameters' ``repr`` so that
    values equal in Python but not to torch (``True``, ``1``, ``1.0``; ``0.0``, ``-0.0``) never share a
    prototype: ``(name, repr of the sorted items)``, or ``key`` when the caller has one (:func:`_checked_hyper`'s,
    the ``repr`` of the plain tuple they came from)."""
    key = (name, repr(sorted(kwargs.items()))) if key is None else key
    entry = _PROTOTYPES.get(key)
    if entry is None:
        layer = _construct(cls, kwargs, factory, name, where)
        if not _copyable(layer):
            return layer
        if len(_PROTOTYPES) >= MAX_PROTOTYPES:
            del _PROTOTYPES[next(iter(_PROTOTYPES))]     # the oldest
        _PROTOTYPES[key] = entry = (layer, _containers(layer))
    return _fresh_copy(*entry)


def layer_with(name: str, hyper: dict, tensors: dict) -> nn.Module:
    """A new ``nn.<name>(**hyper)`` in eval mode whose parameters and buffers are exactly ``tensors`` (name ->
    tensor; a parameter or buffer the layer has as ``None`` stays ``None``). The grader builds thousands of case
    layers: this copies a cached prototype (:func:`_fresh_layer`) instead of running the constructor and its
    random initialisation each time. ``KeyError`` when a tensor the layer needs is not given."""
    nn = _torch().nn
    _, factory = LAYERS[name]
    module = _fresh_layer(getattr(nn, name), hyper, factory, name, "")
    for k, v in module._parameters.items():
        if v is not None:
            module._parameters[k] = nn.Parameter(tensors[k], requires_grad=tensors[k].is_floating_point())
    for k, v in module._buffers.items():
        if v is not None:
            module._buffers[k] = tensors[k]
    module.training = False
    return module


def _in_order(given: Any, table: dict) -> bool:
    """Whether ``given`` names exactly ``table``'s slots, in its order, each ``None`` where the layer has none:
    what every encoder sends (:func:`_load_tensors` then needs no further check of the names)."""
    if type(given) is not tuple or len(given) != len(table):
        return False
    for pair, (k, v) in zip(given, table.items()):
        if type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not str or pair[0] != k or \
                (pair[1] is None) != (v is None):
            return False
    return True


def _load_slots(parameters: bool, table: dict, given: Any, name: str, where: str, device: str,
                budget: list) -> None:
    """Fill ``table``'s slots from ``(name, array or None)`` pairs whose names are checked already (a ``None``
    array leaves its slot alone)."""
    nn = _torch().nn
    for k, arr in given:
        if arr is not None:
            tensor = _tensor(arr, table[k], (name, k, where), device, budget)
            table[k] = nn.Parameter(tensor, requires_grad=tensor.is_floating_point()) if parameters else tensor


def _load_tensors(kind: str, table: dict, given: Any, name: str, where: str, device: str, budget: list) -> None:
    """Fill a freshly built layer's parameters or buffers (``table``) from the plain data ``given``."""
    if _in_order(given, table):
        _load_slots(kind == "parameter", table, given, name, where, device, budget)
        return
    got = dict(_pairs(given, f"{kind}s of {name}{where}"))
    need = {k for k, v in table.items() if v is not None}
    have = {k for k, v in got.items() if v is not None}
    if need != have:
        raise ValueError(f"{name}{where} has {kind}s {sorted(have)}, but a {name} with these hyper-parameters "
                         f"has {sorted(need)}")
    if not set(got) <= set(table):
        raise ValueError(f"{name}{where} has unexpected {kind}s {sorted(set(got) - set(table))}")
    _load_slots(kind == "parameter", table, [(k, got[k]) for k in need], name, where, device, budget)


#: (layer type, ``repr`` of its hyper-parameters) that :func:`_checked_hyper` has accepted: an answer's layers repeat
#: (06: ~3,000 per notebook, of a few hundred kinds), and their checks were a fifth of decoding one
_CHECKED_HYPER: set = set()
MAX_CHECKED_HYPER = 4096


def _checked_hyper(name: str, hyper: Any, hyper_names: tuple, where: str) -> tuple[dict, tuple | None]:
    """``(kwargs, key)``: the hyper-parameters of a ``name`` layer (untrusted plain data) as a dict, exactly
    ``hyper_names``, each a plain value in range; ``key``, ``(name, repr of the plain tuple)`` (None when it is not
    one), for :func:`_fresh_layer` too. The same plain tuple is checked once (by its ``repr``, in which ``True``,
    ``1`` and ``1.0`` differ, as they do to the checks)."""
    key = (name, repr(hyper)) if type(hyper) is tuple and len(hyper) <= len(hyper_names) else None
    if key is not None and key in _CHECKED_HYPER:
        return dict(hyper), key
    kwargs = dict(_pairs(hyper, f"hyper-parameters of {name}{where}"))
    if set(kwargs) != set(hyper_names):
        raise ValueError(f"{name}{where} needs exactly the hyper-parameters {', '.join(hyper_names)}")
    for k, v in kwargs.items():
        _check_hyper_value(v, f"{name}.{k}{where}")
    if key is not None:
        if len(_CHECKED_HYPER) >= MAX_CHECKED_HYPER:
            _CHECKED_HYPER.clear()
        _CHECKED_HYPER.add(key)
    return kwargs, key


def _decode_tree(tree: Any, device: str, depth: int, count: list, budget: list, path: str) -> nn.Module:
    count[0] += 1
    _expect(count[0] <= MAX_MODULES, f"the model has more than {MAX_MODULES} layers")
    _expect(depth <= MAX_DEPTH, f"the model is nested more than {MAX_DEPTH} levels deep")
    _expect(type(tree) is tuple and len(tree) == 8 and tree[0] == "module", "malformed module encoding")
    _, name, hyper, params, buffers, _device, training, children = tree
    where = f" (at {path})" if path else ""
    _expect(type(name) is str, "malformed layer type")
    if name not in LAYERS:
        raise ValueError(f"layer type {name[:80]!r}{where} is not allowed; the model may only contain: "
                         f"{allowed_layers()}")
    hyper_names, factory = LAYERS[name]
    kwargs, key = _checked_hyper(name, hyper, hyper_names, where)
    if type(training) is not bool:
        raise ValueError(f"malformed training flag{where}")
    if not (_device is None or _device in DEVICE_KINDS):
        raise ValueError(f"malformed device{where}")
    module = _fresh_layer(getattr(_torch().nn, name), kwargs, factory, name, where, key)
    _load_tensors("parameter", module._parameters, params, name, where, device, budget)
    _load_tensors("buffer", module._buffers, buffers, name, where, device, budget)
    if type(children) is not tuple or children:
        _decode_children(module, name, children, device, depth, count, budget, path)
    module.training = training
    return module


def _decode_children(module: nn.Module, name: str, children: Any, device: str, depth: int, count: list,
                     budget: list, path: str) -> None:
    """Decode the sub-modules of ``module`` (only a ``Sequential`` has any) into it."""
    where = f" (at {path})" if path else ""
    pairs = _pairs(children, f"children of {name}{where}")
    _expect(name == "Sequential" or not pairs, f"a {name}{where} cannot have sub-modules")
    for k, child in pairs:
        _expect(k.isidentifier() or k.isdigit(), f"invalid layer name {k[:40]!r}{where}")
        module.add_module(k, _decode_tree(child, device, depth + 1, count, budget, f"{path}.{k}" if path else k))


def decode_module(plain: Any, device: str = "cpu", arguments: bool = True) -> nn.Module:
    """Rebuild a model from :func:`encode_module`'s plain data on ``device`` (allowed layers only).

    With ``arguments`` (the default), a model that the grader marked as a call argument is registered as one (see
    the module docstring): the sandbox decodes call arguments this way. The trusted side decodes answers with
    ``arguments=False``.
    """
    _expect(isinstance(plain, tuple) and len(plain) == 3 and plain[0] == FORMAT,
            "not an encoded model (expected the output of module_codec.encode_module)")
    module = _decode_tree(plain[1], str(device), 0, [0], [0], "")
    tag = plain[2]
    if tag is not None and arguments:
        _expect(isinstance(tag, tuple) and len(tag) == 3 and isinstance(tag[0], str) and isinstance(tag[1], str),
                "malformed argument tag")
        _received_argument(module, tag[0], tag[1], tuple(_pairs(tag[2], "argument tag")))
    return module


def _received_argument(module: nn.Module, name: str, token: str, meta: tuple, device: str | None = None) -> None:
    """Tag ``module``, rebuilt where the student's code runs, as call argument ``name`` and register it (on
    ``device`` when the caller knows it; else :func:`_register` finds it)."""
    module.__dict__[TAG_ATTR] = ArgumentTag(name, token, "argument", meta)
    _register(token, name, module, device)


def rebuild_argument(plain: Any, device: str = "cpu") -> nn.Module:
    """The sandbox's :func:`decode_module` of a call argument: the grader's own :func:`encode_module` of a template,
    rebuilt without the checks an answer gets (they were a third of the sandbox's time per call of 06) and
    registered as an argument. Whatever the grader did not make, and anything the shortcut cannot rebuild, goes
    through :func:`decode_module`, checks and all: the result is the same model either way (tested)."""
    try:
        module = _rebuilt(plain[1], str(device))
        tag = plain[2]
        meta = tuple(tag[2]) if tag is not None else ()
    except Exception:  # noqa: BLE001 - not the grader's encoding: the checked path says what is wrong
        return decode_module(plain, device)
    if tag is not None:
        _received_argument(module, tag[0], tag[1], meta)
    return module


def rebuild_message(tree: Any, array: Callable[[Any], np.ndarray], decode: Callable[[Any], Any]) -> nn.Module:
    """:func:`rebuild_argument` of a call argument as its message carries it (the sandbox's ``$module``:
    ``protocol.MessageTree``): JSON arrays where the encoding has tuples, ``{"$npy": i}`` where it has arrays
    (``array(i)`` decodes one). The layers are rebuilt from that directly, without first decoding the whole tree
    (~60 us of ~350 per argument of 06's ``fuse_sequential``); anything else goes through ``decode`` and
    :func:`rebuild_argument`: the same model either way (tested)."""
    try:
        if tree[0] != FORMAT:
            raise ValueError("not a module")
        module = _rebuilt(tree[1], "cpu", lambda ref: array(ref["$npy"]), fresh=True)
        tag = decode(tree[2])
        meta = tuple(tag[2]) if tag is not None else ()
    except Exception:  # noqa: BLE001 - the grader's encoding always rebuilds: anything else is checked
        return rebuild_argument(decode(tree))
    if tag is not None:
        _received_argument(module, tag[0], tag[1], meta, "cpu" if _holds_tensors(tree[1]) else None)
    return module


def _holds_tensors(tree: Any) -> bool:
    """Whether a layer tree the grader encoded gives any parameter or buffer (its device is then the one it was
    rebuilt on: no walk of the rebuilt model needed)."""
    return bool(tree[3] or tree[4]) or any(_holds_tensors(child) for _, child in tree[7])


def _plain_array(value: Any) -> np.ndarray:
    return value


def _rebuilt(tree: Any, device: str, array: Callable[[Any], np.ndarray] = _plain_array,
             fresh: bool = False) -> nn.Module:
    """:func:`_decode_tree` of a tree the grader encoded (every tensor the layer needs, of the right shape), its
    tuples possibly JSON lists (made tuples again) and its arrays whatever ``array`` turns into one (``fresh``:
    arrays no one else holds, writable and C-contiguous, which the tensors may then keep without a copy)."""
    torch = _torch()
    _, name, hyper, params, buffers, _device, training, children = tree
    _, factory = LAYERS[name]
    kwargs = {k: tuple(v) if type(v) is list else v for k, v in hyper}
    module = _fresh_layer(getattr(torch.nn, name), kwargs, factory, name, "")
    for table, given, parameter in ((module._parameters, params, True), (module._buffers, buffers, False)):
        for k, ref in given:
            if table[k] is None:
                continue
            tensor = _rebuilt_tensor(array(ref), device, fresh)
            table[k] = torch.nn.Parameter(tensor, requires_grad=tensor.is_floating_point()) if parameter else tensor
    for k, child in children:
        module.add_module(k, _rebuilt(child, device, array, fresh))
    if type(training) is not bool:
        raise ValueError("malformed training flag")
    module.training = training
    return module


def _rebuilt_tensor(arr: np.ndarray, device: str, fresh: bool) -> torch.Tensor:
    """A tensor of its own on ``device`` holding ``arr`` (integers as int64); ``fresh`` (see :func:`_rebuilt`): a
    writable C-contiguous array is kept as the tensor's memory instead of copied."""
    arr = arr if arr.dtype.kind == "f" else arr.astype(np.int64)
    kept = fresh and arr.flags.c_contiguous and arr.flags.writeable
    tensor = _torch().from_numpy(arr if kept else np.array(arr, copy=True, order="C"))
    return tensor if device == "cpu" else tensor.to(device)


def _pair(value: Any) -> tuple[int, int]:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)  # type: ignore[return-value]


def _conv_out(n: int, k: int, s: int, p: int, d: int, ceil: bool = False) -> int:
    span = n + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= n + p:
        out -= 1
    return out


def _spatial(module, h: int, w: int) -> tuple[int, int]:
    """The output height and width of a conv or pooling layer on an ``h x w`` input (PyTorch's formulas)."""
    nn = _torch().nn
    k, s = _pair(module.kernel_size), _pair(module.stride or module.kernel_size)
    d = _pair(getattr(module, "dilation", 1))
    if isinstance(module, nn.ConvTranspose2d):
        p, op = _pair(module.padding), _pair(module.output_padding)
        return tuple((n - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 for i, n in enumerate((h, w)))
    padding = module.padding
    if padding == "same":
        return h, w
    p = (0, 0) if padding == "valid" else _pair(padding)
    ceil = bool(getattr(module, "ceil_mode", False))
    return tuple(_conv_out(n, k[i], s[i], p[i], d[i], ceil) for i, n in enumerate((h, w)))


def _layer_shape(module, shape: tuple) -> tuple[tuple, int]:
    """``(output shape, multiply-adds)`` of one allowed layer on an input of ``shape`` (shapes only)."""
    nn = _torch().nn
    size = math.prod(shape)
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        h, w = _spatial(module, shape[-2], shape[-1])
        out = (*shape[:-3], module.out_channels, h, w)
        per_out = module.in_channels // module.groups * math.prod(_pair(module.kernel_size))
        return out, math.prod(out) * per_out + size
    if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        h, w = _spatial(module, shape[-2], shape[-1])
        out = (*shape[:-2], h, w)
        return out, math.prod(out) * math.prod(_pair(module.kernel_size)) + size
    if isinstance(module, nn.AdaptiveAvgPool2d):
        oh, ow = _pair(module.output_size)
        return (*shape[:-2], oh or shape[-2], ow or shape[-1]), size
    if isinstance(module, nn.Linear):
        return (*shape[:-1], module.out_features), size // max(1, shape[-1]) * module.out_features * module.in_features
    if isinstance(module, nn.Flatten):
        dims = list(shape)
        start, end = module.start_dim % len(dims), module.end_dim % len(dims)
        return (*dims[:start], math.prod(dims[start:end + 1]), *dims[end + 1:]), size
    return shape, size


def forward_cost(model: nn.Module, shape: tuple) -> tuple[int, int]:
    """``(largest layer output in elements, multiply-adds)`` of running a model of allowed layers
    (:data:`LAYERS`) on an input of ``shape``, from PyTorch's shape formulas: nothing is allocated or computed,
    whatever the model's padding or sizes. A shape the real model would reject may be over- or under-estimated;
    running it then raises, cheaply."""
    largest, flops = 0, 0
    layers = list(model.children()) if type(model) is _torch().nn.Sequential else [model]
    for layer in layers:
        if type(layer) is _torch().nn.Sequential:
            inner_largest, inner_flops = forward_cost(layer, shape)
            largest, flops = max(largest, inner_largest), flops + inner_flops
            continue
        if len(shape) < 2 or min(shape) < 0:
            break
        shape, cost = _layer_shape(layer, tuple(int(n) for n in shape))
        largest, flops = max(largest, math.prod(shape) if min(shape) >= 0 else 0), flops + cost
    return largest, flops


def check_forward_cost(model: nn.Module, example: torch.Tensor) -> None:
    """``ValueError`` (saying why) when running ``model`` on ``example`` would exceed :data:`MAX_ACTIVATION` or
    :data:`MAX_FLOPS`: a student's model is bounded before the trusted side runs it."""
    largest, flops = forward_cost(model, tuple(example.shape))
    _expect(largest <= MAX_ACTIVATION, f"running the model would produce a layer output of {largest:,} numbers "
                                       f"(at most {MAX_ACTIVATION:,} are allowed; check the padding and sizes)")
    _expect(flops <= MAX_FLOPS, f"running the model would take {flops:,} multiply-adds (at most {MAX_FLOPS:,} "
                                "are allowed; check the kernel sizes and padding)")


def plain_device(plain: Any) -> str:
    """The device type of every tensor in an encoded model: ``"cpu"``, ``"cuda"``, ``"mixed"`` or ``"none"``."""
    kinds: set = set()

    def walk(tree):
        if tree[5] is not None:
            kinds.add(tree[5])
        for _, child in tree[7]:
            walk(child)

    walk(plain[1])
    return next(iter(kinds)) if len(kinds) == 1 else ("mixed" if kinds else "none")


# ---------------------------------------------------------------------------------------------------------------
# call arguments: identity and mutation
# ---------------------------------------------------------------------------------------------------------------

TAG_ATTR = "_convlab_argument"


class ArgumentTag:
    """Marks a module built by the grader as a call argument (see the module docstring).

    ``state``: ``"template"`` (in the grader's case), ``"argument"`` (what the student's function receives) or
    ``"copy"`` (any further copy). ``meta``: plain ``(key, value)`` pairs for the exercise (e.g. an input shape).
    """

    __slots__ = ("name", "token", "state", "meta", "owner", "encoded", "digest", "__weakref__")

    def __init__(self, name: str, token: str, state: str, meta: tuple = (), owner: nn.Module | None = None):
        self.name, self.token, self.state, self.meta, self.owner = name, token, state, tuple(meta), owner
        self.encoded: tuple | None = None   # a template's (tensor versions, encoded tree): see template_tree
        self.digest: tuple | None = None    # a template's (tensor versions, fingerprint): template_fingerprint

    def __deepcopy__(self, memo):
        if self.state == "template":
            copied = memo.get(id(self.owner)) if self.owner is not None else None
            if copied is not None:  # the module being copied: register it, with the template's fingerprint
                _register(self.token, self.name, copied, _module_device(self.owner))
            return ArgumentTag(self.name, self.token, "argument", self.meta)
        return ArgumentTag(self.name, self.token, "copy", self.meta)

    def __copy__(self):
        return ArgumentTag(self.name, self.token, "copy", self.meta)

    def __repr__(self) -> str:
        return f"ArgumentTag({self.name!r}, {self.state})"


def _tensor_versions(module: nn.Module) -> tuple:
    """Identity and in-place version counter of every parameter and buffer of ``module`` and its children:
    ``(ids, versions)``."""
    return tensor_versions(tensors_of(module))


def tensor_versions(tensors: list) -> tuple:
    """``(ids, in-place version counters)`` of ``tensors``: equal again only if none was replaced or changed in
    place."""
    return tuple(map(id, tensors)), tuple([t._version for t in tensors])


def template_tree(module: nn.Module) -> tuple:
    """``_encode_tree`` of a grader's template (a case's module argument, sent to the sandbox): encoded once, again
    only when one of its tensors was replaced or changed in place (:func:`_cached_for_template`)."""
    return _cached_for_template(module, "encoded", lambda m: _encode_tree(m, "", 0, [0]))


def template_fingerprint(module: nn.Module) -> str:
    """:func:`fingerprint` of a grader's template (compared with the states sent back), cached like
    :func:`template_tree` (its hyper-parameters are the grader's: never changed)."""
    return _cached_for_template(module, "digest", fingerprint)


def _cached_for_template(module: nn.Module, slot: str, compute: Callable[[nn.Module], Any]) -> Any:
    """``compute(module)``, kept in the template's tag (``slot``: ``(tensor versions, value)``) and computed again
    only when one of its tensors was replaced or changed in place."""
    tag = module.__dict__.get(TAG_ATTR)
    versions = _tensor_versions(module)
    cached = getattr(tag, slot) if isinstance(tag, ArgumentTag) else None
    if cached is not None and cached[0] == versions:
        return cached[1]
    value = compute(module)
    if isinstance(tag, ArgumentTag) and tag.state == "template":
        setattr(tag, slot, (versions, value))
    return value


def mark_argument(module: nn.Module, name: str, token: str, meta: tuple = ()) -> nn.Module:
    """Mark ``module`` (built by the grader) as the template of call argument ``name``; returns it."""
    module.__dict__[TAG_ATTR] = ArgumentTag(name, token, "template", meta, owner=module)
    return module


def argument_meta(module: nn.Module) -> dict:
    """The ``meta`` given to :func:`mark_argument` (kept by every copy of the argument)."""
    tag = module.__dict__.get(TAG_ATTR)
    return dict(tag.meta) if isinstance(tag, ArgumentTag) else {}


#: live call arguments: (name, token, weakref to the module, device type when handed over)
_ARGUMENTS: list = []


def tensors_of(module: nn.Module) -> list:
    """Every parameter and buffer (``None`` slots left out) of ``module`` and of the modules under it, each module
    once, in a fixed order: what ``parameters()`` and ``buffers()`` list (a tensor that two layers share is listed
    for each), gathered ~3x faster (a walk of the ``_modules`` tables with loops, no generators)."""
    seen: set = set()
    stack, tensors = [module], []
    append = tensors.append
    while stack:
        m = stack.pop()
        if id(m) in seen:
            continue
        seen.add(id(m))
        for t in m._parameters.values():    # loops, not generators: this walk runs ~1,000 times per notebook
            if t is not None:
                append(t)
        for t in m._buffers.values():
            if t is not None:
                append(t)
        if m._modules:
            stack.extend([child for child in reversed(m._modules.values()) if child is not None])
    return tensors


def _module_device(module: nn.Module) -> str | None:
    return _device_of(tensors_of(module))


def _register(token: str, name: str, module: nn.Module, device: str | None = None) -> None:
    _ARGUMENTS[:] = [entry for entry in _ARGUMENTS if entry[2]() is not None]
    device = _module_device(module) if device is None else device
    _ARGUMENTS.append((name, token, weakref.ref(module), device))


def rebuilt_aside(build: Callable[[], Any]) -> tuple[Any, list]:
    """``(build(), registrations)``: the call arguments ``build`` rebuilds are not registered as live
    (:func:`argument_states` does not see them) until :func:`hand_over` gets their ``registrations``, when they are
    given to the student's function. A zygote's arguments, rebuilt before any notebook exists
    (``isolation/worker.py``), wait like this."""
    saved = _ARGUMENTS[:]
    _ARGUMENTS.clear()
    try:
        return build(), _ARGUMENTS[:]
    finally:
        _ARGUMENTS[:] = saved


def hand_over(registrations: list) -> None:
    """Register arguments that :func:`rebuilt_aside` rebuilt, now that they are handed to the student's function:
    the same registry as if they had been rebuilt now."""
    _ARGUMENTS[:] = [entry for entry in _ARGUMENTS if entry[2]() is not None] + list(registrations)


_HEADERS: dict = {}


def _header(dtype: Any, shape: Any) -> bytes:
    """A tensor's dtype and shape as a fingerprint writes them, kept (a fingerprint writes one for every tensor, and
    a dtype's ``str`` is slow)."""
    key = (dtype, shape)
    text = _HEADERS.get(key)
    if text is None:
        if len(_HEADERS) >= 4096:
            _HEADERS.clear()
        text = _HEADERS[key] = f"{dtype}{tuple(shape)}".encode()
    return text


def _hash_tensor(h: Any, t: Any) -> None:
    """Feed a parameter or buffer slot to the digest ``h``: ``None``, a non-tensor's ``repr``, or the tensor's
    dtype, shape and bytes (of a ``meta`` tensor: its dtype and shape)."""
    torch = _torch()
    if t is None:
        h.update(b"None")
        return
    if not isinstance(t, torch.Tensor):
        h.update(repr(t).encode())
        return
    h.update(_header(t.dtype, t.shape))
    if t.is_meta:
        h.update(b"meta")
        return
    t = t.detach()
    try:    # a contiguous tensor in memory: its bytes as they are (a dtype NumPy lacks raises)
        data = t.numpy() if t.is_cpu and t.is_contiguous() else None
    except (TypeError, RuntimeError):
        data = None
    h.update(t.to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy() if data is None else data)


#: ``module.qualname`` of each layer class met (a fingerprint writes it for every layer)
_KINDS: dict = {}


def fingerprint(module: nn.Module) -> str:
    """A digest of a model's structure, hyper-parameters, parameters and buffers (not its training flag or
    device): it changes when anything that matters for inference is modified."""
    h = hashlib.sha256()
    for name, m in module.named_modules(remove_duplicate=False):
        try:
            extra = m.extra_repr()
        except Exception:  # noqa: BLE001 - a broken layer still gets a fingerprint
            extra = "?"
        cls = type(m)
        kind = _KINDS.get(cls) or _KINDS.setdefault(cls, f"{cls.__module__}.{cls.__qualname__}")
        h.update(f"<{name}|{kind}|{extra}>".encode())
        for table in (m._parameters, m._buffers):
            for k, v in table.items():
                h.update(k.encode())
                _hash_tensor(h, v)
    return h.hexdigest()


def argument_states() -> tuple:
    """``((name, token, device when handed over, fingerprint now or None), ...)`` for the live call arguments, the
    most recent :data:`MAX_REPORTED_ARGUMENTS` (``None``: the argument can no longer be fingerprinted)."""
    _ARGUMENTS[:] = [entry for entry in _ARGUMENTS if entry[2]() is not None]
    states = []
    for name, token, ref, device in _ARGUMENTS[-MAX_REPORTED_ARGUMENTS:]:
        module = ref()
        try:
            digest = fingerprint(module) if module is not None else None
        except Exception:  # noqa: BLE001 - a model broken beyond reading: reported as not comparable
            digest = None
        states.append((name, token, device, digest))
    return tuple(states)


def encode_answer(answer: Any) -> tuple:
    """The ``encode`` of exercises that return a model: ``(ANSWER, encode_module(answer), argument_states())``."""
    if not isinstance(answer, _torch().nn.Module):
        raise TypeError(f"expected an nn.Module, got {type(answer).__module__}.{type(answer).__qualname__}")
    return (ANSWER, encode_module(answer), argument_states())


def _same_tensors(a: Any, b: Any) -> bool:
    if not (isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b)):
        return False
    for (ka, va), (kb, vb) in zip(a, b):
        if ka != kb or (va is None) != (vb is None):
            return False
        if va is not None and not (isinstance(vb, np.ndarray) and va.dtype == vb.dtype and va.shape == vb.shape
                                   and np.array_equal(va, vb)):
            return False
    return True


def same_state(sent: tuple, back: Any, depth: int = 0) -> bool:
    """Whether ``back`` (untrusted plain data) encodes the same model as ``sent`` (an ``_encode_tree`` the trusted
    side made): layer types, hyper-parameters, parameters, buffers and children; not the device or training flag."""
    if depth > MAX_DEPTH or not (isinstance(back, tuple) and len(back) == 8 and back[0] == "module"):
        return False
    if sent[1] != back[1] or sent[2] != back[2]:
        return False
    if not (_same_tensors(sent[3], back[3]) and _same_tensors(sent[4], back[4])):
        return False
    kids, back_kids = sent[7], back[7]
    if not isinstance(back_kids, tuple) or len(kids) != len(back_kids):
        return False
    return all(isinstance(bk, tuple) and len(bk) == 2 and k == bk[0] and same_state(v, bk[1], depth + 1)
               for (k, v), bk in zip(kids, back_kids))


def _templates(call: Any) -> list:
    """``(name, token, module)`` of the module arguments of ``call`` that the grader marked as templates."""
    values = list(getattr(call, "args", ())) + list(getattr(call, "kwargs", {}).values())
    out = []
    for value in values:
        tag = value.__dict__.get(TAG_ATTR) if isinstance(value, _torch().nn.Module) else None
        if isinstance(tag, ArgumentTag) and tag.state == "template":
            out.append((tag.name, tag.token, value))
    return out


def fingerprint_templates(call: Any) -> None:
    """Compute (and keep: :func:`template_fingerprint`) the fingerprint of each module argument of ``call`` that
    the grader marked as a template, ahead of the answers compared with them."""
    for _name, _token, template in _templates(call):
        template_fingerprint(template)


def argument_verdicts(states: Any, call: Any) -> list[tuple[str, str, str | None]]:
    """Trusted side: for each module argument of ``call`` that the grader marked as a template, in call order,
    ``(name, problem, device)`` from the argument states sent back with an answer: ``problem`` is ``""`` when the
    argument came back unchanged, ``device`` where it was when handed over (``None`` when not reported)."""
    reported = {}
    for entry in states if isinstance(states, tuple) else ():
        if isinstance(entry, tuple) and len(entry) == 4 and isinstance(entry[0], str) and isinstance(entry[1], str):
            reported[(entry[0], entry[1])] = entry
    verdicts = []
    for name, token, template in _templates(call):
        entry = reported.get((name, token))
        if entry is None:
            verdicts.append((name, f"the input `{name}` was not sent back for checking", None))
            continue
        unchanged = isinstance(entry[3], str) and entry[3] == template_fingerprint(template)
        verdicts.append((name, "" if unchanged else f"modified the input `{name}` in place",
                         entry[2] if entry[2] in DEVICE_KINDS else None))
    return verdicts


def judged(verdicts: list[tuple[str, str, str | None]]) -> tuple[str, str | None]:
    """``(problems, argument device)`` of :func:`argument_verdicts`: ``problems`` is ``""`` when every argument
    came back unchanged; the device when all the reported ones agree."""
    devices = {device for _, _, device in verdicts if device is not None}
    return "; ".join(p for _, p, _ in verdicts if p), (next(iter(devices)) if len(devices) == 1 else None)


def unchanged(verdicts: list[tuple[str, str, str | None]]) -> tuple[bool, ...]:
    """For each verdict of :func:`argument_verdicts`, whether that argument came back unchanged."""
    return tuple(not problem for _, problem, _ in verdicts)


def judge_arguments(states: Any, call: Any) -> tuple[str, str | None]:
    """Trusted side: ``(problems, argument device)`` from the argument states sent back with an answer, compared
    with the call's templates (:func:`argument_verdicts`, :func:`judged`)."""
    return judged(argument_verdicts(states, call))


def decode_judged(plain: Any, device: str = "cpu", call: Any = None) -> tuple[nn.Module, str, list]:
    """Trusted side: ``(model, model_device, argument verdicts)`` from :func:`encode_answer`'s data: ``model``
    rebuilt on ``device``, ``model_device`` where the student's model lived, and :func:`argument_verdicts`
    against ``call``'s module arguments."""
    _expect(isinstance(plain, tuple) and len(plain) == 3 and plain[0] == ANSWER,
            "not an encoded answer (expected the output of module_codec.encode_answer)")
    _, encoded, states = plain
    _expect(isinstance(states, tuple) and len(states) <= MAX_REPORTED_ARGUMENTS, "malformed argument states")
    model = decode_module(encoded, device, arguments=False)
    return model, plain_device(encoded), argument_verdicts(states, call)


def decode_answer(plain: Any, device: str = "cpu", call: Any = None) -> tuple[nn.Module, str, str, str | None]:
    """Trusted side: ``(model, model_device, problems, argument device)``: :func:`decode_judged`, its verdicts
    :func:`judged`."""
    model, model_device, verdicts = decode_judged(plain, device, call)
    return (model, model_device, *judged(verdicts))


# ---------------------------------------------------------------------------------------------------------------
# tensors as call arguments, and answers that are {name: tensor} dicts (06's feature_maps)
# ---------------------------------------------------------------------------------------------------------------

FEATURE_MAPS = "convlab-feature-maps/1"


def decode_tensor(arr: Any) -> torch.Tensor:
    """A call argument that the grader built as a tensor (it travels as an array): a tensor again, on the CPU."""
    _expect(isinstance(arr, np.ndarray) and arr.dtype in _FLOAT_DTYPES, "a tensor argument must be a float array")
    return _torch().from_numpy(np.array(arr, copy=True, order="C"))


def _hooks_left() -> str:
    """Forward hooks still registered on a live call argument (or globally on every module), in words."""
    nn = _torch().nn
    places = []
    if nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks:
        places.append("global module hooks")
    for name, _token, ref, _device in list(_ARGUMENTS):
        arg = ref()
        if arg is not None and any(m._forward_hooks or m._forward_pre_hooks for m in arg.modules()):
            places.append(f"`{name}`")
    if not places:
        return ""
    return (f"forward hooks left on {', '.join(dict.fromkeys(places))}: remove every hook after the forward pass "
            "(keep the handles that register_forward_hook returns and call handle.remove(), in a finally block)")


def encode_feature_maps(answer: Any) -> tuple:
    """The ``encode`` of ``feature_maps``: ``(FEATURE_MAPS, names, outputs, argument_states())`` for a
    ``{name: tensor}`` mapping, in its order. Hooks left behind are seen only here, where the student's code runs:
    they become a warning (feedback), never points; the model's state is judged by the trusted side
    (:func:`judge_arguments`)."""
    if not isinstance(answer, dict):
        raise TypeError(f"expected a dict {{name: output}}, got {type(answer).__module__}.{type(answer).__qualname__}")
    names = tuple(answer.keys())
    if not all(type(n) is str for n in names):
        raise TypeError("the keys must be the module names (str) of model.named_modules()")
    hooks = _hooks_left()
    if hooks:
        warnings.warn(hooks, UserWarning, stacklevel=2)
    return (FEATURE_MAPS, names, tuple(answer.values()), argument_states())

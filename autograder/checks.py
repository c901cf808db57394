"""A catalogue of named checks for the authors of views and parts (in the spirit of PrairieLearn's named checks).

A check reduces one property of an answer to plain data (a type name, a device kind, a bool, a tuple of ints),
which the one comparison engine (:mod:`autograder.compare`) compares with what the oracle's view gives for the same
property. A grade therefore depends on data only, never on how feedback is worded. The words come from the
engine's reason (``"conv unchanged: expected True, got False"``) and from a misconception that explains the mistake:
:func:`property_mistake` builds one from the oracle's view with one property set wrong, so rewording the explanation
never changes a score.

Everything here runs in the trusted grader, on modules rebuilt from plain data (:mod:`autograder.module_codec`).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from . import module_codec
from .spec import Call, Misconception

#: the settings of an ``nn.Conv2d`` that a fused convolution must keep, in :func:`conv_settings` order
CONV_SETTINGS = ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "groups",
                 "padding_mode")


def type_name(obj: Any) -> str:
    """The class name of ``obj`` (``"Conv2d"``): compared exactly, so a subclass or a wrapper is told apart."""
    return type(obj).__name__


def conv_settings(conv: Any) -> tuple:
    """The :data:`CONV_SETTINGS` of an ``nn.Conv2d`` as plain ints, int pairs and strings (``None`` each for any
    other module)."""
    if type_name(conv) != "Conv2d":
        return (None,) * len(CONV_SETTINGS)
    values = [getattr(conv, name) for name in CONV_SETTINGS]
    return tuple(v if isinstance(v, (int, str)) else tuple(int(i) for i in v) for v in values)


def layer_names(model: Any) -> str:
    """The types of a container's children in order, ``"Conv2d, ReLU, Flatten"`` (a canonical encoding of the
    list: the engine shows both lists in full when they differ); a module that is no ``Sequential`` is its own
    type name."""
    if type_name(model) != "Sequential":
        return type_name(model)
    return ", ".join(type_name(m) for m in model.children())


def device_kind(module: Any) -> str:
    """Where a module's parameters and buffers live: ``"cpu"``, ``"cuda"``, ``"mixed"`` or ``"none"``."""
    kinds = {t.device.type for t in list(module.parameters()) + list(module.buffers())}
    return next(iter(kinds)) if len(kinds) == 1 else ("mixed" if kinds else "none")


def module_arguments(call: Call) -> list[tuple[str, Any]]:
    """``(name, template)`` of each module argument of ``call`` that the grader can check after the answer
    (marked with ``module_codec.mark_argument``), in call order."""
    values = list(call.args) + list(call.kwargs.values())
    tags = [(getattr(v, "__dict__", {}).get(module_codec.TAG_ATTR), v) for v in values]
    return [(tag.name, v) for tag, v in tags
            if isinstance(tag, module_codec.ArgumentTag) and tag.state == "template"]


def arguments_unchanged(states: Any, call: Call) -> tuple[bool, ...]:
    """For each module argument of ``call``, whether the state the answer sent back equals the grader's template
    (``False`` also when it was not sent back): judged here, from plain data."""
    return module_codec.unchanged(module_codec.argument_verdicts(states, call))


def property_mistake(name: str, explanation: str, view: Callable[..., tuple], index: int, wrong: Any,
                     applies: Callable[..., bool] = lambda *args: True) -> Misconception:
    """A misconception that is the right answer but for one property: the oracle's ``view(*args)`` with element
    ``index`` set to ``wrong`` (e.g. ``False`` for "conv unchanged"). It names the mistake behind a failed
    property check; ``applies(*args)`` says where it can happen."""
    from .spec import not_applicable

    def compute(*args):
        if not applies(*args):
            not_applicable()
        right = list(view(*args))
        right[index] = wrong
        return tuple(right)

    return Misconception(name, explanation, compute)


def unchanged_mistakes(view: Callable[..., tuple], first: int, names: Sequence[str], advice: str) -> list:
    """One :func:`property_mistake` per argument in ``names`` whose "unchanged" flag (elements ``first``,
    ``first + 1``...) is ``False``: "modified the input `conv` in place", with ``advice``."""
    return [property_mistake(f"modified the input `{arg}` in place", advice, view, first + i, False)
            for i, arg in enumerate(names)]

"""Case parameters declared once.

An exercise lists its integer parameters as :class:`Param` (name, domain ``low..high``, how values are favoured);
drawing a random case, the shrinker's minima and the default description of a case are all derived from that one
list (:class:`ParamsDraw`, :func:`minimums`, :class:`ParamsText`). ``Exercise(params=...)`` does the wiring.

Drawing uses only the ``rng`` it is given, one parameter after the other in the declared order (a bound may
depend on the values drawn before it), so hidden cases stay exactly as unpredictable as the seed they come from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union

#: an inclusive bound: a number, or a function of the parameters drawn before (``lambda p: p["H"]``)
Bound = Union[int, Callable[[Mapping[str, int]], int]]


def _value(bound: Bound, drawn: Mapping[str, int]) -> int:
    return int(bound(drawn)) if callable(bound) else int(bound)


@dataclass(frozen=True)
class Param:
    """One integer parameter of a case.

    Attributes:
        name: the key in the parameter dict.
        low, high: the domain ``low..high`` (inclusive); ``high`` may depend on earlier parameters. ``low`` is
            also the shrinker's minimum.
        mostly: favoured values, drawn with probability ``chance`` (otherwise the rest of the domain): a tuple of
            values (repeat one to weigh it more), or a bound ``m`` meaning ``low..m``.
        chance: the probability of ``mostly`` (ignored without it).
        label: the name in the default description (``None``: the name itself; ``""``: not shown, e.g. the call
            form).
        shrink: whether the shrinker may lower it (``False`` for values that make a mistake visible, e.g. eps).
        smallest: the shrinker's minimum where it is below ``low`` (a stack of zero layers is valid, but never
            drawn).
    """

    name: str
    low: int
    high: Bound
    mostly: Union[Bound, tuple, None] = None
    chance: float = 1.0
    label: str | None = None
    shrink: bool = True
    smallest: int | None = None

    def draw(self, rng, drawn: Mapping[str, int]) -> int:
        """One value of the domain, from ``rng`` (favoured values first, as declared)."""
        high = max(self.low, _value(self.high, drawn))
        if self.mostly is None:
            return int(rng.integers(self.low, high + 1))
        if isinstance(self.mostly, tuple):
            rest = [v for v in range(self.low, high + 1) if v not in self.mostly]
            if not rest or rng.random() < self.chance:
                return int(_pick(rng, self.mostly))
            return int(_pick(rng, rest))
        top = min(high, _value(self.mostly, drawn))
        if top >= high or rng.random() < self.chance:
            return int(rng.integers(self.low, top + 1))
        return int(rng.integers(top + 1, high + 1))


def _pick(rng, values: Sequence[int]) -> int:
    """``rng.choice(values)``: the same value from the same stream (NumPy draws the index with ``integers``), without
    turning ``values`` into an array each time (a case draws thousands of them; tests/test_params.py)."""
    return values[int(rng.integers(0, len(values)))]


def flag(name: str, chance: float = 0.5, label: str | None = "") -> Param:
    """A 0/1 parameter that is 1 with probability ``chance`` (bias present, pairs instead of ints...); hidden from
    the default description unless given a ``label``."""
    return Param(name, 0, 1, mostly=(1,), chance=chance, label=label)


def choice(name: str, count: int, label: str | None = "") -> Param:
    """An index ``0..count-1`` into a table of the exercise (the call form, an eps value, a kind of kernel), drawn
    uniformly; hidden from the default description unless given a ``label``."""
    return Param(name, 0, count - 1, label=label)


#: how the optional arguments are passed, for :func:`autograder.shapes.call_form` (0, 1 or 2)
FORM = choice("form", 3)


@dataclass(frozen=True)
class ParamsDraw:
    """``rng -> params``: each parameter drawn in turn (an exercise's ``draw_params``)."""

    params: Sequence[Param]

    def __call__(self, rng) -> dict:
        drawn: dict[str, int] = {}
        for param in self.params:
            drawn[param.name] = param.draw(rng, drawn)
        return drawn


def minimums(params: Sequence[Param]) -> dict[str, int]:
    """The shrinker's minimum of each parameter it may lower."""
    return {p.name: p.low if p.smallest is None else p.smallest for p in params if p.shrink}


@dataclass(frozen=True)
class ParamsText:
    """``params -> str``: ``name=value`` for each shown parameter (an exercise's default ``describe``)."""

    params: Sequence[Param]

    def __call__(self, values: Mapping[str, Any]) -> str:
        shown = [(p.name if p.label is None else p.label, p.name) for p in self.params if p.label != ""]
        return ", ".join(f"{label}={values[name]}" for label, name in shown if name in values)

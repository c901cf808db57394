"""Scoring rules: how passed cases become points (one place for every path).

- An answer that raises on every case scores 0, even on cases where PyTorch rejects the arguments and raising is
  right: the release stub (``raise NotImplementedError()``) and any answer that only ever raises have shown
  nothing (:func:`correctness_points`).
- Partial credit is a course policy (:class:`CreditPolicy`): ``proportional`` (points in proportion to the cases
  passed, the default) or ``all-or-nothing`` (full points only when every case passes), for the whole course or
  per exercise (``--partial-credit all-or-nothing``, ``--partial-credit conv2d=all-or-nothing``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Sequence

PROPORTIONAL = "proportional"
ALL_OR_NOTHING = "all-or-nothing"
MODES = (PROPORTIONAL, ALL_OR_NOTHING)


def correctness_points(points: float, passed: int, total: int, raised_on_every_case: bool) -> float:
    """Points of the correctness part under the proportional rule (a policy may lower them afterwards)."""
    if total <= 0 or raised_on_every_case:
        return 0.0
    return round(points * passed / total, 4)


def raised_everywhere(outcomes: Iterable) -> bool:
    """Whether every call raised (``Outcome.raised``): such an answer has shown nothing, whatever was expected."""
    outcomes = list(outcomes)
    return bool(outcomes) and all(getattr(o, "raised", False) for o in outcomes)


@dataclass(frozen=True)
class CreditPolicy:
    """``default`` for every exercise, ``per_exercise`` overrides (exercise name -> mode)."""

    default: str = PROPORTIONAL
    per_exercise: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, specs: Sequence[str] | str | None) -> "CreditPolicy":
        """From ``["all-or-nothing"]``, ``["conv2d=all-or-nothing", ...]`` or a comma-separated string."""
        if isinstance(specs, str):
            specs = [s for s in specs.split(",") if s.strip()]
        default, per = PROPORTIONAL, {}
        for spec in specs or ():
            name, _, mode = spec.strip().rpartition("=")
            if mode not in MODES:
                raise ValueError(f"partial credit must be one of {', '.join(MODES)} (optionally EXERCISE=MODE), "
                                 f"not {spec!r}")
            if name:
                per[name] = mode
            else:
                default = mode
        return cls(default, per)

    def mode(self, exercise: str) -> str:
        return self.per_exercise.get(exercise, self.default)

    def as_specs(self) -> list[str]:
        """The policy as ``parse`` accepts it (plain data for worker processes and records)."""
        return [self.default] + [f"{k}={v}" for k, v in sorted(self.per_exercise.items())]


def apply_policy(result, policy: CreditPolicy):
    """``result`` (an :class:`~autograder.engine.ExerciseResult`) under ``policy``: all-or-nothing zeroes a
    correctness part that did not pass every case (its extra parts already need a fully correct answer)."""
    if policy.mode(result.exercise) != ALL_OR_NOTHING or not result.parts:
        return result
    first = result.parts[0]
    if first.total and first.passed < first.total and first.score > 0:
        note = (f"  Note: this exercise is graded all-or-nothing: {first.passed}/{first.total} cases passed, "
                f"so 0/{first.max_score:g} points")
        result.parts[0] = dataclasses.replace(first, score=0.0, output=f"{first.output}\n{note}")
    return result

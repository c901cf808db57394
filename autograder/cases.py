"""Seeded test cases: the visible set (public, fixed) and the hidden set (drawn from a secret seed).

The visible set of an exercise is the same for everyone and everywhere: its seed is derived from the exercise
name alone. The hidden set is drawn from a seed the grader holds (see :mod:`autograder.seeds`), so hidden
cases cannot be predicted from the release or from this package.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .spec import Call, Exercise


@dataclass(frozen=True)
class Case:
    """One test case: the parameters it was built from, the seed of its values, and the call itself."""

    params: dict
    value_seed: int
    call: Call
    simple: bool = False  # built with small integer values (shrunk cases, easy to read)


class Draw:
    """Array factory for one case. Float64 normal values, or small integers when ``simple`` (for readable
    smallest failing inputs). Every method returns a fresh C-contiguous float64 array."""

    def __init__(self, rng: np.random.Generator | int, simple: bool = False):
        self._rng = rng
        self.simple = simple

    @property
    def rng(self) -> np.random.Generator:
        """The case's generator, made on first use from its seed (a case built from its parameters alone, such
        as the size functions' thousands, never pays for one)."""
        if not isinstance(self._rng, np.random.Generator):
            self._rng = np.random.default_rng(self._rng)
        return self._rng

    def array(self, *shape: int) -> np.ndarray:
        if self.simple:
            return self.rng.integers(-3, 4, size=shape).astype(np.float64)
        return self.rng.standard_normal(shape)

    def positive(self, *shape: int, low: float = 0.5, high: float = 2.0) -> np.ndarray:
        if self.simple:
            return self.rng.integers(1, 4, size=shape).astype(np.float64)
        return self.rng.uniform(low, high, size=shape)

    def distinct(self, *shape: int) -> np.ndarray:
        """Values without ties (a shuffled grid, gaps of at least 0.25), for max-style exercises."""
        n = int(np.prod(shape, dtype=np.int64))
        values = self.rng.permutation(n).astype(np.float64) - n / 2
        if not self.simple:
            values = values * 0.5 + self.rng.uniform(-0.2, 0.2, size=n)
        return values.reshape(shape)

    def integers(self, low: int, high: int, *shape: int) -> np.ndarray:
        return self.rng.integers(low, high, size=shape)


def stable_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (stable across processes and Python versions)."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def build_case(ex: Exercise, params: dict, value_seed: int, simple: bool = False) -> Case:
    draw = Draw(value_seed, simple=simple)
    return Case(dict(params), value_seed, ex.build(params, draw), simple)


def _random_cases(ex: Exercise, seed: int, count: int) -> Iterator[Case]:
    rng = np.random.default_rng(seed)
    made, attempts = 0, 0
    while made < count:
        attempts += 1
        if attempts > 100 * count + 100:
            raise RuntimeError(f"{ex.name}: draw_params rarely yields valid params")
        params = ex.draw_params(rng)
        if not ex.valid(params):
            continue
        made += 1
        yield build_case(ex, params, int(rng.integers(2**62)))


def visible_cases(ex: Exercise) -> list[Case]:
    """The public self-check cases: the exercise's fixed adversarial cases, then random ones."""
    seed = stable_seed("visible", ex.assignment, ex.name)
    fixed = [build_case(ex, p, stable_seed(seed, i)) for i, p in enumerate(ex.fixed_params)]
    return fixed + list(_random_cases(ex, seed, ex.n_visible))


def hidden_cases(ex: Exercise, secret_seed: int, count: int | None = None) -> list[Case]:
    """Cases drawn from the grader's secret seed; disjoint from the visible set by construction of the seed
    (a collision of parameters is possible, of values practically not)."""
    seed = stable_seed("hidden", secret_seed, ex.assignment, ex.name)
    return list(_random_cases(ex, seed, ex.n_hidden if count is None else count))

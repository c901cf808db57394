"""The registry of graded exercises, one entry per function of the curriculum contract.

Exercise specs live in :mod:`autograder.exercises`, one module per assignment; each module registers its
exercises at import with :func:`register`. Nothing else needs to change to add an assignment.
"""
from __future__ import annotations

import importlib
import pkgutil

from .spec import Exercise

_REGISTRY: dict[str, Exercise] = {}
_loaded = False


def register(*exercises: Exercise) -> None:
    for ex in exercises:
        if ex.name in _REGISTRY and _REGISTRY[ex.name] is not ex:
            raise ValueError(f"exercise {ex.name!r} registered twice")
        _REGISTRY[ex.name] = ex


def _load() -> None:
    global _loaded
    if _loaded:
        return
    from . import exercises

    for info in sorted(pkgutil.iter_modules(exercises.__path__), key=lambda m: m.name):
        importlib.import_module(f"{exercises.__name__}.{info.name}")
    _loaded = True


def get(name: str) -> Exercise:
    _load()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no graded exercise named {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def all_exercises() -> list[Exercise]:
    _load()
    return list(_REGISTRY.values())


def assignments() -> dict[str, list[Exercise]]:
    """Assignment id -> its exercises, in registration (notebook) order."""
    out: dict[str, list[Exercise]] = {}
    for ex in all_exercises():
        out.setdefault(ex.assignment, []).append(ex)
    return dict(sorted(out.items()))

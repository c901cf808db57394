"""Blaming the right function: when an exercise's answer calls another exercise's answer (``sobel_magnitude``
calls ``corr2d``), a failure may be the helper's. The helper is checked on its own visible cases, and when it
fails, the report says so first: "the real cause is your `corr2d`".

:func:`helpers_called` follows a live function's global names (the notebook's kernel); :func:`helpers_in_source`
reads source text (the isolated grader, which sees cells, not functions). Both keep the order of first use.
"""
from __future__ import annotations

import ast
import types
from typing import Any, Callable, Iterable, Mapping

from .engine import ExerciseResult, PartResult


def _global_names(code: types.CodeType) -> list[str]:
    names = list(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names += _global_names(const)
    return names


def helpers_called(fn: Callable, candidates: Iterable[str]) -> dict[str, Callable]:
    """The candidate functions (by name) that ``fn`` calls directly or through other functions of its notebook."""
    wanted, found, seen = set(candidates), {}, set()

    def visit(f: Callable) -> None:
        code, namespace = getattr(f, "__code__", None), getattr(f, "__globals__", None)
        if code is None or namespace is None or id(f) in seen:
            return
        seen.add(id(f))
        for name in _global_names(code):
            obj = namespace.get(name)
            if not isinstance(obj, types.FunctionType) or obj.__module__ != f.__module__:
                continue
            if name in wanted and name not in found:
                found[name] = obj
            visit(obj)

    visit(fn)
    found.pop(getattr(fn, "__name__", None), None)
    return found


def helpers_in_source(source: str, candidates: Iterable[str]) -> list[str]:
    """The candidate names that ``source`` uses (loads), in order of first use."""
    wanted = set(candidates)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    names = [n for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    ordered = sorted(names, key=lambda n: (n.lineno, n.col_offset))
    return list(dict.fromkeys(n.id for n in ordered if n.id in wanted))


def failed(part: PartResult) -> bool:
    return part.passed < part.total or part.score < part.max_score


def blame_helper(result: ExerciseResult, helper: str, helper_part: PartResult) -> ExerciseResult:
    """``result`` with its first failing part led by the real cause: ``helper`` fails its own check."""
    first = next((p for p in result.parts if failed(p)), None)
    if first is None or f"`{helper}`" in first.output:
        return result
    summary = helper_part.output.splitlines()[0].lstrip("\u2718 ").strip()
    cause = (f"  Real cause: {result.exercise} calls your `{helper}`, which fails its own check ({summary}). "
             f"Fix `{helper}` first (its check cell shows the failing case); this check may then pass as it is.")
    head, _, rest = first.output.partition("\n")
    first.output = "\n".join(line for line in (head, cause, rest) if line)
    return result


def attribute_report(results: dict[str, ExerciseResult], answers: Mapping[str, Any]) -> None:
    """The isolated grader's counterpart of the notebook check's blame: each failing exercise whose answer cell
    (``answers``: exercise -> a cell with ``.source``, or the source text) uses another exercise's function that
    failed its own grading is led by the helper's name. ``results`` is updated in place; scores are unchanged."""
    for name, result in results.items():
        if not any(failed(p) for p in result.parts):
            continue
        source = getattr(answers.get(name), "source", answers.get(name)) or ""
        for helper in helpers_in_source(source, [n for n in results if n != name]):
            if results[helper].parts and failed(results[helper].parts[0]):
                blame_helper(result, helper, results[helper].parts[0])
                break

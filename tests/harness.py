"""Shared assertions for exercise tests: correct answers must pass, buggy ones must fail with teaching feedback.

Every exercise test module lists its answers as data and uses these functions; none re-implements a check.
The answer builders (`named`, `variant`, `as_float32`) make many correct or buggy answers from one implementation.
Grading here uses the visible and a fixed set of hidden cases on CPU, exactly like the notebook test cells.
"""
from __future__ import annotations

import numpy as np

from autograder.check import check
from autograder.engine import ExerciseResult

SEED = 20261121


def grade(name: str, fn, device: str = "cpu") -> ExerciseResult:
    return check(name, fn, hidden=True, device=device, seed=SEED, show=False)


def assert_passes(name: str, fn, device: str = "cpu") -> ExerciseResult:
    result = grade(name, fn, device)
    assert result.score == result.max_score, f"correct answer {fn.__name__} lost points:\n{result.text}"
    return result


def assert_fails(name: str, fn, *mentions: str, device: str = "cpu") -> ExerciseResult:
    """The answer loses points, the feedback names the failing case, and mentions each of ``mentions``
    (for example the misconception's name)."""
    result = grade(name, fn, device)
    assert result.score < result.max_score, f"buggy answer {fn.__name__} got full marks:\n{result.text}"
    text = result.text
    assert ("First failing case:" in text) or ("must be written from scratch" in text) or \
        ("may not use ready-made helpers" in text) or \
        ("needs a correct answer" in text), f"feedback does not name the failing case:\n{text}"
    for m in mentions:
        assert m in text, f"feedback for {fn.__name__} does not mention {m!r}:\n{text}"
    return result


def reference_answers(assignment: str, preamble: str = "import numpy as np") -> dict:
    """The solution notebook's answer cells, exec'd in notebook order in one namespace after ``preamble`` (the
    setup cell's imports). Each cell's source is registered with :mod:`linecache`, as IPython does, so the
    forbidden-API scan reads the reference exactly like a student's answer."""
    import linecache

    from autograder import registry
    from tests.coursecopy import solution_answers

    namespace: dict = {"__name__": f"solution_{assignment.replace('-', '_')}"}
    exec(preamble, namespace)  # noqa: S102 - our own notebooks
    for grade_id, source in solution_answers(assignment).items():
        filename = f"<solution {assignment}: {grade_id}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102
    missing = [ex.name for ex in registry.assignments()[assignment] if ex.name not in namespace]
    assert not missing, f"answer cells missing from the {assignment} solution notebook: {missing}"
    return namespace


def named(fn, name: str):
    fn.__name__ = fn.__qualname__ = name
    return fn


def variant(impl, name: str, **flags):
    """``impl`` with some keyword flags fixed: one implementation, many (correct or buggy) answers."""
    def answer(*args, **kwargs):
        return impl(*args, **kwargs, **flags)
    return named(answer, name)


def as_float32(fn):
    """The same answer computed in float32 (array arguments cast before the call)."""
    def answer(*args, **kwargs):
        cast = lambda v: v.astype(np.float32) if isinstance(v, np.ndarray) else v  # noqa: E731
        return fn(*[cast(a) for a in args], **{k: cast(v) for k, v in kwargs.items()})
    return named(answer, f"{fn.__name__}_float32")


def answer_label(fn, ref: dict | None = None) -> str:
    """A test id for an answer: ``notebook_reference`` for the solution notebook's own, else its name."""
    if ref is not None and getattr(fn, "__module__", None) == ref.get("__name__"):
        return "notebook_reference"
    return getattr(fn, "__qualname__", getattr(fn, "__name__", "?"))


def answer_tests(correct: list, buggy: list, ref: dict | None = None, on_pass=None):
    """The two parametrised tests of every exercise module, from its answer lists:

    - each ``(exercise, answer)`` of ``correct`` gets full marks (then ``on_pass(exercise, result)`` may check
      more, e.g. a speed part's report line);
    - each ``(exercise, answer, mentions)`` of ``buggy`` loses points, with feedback naming the failing case and
      mentioning every one of ``mentions``.

    Bind both at module level so that pytest collects them::

        test_correct_answer_passes, test_buggy_answer_fails_with_named_mistake = answer_tests(CORRECT, BUGGY, REF)
    """
    import pytest

    @pytest.mark.parametrize("name, fn", correct, ids=[f"{n}-{answer_label(f, ref)}" for n, f in correct])
    def test_correct_answer_passes(name, fn):
        result = assert_passes(name, fn)
        if on_pass is not None:
            on_pass(name, result)

    @pytest.mark.parametrize("name, fn, mentions", buggy,
                             ids=[f"{n}-{answer_label(f, ref)}" for n, f, _ in buggy])
    def test_buggy_answer_fails_with_named_mistake(name, fn, mentions):
        assert_fails(name, fn, *mentions)

    return test_correct_answer_passes, test_buggy_answer_fails_with_named_mistake

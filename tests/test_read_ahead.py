"""While an expected value is still on its way (a forked process or a thread computes it, after ``import torch``),
the grader reads the sandbox's next answers ahead instead of letting the sandbox idle
(``engine._answer_while_waiting``, ``RemoteAnswer.read_ahead``, ``Expected.pending``): the same grades and
feedback as the plain path, within the read-ahead limits."""
from __future__ import annotations

import time

import pytest

from autograder import engine, expected
from autograder.expected import Expected
from autograder.isolation import remote
from tests.harness import SEED


class _Answer:
    def __init__(self, ahead: int):
        self.ahead, self.read = ahead, 0

    def read_ahead(self) -> bool:
        if self.read >= self.ahead:
            return False
        self.read += 1
        return True


class _Reference:
    def __init__(self, waits: int):
        self.waits = waits

    def pending(self, case) -> bool:
        self.waits -= 1
        return self.waits >= 0


def test_reads_ahead_only_while_the_value_is_pending_and_only_what_there_is():
    answer = _Answer(ahead=100)
    engine._answer_while_waiting(answer, object(), _Reference(waits=3))
    assert answer.read == 3                      # stopped when the value arrived
    answer = _Answer(ahead=2)
    engine._answer_while_waiting(answer, object(), _Reference(waits=50))
    assert answer.read == 2                      # stopped when nothing more could be read
    engine._answer_while_waiting(answer, object(), None)          # no store (plain path): nothing to do
    engine._answer_while_waiting(lambda call: None, object(), _Reference(waits=5))   # an in-process answer


def test_pending_means_missing_and_coming():
    ex = _exercise("corr2d")
    from autograder.isolation.grader import grading_cases

    cases = list(grading_cases(ex, SEED, 1)[:3])
    store = Expected(ex, cases, "cpu")
    assert not store.pending(cases[0])           # nobody computes it: the engine will
    store.begin()
    assert store.pending(cases[0])
    store.put(0, [1.0], [])
    assert not store.pending(cases[0]) and store.pending(cases[1])
    store.end()
    assert not store.pending(cases[1])
    expected._COMING.add((ex.assignment, ex.name))   # a prefetching thread still importing torch
    try:
        assert store.pending(cases[1]) and not store.pending(object())   # a case not in the store: never
    finally:
        expected._COMING.discard((ex.assignment, ex.name))


def _exercise(name: str):
    from autograder import registry

    return registry.get(name)


def _graded(path, monkeypatch, how: str) -> tuple[list, list]:
    """Grade ``path``: ``plain`` (each reference computed by the engine, nothing read ahead) or ``late`` (the
    expected values arrive late, in a forked process or a thread, and answers are read ahead meanwhile)."""
    from autograder.isolation import grader

    ahead_sizes: list = []
    monkeypatch.setattr(expected, "_STORES", {})       # nothing known from an earlier test in this process
    monkeypatch.setattr(grader, "_CASES", {})
    if how == "plain":
        monkeypatch.setattr(grader, "prefetch_expected", lambda *a, **k: None)
        monkeypatch.setattr(grader, "expected_values", lambda *a, **k: None)
    else:
        real_compute, real_read_ahead = expected._compute_chunk, remote.RemoteAnswer.read_ahead

        def late_chunk(*args, **kwargs):
            time.sleep(0.3)
            return real_compute(*args, **kwargs)

        def counted_read_ahead(self):
            got = real_read_ahead(self)
            ahead_sizes.append(len(self._ahead))
            return got

        monkeypatch.setattr(expected, "_compute_chunk", late_chunk)
        monkeypatch.setattr(remote.RemoteAnswer, "read_ahead", counted_read_ahead)
        monkeypatch.setattr(remote, "MAX_AHEAD", 40)
        monkeypatch.setattr(expected, "fork_pays", lambda *a, **k: how == "late-process")
        if how == "late-thread":
            real_fill = Expected.fill

            def late_fill(self, background=False):
                time.sleep(0.3)
                real_fill(self, background)

            monkeypatch.setattr(Expected, "fill", late_fill)
    result = grader.grade([path], grader.Options(case_factor=1))
    monkeypatch.undo()
    return [(p.name, p.score, p.passed, p.total, p.output) for _aid, p in result.parts], ahead_sizes


@pytest.mark.parametrize("how", ["late-process", "late-thread"])
@pytest.mark.parametrize("student", ["bob", "mallory"])
def test_answers_read_ahead_get_the_same_grades_and_feedback(student, how, monkeypatch):
    """A buggy notebook (misconceptions, shrinking: calls out of order after the read-ahead) and a cheating one:
    the same points and feedback when the values come late and answers are read ahead, never more than
    ``MAX_AHEAD`` of them held."""
    from redteam import support

    path = next((support.REPO / "examples" / "submitted" / student / support.A01).glob("*.ipynb"))
    late, sizes = _graded(path, monkeypatch, how)
    assert sizes and max(sizes) > 1 and max(sizes) <= 40       # read ahead, within the limit
    plain, none = _graded(path, monkeypatch, "plain")
    assert not none
    assert late == plain

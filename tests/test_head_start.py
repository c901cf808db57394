"""A batch prepares once, before it forks its grading processes, what each would otherwise make for its first
notebook (:mod:`autograder.isolation.head_start`): the grading cases, their expected values and their encoded
messages. A notebook graded after that preparation draws, computes and encodes nothing again, and gets exactly the
grades and feedback it gets without it."""
from __future__ import annotations

from collections import OrderedDict

import pytest

from autograder import expected
from autograder.isolation import executors, grader, head_start, remote

from redteam import support

A02 = "02-channels-batch"


def _counted(monkeypatch) -> dict:
    """Count what a grading process makes itself: cases drawn, expected values computed, chunks of calls encoded
    (single calls, e.g. a property's, are encoded as they are sent, prepared or not)."""
    counts = {"drawn": 0, "computed": 0, "encoded": 0}

    def counting(name, real):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return real(*args, **kwargs)
        return wrapper

    monkeypatch.setattr(grader, "_draw", counting("drawn", grader._draw))
    monkeypatch.setattr(expected.Expected, "_compute", counting("computed", expected.Expected._compute))
    real_chunk = remote._chunk

    def chunk(calls):
        counts["encoded"] += tuple(map(id, calls)) not in remote._CHUNKS
        return real_chunk(calls)

    monkeypatch.setattr(remote, "_chunk", chunk)
    return counts


def _fresh_caches(monkeypatch) -> None:
    monkeypatch.setattr(grader, "_CASES", {})
    monkeypatch.setattr(expected, "_STORES", {})
    monkeypatch.setattr(remote, "_CHUNKS", OrderedDict())


def _graded(path, options) -> list:
    """Every part's points and feedback (a speed part's feedback holds its timings: its points only)."""
    result = grader.grade([path], options)
    return [(p.name, p.score, p.passed, p.total, "" if p.name.endswith(": speed") else p.output)
            for _aid, p in result.parts]


@pytest.mark.parametrize("student, assignment", [("alice", A02), ("bob", "07-efficient-conv")])
def test_a_prepared_batch_grades_without_drawing_again(student, assignment, monkeypatch):
    """alice's 02 is right; bob's 07 has mistakes (feedback, shrunk cases: computed on the spot either way).
    Both assignments use torch in the grading process (views, speed parts): the batch prepares them."""
    monkeypatch.setenv("CONVLAB_ZYGOTE", "0")            # the cases only: zygotes are tested in redteam/
    path = support.REPO / "examples" / "submitted" / student / assignment / f"{assignment}.ipynb"
    options = grader.Options(case_factor=1)
    seed = grader.seeds.grading_seed(options.course, assignment)

    _fresh_caches(monkeypatch)
    counts = _counted(monkeypatch)
    alone = _graded(path, options)
    assert counts["drawn"] and counts["computed"] and counts["encoded"], counts     # what the preparation saves

    _fresh_caches(monkeypatch)
    head_start.before_fork([(assignment, seed)], executors.options_to_plain(options), graders=2, forking=True)
    counts.update(drawn=0, computed=0, encoded=0)
    prepared = _graded(path, options)
    head_start.end()
    assert prepared == alone
    assert counts["drawn"] == 0 and counts["encoded"] == 0
    if student == "alice":
        assert counts["computed"] == 0                  # a wrong answer's shrunk cases are computed on the spot


def test_chunks_encoded_ahead_are_the_ones_sent(monkeypatch):
    """``encode_ahead`` follows ``RemoteAnswer``'s chunk sizes (8, 16, ... up to ``MAX_CHUNK``): every chunk the
    correctness check sends is found in the cache."""
    from autograder import registry
    from autograder.isolation.remote import RemoteAnswer

    monkeypatch.setattr(remote, "_CHUNKS", OrderedDict())
    ex = registry.get("corr2d")
    cases = grader.hidden_cases(ex, 7, count=600)
    remote.encode_ahead([case.call for case in cases])
    cached = {key for key in remote._CHUNKS}
    sent = []
    answer = RemoteAnswer.__new__(RemoteAnswer)
    answer._batch = __import__("collections").deque(case.call for case in cases)
    answer._queued, answer._held, answer._chunk = [], [], remote.FIRST_CHUNK
    answer._send = lambda chunk: sent.append(tuple(map(id, chunk))) or True
    while answer._batch:
        answer._queued.clear()
        answer._send_more()
    assert len(sent) > 4 and set(sent) <= cached


def test_module_arguments_are_fingerprinted_with_the_cases(monkeypatch):
    """06's cases hand models to the student's function: their fingerprints (compared with the states sent back
    with each answer) are computed when the batch prepares the cases, not again in each grading process."""
    from autograder import module_codec, registry

    _fresh_caches(monkeypatch)
    ex = registry.get("fuse_conv_bn_module")
    grader.ready_ahead([ex], 5, grader.Options(case_factor=1))
    templates = [t for case in grader.grading_cases(ex, 5, 1) for _n, _k, t in module_codec._templates(case.call)]
    computed = []
    monkeypatch.setattr(module_codec, "fingerprint", lambda m: computed.append(m) or "")
    assert len(templates) > 20 and all(module_codec.template_fingerprint(t) for t in templates)
    assert not computed


def _stores(monkeypatch, names=("corr2d", "conv2d_multi")):
    from autograder import registry

    _fresh_caches(monkeypatch)
    return [expected.expected_values(ex, grader.grading_cases(ex, 11, 2), "cpu")
            for ex in map(registry.get, names)]


def _values(stores) -> list:
    return [[store(case) for case in store.cases] for store in stores]


@pytest.mark.parametrize("child", ["works", "dies after one chunk"])
def test_values_computed_in_a_forked_process_are_the_oracles(child, monkeypatch):
    """The batch computes the expected values in a forked process while it encodes the messages; whatever that
    process does not deliver (it died) is computed here: the stores end complete, with the oracle's values."""
    import numpy as np

    local = _values(_stores(monkeypatch))
    if child != "works":
        real = expected.send_values

        def send_then_die(send, head, ex, cases, device):
            real(lambda message: (send(message), __import__("os")._exit(3)), head, ex, cases, device)

        monkeypatch.setattr(expected, "send_values", send_then_die)
    stores = _stores(monkeypatch)
    computed_here = []
    real_compute = expected.Expected._compute
    monkeypatch.setattr(expected.Expected, "_compute", lambda self, i: computed_here.append(i) or real_compute(self, i))
    expected.fill_forked(stores)()
    assert all(store.complete for store in stores)
    assert bool(computed_here) == (child != "works")
    forked = _values(stores)
    assert [len(v) for v in forked] == [len(v) for v in local] and len(forked[0]) > 16
    for got, want in zip(forked, local):
        for a, b in zip(got, want):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_a_preparation_that_fails_is_only_a_missed_head_start(monkeypatch):
    """A fault while preparing (an oracle that raises, no process left to fork) never stops the batch: its grading
    processes make what is missing themselves, and report what fails again there, notebook by notebook."""
    monkeypatch.setenv("CONVLAB_ZYGOTE", "0")
    _fresh_caches(monkeypatch)

    def broken(*args, **kwargs):
        raise OSError("no process left to fork")

    monkeypatch.setattr(expected, "fill_forked", broken)
    monkeypatch.setattr(grader, "fill_forked", broken)
    options = grader.Options(case_factor=1)
    head_start.before_fork([(A02, 3)], executors.options_to_plain(options), graders=2, forking=True)
    assert grader._CASES          # what was drawn before the fault stays useful
    head_start.end()

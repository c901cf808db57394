"""Expected values computed ahead (autograder.expected) and the trusted side's fast paths give exactly what the
plain per-case path gives: the same values, the same errors, the same copies; and they keep the oracle's policy
(one thread, no TF32) while another thread computes."""
from __future__ import annotations

import copy
import os
import signal
import threading
import time

import numpy as np
import pytest

from autograder import expected, module_codec, registry
from autograder.compare import PlainList, to_plain
from autograder.expected import Expected, expected_values, prefetch, quiet
from autograder.isolation.grader import grading_case_count, grading_cases
from autograder.oracle import copy_module, exact_numerics, one_thread, run_reference, torch
from autograder.spec import Call, Exercise
from tests.harness import SEED


def _exercise(name: str) -> Exercise:
    return next(e for exs in registry.assignments().values() for e in exs if e.name == name)


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, tuple):
        return isinstance(b, tuple) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("process", [True, False], ids=["forked", "thread"])
@pytest.mark.parametrize("name", ["corr2d", "conv_output_size", "fuse_conv_bn_module"])
def test_precomputed_values_are_the_oracles(name, process):
    ex = _exercise(name)
    cases = list(grading_cases(ex, SEED, 1)[:40])
    store = Expected(ex, cases, "cpu")
    prefetch([ex], lambda _ex: cases, "cpu", process=process).join(timeout=60)
    assert store.complete is False            # a new store: the thread filled the process's one, not this
    process_store = expected_values(ex, cases, "cpu")
    assert process_store.complete
    for case in cases:
        reference = run_reference(ex.oracle, case.call, "cpu")
        assert _same(process_store(case), reference) and _same(store(case), reference)


def test_grading_case_count_is_the_number_drawn():
    for exercises in registry.assignments().values():
        for ex in exercises[:2]:
            assert grading_case_count(ex, 2) == len(grading_cases(ex, SEED, 2))


def _counting(ex: Exercise, calls: list) -> Exercise:
    def oracle(*args, **kwargs):
        calls.append(threading.current_thread().name)
        return ex.oracle(*args, **kwargs)
    return Exercise(**{**ex.__dict__, "oracle": oracle})


def test_each_reference_is_computed_once_per_process():
    calls: list = []
    ex = _counting(_exercise("corr2d"), calls)
    cases = grading_cases(ex, SEED, 1)
    for _notebook in range(3):                 # three students of one batch process
        store = expected_values(ex, cases, "cpu")
        values = [store(c) for c in cases]
    assert len(calls) == len(cases) and len(values) == len(cases)
    shrunk = copy.copy(cases[0])                # another case object (a shrunk one): computed, not looked up
    store(shrunk)
    assert len(calls) == len(cases) + 1


def test_an_oracle_that_raises_raises_again_in_the_grading_thread():
    def broken(x, c):
        raise ZeroDivisionError("grader bug")

    ex = Exercise(name="broken", assignment="00-synthetic", points=1, signature="broken(x, c)",
                  draw_params=lambda rng: {"n": 2}, build=lambda p, d: Call((d.array(p["n"]), 2)), oracle=broken,
                  describe=str, params_min={"n": 1})
    from autograder.cases import visible_cases

    cases = visible_cases(ex)
    prefetch([ex], lambda _ex: cases, "cpu", process=True).join(timeout=30)
    with pytest.raises(ZeroDivisionError):
        expected_values(ex, cases, "cpu")(cases[0])


def test_quiet_holds_background_work():
    calls: list = []
    ex = _counting(_exercise("conv_output_size"), calls)
    cases = grading_cases(ex, SEED, 1)
    with quiet():
        thread = prefetch([ex], lambda _ex: cases, "cpu", process=False)
        time.sleep(0.3)
        assert calls == []                     # nothing computed while a part is timed
    thread.join(timeout=60)
    assert len(calls) == len(cases) and all(name == "convlab-expected" for name in calls)


def _state(pid: int, wanted: str) -> str:
    for _ in range(100):                       # a signal is delivered asynchronously
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        if state == wanted:
            break
        time.sleep(0.01)
    return state


@pytest.mark.skipif(not hasattr(os, "fork") or not os.path.isdir("/proc/self"), reason="needs fork and /proc")
def test_quiet_stops_the_prefetching_process():
    calls: list = []
    ex = _counting(_exercise("conv_output_size"), calls)
    cases = grading_cases(ex, SEED + 1, 1)
    thread = prefetch([ex], lambda _ex: cases, "cpu", process=True)
    (pid,) = expected._CHILDREN
    with quiet():
        assert _state(pid, "T") == "T"         # stopped while a part is timed
    thread.join(timeout=60)
    store = expected_values(ex, cases, "cpu")
    assert store.complete and calls == []      # computed in the other process, none here
    assert all(_same(store(c), run_reference(ex.oracle, c.call, "cpu")) for c in cases[:50])


def test_numerics_hold_while_any_thread_is_inside():
    t = torch()
    before = (t.backends.cudnn.allow_tf32, t.get_num_threads())
    inside, release, seen = threading.Event(), threading.Event(), []

    def other():
        with exact_numerics(), one_thread():
            inside.set()
            release.wait(10)
            seen.append(t.get_num_threads())   # one thread is per thread (OpenMP): each thread enters it

    thread = threading.Thread(target=other)
    with exact_numerics(), one_thread():
        thread.start()
        inside.wait(10)
    assert t.backends.cudnn.allow_tf32 is False       # TF32 is global: still off, the other thread is inside
    release.set()
    thread.join()
    assert seen == [1] and (t.backends.cudnn.allow_tf32, t.get_num_threads()) == before


def test_numerics_are_entered_once_per_thread_around_many_cases():
    """``run_reference`` inside an ``oracle_numerics`` block of the same thread enters nothing again (it did, per
    case, ~10 us each); the outer block still holds them; another thread enters them itself."""
    from autograder import oracle

    t = torch()
    before = (t.backends.cudnn.allow_tf32, t.get_num_threads())
    with oracle.oracle_numerics():
        assert oracle._HOLDING.depth == 1
        with oracle.oracle_numerics():
            assert oracle._HOLDING.depth == 1                  # nothing entered again
            assert run_reference(_exercise("corr2d").oracle, visible_call(), "cpu") is not None
        assert t.backends.cudnn.allow_tf32 is False and t.get_num_threads() == 1
        depths: list = []

        def other():
            with oracle.oracle_numerics():
                depths.append((oracle._HOLDING.depth, t.get_num_threads()))

        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert depths == [(1, 1)]
    assert oracle._HOLDING.depth == 0 and (t.backends.cudnn.allow_tf32, t.get_num_threads()) == before


def visible_call() -> Call:
    from autograder.cases import visible_cases

    return visible_cases(_exercise("corr2d"))[0].call


def test_module_copies_are_equal_and_independent():
    nn = torch().nn
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU()).double().eval()
    module_codec.mark_argument(model, "model", "token", (("input_shape", (1, 2, 5, 5)),))
    clone = copy_module(model)
    x = torch().randn(1, 2, 5, 5, dtype=torch().float64)
    assert torch().equal(clone(x), model(x)) and not clone.training
    assert module_codec.argument_meta(clone) == {"input_shape": (1, 2, 5, 5)}
    assert module_codec._templates(Call((clone,))) == []           # a copy is never taken for the template
    with torch().no_grad():
        clone[0].weight.add_(1.0)
        clone[1].running_mean.add_(1.0)
    clone[0].register_forward_hook(lambda *a: None)
    assert not model[0]._forward_hooks and not torch().equal(clone(x), model(x))
    assert module_codec.fingerprint(model) != module_codec.fingerprint(clone)

    class Custom(nn.Module):               # not an allowed plain layer: deep-copied as before
        def __init__(self):
            super().__init__()
            self.extra = [torch().zeros(2)]

    custom = Custom()
    assert copy_module(custom).extra[0] is not custom.extra[0]


def test_template_encoding_is_cached_until_a_tensor_changes():
    nn = torch().nn
    conv = module_codec.mark_argument(nn.Conv2d(1, 2, 3).double(), "conv", "token")
    first = module_codec.template_tree(conv)
    assert module_codec.template_tree(conv) is first
    with torch().no_grad():
        conv.weight.mul_(2.0)
    again = module_codec.template_tree(conv)
    assert again is not first and np.array_equal(dict(again[3])["weight"], conv.weight.detach().numpy())
    assert module_codec.same_state(again, module_codec._encode_tree(conv, "", 0, [0]))
    conv.bias = nn.Parameter(torch().ones(2, dtype=torch().float64))         # replaced, not changed in place
    replaced = module_codec.template_tree(conv)
    assert replaced is not again and np.array_equal(dict(replaced[3])["bias"], np.ones(2))
    assert module_codec.template_tree(conv) is replaced


def test_fresh_to_plain_equals_copying_to_plain():
    value = (np.arange(6.0).reshape(2, 3), [1, 2.5, True, None, "s"], (np.int64(3), np.float32(2.0)))
    fresh, copied = to_plain(value, fresh=True), to_plain(value)
    assert _same(fresh, copied) and isinstance(fresh[1], PlainList)
    view = np.arange(6.0)[::2]                   # not contiguous, not its own memory: copied anyway
    assert to_plain(view, fresh=True).flags.owndata
    with pytest.raises(TypeError):
        to_plain(np.array(["a"]), fresh=True)


def test_a_stalled_background_costs_time_not_a_hang(monkeypatch):
    ex = _exercise("corr2d")
    cases = list(grading_cases(ex, SEED, 1)[:3])
    store = Expected(ex, cases, "cpu")
    store.begin()                              # values announced, never delivered
    monkeypatch.setattr(expected, "STALL_SECONDS", 0.2)
    stuck = os.fork()
    if stuck == 0:                             # a prefetching process that never sends anything
        time.sleep(60)
        os._exit(0)
    expected._CHILDREN.add(stuck)
    try:
        assert _same(store(cases[1]), run_reference(ex.oracle, cases[1].call, "cpu"))
        _, status = os.waitpid(stuck, 0)       # killed by the stall, not left behind
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    finally:
        expected._CHILDREN.discard(stuck)


def test_fork_only_where_it_saves_work():
    assert not expected.fork_pays([_exercise("corr2d")], "cuda")
    assert not expected.fork_pays([_exercise("fuse_conv_bn_module")], "cpu")     # a view: torch is needed here
    torch()
    assert not expected.fork_pays([_exercise("corr2d")], "cpu")                 # imported here already


def test_store_is_per_case_list():
    ex = _exercise("corr2d")
    cases = grading_cases(ex, SEED, 1)
    assert expected_values(ex, cases, "cpu") is expected_values(ex, cases, "cpu")
    assert expected_values(ex, list(cases), "cpu") is not expected_values(ex, cases, "cpu")
    assert expected._MAX_STORES >= 8


def _graded_texts(path, monkeypatch, ahead: bool) -> list:
    from autograder.isolation import grader

    if not ahead:   # the plain path: each case's reference computed by the engine, nothing prefetched or stored
        monkeypatch.setattr(grader, "prefetch_expected", lambda *a, **k: None)
        monkeypatch.setattr(grader, "expected_values", lambda *a, **k: None)
    result = grader.grade([path], grader.Options(case_factor=1))
    monkeypatch.undo()
    return [(p.name, p.score, p.passed, p.total, p.output) for _aid, p in result.parts]


@pytest.mark.parametrize("student", ["bob", "mallory"])
def test_example_notebooks_get_the_same_grades_and_feedback_either_way(student, monkeypatch):
    """Expected values computed ahead and kept vs computed per case: the same points and the same feedback,
    on a buggy notebook (misconceptions, shrinking) and a cheating one."""
    from redteam import support

    path = next((support.REPO / "examples" / "submitted" / student / support.A01).glob("*.ipynb"))
    ahead = _graded_texts(path, monkeypatch, ahead=True)
    assert len(ahead) >= 3 and any(part[1] < 1 for part in ahead)      # graded, with mistakes to explain
    assert ahead == _graded_texts(path, monkeypatch, ahead=False)


def test_cases_are_drawn_once_without_holding_the_lock_that_a_fork_takes(monkeypatch):
    """While one thread draws an exercise's cases, the cases lock is free (a sandbox launch, which forks, must not
    wait for the draw), a second thread asking for the same cases waits and gets the same list, and a process
    forked meanwhile draws them itself instead of waiting for a thread it does not have."""
    from autograder.isolation import grader

    ex = _exercise("conv_output_size")
    started, release, drawn = threading.Event(), threading.Event(), []
    real = grader.hidden_cases

    def slow_hidden_cases(*args, **kwargs):
        started.set()
        release.wait(10)
        drawn.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(grader, "hidden_cases", slow_hidden_cases)
    seed = SEED + 7919
    results: list = []
    first = threading.Thread(target=lambda: results.append(grading_cases(ex, seed, 1)))
    first.start()
    assert started.wait(10)
    assert grader._CASES_LOCK.acquire(blocking=False)   # free while the draw runs
    grader._CASES_LOCK.release()
    second = threading.Thread(target=lambda: results.append(grading_cases(ex, seed, 1)))
    second.start()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: no thread of the parent will finish the draw here
        release.set()
        os.write(write_fd, str(len(grading_cases(ex, seed, 1))).encode())
        os._exit(0)
    os.close(write_fd)
    child_count = int(os.read(read_fd, 64) or b"-1")
    os.waitpid(pid, 0)
    os.close(read_fd)
    release.set()
    first.join(10)
    second.join(10)
    assert len(results) == 2 and results[0] is results[1] and len(drawn) == 1
    assert child_count == len(results[0]) == grading_case_count(ex, 1)


def _prefetched_in_a_process(ex, cases, tmp_path) -> tuple[bool, Expected]:
    """Prefetch ``cases`` in a forked process; whether that process had to draw cases itself, and the store."""
    parent, marker = os.getpid(), tmp_path / "drawn"

    def cases_of(_ex):
        if os.getpid() != parent:
            marker.write_text("drawn in the forked process")
        return cases

    expected.prefetch([ex], cases_of, "cpu", process=True).join(60)
    return marker.exists(), expected_values(ex, cases, "cpu")


def test_the_forked_process_gets_its_cases_from_the_grader(tmp_path):
    """The grader draws the cases anyway (while the forked process imports torch): the process receives them
    instead of drawing them again, and computes the same values."""
    ex = _exercise("corr2d")
    cases = list(grading_cases(ex, SEED, 1)[:20])
    drawn_there, store = _prefetched_in_a_process(ex, cases, tmp_path)
    assert not drawn_there
    assert store.complete
    assert all(_same(store(c), run_reference(ex.oracle, c.call, "cpu")) for c in cases)


def test_cases_that_cannot_be_sent_are_drawn_by_the_forked_process(tmp_path):
    import dataclasses

    ex = _exercise("corr2d")
    cases = list(grading_cases(ex, SEED, 1)[:20])
    cases[3] = dataclasses.replace(cases[3], params={**cases[3].params, "note": lambda: 0})   # not picklable
    drawn_there, store = _prefetched_in_a_process(ex, cases, tmp_path)
    assert drawn_there
    assert store.complete
    assert all(_same(store(c), run_reference(ex.oracle, c.call, "cpu")) for c in cases)

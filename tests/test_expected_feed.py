"""The batch's shared oracle process (``autograder.expected_feed``): the cases and values it hands a grading
process are exactly the ones that process would draw and compute itself, and grading goes on without it when it
dies. Each check runs in a fresh interpreter (attaching to a feed changes that process for good)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from autograder.expected_feed import pays

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the feed forks (Linux)")


def _run(script: str) -> str:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_only_assignments_whose_graders_need_no_torch_are_fed():
    assert pays("03-stride-padding", "cpu") and pays("01-single-channel", "cpu")
    assert not pays("06-conv-bn-fusion", "cpu") and not pays("02-channels-batch", "cpu")
    assert not pays("03-stride-padding", "cuda") and not pays("no-such-assignment", "cpu")


def test_the_feed_brings_the_same_cases_and_values_as_drawing_and_computing_them_here():
    out = _run("""
        import os, numpy as np
        from autograder import expected_feed, registry
        from autograder.cases import hidden_cases, visible_cases
        from autograder.expected import Expected
        from autograder.isolation.grader import grading_case_count, grading_cases, notebook_case_count
        from autograder.oracle import run_reference

        seed, factor = 1234, 1
        feed = expected_feed.Feed([("01-single-channel", seed)], factor, "cpu", 1, grading_cases, oracles=2).start()
        expected_feed.attach(feed)        # (in a batch, the pool's processes attach, then the parent releases)
        for ex in registry.assignments()["01-single-channel"]:
            fed = expected_feed.cases(ex, seed, factor)
            mine = visible_cases(ex) + hidden_cases(ex, seed, count=factor * notebook_case_count(ex))
            assert fed is not None and len(fed) == len(mine) == grading_case_count(ex, factor)
            for a, b in zip(fed, mine):
                assert a.params == b.params and a.value_seed == b.value_seed
                assert all(np.array_equal(x, y) for x, y in zip(a.call.args, b.call.args))
            assert grading_cases(ex, seed, factor) is fed          # the grader takes them as they are
            store = Expected(ex, fed, "cpu")
            assert expected_feed.bind(ex, seed, factor, fed, store)
            for i in range(0, len(fed), 7):
                want = run_reference(ex.oracle, fed[i].call, "cpu")
                got = store(fed[i])
                assert type(got) is type(want) and np.array_equal(np.asarray(got), np.asarray(want))
            assert store.complete
        pids = list(feed.pids)
        assert len(pids) == 2                      # two oracle processes, every other exercise each
        feed.close()
        for pid in pids:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                print("same")
    """)
    assert out.split() == ["same", "same"]


def test_closing_the_feed_ends_the_child_computing_values():
    out = _run("""
        import time
        from autograder import expected_feed
        from autograder.isolation.grader import grading_cases

        feed = expected_feed.Feed([("03-stride-padding", 7)], 10, "cpu", 1, grading_cases).start()
        parent, children = feed.pids[0], []
        for _ in range(200):                # the child is forked first thing, then imports torch
            children = [int(c) for c in open(f"/proc/{parent}/task/{parent}/children").read().split()]
            if children:
                break
            time.sleep(0.01)
        feed.close()
        time.sleep(0.5)
        for pid in children:
            try:
                print(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0])   # a zombie at most
            except FileNotFoundError:
                print("gone")
    """)
    assert out.split() and all(state in ("gone", "Z") for state in out.split())


def test_grading_draws_and_computes_itself_when_the_oracle_process_is_gone():
    out = _run("""
        import os, signal
        from autograder import expected_feed, registry
        from autograder.expected import Expected
        from autograder.isolation.grader import grading_cases

        seed, factor = 99, 1
        feed = expected_feed.Feed([("01-single-channel", seed)], factor, "cpu", 1, grading_cases)
        feed.start()
        for pid in feed.pids:
            os.kill(pid, signal.SIGKILL)
        expected_feed.attach(feed)
        ex = registry.assignments()["01-single-channel"][0]
        cases = grading_cases(ex, seed, factor)          # drawn here: nothing came
        store = Expected(ex, cases, "cpu")
        expected_feed.bind(ex, seed, factor, cases, store)
        store(cases[0])                                  # computed here, no wait
        feed.close()
        print(len(cases) > 0, expected_feed.cases(ex, seed, factor))
    """)
    assert out.split() == ["True", "None"]

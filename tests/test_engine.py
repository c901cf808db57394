"""The grading engine, independent of any one assignment: cases, shrinking, feedback, faults, forbidden APIs."""
from __future__ import annotations

import numpy as np
import pytest

from autograder import registry
from autograder.answers import local_answer
from autograder.cases import hidden_cases, visible_cases
from autograder.check import check
from autograder.engine import grade_exercise
from autograder.forbidden import scan_function, scan_source
from autograder.spec import Call, Exercise, Misconception
from tests.harness import SEED


def _scale(x, c):
    return x * c


# A tiny synthetic exercise: the engine must not be shaped around convolution.
SCALE = Exercise(
    name="scale_by", assignment="00-synthetic", points=4, signature="scale_by(x, c)",
    draw_params=lambda rng: {"n": int(rng.integers(1, 9)), "c": int(rng.integers(2, 5))},
    build=lambda p, draw: Call((draw.array(p["n"]), p["c"])),
    oracle=lambda x, c: x * c,
    describe=lambda p: f"x ({p['n']},), c={p['c']}",
    params_min={"n": 1, "c": 2},
    misconceptions=[Misconception("added instead of multiplied", "use *, not +", lambda x, c: x + c)],
)


def grade(fn, ex=SCALE, **kw):
    return grade_exercise(ex, local_answer(fn), visible_cases(ex), "cpu", **kw)


def test_correct_answer_gets_full_points_and_one_line():
    result = grade(lambda x, c: c * x)
    assert result.score == 4 and float(result) == 4.0
    assert result.text.count("\n") == 0 and result.text.startswith("\u2714")


def test_partial_credit_is_proportional_to_cases_passed():
    result = grade(lambda x, c: x * c if len(x) > 3 else x)
    part = result.parts[0]
    assert 0 < part.passed < part.total
    assert result.score == pytest.approx(4 * part.passed / part.total, abs=1e-3)


def test_named_misconception_and_smallest_failing_input():
    text = grade(lambda x, c: x + c).text
    assert "added instead of multiplied" in text
    assert "Smallest failing input found: x (1,), c=2" in text


def test_exceptions_cost_the_case_not_the_run():
    def boom(x, c):
        raise ValueError("bad axis")

    result = grade(boom)
    assert result.score == 0 and "ValueError: bad axis" in result.text


def test_not_implemented_is_reported_plainly():
    def stub(x, c):
        raise NotImplementedError()

    assert "not implemented yet" in grade(stub).text


def test_sys_exit_in_an_answer_is_an_error_not_an_exit():
    import sys

    result = grade(lambda x, c: sys.exit(3))
    assert result.score == 0 and "sys.exit(3)" in result.text


def test_mutating_the_inputs_cannot_change_the_expected_value():
    def mutate(x, c):
        x[:] = 0
        return x  # zeros: the oracle saw the pristine copy, so this is wrong

    assert grade(mutate).score == 0


def test_objects_that_claim_equality_fail():
    class Eq:
        def __eq__(self, other):
            return True

    result = grade(lambda x, c: Eq())
    assert result.score == 0 and "not an array or number" in result.text


def test_warnings_and_stderr_of_the_answer_do_not_reach_stderr(capfd):
    import sys
    import warnings

    def noisy(x, c):
        warnings.warn("careful")
        print("debug", file=sys.stderr)
        return x * c

    result = grade(noisy)
    out, err = capfd.readouterr()
    assert result.score == 4 and err == ""
    assert "careful" in result.text


def test_violations_zero_every_part():
    result = grade(lambda x, c: x * c, violations=["torch.nn.functional.conv2d"])
    assert result.score == 0 and "from scratch" in result.text


def test_hidden_cases_depend_on_the_secret_seed_only():
    a = hidden_cases(SCALE, 1)
    b = hidden_cases(SCALE, 1)
    c = hidden_cases(SCALE, 2)
    same = all(np.array_equal(x.call.args[0], y.call.args[0]) for x, y in zip(a, b))
    assert same and not all(np.array_equal(x.call.args[0], y.call.args[0]) for x, y in zip(a, c))
    visible = {tuple(v.call.args[0].round(12)) for v in visible_cases(SCALE)}
    assert not any(tuple(h.call.args[0].round(12)) in visible for h in a)


def test_every_registered_exercise_builds_valid_cases_and_runs_its_oracle():
    from autograder.oracle import run_reference

    for ex in registry.all_exercises():
        cases = visible_cases(ex) + hidden_cases(ex, SEED, count=3)
        assert len(cases) >= ex.n_visible
        for case in cases[:4]:
            assert ex.valid(case.params)
            run_reference(ex.oracle, case.call, "cpu")
            assert ex.describe(case.params)


def test_check_prints_feedback_and_returns_a_float_score(capsys):
    from numpy.lib.stride_tricks import sliding_window_view

    def corr2d(x, k):
        return np.einsum("ijab,ab->ij", sliding_window_view(x, k.shape), k)

    result = check("corr2d", corr2d, device="cpu")
    assert float(result) == 3.0 and "corr2d" in capsys.readouterr().out


# --- forbidden APIs --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("source, hit", [
    ("import torch", "import torch"),
    ("import torch.nn.functional as F\nF.conv2d(a, b)", "torch.nn.functional.conv2d"),
    ("from scipy.signal import correlate2d as c\nc(a, b)", "from scipy.signal import correlate2d"),
    ("import scipy.ndimage\nscipy.ndimage.convolve(a, b)", "scipy.ndimage.convolve"),
    ("import numpy as xp\nxp.convolve(a, b)", "numpy.convolve"),
    ("m = __import__('torch')", "dynamic code (__import__)"),
    ("import importlib\nimportlib.import_module('to' + 'rch')", "dynamic code (importlib)"),
    ("from autograder.oracle import run_reference", "from autograder.oracle import run_reference"),
])
def test_scan_source_names_forbidden_uses(source, hit):
    assert hit in scan_source(source)


def test_scan_source_allows_numpy_from_scratch():
    src = "import numpy as np\nfrom numpy.lib.stride_tricks import sliding_window_view\nnp.einsum('ij,ij', a, b)"
    assert scan_source(src) == []


def test_scan_function_resolves_aliases_and_follows_helpers():
    import scipy.signal as sig

    def helper(x, k):
        return sig.correlate2d(x, k, mode="valid")

    def answer(x, k):
        return helper(x, k)

    found = scan_function(answer)
    assert any("scipy.signal" in f for f in found)


def _cell_function(namespace: dict, name: str, src: str):
    """Define a function the way a notebook cell does (its source registered in linecache)."""
    import linecache

    filename = f"<cell-{name}>"
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    exec(compile(src, filename, "exec"), namespace)
    return namespace[name]


def test_scan_function_ignores_locals_that_shadow_globals():
    import torch

    from autograder.engine import ExerciseResult

    # after a test cell, the global `result` is a grader object and `F` may be torch's functional module
    namespace = {"result": ExerciseResult("corr2d"), "F": torch.nn.functional, "np": np}
    honest = _cell_function(namespace, "answer", "def answer(x, F=3):\n    result = np.zeros(3) * F\n"
                                                 "    for k in range(2):\n        result = result + k\n"
                                                 "    return result\n")
    assert scan_function(honest) == []
    cheat = _cell_function(namespace, "cheat", "def cheat(x):\n    return F.conv2d(x, x)\n")
    assert any("torch" in f for f in scan_function(cheat))


def _half(n):
    from autograder.spec import RAISES

    return RAISES if n % 2 else n // 2


HALF = Exercise(
    name="half", assignment="00-synthetic", points=2, signature="half(n)",
    draw_params=lambda rng: {"n": int(rng.integers(0, 40))}, build=lambda p, draw: Call((p["n"],)),
    oracle=_half, describe=lambda p: f"n={p['n']}", params_min={"n": 0},
    fixed_params=[{"n": 3}, {"n": 4}],
)


def test_an_answer_must_raise_where_the_oracle_rejects_the_arguments():
    def strict(n):
        if n % 2:
            raise ValueError("odd")
        return n // 2

    assert grade(strict, HALF).score == 2
    lenient = grade(lambda n: n // 2, HALF)
    assert lenient.score < 2 and "should raise an exception" in lenient.text
    exits = grade(lambda n: __import__("sys").exit(1) if n % 2 else n // 2, HALF)
    assert exits.score < 2  # sys.exit is not an error report

"""Recognising mistakes (autograder.diagnose): every generic hint fires on a plausible wrong answer and stays quiet on
a near miss; a misconception that does not apply is skipped, one that breaks is reported as a grader bug."""
from __future__ import annotations

import logging
from dataclasses import replace

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from autograder import diagnose, registry
from autograder.answers import local_answer
from autograder.cases import visible_cases
from autograder.engine import grade_exercise
from autograder.oracle import run_reference
from autograder.params import Param
from autograder.spec import RAISES, Call, Exercise, Misconception, NotApplicable, not_applicable

RNG = np.random.default_rng(17)
X = RNG.normal(size=(7, 6))
K = RNG.normal(size=(3, 3))


def corr(x, k, pad=0):
    """Valid cross-correlation of a padded 2-D image: the right answer of 01's corr2d."""
    x = np.pad(x, pad)
    return np.einsum("ijab,ab->ij", sliding_window_view(x, k.shape), k)


EXPECTED = corr(X, K)                                   # (5, 4)
BATCH = RNG.normal(size=(2, 3, 4, 5))                   # an (N, C_out, H, W) output
BIAS = np.array([0.5, -1.0, 2.0]).reshape(1, 3, 1, 1)
SQUARE = corr(RNG.normal(size=(6, 6)), K)               # (4, 4), not symmetric

#: hint function -> (expected, a plausible wrong answer, words of the hint, a near miss it must not recognise)
CASES = {
    diagnose._more_dimensions: (BATCH, BATCH[0], "dimensions, the expected one 4", BATCH[:, :2]),
    diagnose._swapped_height_width: (EXPECTED, EXPECTED.T.copy(), "height and width look swapped",
                                     corr(X, K, pad=1)),
    diagnose._leading_sizes: (BATCH, BATCH[:, :2], "leading (batch/channel) sizes differ", BATCH[..., :-1]),
    diagnose._off_by_one_size: (EXPECTED, EXPECTED[:-1, :-1], "off-by-one output size", EXPECTED[:-2]),
    diagnose._larger_than_expected: (EXPECTED, corr(X, K, pad=1), "your output is larger than expected",
                                     EXPECTED[:-2, :-2]),
    diagnose._transposed: (SQUARE, SQUARE.T.copy(), "transposed", SQUARE.T + 0.1 * RNG.normal(size=SQUARE.shape)),
    diagnose._opposite_sign: (EXPECTED, -EXPECTED, "opposite sign", -EXPECTED + 0.01 * RNG.normal(size=(5, 4))),
    diagnose._scale_factor: (EXPECTED, EXPECTED / 9, "times 0.1111", EXPECTED * (1 + 1e-4)),
    diagnose._bias_per_channel: (BATCH + BIAS, BATCH, "missing, doubled or misplaced bias",
                                 BATCH + BIAS + 0.01 * RNG.normal(size=BATCH.shape)),
    diagnose._constant_offset: (EXPECTED, EXPECTED + 0.5, "off by the constant 0.5 everywhere",
                                EXPECTED + np.linspace(0, 1, EXPECTED.size).reshape(EXPECTED.shape)),
}


def test_every_generic_hint_has_a_case():
    assert set(CASES) == set(diagnose.SHAPE_HINTS) | set(diagnose.VALUE_HINTS)


@pytest.mark.parametrize("hint", list(CASES), ids=lambda f: f.__name__)
def test_a_generic_hint_names_a_plausible_mistake(hint):
    expected, wrong, words, _ = CASES[hint]
    assert words in (diagnose.generic_hint(expected, wrong) or "")


@pytest.mark.parametrize("hint", list(CASES), ids=lambda f: f.__name__)
def test_a_generic_hint_stays_quiet_on_a_near_miss(hint):
    expected, _, words, near_miss = CASES[hint]
    assert words not in (diagnose.generic_hint(expected, near_miss) or "")


def test_the_size_hints_speak_the_assignments_notation():
    assert "H - kH + 1 rows" in diagnose.generic_hint(EXPECTED, EXPECTED[:-1], "01-single-channel")
    assert "floor((n + 2p" in diagnose.generic_hint(EXPECTED, EXPECTED[:-1], "03-stride-padding")
    assert "range(H)" in diagnose.generic_hint(EXPECTED, corr(X, K, pad=1), "01-single-channel")


def test_an_integer_output_array_is_named_and_a_float_near_miss_is_not():
    truncated = np.trunc(EXPECTED).astype(int)
    assert "matches the expected values truncated" in diagnose.generic_hint(EXPECTED, truncated)
    assert diagnose.generic_hint(EXPECTED, (EXPECTED + RNG.normal(size=(5, 4))).astype(np.float32)) is None


def test_no_hint_for_a_single_value_or_a_non_array():
    assert diagnose.generic_hint(np.array([2.0]), np.array([4.0])) is None     # any scale would "match"
    assert diagnose.generic_hint(EXPECTED, 3.0) is None


def test_an_error_hint_reads_the_exception_message():
    assert "@ where * was meant" in diagnose.error_hint("matmul: Input operand 1 has a mismatch in its core dim")
    assert diagnose.error_hint("index 3 is out of bounds") is None


# --- misconceptions: not applicable is skipped, anything else is a grader bug ------------------------------------
def _bug(x, c):
    return x.no_such_method()


SCALE = Exercise(
    name="scale_by", assignment="00-synthetic", points=4, signature="scale_by(x, c)",
    params=[Param("n", 2, 8), Param("c", 2, 4)],
    build=lambda p, draw: Call((draw.array(p["n"]), p["c"])),
    oracle=lambda x, c: x * c,
    misconceptions=[Misconception("never applies", "-", lambda x, c: not_applicable()),
                    Misconception("broken", "-", _bug),
                    Misconception("added instead of multiplied", "use *, not +", lambda x, c: x + c)],
)


def test_a_misconception_that_does_not_apply_is_skipped_and_a_broken_one_is_reported(caplog):
    case = visible_cases(SCALE)[0]
    x, c = case.call.args
    with caplog.at_level(logging.ERROR, logger="autograder.diagnose"):
        found = diagnose.recognise(SCALE, case, x + c, "cpu")
    assert found.hint == "added instead of multiplied: use *, not +"
    assert len(found.grader_bugs) == 1 and "'broken'" in found.grader_bugs[0]
    assert "AttributeError" in found.grader_bugs[0]
    assert "grader bug" in caplog.text and "no_such_method" in caplog.text


def test_a_grader_bug_shows_in_the_feedback_and_costs_no_points():
    result = grade_exercise(SCALE, local_answer(lambda x, c: x + c), visible_cases(SCALE), "cpu", shrink_budget=0)
    assert "Likely mistake: added instead of multiplied" in result.text
    assert "Grader bug (not your mistake" in result.text and "'broken'" in result.text
    quiet = replace(SCALE, misconceptions=SCALE.misconceptions[::2])
    clean = grade_exercise(quiet, local_answer(lambda x, c: x + c), visible_cases(quiet), "cpu", shrink_budget=0)
    assert "Grader bug" not in clean.text and clean.score == result.score


def test_not_applicable_is_not_a_value_error():
    """An exercise's "not applicable" must not be confused with an answer's ValueError (or the reverse)."""
    assert not issubclass(NotApplicable, ValueError)


def test_every_misconception_either_applies_or_says_not_applicable_on_the_visible_cases():
    """A misconception that raises anything but NotApplicable on a real case is a bug in the exercise module."""
    bugs = []
    for ex in registry.all_exercises():
        for case in visible_cases(ex):
            if not ex.misconceptions or run_reference(ex.oracle, case.call, "cpu") is RAISES:
                continue
            found = diagnose.recognise(ex, case, object(), "cpu")
            bugs += found.grader_bugs
    assert bugs == []

"""Grade one exercise: cases -> oracle -> answer -> comparison -> score and teaching feedback.

The same engine serves the in-notebook check (:mod:`autograder.check`) and the isolated grader: only the
*answer* differs (a direct call, or a proxy into a sandbox). Scores are computed here, never by student code.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from .answers import Answer, Outcome
from .cases import Case
from .compare import PlainList, compare, describe_value
from .diagnose import error_hint, generic_hint, recognise
from .expected import quiet
from .oracle import exact_numerics, oracle_numerics, run_reference
from .outcome import FORBIDDEN_API, NEEDS_CORRECT_ANSWER, NOT_IMPLEMENTED, TIMEOUT, failure_of
from .scoring import correctness_points, raised_everywhere
from .shrink import shrink
from .spec import RAISES, Exercise


#: a case's expected value (the oracle's answer on fresh copies of its arguments)
Reference = Callable[[Case], Any]


@dataclass
class PartResult:
    """One graded line of a report: ``name`` is ``<exercise>`` or ``<exercise>: <part>``."""

    name: str
    score: float
    max_score: float
    output: str
    passed: int = 0
    total: int = 0
    failure: str = ""            # category when points were lost (:mod:`autograder.outcome`)
    misconception: str = ""      # name of the recognised misconception, if any
    misconception_id: str = ""

    def to_json(self) -> dict:
        status = "passed" if self.score >= self.max_score else "failed"
        return {"name": self.name, "score": self.score, "max_score": self.max_score, "status": status,
                "output": self.output, "visibility": "visible"}


@dataclass
class ExerciseResult:
    """All parts of one exercise. ``float(result)`` is the points earned (what an nbgrader test cell ends with)."""

    exercise: str
    parts: list[PartResult] = field(default_factory=list)

    @property
    def score(self) -> float:
        return round(sum(p.score for p in self.parts), 4)

    @property
    def max_score(self) -> float:
        return sum(p.max_score for p in self.parts)

    def __float__(self) -> float:
        return float(self.score)

    @property
    def text(self) -> str:
        return "\n".join(p.output for p in self.parts)


def _fmt_array(a: Any, limit: int = 64) -> str:
    if isinstance(a, np.ndarray):
        if a.size <= limit:
            body = np.array2string(a, precision=4, suppress_small=True, separator=", ", max_line_width=100)
            return f"shape {a.shape}\n" + "\n".join("      " + line for line in body.splitlines())
        return f"array of shape {a.shape}"
    if isinstance(a, PlainList):
        return "list " + repr(_as_lists(a))
    if isinstance(a, tuple) and any(isinstance(v, np.ndarray) for v in a):
        return "(" + ", ".join(_fmt_array(v, limit) for v in a) + ")"
    if callable(a):
        return getattr(a, "__name__", repr(a))
    return repr(a)


def _as_lists(value: Any) -> Any:
    return [_as_lists(v) for v in value] if isinstance(value, PlainList) else value


def _call_text(ex: Exercise, case: Case) -> str:
    names = [p.strip().split("=")[0] for p in ex.signature.split("(", 1)[1].rstrip(")").split(",")]
    lines = []
    for i, value in enumerate(case.call.args):
        lines.append(f"    {names[i] if i < len(names) else f'arg{i}'} = {_fmt_array(value)}")
    for key, value in case.call.kwargs.items():
        lines.append(f"    {key} = {_fmt_array(value)}")
    return "\n".join(lines)


@dataclass
class _Trial:
    case: Case
    expected: Any
    outcome: Outcome
    reason: str = ""
    details: Sequence[str] = ()
    misconception: Any = None  # the recognised :class:`~autograder.spec.Misconception`, set when explained

    @property
    def passed(self) -> bool:
        return self.outcome.ok and not self.reason


def _try(ex: Exercise, answer: Answer, case: Case, device: str, reference: Reference | None = None) -> _Trial:
    """One case: the expected value first (before the answer can touch the arguments), then the answer."""
    expected = run_reference(ex.oracle, case.call, device) if reference is None else reference(case)
    outcome = answer(case.call)
    if expected is RAISES:
        if outcome.raised:  # the right answer: recorded as a passing outcome
            return _Trial(case, expected, replace(outcome, error=None, where=""))   # raised: kept (scoring)
        got = outcome.error if not outcome.ok else f"it returned {describe_value(outcome.value)}"
        return _Trial(case, expected, replace(outcome, error=None),
                      f"these arguments have no valid answer (see the case), so your function should raise an "
                      f"exception; {got}")
    if not outcome.ok:
        return _Trial(case, expected, outcome, outcome.error or "failed")
    got = outcome.value
    if ex.view is not None:
        try:
            with exact_numerics():
                got = ex.view(got, case.call, device)
        except Exception as exc:  # noqa: BLE001 - a malformed answer cannot be evaluated
            return _Trial(case, expected, outcome, f"the answer could not be evaluated: {exc}")
        outcome = replace(outcome, value=got)
    verdict = compare(expected, got, ex.tolerance.rel_floor, tuple(ex.output_names))
    return _Trial(case, expected, outcome, "" if verdict else verdict.reason, verdict.details)


def _explain_failure(ex: Exercise, answer: Answer, trial: _Trial, device: str, shrink_budget: int) -> list[str]:
    lines = [f"  First failing case: {ex.describe(trial.case.params)}", f"    {trial.reason}"]
    lines += [f"      {d}" for d in trial.details]
    if trial.outcome.ok and trial.expected is not RAISES:
        named = recognise(ex, trial.case, trial.outcome.value, device)
        trial.misconception = named.misconception
        hint = named.hint or \
            generic_hint(trial.expected if not isinstance(trial.expected, tuple) else None, trial.outcome.value,
                         ex.assignment)
        if hint:
            lines.append(f"  Likely mistake: {hint}")
        lines += [f"  Grader bug (not your mistake; please report it): {bug}" for bug in named.grader_bugs]
    elif error_hint(trial.outcome.error):
        lines.append(f"  Likely mistake: {error_hint(trial.outcome.error)}")
    if shrink_budget > 0 and not trial.outcome.timed_out:
        small = shrink(ex, trial.case, lambda c: not _try(ex, answer, c, device).passed, shrink_budget)
        if small is not trial.case:
            again = _try(ex, answer, small, device)
            lines.append(f"  Smallest failing input found: {ex.describe(small.params)}")
            lines.append(_call_text(ex, small))
            lines.append(f"    expected: {_fmt_array(again.expected)}")
            got = again.outcome.value if again.outcome.ok else again.outcome.error
            lines.append(f"    got:      {_fmt_array(got) if again.outcome.ok else got}")
    return lines


def _run_cases(ex: Exercise, answer: Answer, cases: Sequence[Case], device: str,
               reference: Reference | None = None) -> list[_Trial]:
    """Every case, in order; after a call that ran out of time the rest fail with the same outcome uncalled (one
    endless loop costs one time limit, not one per case)."""
    trials: list[_Trial] = []
    for case in cases:
        if trials and trials[-1].outcome.timed_out:
            stopped = trials[-1]
            trials.append(_Trial(case, stopped.expected, stopped.outcome, stopped.reason))
            continue
        _answer_while_waiting(answer, case, reference)
        trials.append(_try(ex, answer, case, device, reference))
    return trials


def _answer_while_waiting(answer: Answer, case: Case, reference: Reference | None) -> None:
    """While ``case``'s expected value is still being computed elsewhere (``reference.pending``), let an answer
    that runs in a sandbox read its next outcomes ahead (``answer.read_ahead``): the sandbox works instead of
    idling. The student's code only ever sees copies of the arguments there, so the order "expected value first"
    of :func:`_try` still holds for the grader's own objects."""
    pending = getattr(reference, "pending", None)
    read_ahead = getattr(answer, "read_ahead", None)
    if pending is None or read_ahead is None:
        return
    while pending(case) and read_ahead():
        pass


def _not_implemented(ex: Exercise, failures: Sequence[_Trial], total: int) -> str | None:
    """The one-line report when every case raised the same NotImplementedError, naming the function that raised
    it: the exercise itself, or a helper it calls (another exercise not written yet)."""
    errors = {t.outcome.error for t in failures if not t.outcome.ok}
    if len(failures) != total or len(errors) != 1 or "NotImplementedError" not in next(iter(errors)):
        return None
    where = {t.outcome.where for t in failures} - {"", ex.name, "<module>"}
    if len(where) == 1:
        helper = next(iter(where))
        return (f"\u2718 {ex.name}: 0/{ex.points:g} points: `{helper}` is not implemented yet (raises "
                f"NotImplementedError), and {ex.name} calls it: write `{helper}` first")
    return f"\u2718 {ex.name}: not implemented yet (raises NotImplementedError)"


def _in_place_note(trials: Sequence[_Trial]) -> list[str]:
    names = sorted({n for t in trials for n in t.outcome.mutated})
    if not names:
        return []
    return [f"  Note: your function changes its input{'s' if len(names) > 1 else ''} {', '.join(names)} in place "
            "(x -= ..., x[...] = ..., np.copyto, out=...). Callers do not expect that: the notebook's later "
            "cells would see the changed arrays. Work on a copy (x = x.copy()) or build a new array."]


def grade_correctness(ex: Exercise, answer: Answer, cases: Sequence[Case], device: str = "cpu",
                      shrink_budget: int = 80, label: str = "", reference: Reference | None = None) -> PartResult:
    """Run every case; points are proportional to the cases passed. Feedback explains the first failure.
    ``reference(case)`` gives a case's expected value (default: :func:`run_reference` of the oracle; the isolated
    grader passes values computed ahead, :mod:`autograder.expected`). The oracle's numerics (one thread, no TF32)
    are entered once for all cases."""
    with oracle_numerics(if_imported=True):
        return _graded_correctness(ex, answer, cases, device, shrink_budget, label, reference)


def _graded_correctness(ex: Exercise, answer: Answer, cases: Sequence[Case], device: str, shrink_budget: int,
                        label: str, reference: Reference | None) -> PartResult:
    trials = _run_cases(ex, answer, cases, device, reference)
    passed = sum(t.passed for t in trials)
    score = correctness_points(ex.points, passed, len(trials), raised_everywhere(t.outcome for t in trials))
    head = f"{ex.name}: {passed}/{len(trials)} {label}cases passed, {score:g}/{ex.points:g} points"
    failures = [t for t in trials if not t.passed]
    if not failures:
        lines = [f"\u2714 {head}"]
    else:
        # an answer that raised on every case scores 0 (scoring.py), its must-raise cases included
        stub = _not_implemented(ex, failures, len(failures) if score == 0 else len(trials))
        if stub:
            return PartResult(ex.name, 0.0, ex.points, stub, 0, len(trials), NOT_IMPLEMENTED)
        if failures[0].outcome.timed_out:
            return PartResult(ex.name, score, ex.points, f"\u2718 {head}\n  {ex.describe(failures[0].case.params)}"
                                                         f": {failures[0].reason}", passed, len(trials), TIMEOUT)
        lines = [f"\u2718 {head}"]
        lines += _explain_failure(ex, answer, failures[0], device, shrink_budget)
        if len(failures) > 1:
            others = sorted({ex.describe(t.case.params) for t in failures[1:]})
            more = f" (+{len(others) - 4} more)" if len(others) > 4 else ""
            lines.append("  Also failing: " + "; ".join(others[:4]) + more)
    lines += _in_place_note(trials)
    notes = sorted({w for t in trials for w in t.outcome.warnings})
    if notes:
        lines.append("  Note: your function emitted: " + "; ".join(notes[:3]))
    return _classified(PartResult(ex.name, score, ex.points, "\n".join(lines), passed, len(trials)), failures)


def _classified(result: PartResult, failures: Sequence[_Trial]) -> PartResult:
    """``result`` with the category of its failures and the misconception recognised in the first one."""
    if failures:
        named = failures[0].misconception
        result.failure = failure_of(t.outcome for t in failures)
        result.misconception, result.misconception_id = (named.name, named.id) if named else ("", "")
    return result


def zero_result(ex: Exercise, reason: str, n_cases: int = 0, failure: str = "", part_note: str = "") -> ExerciseResult:
    """Every part of ``ex`` at 0 points: the one result of an exercise that was not graded (a violation, a
    missing answer, a notebook that did not run, a grader fault). The correctness part says ``reason``; each extra
    part says ``part_note``, or the same as the correctness part. ``failure`` is the category
    (:mod:`autograder.outcome`)."""
    message = f"\u2718 {ex.name}: 0/{ex.total_points:g} points: {reason}"
    result = ExerciseResult(ex.name)
    result.parts.append(PartResult(ex.name, 0.0, ex.points, message, 0, n_cases, failure))
    result.parts += [PartResult(f"{ex.name}: {p.name}", 0.0, p.points,
                                f"\u2718 {ex.name}: {p.name}: {part_note}" if part_note else message, failure=failure)
                     for p in ex.parts]
    return result


def grade_exercise(ex: Exercise, answer: Answer, cases: Sequence[Case], device: str = "cpu",
                   violations: Sequence[str] = (), shrink_budget: int = 80, label: str = "",
                   context: dict | None = None, reference: Reference | None = None) -> ExerciseResult:
    """Every part of one exercise. ``violations`` (forbidden APIs found in the answer) zero all parts. The oracle's
    numerics (:func:`~autograder.oracle.oracle_numerics`) hold throughout."""
    with oracle_numerics(if_imported=True):
        return _graded_exercise(ex, answer, cases, device, violations, shrink_budget, label, context, reference)


def _graded_exercise(ex: Exercise, answer: Answer, cases: Sequence[Case], device: str, violations: Sequence[str],
                     shrink_budget: int, label: str, context: dict | None,
                     reference: Reference | None) -> ExerciseResult:
    if violations:
        rule = "must be written from scratch" if ex.from_scratch else "may not use ready-made helpers"
        return zero_result(ex, f"this exercise {rule}, but the answer uses {', '.join(violations)}", len(cases),
                           FORBIDDEN_API, part_note=f"not graded (forbidden API, see {ex.name})")
    result = ExerciseResult(ex.name)
    correctness = grade_correctness(ex, answer, cases, device, shrink_budget, label, reference)
    result.parts.append(correctness)
    for part in ex.parts:
        if correctness.passed < correctness.total:
            result.parts.append(PartResult(f"{ex.name}: {part.name}", 0.0, part.points,
                                           f"\u2718 {ex.name}: {part.name}: needs a correct answer first",
                                           failure=NEEDS_CORRECT_ANSWER))
            continue
        with quiet():  # parts may time code in this process: no background work meanwhile
            result.parts.append(part.grade(answer, dict(context or {}, device=device, exercise=ex)))
    return result

"""Grade one student's notebooks in isolation: every exercise of the assignment gets a result, whatever happens.

For each notebook: recognise the assignment, pair its cells with the pristine source (:mod:`.submission`), then
for each exercise the shared engine's :func:`~autograder.engine.grade_exercise` runs with a
:class:`~.remote.RemoteAnswer` into a sandbox and the forbidden APIs :func:`~autograder.forbidden.scan_source`
finds in the student's cells that the answer reaches. The oracle, the cases and the comparison stay here.

Exercises run in sandboxes of their profile: NumPy ("from scratch") exercises where torch, scipy.signal and
scipy.ndimage do not exist, torch exercises where torch exists without its fusion helpers. A notebook that mixes
both is executed once in each.

Many more cases are checked than in the notebook: the visible set plus ``case_factor`` times as many hidden cases
as the notebook's own hidden check uses, drawn from the assignment's course seed (:mod:`autograder.seeds`)
unless one is given; points follow :mod:`autograder.scoring`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import expected_feed, module_codec, registry, scoring, seeds
from ..attribution import attribute_report
from ..cases import Case, hidden_cases, visible_cases
from ..course import course_root
from ..engine import ExerciseResult, PartResult, grade_exercise, zero_result
from ..forbidden import scan_source
from ..outcome import EXCEPTION, GRADER_ERROR, NOT_IMPLEMENTED, NOTEBOOK_UNREADABLE, TIMEOUT
from ..integrity import notebook_flags
from ..expected import expected_values, fill_forked, prefetch
from ..oracle import torch as oracle_torch
from ..spec import Exercise
from . import cores, sandbox, scratch, selection, stubs, submission
from .remote import RepliesLost, SessionFailed, Settings, WorkerSession, encode_ahead
from .submission import NotebookError, Program


@dataclass
class Options:
    """How to grade. ``course`` is the course root holding ``solutions/<id>/<id>.ipynb``."""

    device: str = "cpu"
    seed: int | None = None              # None: each assignment's course seed (autograder.seeds)
    seed_origin: str = ""                # why ``seed`` was given (--seed, --new-seed), for the records
    case_factor: int = 10
    course: Path = field(default_factory=course_root)  # --course, $CONVLAB_COURSE or nbgrader's
    isolation: str | None = None         # auto | bwrap | reduced (default: $CONVLAB_ISOLATION or auto)
    settings: Settings = field(default_factory=Settings)
    shrink_budget: int = 80
    notebook_budget: float = 900.0
    partial_credit: tuple[str, ...] = ()  # autograder.scoring.CreditPolicy specs (default: proportional)
    public_cases: bool = False           # student edition: a public seed, provisional points


@dataclass
class NotebookResult:
    notebook: str
    assignment: str | None
    exercises: list[ExerciseResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)          # for the student
    seed: int | None = None                                 # for the instructor only
    recognised: str | None = None                           # the assignment the content looks like
    unreadable: bool = False                                # not a notebook that could be read
    flags: list[str] = field(default_factory=list)          # integrity flags, for the instructor only
    faults: dict[str, str] = field(default_factory=dict)    # cell -> what the sandbox did to it
    grader_errors: list[str] = field(default_factory=list)  # internal failures (exit status != 0)
    cases: dict[str, int] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)            # for the instructor only
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return round(sum(r.score for r in self.exercises), 4)

    @property
    def max_score(self) -> float:
        return sum(r.max_score for r in self.exercises)


@dataclass
class SubmissionResult:
    notebooks: list[NotebookResult]
    seed: int
    isolation: str
    isolation_note: str
    seconds: float = 0.0

    @property
    def score(self) -> float:
        return round(sum(n.score for n in self.notebooks), 4)

    @property
    def max_score(self) -> float:
        return sum(n.max_score for n in self.notebooks)

    @property
    def grader_failed(self) -> bool:
        return any(n.grader_errors for n in self.notebooks)

    @property
    def parts(self) -> list[tuple[str | None, PartResult]]:
        return [(n.assignment, p) for n in self.notebooks for r in n.exercises for p in r.parts]


# ------------------------------------------------------------------------------------------ cases and oracle

_CASES: dict[tuple, list[Case]] = {}
_DRAWING: dict[tuple, threading.Event] = {}   # cases a thread of this process is drawing now
_CASES_LOCK = threading.Lock()                # held for dictionary updates only, never while drawing
if hasattr(os, "register_at_fork"):  # a forked process (autograder.expected) draws cases too: never a held lock,
    os.register_at_fork(before=_CASES_LOCK.acquire, after_in_parent=_CASES_LOCK.release,   # nor a draw that
                        after_in_child=lambda: (_DRAWING.clear(), _CASES_LOCK.release()))   # no thread finishes
_ORACLES: dict[tuple, Exercise] = {}


def notebook_case_count(ex: Exercise) -> int:
    """How many cases the notebook's own hidden check runs (visible + hidden)."""
    return len(ex.fixed_params) + ex.n_visible + ex.n_hidden


def grading_case_count(ex: Exercise, factor: int) -> int:
    """``len(grading_cases(ex, seed, factor))``, without drawing them."""
    return len(ex.fixed_params) + ex.n_visible + max(1, factor) * notebook_case_count(ex)


def grading_cases(ex: Exercise, seed: int, factor: int) -> list[Case]:
    """The visible cases plus ``factor`` times the notebook check's count of fresh hidden cases (cached per process,
    drawn once even when the grading thread and the prefetching one ask at the same time; read-only)."""
    key = (ex.assignment, ex.name, seed, factor)
    while True:
        with _CASES_LOCK:
            if key in _CASES:
                return _CASES[key]
            drawing = _DRAWING.get(key)
            if drawing is None:
                mine = _DRAWING[key] = threading.Event()
                break
        drawing.wait()
    try:
        cases = _draw(ex, seed, factor)
        with _CASES_LOCK:
            if len(_CASES) > 256:
                _CASES.clear()
            _CASES[key] = cases
        return cases
    finally:
        with _CASES_LOCK:
            _DRAWING.pop(key, None)
        mine.set()


def _draw(ex: Exercise, seed: int, factor: int) -> list[Case]:
    """The cases of :func:`grading_cases`: from a batch's oracle process when it drew them, else drawn here."""
    cases = expected_feed.cases(ex, seed, factor)
    if cases is None:
        cases = visible_cases(ex) + hidden_cases(ex, seed, count=max(1, factor) * notebook_case_count(ex))
    for case in cases:
        _read_only((case.call.args, case.call.kwargs))
    return cases


def _read_only(value: Any) -> None:
    """Make the arrays in a case's arguments read-only: the cases are shared by every notebook a process grades
    (and their encoding is cached: ``remote.encoded_calls``), so nothing may change them in place."""
    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, (tuple, list)):
        for v in value:
            _read_only(v)
    elif isinstance(value, dict):
        for v in value.values():
            _read_only(v)


def prefetch_expected(exercises: Sequence[Exercise], seed: int | None, options: Options) -> None:
    """Start computing the exercises' cases and expected values in a background thread (:mod:`autograder.expected`)
    while the sandbox starts and runs the notebook's cells."""
    todo = [ex for ex in exercises if seed is not None and not _values_known(ex, seed, options)]
    todo = [ex for ex in todo if not expected_feed.covers(ex, seed, options.case_factor)]   # a batch's feed brings
    if todo:
        prefetch(todo, lambda ex: grading_cases(ex, seed, options.case_factor), options.device, before=oracle_torch)


def ready_ahead(exercises: Sequence[Exercise], seed: int, options: Options) -> None:
    """Draw the exercises' grading cases, compute their expected values (in a forked process, on the other core),
    encode their calls' messages and fingerprint their module arguments (here, meanwhile) now: a batch does,
    before it forks the grading processes that find them all (:mod:`.head_start`)."""
    drawn = [grading_cases(ex, seed, options.case_factor) for ex in exercises]
    collect = fill_forked([expected_values(ex, cases, options.device) for ex, cases in zip(exercises, drawn)])
    for cases in drawn:
        encode_ahead([case.call for case in cases])
        for case in cases:
            module_codec.fingerprint_templates(case.call)
    collect()


def _expected(ex: Exercise, cases: list[Case], seed: int, options: Options):
    """The expected values of ``ex``'s grading cases: this process's store, fed by the batch's oracle process when
    it brings them (:mod:`autograder.expected_feed`)."""
    store = expected_values(ex, cases, options.device)
    expected_feed.bind(ex, seed, options.case_factor, cases, store)
    return store


def _values_known(ex: Exercise, seed: int, options: Options) -> bool:
    """Whether this process already has every expected value of ``ex``'s grading cases (an earlier notebook)."""
    cases = _CASES.get((ex.assignment, ex.name, seed, options.case_factor))
    return cases is not None and expected_values(ex, cases, options.device).complete


def _fingerprint(value: Any, torch) -> Any:
    if isinstance(value, torch.Tensor):
        t = value.detach()
        data = t.cpu().contiguous().numpy().tobytes() if t.numel() else b""
        return ("T", str(t.dtype), tuple(t.shape), str(t.device), hashlib.blake2b(data, digest_size=16).digest())
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_fingerprint(v, torch) for v in value))
    if isinstance(value, dict):
        return ("D", tuple(sorted((str(k), _fingerprint(v, torch)) for k, v in value.items())))
    if value is None or type(value) in (bool, int, float, str):
        return (type(value).__name__, value)
    raise TypeError("not fingerprintable")


def memoised(ex: Exercise) -> Exercise:
    """The exercise with its oracle memoised by the content of its arguments: a batch grades every student on the
    same cases, so each reference is computed once per grading process."""
    if ex.name in _ORACLES and _ORACLES[ex.name].oracle.__wrapped__ is ex.oracle:  # type: ignore[attr-defined]
        return _ORACLES[ex.name]
    memo: dict = {}
    oracle = ex.oracle

    def cached(*args, **kwargs):
        torch = oracle_torch()  # imported by now (the oracle's arguments are tensors); not before the sandbox starts
        try:
            key = (_fingerprint(args, torch), _fingerprint(kwargs, torch))
        except TypeError:
            return oracle(*args, **kwargs)
        if key not in memo:
            if len(memo) > 20000:
                memo.clear()
            memo[key] = oracle(*args, **kwargs)
        return memo[key]

    cached.__wrapped__ = oracle  # type: ignore[attr-defined]
    _ORACLES[ex.name] = dataclasses.replace(ex, oracle=cached)
    return _ORACLES[ex.name]


# ------------------------------------------------------------------------------------------ results

def _with_note(result: ExerciseResult, note: str) -> ExerciseResult:
    if result.parts:
        first = result.parts[0]
        result.parts[0] = dataclasses.replace(first, output=f"{first.output}\n  Note: {note}")
    return result


def violations_for(ex: Exercise, program: Program) -> list[str]:
    """Forbidden APIs in the student cells this exercise's answer reaches."""
    found: list[str] = []
    for cell in submission.cells_reached(program, ex.name):
        for v in scan_source(cell.source, ex.forbidden_names):
            text = v if cell.kind == "answer" and cell.name == ex.name else f"{v} (in {cell.label})"
            if text not in found:
                found.append(text)
    return found


def _profile(ex: Exercise) -> str:
    return "scratch" if ex.from_scratch else "torch"


# ------------------------------------------------------------------------------------------ grading

def source_notebook(course: Path, assignment: str) -> Path:
    """The pristine instructor cells: the source notebook, or the release where no solutions are shipped."""
    source = Path(course) / "solutions" / assignment / f"{assignment}.ipynb"
    release = Path(course) / "assignments" / assignment / f"{assignment}.ipynb"
    return source if source.is_file() or not release.is_file() else release


_SOURCES: dict[tuple, dict] = {}


def known_sources(course: Path) -> dict[str, dict]:
    """Assignment id -> its source notebook, for every assignment with one (cached while the files stay put)."""
    out = {}
    for aid in registry.assignments():
        path = source_notebook(course, aid)
        try:
            key = (str(path), path.stat().st_mtime_ns)
        except OSError:
            continue
        if key not in _SOURCES:
            try:
                _SOURCES[key] = submission.read_notebook(path)
            except NotebookError:
                continue
        out[aid] = _SOURCES[key]
    return out


@dataclass
class Prepared:
    """A notebook after the steps before any student code runs: what to grade, or why nothing can be run."""

    assignment: str | None
    exercises: list[Exercise] = field(default_factory=list)
    program: Program | None = None
    problem: str | None = None          # for the student: why the notebook cannot be run (every exercise 0)
    grader_error: str | None = None     # for the instructor
    unreadable: bool = False            # the file is not a readable notebook
    recognised: str | None = None       # the assignment its content belongs to (grades.csv's status)


def read_step(path: Path) -> tuple[dict | None, str | None]:
    """Step 1, read: ``(notebook, None)`` or ``(None, why it cannot be read)``."""
    try:
        return submission.read_notebook(path), None
    except NotebookError as exc:
        return None, str(exc)


def recognise_step(nb: dict | None, path: Path, options: Options, assignment: str | None) -> str | None:
    """Step 2, recognise: the assignment given, else the one the notebook's name, folder or cells point to."""
    if assignment is not None:
        return assignment
    names = {aid: [e.name for e in exs] for aid, exs in registry.assignments().items()}
    return submission.recognise(nb, path, known_sources(options.course), names)


def pristine_step(options: Options, assignment: str) -> tuple[dict | None, str | None]:
    """Step 3, the pristine source notebook: ``(source, None)`` or ``(None, grader error)``."""
    src_path = source_notebook(options.course, assignment)
    try:
        return submission.read_notebook(src_path), None
    except NotebookError as exc:
        return None, f"the source notebook {src_path} is unusable: {exc}"


def prepare(path: Path, options: Options, assignment: str | None = None) -> Prepared:
    """Steps 1-4: read, recognise, pair with the pristine cells, build the program."""
    nb, problem = read_step(path)
    aid = recognise_step(nb, path, options, assignment)
    names = {a: [e.name for e in exs] for a, exs in registry.assignments().items()}
    seen = {"unreadable": nb is None,
            "recognised": selection.content_assignment(nb, known_sources(options.course), names)}
    exercises = registry.assignments().get(aid or "", [])
    if not exercises:
        return Prepared(aid, problem=problem, grader_error=f"unknown assignment {aid!r}" if aid else None, **seen)
    problem = problem or submission.kernel_problem(nb or {})
    if problem is not None:
        return Prepared(aid, exercises, problem=problem, **seen)
    source, error = pristine_step(options, aid)
    if source is None:
        return Prepared(aid, exercises, grader_error=error, **seen,
                        problem="the grader could not read the assignment's source notebook (not your fault)")
    return Prepared(aid, exercises, submission.build_program(nb, source, aid, [e.name for e in exercises]), **seen)


def not_graded(result: NotebookResult, prepared: Prepared, path: Path) -> NotebookResult:
    """The result of a notebook that did not reach the sandbox: every exercise 0 with the reason."""
    if prepared.grader_error:
        result.grader_errors.append(prepared.grader_error)
    if not prepared.exercises:
        known = ", ".join(registry.assignments())
        result.notes.append(prepared.problem or f"{path.name} does not look like any assignment of this course "
                                                f"({known}); nothing was graded")
        return result
    why = prepared.problem or "the notebook could not be read"
    result.notes.append(why)
    result.exercises = [zero_result(ex, why, result.cases[ex.name], _unrunnable(result))
                        for ex in prepared.exercises]
    return result


def _add_note(notes: list[str], note: str) -> None:
    if note not in notes:
        notes.append(note)


def session_notes(session: WorkerSession, group: list[Exercise]) -> list[str]:
    """What the student should know about cells other than the exercises' own answers."""
    own = {ex.name for ex in group}
    notes = [f"{cell} {why}; it was skipped" for cell, why in session.fatal.items() if cell not in own]
    notes += [f"{cell} raised {error}" for cell, error in session.cell_errors.items()
              if cell.startswith("added cell")]
    return notes


def run_profile(profile: str, group: list[Exercise], program: Program, options: Options, seed: int, mode: str,
                deadline: float, result: NotebookResult) -> dict[str, ExerciseResult]:
    """Step 5, run one profile: the program in a sandbox of ``profile``, each exercise of ``group`` graded through
    it (step 6). A grader bug costs only the exercise it hit."""
    by_name: dict[str, ExerciseResult] = {}
    session = WorkerSession(program.cells, profile, mode, options.settings, deadline)
    try:
        for ex in group:
            try:
                by_name[ex.name] = _grade_one(ex, session, program, options, seed, mode)
            except Exception as exc:  # noqa: BLE001 - a grader bug must not lose the other exercises
                result.grader_errors.append(f"{ex.name}: {type(exc).__name__}: {exc}\n"
                                            + traceback.format_exc(limit=8))
                by_name[ex.name] = zero_result(ex, "the grader failed on this exercise (not your fault; "
                                                   "the instructor has been told)", result.cases[ex.name],
                                               GRADER_ERROR)
    finally:
        session.close()
        result.log += [f"[{profile} sandbox output]\n{o}" for o in session.outputs]
        result.faults.update(session.fatal)
        for note in session_notes(session, group):
            _add_note(result.notes, note)
    return by_name


def unreached_notes(program: Program, exercises: list[Exercise]) -> list[str]:
    """Forbidden names in added cells that no answer depends on (they cost nothing, but the student should know)."""
    reached = program.reach.reached_by_any([ex.name for ex in exercises])
    notes = []
    for cell in program.student_cells:
        if cell.kind == "added" and id(cell) not in reached:
            found = scan_source(cell.source)
            if found:
                notes.append(f"{cell.name} uses {', '.join(found)} (not available while grading)")
    return notes


def grade_notebook(path: Path, options: Options, seed: int | None, mode: str,
                   assignment: str | None = None, prepared: Prepared | None = None) -> NotebookResult:
    """Grade one notebook: prepare it (read, recognise, pair, build; unless ``prepared`` already is), run each
    profile, grade, collect the notes. Student faults become 0 points with a reason; grader faults are recorded in
    ``grader_errors`` (and still every exercise appears)."""
    start = time.monotonic()
    path = Path(path)
    prepared = prepared or prepare(path, options, assignment)
    result = NotebookResult(path.name, prepared.assignment, recognised=prepared.recognised,
                            unreadable=prepared.unreadable)
    if prepared.exercises:
        seed = result.seed = seeds.grading_seed(options.course, prepared.assignment, seed, options.public_cases)
    with sandbox.prestarted(stubs.layout(), _ahead(prepared), mode, options.settings.limits):
        result.cases = {ex.name: grading_case_count(ex, options.case_factor) for ex in prepared.exercises}
        if prepared.program is None:
            not_graded(result, prepared, path)
        else:
            prefetch_expected(prepared.exercises, seed, options)  # perf-trusted: expected values ahead
            run_program(prepared, options, seed, mode, start + options.notebook_budget, result)
    result.seconds = time.monotonic() - start
    return result


def profiles_of(exercises: list[Exercise]) -> list[str]:
    """The sandbox profiles these exercises need, in the order they run."""
    return [p for p in stubs.PROFILES if any(_profile(ex) == p for ex in exercises)]


def _ahead(prepared: Prepared | None) -> list[str]:
    """The sandboxes to launch before they are needed (each starts while the grader works): the notebook's
    first profile at once, and the second too where a core is free for it (:mod:`.cores`)."""
    if prepared is None or prepared.program is None:
        return []
    wanted = profiles_of(prepared.exercises)
    return wanted if cores.spare() else wanted[:1]


def run_program(prepared: Prepared, options: Options, seed: int, mode: str, deadline: float,
                result: NotebookResult) -> None:
    """Steps 5-7 for a notebook that can run: each profile's sandbox, the exercises graded through it, the
    attributions, the notes and the integrity flags."""
    program = prepared.program
    assert program is not None
    result.notes += program.notes
    by_name: dict[str, ExerciseResult] = {}
    for profile in profiles_of(prepared.exercises):
        group = [ex for ex in prepared.exercises if _profile(ex) == profile]
        cpu, waited = sandbox.cpu_seconds(), sandbox.waited_seconds()
        by_name.update(run_profile(profile, group, program, options, seed, mode, deadline, result))
        result.log.append(f"[{profile} sandbox] {sandbox.cpu_seconds() - cpu:.2f} CPU-seconds; "
                          f"{sandbox.waited_seconds() - waited:.2f} s waited for it to start")
    attribute_report(by_name, program.answers)
    result.exercises = [by_name[ex.name] for ex in prepared.exercises]
    result.notes += unreached_notes(program, prepared.exercises)
    violations = {ex.name: violations_for(ex, program) for ex in prepared.exercises}
    result.flags = notebook_flags(program.student_cells, violations, result.faults, mode)


def _grade_one(ex: Exercise, session: WorkerSession, program: Program, options: Options, seed: int,
               mode: str) -> ExerciseResult:
    cases = grading_cases(ex, seed, options.case_factor)
    violations = violations_for(ex, program)
    if violations:
        return grade_exercise(memoised(ex), _no_answer, cases, options.device, violations)
    try:
        return _graded_remotely(ex, session, program, cases, options, seed, mode, grouped=True)
    except RepliesLost:     # the sandbox failed while it may have held replies: again, one reply per frame
        return _graded_remotely(ex, session, program, cases, options, seed, mode, grouped=False)


def _graded_remotely(ex: Exercise, session: WorkerSession, program: Program, cases: list[Case], options: Options,
                     seed: int, mode: str, grouped: bool) -> ExerciseResult:
    """``ex`` graded on ``cases`` in a fresh process of the session (``grouped``: see :class:`RemoteAnswer`)."""
    try:
        handle = session.exercise(ex)
    except SessionFailed as exc:
        return zero_result(ex, f"the notebook could not be run: {exc}", len(cases),
                           TIMEOUT if exc.timed_out else EXCEPTION)
    with handle:
        state = handle.probe(ex.name)
        if state != "callable":
            return zero_result(ex, _why_missing(ex, state, program.answers.get(ex.name), session), len(cases),
                               _missing_failure(ex, state, session))
        answer = handle.answer(cases, grouped)
        context = {"isolated": True, "isolation": mode}
        result = grade_exercise(memoised(ex), answer, cases, options.device, (), options.shrink_budget, "",
                                context, _expected(ex, cases, seed, options))
    result = scoring.apply_policy(result, scoring.CreditPolicy.parse(options.partial_credit))
    error = session.cell_errors.get(ex.name)
    if error:
        result = _with_note(result, f"your answer cell raised {error}")
    return result


def _no_answer(call) -> Any:  # pragma: no cover - the engine never calls it when there are violations
    raise AssertionError("not called")


def _why_missing(ex: Exercise, state: str, answer_cell, session: WorkerSession) -> str:
    if state == "unavailable":
        return "the sandbox stopped before this exercise could be graded"
    if state == "not callable":
        return f"{ex.name} is defined but is not a function"
    if session.fatal.get(ex.name):
        return f"your answer cell {session.fatal[ex.name]}, so {ex.name} is not defined"
    if answer_cell is None:
        return f"the answer cell {ex.name} is missing and no cell defines {ex.name}"
    error = session.cell_errors.get(ex.name)
    if error:
        return f"{ex.name} is not defined: your answer cell raised {error}"
    return f"{ex.name} is not defined (the answer cell does not define a function of that name)"


def _unrunnable(result: NotebookResult) -> str:
    """The category of a notebook that could not be run at all: the grader's fault, or an unreadable file."""
    return GRADER_ERROR if result.grader_errors else NOTEBOOK_UNREADABLE


def _missing_failure(ex: Exercise, state: str, session: WorkerSession) -> str:
    """The category of an exercise whose function could not be called (see :func:`_why_missing`)."""
    if ex.name in session.timed_out:
        return TIMEOUT
    if state in ("unavailable", "not callable") or ex.name in session.fatal or ex.name in session.cell_errors:
        return EXCEPTION
    return NOT_IMPLEMENTED


def grade(paths: Sequence[Path], options: Options, assignment: str | None = None) -> SubmissionResult:
    """Grade one student's notebooks; never raises for anything the notebooks contain."""
    start = time.monotonic()
    mode, why = sandbox.isolation_mode(options.isolation)
    note = "" if mode == "bwrap" else (
        f"Isolation is reduced on this machine ({why}): student code ran in a separate process under resource "
        "limits, without a private filesystem or namespaces." + _unprivileged_note())
    seed = options.seed                 # None: each assignment's course seed (autograder.seeds)
    notebooks: list[NotebookResult] = []
    seen: dict[str, str] = {}
    with scratch.run_scratch():  # one thread, no TF32: the engine holds them (oracle.oracle_numerics)
        ordered = [Path(p) for p in selection.order(paths, assignment)]
        first = prepare(ordered[0], options, assignment) if ordered else None
        # the first notebook's sandboxes start while this process gets ready (torch, the expected values)
        with sandbox.prestarted(stubs.layout(), _ahead(first), mode, options.settings.limits):
            for i, path in enumerate(ordered):
                nb = grade_notebook(path, options, seed, mode, assignment, first if i == 0 else None)
                if nb.assignment in seen and nb.exercises:
                    nb.notes.insert(0, f"{nb.notebook} is a second notebook for {nb.assignment} "
                                       f"(after {seen[nb.assignment]}); only the first counts")
                    nb.exercises = []
                elif nb.assignment:
                    seen[nb.assignment] = nb.notebook
                notebooks.append(nb)
    seeded = next((nb.seed for nb in notebooks if nb.seed is not None), None)
    return SubmissionResult(notebooks, seeded if seed is None else seed, mode, note, time.monotonic() - start)


def _unprivileged_note() -> str:
    from .unprivileged import describe

    extra = describe()
    return f" ({extra[0].upper()}{extra[1:]}.)" if extra else ""


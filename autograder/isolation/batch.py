"""Grade a class: ``SUBMITTED_DIR/<student>/<assignment>/<notebook>.ipynb`` (nbgrader's layout).

Writes ``OUT_DIR/<student>/<assignment>.json`` (Gradescope schema) for each submission and ``OUT_DIR/grades.csv``;
the instructor-only records (the seeds of the run, per-submission logs and keys) go to ``OUT_DIR/.instructor/``.
All files are written atomically by this process; submissions are graded by an executor (:mod:`.executors`): this
process, a local pool of processes, or a Dask cluster. A progress bar shows on a terminal.

Interruptions (:mod:`.resume`): a batch holds an exclusive lock on ``OUT_DIR`` (a second one is refused), and each
result is recorded with the content hash of the notebooks it graded and the hash of the run's settings. Running the
same command again after Ctrl-C, ``kill -9`` or a crash regrades only what is missing, changed (a notebook's bytes)
or failed in the grader; finished unchanged results are reused as they are (same file, same ``result_id``). Each
assignment is graded on its course seed (:mod:`autograder.seeds`), like ``grade``; a deliberate draw (``--seed``,
``--new-seed``) of the previous run in ``OUT_DIR`` is kept unless ``fresh`` says otherwise, so that the whole class
is graded on the same cases. ``grades.csv`` is rebuilt from the per-student files at the end of every complete run
(and removed while a run that has work to do is under way): when it exists, it matches them.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import registry
from .. import seeds as seed_policy
from . import report, resume, scratch, selection
from .executors import make_executor, options_to_plain
from .grader import Options
from .jobs import Job, empty_result, grade_job, job_seed  # noqa: F401 - Job and grade_job are part of this module's API


@dataclass
class BatchSummary:
    graded: int = 0                  # graded by this run
    reused: int = 0                  # finished earlier, unchanged, kept as they were
    students: int = 0
    seconds: float = 0.0
    isolation: str = ""
    errors: list[str] = field(default_factory=list)
    seed: dict = field(default_factory=dict)   # assignment -> seed
    submissions: int = 0
    executor: str = ""
    seed_reused: bool = False

    @property
    def per_minute(self) -> float:
        return 60.0 * self.graded / self.seconds if self.seconds > 0 else 0.0


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and not p.name.startswith("__")


def discover(submitted: Path) -> list[Job]:
    """Every ``<student>/<assignment>/`` folder, with its notebooks (possibly none)."""
    jobs = []
    for student in sorted(p for p in Path(submitted).iterdir() if p.is_dir() and _visible(p)):
        for folder in sorted(p for p in student.iterdir() if p.is_dir() and _visible(p)):
            notebooks = sorted(p for p in folder.glob("*.ipynb") if p.is_file() and _visible(p))
            jobs.append(Job(student.name, folder.name, notebooks))
    return jobs


def _csv(rows: list[dict], tests: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", "assignment", "score", "max_score", "status", *tests, "flags"])
    for row in rows:
        writer.writerow([row["student"], row["assignment"], f"{row['score']:g}", f"{row['max_score']:g}",
                         row["status"], *[row["tests"].get(t, "") for t in tests], row["flags"]])
    return buf.getvalue()


def _test_order() -> list[str]:
    names = []
    for exercises in registry.assignments().values():
        for ex in exercises:
            names.append(ex.name)
            names += [f"{ex.name}: {p.name}" for p in ex.parts]
    return names


def _failure(job: Job, options: Options, seed: int, mode: str, exc: BaseException) -> dict:
    """The outcome of a submission whose grader died or raised: a complete zero report, flagged as the grader's
    failure (retried by the next run)."""
    result = empty_result(job, options, seed, mode, "the grader failed on this submission (not your fault)")
    return {"results": report.results_json(result), "instructor": {"error": repr(exc)},
            "errors": [f"{job.student}/{job.assignment}: {type(exc).__name__}: {exc}"]}


def _task(job: Job) -> dict:
    """A submission as plain data: its notebooks' names, bytes, sizes and digests, read now."""
    notebooks = []
    for path in job.notebooks:
        try:
            data, size, digest = resume.read_for_grading(path)
        except OSError:
            data, size, digest = b"", 0, "unreadable"
        notebooks.append({"name": path.name, "data": data, "size": size, "sha256": digest})
    return {"student": job.student, "assignment": job.assignment, "notebooks": notebooks}


def _digests(job: Job) -> list[tuple[str, str]]:
    out = []
    for path in job.notebooks:
        try:
            out.append((path.name, resume.read_for_grading(path)[2]))
        except OSError:
            out.append((path.name, "unreadable"))
    return out


def _row(out: Path, job: Job) -> dict:
    """grades.csv's row of one submission, from its files (what students got)."""
    res = resume.load_json(resume.result_path(out, job.student, job.assignment))
    record = resume.load_json(resume.record_path(out, job.student, job.assignment)) or {}
    if not isinstance(res, dict):
        return {"student": job.student, "assignment": job.assignment, "score": 0.0, "max_score": 0.0,
                "status": "no result", "flags": "", "tests": {}}
    status = selection.GRADER_ERROR if record.get("errors") else record.get("status", selection.GRADED)
    return {"student": job.student, "assignment": job.assignment, "score": res["score"],
            "max_score": res["extra_data"]["max_score"], "status": status,
            "flags": "; ".join(report.record_flags(record)),
            "tests": {t["name"]: f"{t['score']:g}" for t in res["tests"]}}


@contextlib.contextmanager
def _sigterm_interrupts():
    """SIGTERM (a cluster scheduler's or a service manager's stop) ends the batch like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _prepare_output(out: Path) -> Path:
    """``out`` and its private ``.instructor`` folder (mode 0700); returns the latter."""
    out.mkdir(parents=True, exist_ok=True)
    private = out / ".instructor"
    private.mkdir(exist_ok=True)
    os.chmod(private, 0o700)
    return private


def choose_seed(options: Options, state: dict) -> tuple[int | None, bool]:
    """``(override, whether the previous run's draw is kept)``: ``--seed``/``--new-seed``, else the previous run's
    deliberate draw, else None (each assignment's course seed)."""
    if options.seed is not None:
        return options.seed, False
    if isinstance(state.get("seed"), int):
        return state["seed"], True
    return None, False


def batch_seeds(options: Options, override: int | None, jobs: list[Job]) -> dict[str, int]:
    """``{assignment: seed}`` for every known assignment in ``jobs`` (:mod:`autograder.seeds`)."""
    known = registry.assignments()
    return {aid: seed_policy.grading_seed(options.course, aid, override)
            for aid in sorted({j.assignment for j in jobs}) if aid in known}


def plan(jobs: list[Job], out: Path, settings: str, fresh: bool) -> tuple[list[tuple[Job, str]], int]:
    """``(jobs to grade with their content keys, how many finished results are reused)``."""
    todo, reused = [], 0
    for job in jobs:
        content = resume.content_key(job.assignment, _digests(job))
        if not fresh and resume.complete_record(out, job.student, job.assignment, content, settings):
            reused += 1
        else:
            todo.append((job, content))
    return todo, reused


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _write_state(private: Path, **state) -> None:
    report.atomic_write(private / resume.STATE_NAME, json.dumps(state, indent=2) + "\n")


@dataclass
class Recorder:
    """Writes each finished submission's files (result first, the instructor record last: it completes it)."""

    out: Path
    options: Options
    seed: dict                      # assignment -> seed
    mode: str
    settings: str
    todo: list[tuple[Job, str]]
    summary: BatchSummary
    say: Callable[[str], None]

    def __post_init__(self):
        self.keys = {(job.student, job.assignment): (job, content) for job, content in self.todo}

    def __call__(self, task: dict, outcome) -> None:
        job, expected = self.keys[(task["student"], task["assignment"])]
        if isinstance(outcome, BaseException):
            outcome = _failure(job, self.options, job_seed(self.seed, job), self.mode, outcome)
        res = outcome["results"]
        result_id = uuid.uuid4().hex
        res.setdefault("extra_data", {})["result_id"] = result_id
        text = json.dumps(res, indent=2) + "\n"
        digests = [(nb["name"], nb["sha256"]) for nb in task["notebooks"]]
        content = resume.content_key(job.assignment, digests)
        if content != expected:
            self.say(f"{job.student}/{job.assignment} changed while the batch ran: its result is for the "
                     f"version it graded")
        instructor = dict(outcome["instructor"], student=job.student, assignment=job.assignment,
                          result_id=result_id, result_sha256=resume.sha256_bytes(text.encode()),
                          errors=outcome["errors"], graded_by=outcome.get("graded_by"),
                          key={"content": content, "settings": self.settings, "notebooks": dict(digests)})
        report.atomic_write(resume.result_path(self.out, job.student, job.assignment), text)
        report.atomic_write(resume.record_path(self.out, job.student, job.assignment),
                            json.dumps(instructor, indent=2) + "\n")
        self.summary.errors += outcome["errors"]
        self.summary.graded += 1


def grading_order(todo: list) -> list:
    """The submissions assignment by assignment (students in order within each): a grading process then works on
    one assignment's cases at a time, and the batch's oracle process computes them in that order."""
    return sorted(todo, key=lambda item: item[0].assignment)


def grade_all(engine, record: Recorder, options: Options, executor: str, progress: bool | None) -> None:
    """Grade every submission of ``record.todo`` with ``engine``, recording each as it finishes."""
    from tqdm import tqdm

    todo, summary = grading_order(record.todo), record.summary
    show = sys.stderr.isatty() if progress is None else progress
    bar = tqdm(total=len(todo), unit="nb", desc="grading", disable=not show, file=sys.stderr)
    plain = options_to_plain(options, remote=executor == "dask")
    plan = list(dict.fromkeys((job.assignment, record.seed[job.assignment]) for job, _ in todo
                              if job.assignment in record.seed))
    try:
        tasks = (_task(job) for job, _ in todo)
        for task, outcome in engine.map(tasks, plain, record.seed, getattr(engine, "expect", None), len(todo),
                                        plan):
            record(task, outcome)
            bar.update()
    except KeyboardInterrupt:
        record.say(f"interrupted: {summary.graded} submission(s) graded by this run are saved; run the same "
                   f"command again to grade the {len(todo) - summary.graded} left (finished ones are reused)")
        raise
    finally:
        bar.close()


def write_grades(out: Path, jobs: list[Job]) -> list[dict]:
    """``grades.csv`` from the per-student files; returns its rows."""
    rows = sorted((_row(out, job) for job in jobs), key=lambda r: (r["student"], r["assignment"]))
    known = _test_order()
    extra = sorted({t for r in rows for t in r["tests"]} - set(known))
    used = [t for t in known if any(t in r["tests"] for r in rows)] + extra
    report.atomic_write(out / "grades.csv", _csv(rows, used))
    return rows


def _start_engine(executor: str, workers: int | None, scheduler, lock, options: Options, say):
    engine = make_executor(executor, max(1, workers or os.cpu_count() or 1), scheduler,
                           close_fds=(lock.fd,) if lock.fd else ())
    try:
        engine.start(options)               # probes the isolation (here, or on every Dask worker)
    except BaseException:
        engine.close()
        raise
    for line in engine.warnings:
        say(f"warning: {line}")
    return engine


def _describe(summary: BatchSummary, engine, jobs: list[Job], seed: dict) -> tuple[str, list[str]]:
    modes = sorted(engine.modes)
    mode = modes[0] if len(modes) == 1 else "mixed"
    summary.students, summary.seed, summary.submissions = len({j.student for j in jobs}), seed, len(jobs)
    summary.isolation = "bwrap" if modes == ["bwrap"] else f"reduced isolation: {engine.note or mode}"
    summary.executor = engine.describe()
    return mode, modes


def _announce(summary: BatchSummary, out: Path, todo: list, jobs: list, say) -> None:
    if summary.reused:
        say(f"resuming in {out}: {summary.reused} of {len(jobs)} submission(s) already graded and "
            f"unchanged (reused), {len(todo)} to grade"
            + ("; the previous run's seed is kept (--fresh for a new one)" if summary.seed_reused else ""))
    if todo:
        with contextlib.suppress(FileNotFoundError):
            (out / "grades.csv").unlink()   # back once this run is complete, consistent with the files


def _log_seed(private: Path, summary: BatchSummary, submitted: Path, options: Options, todo: list,
              seed_state: dict) -> None:
    with open(private / "seeds.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"time": _now(), **seed_state, "submitted": str(submitted),
                             "cases_factor": options.case_factor, "submissions": summary.submissions,
                             "to_grade": len(todo), "reused": summary.reused, "seed_kept": summary.seed_reused,
                             "executor": summary.executor}) + "\n")


def _run(submitted: Path, out: Path, private: Path, options: Options, engine, fresh: bool, say,
         executor: str, progress: bool | None, summary: BatchSummary, start: float) -> None:
    """The body of :func:`run_batch`, once the output is locked and the executor started."""
    resume.remove_partial_writes(out)
    jobs = discover(submitted)
    override, summary.seed_reused = choose_seed(options, {} if fresh else resume.read_state(out))
    seed = batch_seeds(options, override, jobs)
    seed_state = {"seed": override, "seeds": seed, "seed_source": seed_policy.describe(
        override, "resumed draw" if summary.seed_reused else options.seed_origin)}
    mode, modes = _describe(summary, engine, jobs, seed)
    settings = resume.settings_key(options, seed, "+".join(modes))
    todo, summary.reused = plan(jobs, out, settings, fresh)
    _announce(summary, out, todo, jobs, say)
    _write_state(private, **seed_state, settings=settings, submitted=str(submitted), complete=False, started=_now(),
                 executor=summary.executor)
    _log_seed(private, summary, submitted, options, todo, seed_state)
    grade_all(engine, Recorder(out, options, seed, mode, settings, todo, summary, say), options, executor, progress)
    rows = write_grades(out, jobs)
    summary.errors += [f"{r['student']}/{r['assignment']}: no result" for r in rows if r["status"] == "no result"]
    summary.seconds = time.monotonic() - start
    _write_state(private, **seed_state, settings=settings, submitted=str(submitted), complete=True, finished=_now(),
                 executor=summary.executor, graded=summary.graded, reused=summary.reused)


def run_batch(submitted: Path, out: Path, options: Options, workers: int | None = None,
              progress: bool | None = None, *, executor: str = "local", scheduler=None, fresh: bool = False,
              log: Callable[[str], None] | None = None) -> BatchSummary:
    """Grade every submission under ``submitted`` into ``out`` (see the module docstring).

    ``executor``: ``"local"`` (``workers`` processes, default: the CPU count) or ``"dask"`` (``scheduler``: an
    address or a ``distributed.Client``). ``fresh``: ignore the results and the seed of earlier runs in ``out``.
    ``log``: where to say what is reused and how an interruption can be resumed (default: nowhere).
    Raises :class:`~.resume.BatchLocked` when another batch holds ``out``; KeyboardInterrupt after cleaning up."""
    say = log or (lambda line: None)
    start = time.monotonic()
    submitted, out = Path(submitted).resolve(), Path(out).resolve()
    if not submitted.is_dir():
        raise RuntimeError(f"{submitted} is not a folder of submissions")
    private = _prepare_output(out)
    lock = resume.OutputLock(out).acquire(" ".join(sys.argv))
    summary = BatchSummary()
    try:
        with scratch.run_scratch(), _sigterm_interrupts():
            engine = _start_engine(executor, workers, scheduler, lock, options, say)
            try:
                _run(submitted, out, private, options, engine, fresh, say, executor, progress, summary, start)
            finally:
                engine.close()
    finally:
        lock.release()
    return summary

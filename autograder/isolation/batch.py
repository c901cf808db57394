"""Grade a class: ``SUBMITTED_DIR/<student>/<assignment>/<notebook>.ipynb`` (nbgrader's layout).

Writes ``OUT_DIR/<student>/<assignment>.json`` (Gradescope schema) for each submission and ``OUT_DIR/grades.csv``;
the instructor-only records (the secret seed of the run, per-submission logs and keys) go to ``OUT_DIR/.instructor/``.
All files are written atomically by this process; submissions are graded by an executor (:mod:`.executors`): this
process, a local pool of processes, or a Dask cluster. A progress bar shows on a terminal.

Interruptions (:mod:`.resume`): a batch holds an exclusive lock on ``OUT_DIR`` (a second one is refused), and each
result is recorded with the content hash of the notebooks it graded and the hash of the run's settings. Running the
same command again after Ctrl-C, ``kill -9`` or a crash regrades only what is missing, changed (a notebook's bytes)
or failed in the grader; finished unchanged results are reused as they are (same file, same ``result_id``). The
seed of the previous run in ``OUT_DIR`` is kept unless ``--seed`` or ``fresh`` says otherwise, so that the whole class
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
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import registry
from ..outcome import GRADER_ERROR, NOTEBOOK_MISSING
from ..seeds import fresh_seed
from . import report, resume, stubs
from .executors import make_executor, options_to_plain
from .grader import NotebookResult, Options, SubmissionResult, grade, grading_cases, zero_result


@dataclass
class Job:
    student: str
    assignment: str
    notebooks: list[Path]


@dataclass
class BatchSummary:
    graded: int = 0                  # graded by this run
    reused: int = 0                  # finished earlier, unchanged, kept as they were
    students: int = 0
    seconds: float = 0.0
    isolation: str = ""
    errors: list[str] = field(default_factory=list)
    seed: int = 0
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


def _empty_result(job: Job, options: Options, seed: int, mode: str, why: str,
                  failure: str = GRADER_ERROR) -> SubmissionResult:
    exercises = registry.assignments().get(job.assignment, [])
    nb = NotebookResult(f"{job.assignment}.ipynb", job.assignment if exercises else None)
    nb.exercises = [zero_result(ex, why, len(grading_cases(ex, seed, options.case_factor)), failure)
                    for ex in exercises]
    nb.notes.append(why)
    return SubmissionResult([nb], seed, mode, "")


def grade_job(job: Job, options: Options, seed: int) -> dict:
    """Grade one submission (runs in a pool process); returns what the parent writes."""
    from .sandbox import isolation_mode

    options.seed = seed
    try:
        if not job.notebooks:
            mode, _ = isolation_mode(options.isolation)
            result = _empty_result(job, options, seed, mode, "no notebook was submitted", NOTEBOOK_MISSING)
        else:
            known = job.assignment in registry.assignments()
            result = grade(job.notebooks, options, assignment=job.assignment if known else None)
        errors = [f"{job.student}/{job.assignment}/{nb.notebook}: {e.splitlines()[0]}"
                  for nb in result.notebooks for e in nb.grader_errors]
        return {"results": report.results_json(result),
                "instructor": report.instructor_record(result, student=job.student, assignment=job.assignment),
                "errors": errors}
    except Exception as exc:  # noqa: BLE001 - a grader bug: still a complete report for this student
        mode, _ = isolation_mode(options.isolation)
        result = _empty_result(job, options, seed, mode, "the grader failed on this submission (not your fault)")
        return {"results": report.results_json(result),
                "instructor": {"student": job.student, "assignment": job.assignment, "seed": seed,
                               "traceback": traceback.format_exc()},
                "errors": [f"{job.student}/{job.assignment}: {type(exc).__name__}: {exc}"]}


def _csv(rows: list[dict], tests: list[str]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["student", "assignment", "score", "max_score", "status", *tests])
    for row in rows:
        writer.writerow([row["student"], row["assignment"], f"{row['score']:g}", f"{row['max_score']:g}",
                         row["status"], *[row["tests"].get(t, "") for t in tests]])
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
    result = _empty_result(job, options, seed, mode, "the grader failed on this submission (not your fault)")
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
                "status": "missing", "tests": {}}
    return {"student": job.student, "assignment": job.assignment, "score": res["score"],
            "max_score": res["extra_data"]["max_score"],
            "status": "grader error" if record.get("errors") else "graded",
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
    out.mkdir(parents=True, exist_ok=True)
    private = out / ".instructor"
    private.mkdir(exist_ok=True)
    os.chmod(private, 0o700)
    lock = resume.OutputLock(out).acquire(" ".join(sys.argv))
    engine = None
    summary = BatchSummary()
    try:
        with _sigterm_interrupts():
            resume.remove_partial_writes(out)
            jobs = discover(submitted)
            workers = max(1, workers or os.cpu_count() or 1)
            engine = make_executor(executor, workers, scheduler, close_fds=(lock.fd,) if lock.fd else ())
            engine.start(options)                   # probes the isolation (here, or on every Dask worker)
            for line in engine.warnings:
                say(f"warning: {line}")
            modes = sorted(engine.modes)
            mode = modes[0] if len(modes) == 1 else "mixed"
            if executor == "local":
                stubs.layout()                      # one sandbox layout for the whole run (removed at exit)
            state = {} if fresh else resume.read_state(out)
            if options.seed is not None:
                seed = options.seed
            elif isinstance(state.get("seed"), int):
                seed, summary.seed_reused = state["seed"], True
            else:
                seed = fresh_seed()
            settings = resume.settings_key(options, seed, "+".join(modes))
            summary.students, summary.seed, summary.submissions = len({j.student for j in jobs}), seed, len(jobs)
            summary.isolation = "bwrap" if modes == ["bwrap"] else f"reduced isolation: {engine.note or mode}"
            summary.executor = engine.describe()

            todo: list[tuple[Job, str]] = []
            for job in jobs:
                content = resume.content_key(job.assignment, _digests(job))
                if not fresh and resume.complete_record(out, job.student, job.assignment, content, settings):
                    summary.reused += 1
                else:
                    todo.append((job, content))
            if summary.reused:
                say(f"resuming in {out}: {summary.reused} of {len(jobs)} submission(s) already graded and "
                    f"unchanged (reused), {len(todo)} to grade"
                    + ("; the previous run's seed is kept (--fresh for a new one)" if summary.seed_reused else ""))
            if todo:
                try:
                    (out / "grades.csv").unlink()   # back once this run is complete, consistent with the files
                except FileNotFoundError:
                    pass
            report.atomic_write(private / resume.STATE_NAME, json.dumps({
                "seed": seed, "settings": settings, "submitted": str(submitted), "complete": False,
                "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "executor": summary.executor}, indent=2) + "\n")
            with open(private / "seeds.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": seed,
                                     "submitted": str(submitted), "cases_factor": options.case_factor,
                                     "submissions": len(jobs), "to_grade": len(todo), "reused": summary.reused,
                                     "seed_kept": summary.seed_reused, "executor": summary.executor}) + "\n")

            keys = {(job.student, job.assignment): content for job, content in todo}
            by_key = {(job.student, job.assignment): job for job, _ in todo}

            def record(task: dict, outcome) -> None:
                job = by_key[(task["student"], task["assignment"])]
                if isinstance(outcome, BaseException):
                    outcome = _failure(job, options, seed, mode, outcome)
                res = outcome["results"]
                result_id = uuid.uuid4().hex
                res.setdefault("extra_data", {})["result_id"] = result_id
                text = json.dumps(res, indent=2) + "\n"
                digests = [(nb["name"], nb["sha256"]) for nb in task["notebooks"]]
                content = resume.content_key(job.assignment, digests)
                if content != keys[(job.student, job.assignment)]:
                    say(f"{job.student}/{job.assignment} changed while the batch ran: its result is for the "
                        f"version it graded")
                instructor = dict(outcome["instructor"], student=job.student, assignment=job.assignment,
                                  result_id=result_id, result_sha256=resume.sha256_bytes(text.encode()),
                                  errors=outcome["errors"], graded_by=outcome.get("graded_by"),
                                  key={"content": content, "settings": settings, "notebooks": dict(digests)})
                report.atomic_write(resume.result_path(out, job.student, job.assignment), text)
                report.atomic_write(resume.record_path(out, job.student, job.assignment),   # last: completes it
                                    json.dumps(instructor, indent=2) + "\n")
                summary.errors += outcome["errors"]
                summary.graded += 1

            from tqdm import tqdm

            show = sys.stderr.isatty() if progress is None else progress
            bar = tqdm(total=len(todo), unit="nb", desc="grading", disable=not show, file=sys.stderr)
            plain = options_to_plain(options, remote=executor == "dask")
            try:
                tasks = (_task(job) for job, _ in todo)
                for task, outcome in engine.map(tasks, plain, seed, getattr(engine, "expect", None), len(todo)):
                    record(task, outcome)
                    bar.update()
            except KeyboardInterrupt:
                say(f"interrupted: {summary.graded} submission(s) graded by this run are saved; run the same "
                    f"command again to grade the {len(todo) - summary.graded} left (finished ones are reused)")
                raise
            finally:
                bar.close()
            rows = sorted((_row(out, job) for job in jobs), key=lambda r: (r["student"], r["assignment"]))
            known = _test_order()
            extra = sorted({t for r in rows for t in r["tests"]} - set(known))
            used = [t for t in known if any(t in r["tests"] for r in rows)] + extra
            report.atomic_write(out / "grades.csv", _csv(rows, used))
            summary.errors += [f"{r['student']}/{r['assignment']}: no result" for r in rows if r["status"] == "missing"]
            summary.seconds = time.monotonic() - start
            report.atomic_write(private / resume.STATE_NAME, json.dumps({
                "seed": seed, "settings": settings, "submitted": str(submitted), "complete": True,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "executor": summary.executor,
                "graded": summary.graded, "reused": summary.reused}, indent=2) + "\n")
    finally:
        if engine is not None:
            engine.close()
        lock.release()
    return summary

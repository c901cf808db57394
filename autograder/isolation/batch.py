"""Grade a class: ``SUBMITTED_DIR/<student>/<assignment>/<notebook>.ipynb`` (nbgrader's layout).

Writes ``OUT_DIR/<student>/<assignment>.json`` (Gradescope schema) for each submission and ``OUT_DIR/grades.csv``;
the instructor-only records (the secret seed of the run, per-submission logs) go to ``OUT_DIR/.instructor/``.
Submissions are graded by a pool of processes (each keeps the oracle's results for the run's cases, which every
student shares); all files are written atomically by this parent process. A progress bar shows on a terminal.
"""
from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from .. import registry
from ..seeds import fresh_seed
from . import report, stubs
from .grader import NotebookResult, Options, SubmissionResult, grade, grading_cases, zero_result


@dataclass
class Job:
    student: str
    assignment: str
    notebooks: list[Path]


@dataclass
class BatchSummary:
    graded: int = 0
    students: int = 0
    seconds: float = 0.0
    isolation: str = ""
    errors: list[str] = field(default_factory=list)
    seed: int = 0

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


def _empty_result(job: Job, options: Options, seed: int, mode: str, why: str) -> SubmissionResult:
    exercises = registry.assignments().get(job.assignment, [])
    nb = NotebookResult(f"{job.assignment}.ipynb", job.assignment if exercises else None)
    nb.exercises = [zero_result(ex, why, len(grading_cases(ex, seed, options.case_factor))) for ex in exercises]
    nb.notes.append(why)
    return SubmissionResult([nb], seed, mode, "")


def grade_job(job: Job, options: Options, seed: int) -> dict:
    """Grade one submission (runs in a pool process); returns what the parent writes."""
    from .sandbox import isolation_mode

    options.seed = seed
    try:
        if not job.notebooks:
            mode, _ = isolation_mode(options.isolation)
            result = _empty_result(job, options, seed, mode, "no notebook was submitted")
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


def run_batch(submitted: Path, out: Path, options: Options, workers: int | None = None,
              progress: bool | None = None) -> BatchSummary:
    """Grade every submission under ``submitted`` into ``out`` (see the module docstring)."""
    from .sandbox import isolation_mode

    start = time.monotonic()
    submitted, out = Path(submitted).resolve(), Path(out).resolve()
    if not submitted.is_dir():
        raise RuntimeError(f"{submitted} is not a folder of submissions")
    jobs = discover(submitted)
    mode, why = isolation_mode(options.isolation)  # probed once here, inherited by the pool's processes
    stubs.layout()                                 # one sandbox layout for the whole run (removed at exit)
    seed = options.seed if options.seed is not None else fresh_seed()
    summary = BatchSummary(students=len({j.student for j in jobs}), isolation=mode if mode == "bwrap" else
                           f"reduced isolation: {why}", seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    private = out / ".instructor"
    private.mkdir(exist_ok=True)
    os.chmod(private, 0o700)
    with open(private / "seeds.jsonl", "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seed": seed,
                             "submitted": str(submitted), "cases_factor": options.case_factor,
                             "submissions": len(jobs)}) + "\n")
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    show = sys.stderr.isatty() if progress is None else progress
    rows: list[dict] = []

    def record(job: Job, outcome: dict) -> None:
        res = outcome["results"]
        report.atomic_write(out / job.student / f"{job.assignment}.json", json.dumps(res, indent=2) + "\n")
        report.atomic_write(private / job.student / f"{job.assignment}.json",
                            json.dumps(outcome["instructor"], indent=2) + "\n")
        summary.errors += outcome["errors"]
        rows.append({"student": job.student, "assignment": job.assignment, "score": res["score"],
                     "max_score": res["extra_data"]["max_score"],
                     "status": "grader error" if outcome["errors"] else "graded",
                     "tests": {t["name"]: f"{t['score']:g}" for t in res["tests"]}})
        summary.graded += 1

    from tqdm import tqdm

    bar = tqdm(total=len(jobs), unit="nb", desc="grading", disable=not show, file=sys.stderr)
    try:
        if workers == 1:
            for job in jobs:
                record(job, grade_job(job, options, seed))
                bar.update()
        else:
            method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(method)) as pool:
                futures = {pool.submit(grade_job, job, options, seed): job for job in jobs}
                for future in as_completed(futures):
                    job = futures[future]
                    try:
                        outcome = future.result()
                    except Exception as exc:  # noqa: BLE001 - a pool process died
                        result = _empty_result(job, options, seed, mode, "the grader failed on this submission "
                                                                         "(not your fault)")
                        outcome = {"results": report.results_json(result),
                                   "instructor": {"error": repr(exc)},
                                   "errors": [f"{job.student}/{job.assignment}: {type(exc).__name__}: {exc}"]}
                    record(job, outcome)
                    bar.update()
    finally:
        bar.close()
    rows.sort(key=lambda r: (r["student"], r["assignment"]))
    known = _test_order()
    extra = sorted({t for r in rows for t in r["tests"]} - set(known))
    used = [t for t in known if any(t in r["tests"] for r in rows)] + extra
    report.atomic_write(out / "grades.csv", _csv(rows, used))
    summary.seconds = time.monotonic() - start
    return summary

"""One submission of a batch, and grading it: shared by :mod:`.batch` (which plans a run) and :mod:`.executors`
(which grade submissions, here or on a cluster), so that neither imports the other.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from pathlib import Path

from .. import registry
from ..outcome import GRADER_ERROR, NOTEBOOK_MISSING
from . import report, selection
from ..engine import zero_result
from .grader import NotebookResult, Options, SubmissionResult, grade, grading_cases


@dataclass
class Job:
    student: str
    assignment: str
    notebooks: list[Path]


def empty_result(job: Job, options: Options, seed: int, mode: str, why: str,
                 failure: str = GRADER_ERROR) -> SubmissionResult:
    exercises = registry.assignments().get(job.assignment, [])
    nb = NotebookResult(f"{job.assignment}.ipynb", job.assignment if exercises else None)
    nb.exercises = [zero_result(ex, why, len(grading_cases(ex, seed, options.case_factor)), failure)
                    for ex in exercises]
    nb.notes.append(why)
    return SubmissionResult([nb], seed, mode, "")


def job_seed(seeds: dict | int | None, job: Job) -> int | None:
    """The seed of ``job`` from a batch's ``{assignment: seed}`` (or one seed for all)."""
    return seeds.get(job.assignment) if isinstance(seeds, dict) else seeds


def grade_job(job: Job, options: Options, seed: dict | int | None) -> dict:
    """Grade one submission (runs in a pool process); returns what the parent writes."""
    from .sandbox import isolation_mode

    seed = options.seed = job_seed(seed, job)
    try:
        if not job.notebooks:
            mode, _ = isolation_mode(options.isolation)
            result = empty_result(job, options, seed, mode, "no notebook was submitted", NOTEBOOK_MISSING)
        else:
            known = job.assignment in registry.assignments()
            result = grade(job.notebooks, options, assignment=job.assignment if known else None)
        errors = [f"{job.student}/{job.assignment}/{nb.notebook}: {e.splitlines()[0]}"
                  for nb in result.notebooks for e in nb.grader_errors]
        counted = next((nb for nb in result.notebooks if nb.exercises), None) if job.notebooks else None
        state = selection.status(job.assignment, job.notebooks, counted, bool(errors))
        return {"results": report.results_json(result),
                "instructor": report.instructor_record(result, student=job.student, assignment=job.assignment,
                                                       status=state),
                "errors": errors}
    except Exception as exc:  # noqa: BLE001 - a grader bug: still a complete report for this student
        mode, _ = isolation_mode(options.isolation)
        result = empty_result(job, options, seed, mode, "the grader failed on this submission (not your fault)")
        return {"results": report.results_json(result),
                "instructor": {"student": job.student, "assignment": job.assignment, "seed": seed,
                               "traceback": traceback.format_exc()},
                "errors": [f"{job.student}/{job.assignment}: {type(exc).__name__}: {exc}"]}

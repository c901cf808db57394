"""Throughput of grading a class: ``nbgrader autograde`` (in-kernel checks) vs ``python -m autograder batch``.

    .venv/bin/python benchmarks/bench_grading.py [--notebooks 4] [--assignments 01,06] [--workers 2]

For each assignment (default: every one in ``solutions/``), a class of N perfect notebooks: the student release
with every answer cell filled in with the reference solution, built by ``examples/make_examples.py`` (what the
example student ``alice`` submits), one copy per student, laid out as nbgrader lays it out in a temporary copy of
the course. Then, per assignment, two separate processes are timed end to end (start-up included):

1. ``nbgrader autograde ASSIGNMENT --force`` (after ``generate_assignment``, not counted): every notebook executed
   in a Jupyter kernel with its own visible and hidden test cells;
2. ``python -m autograder batch CLASS --out ... --workers W``: every notebook in its own bubblewrap sandboxes (forked
   from each grading process's zygote where bubblewrap runs as root: docs/SANDBOX.md; the batch launches the zygotes
   and prepares the first assignment's cases before it forks its grading processes: ``isolation/head_start.py``),
   with the isolated grader's ``--cases-factor`` times more hidden cases.

Printed per assignment and overall: notebooks per minute of each and their ratio; the cases each checks per
notebook (nbgrader: the notebook's own checks, fixed + visible + hidden for each exercise; batch: the cases it
reports); CPU-seconds per notebook (nbgrader: its process and its kernels; batch: its processes, plus its
sandboxes as measured by the grader from ``/proc`` when it stops them, since they are never reaped by it); and
the exercises where either did not give every (perfect) notebook full marks. ``--json`` also writes the figures to a file. Results are recorded in
benchmarks/REPORT.md.

``--repeat R`` runs both R times per assignment, alternately (nbgrader, batch, nbgrader, batch, ...), and reports
each one's median run (by wall time; all of them in the JSON): a machine whose speed drifts, or a transient right
after one of nbgrader's runs, then moves neither figure by itself.
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SANDBOX_CPU = re.compile(r"^\[(\w+) sandbox\] ([0-9.]+) CPU-seconds")


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _examples():
    """``examples/make_examples.py`` as a module (it builds the example submissions)."""
    spec = importlib.util.spec_from_file_location("convlab_make_examples", ROOT / "examples" / "make_examples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _strip_demos(nb: dict) -> dict:
    nb["cells"] = [c for c in nb["cells"] if "demo" not in c.get("metadata", {}).get("tags", [])]
    return nb


def perfect_notebook(assignment: str, strip_demos: bool = False) -> str:
    """The release of ``assignment`` with every answer cell holding the reference solution (as JSON text)."""
    nb = _examples().build("perfect", assignment, "solution")
    return json.dumps(_strip_demos(nb) if strip_demos else nb, indent=1, ensure_ascii=False) + "\n"


def make_class(course: Path, assignment: str, n: int, strip_demos: bool = False) -> list[str]:
    """``course/submitted/<student>/<assignment>/<assignment>.ipynb`` for n students, each a perfect notebook."""
    text = perfect_notebook(assignment, strip_demos)
    students = [f"s{i:03d}" for i in range(n)]
    for student in students:
        target = course / "submitted" / student / assignment / f"{assignment}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        (target.parent / "timestamp.txt").write_text("2026-11-21 12:00:00.000000 UTC")
    return students


def course_copy(tmp: Path, assignments: list[str], strip_demos: bool = False) -> Path:
    """A temporary course root: the assignments' sources and the course's nbgrader configuration. With
    ``strip_demos``, the sources lose their demonstration cells (plots, timing, training), which nbgrader would
    otherwise execute for every student: a lower bound on nbgrader's time, for a fairer comparison."""
    course = tmp / "course"
    (course / "solutions").mkdir(parents=True)
    shutil.copyfile(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    for assignment in assignments:
        shutil.copytree(ROOT / "solutions" / assignment, course / "solutions" / assignment)
        if strip_demos:
            path = course / "solutions" / assignment / f"{assignment}.ipynb"
            path.write_text(json.dumps(_strip_demos(json.loads(path.read_text())), indent=1))
    return course


def _timed(cmd: list[str], **kwargs) -> tuple[float, float, subprocess.CompletedProcess]:
    """``(wall seconds, CPU seconds of the process and every descendant it reaped, completed process)``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, **kwargs)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return seconds, cpu, proc


def run_nbgrader(course: Path, assignment: str) -> tuple[float, float, dict]:
    """``(seconds, CPU seconds, {student: {exercise: score}})`` of ``nbgrader autograde`` over the class."""
    env = _env()
    nbgrader = [sys.executable, "-m", "nbgrader"]
    subprocess.run([*nbgrader, "generate_assignment", assignment, "--force", "--quiet"], cwd=course, env=env,
                   check=True)
    from autograder.integrations.nbgrader_preprocessor import in_kernel_arguments

    # the course config grades in isolation; the baseline measured here is nbgrader's own in-kernel pipeline
    seconds, cpu, proc = _timed([*nbgrader, "autograde", assignment, "--force", *in_kernel_arguments()],
                                cwd=course, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit("nbgrader autograde failed")
    scores: dict = {}
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in gb.students:
            try:
                submission = gb.find_submission(assignment, student.id)
            except Exception:  # noqa: BLE001 - a student of another assignment's class
                continue
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    if grade.name.startswith("test_"):
                        scores.setdefault(student.id, {})[grade.name.removeprefix("test_")] = float(grade.score)
    return seconds, cpu, scores


def run_batch(course: Path, assignment: str, workers: int, factor: int, run: int = 0) -> dict:
    """Time ``batch`` over the class of ``assignment`` (``run``: its own output folder, so nothing is reused):
    seconds, CPU seconds (its processes, and its sandboxes as the grader measured them), scores and cases per
    exercise."""
    submitted = course / "classes" / assignment
    for path in (course / "submitted").glob(f"*/{assignment}"):
        if not (submitted / path.parent.name / assignment).exists():
            shutil.copytree(path, submitted / path.parent.name / assignment)
    out = course / "isolated" / f"{assignment}-{run}"
    seconds, cpu, _ = _timed([sys.executable, "-m", "autograder", "batch", str(submitted), "--out", str(out),
                              "--workers", str(workers), "--cases-factor", str(factor), "--quiet"], cwd=ROOT,
                             env=_env(), check=True)
    scores, cases = {}, {}
    for row in csv.DictReader((out / "grades.csv").read_text().splitlines()):
        scores[row["student"]] = {k: float(v) for k, v in row.items()
                                  if k not in ("student", "assignment", "score", "max_score", "status", "flags")
                                  and v}
    for path in out.glob("*/*.json"):
        for test in json.loads(path.read_text())["tests"]:
            if "cases" in test.get("extra_data", {}) and ": " not in test["name"]:
                cases[test["name"]] = test["extra_data"]["cases"]
    return {"seconds": seconds, "cpu": cpu, "sandbox_cpu": sandbox_cpu(out), "scores": scores, "cases": cases}


def sandbox_cpu(out: Path) -> float:
    """The sandboxes' CPU seconds the grader recorded in the instructor records of a batch's output."""
    total = 0.0
    for path in (out / ".instructor").rglob("*.json"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        for nb in record.get("notebooks", []) if isinstance(record, dict) else []:
            for line in nb.get("sandbox_output", []):
                match = SANDBOX_CPU.match(str(line))
                total += float(match.group(2)) if match else 0.0
    return total


def exercises_of(assignment: str) -> dict:
    """Exercise name -> (points, cases the notebook's own checks run)."""
    from autograder import registry
    from autograder.isolation.grader import notebook_case_count

    return {ex.name: (ex.points, notebook_case_count(ex)) for ex in registry.assignments()[assignment]}


def short_of_full_marks(scores: dict, exercises: dict, n: int) -> dict:
    """Exercise -> how many of the n (perfect) notebooks did not get its full marks (empty: all did)."""
    short = {name: sum(1 for s in scores if abs(scores[s].get(name, 0.0) - points) > 1e-6) + n - len(scores)
             for name, (points, _) in exercises.items()}
    return {name: count for name, count in short.items() if count}


def _median_run(runs: list):
    """The run of median wall time (the lower of the two middle ones for an even count)."""
    middle = statistics.median_low([run[0] for run in runs])
    return next(run for run in runs if run[0] == middle)


def bench_assignment(course: Path, assignment: str, args) -> dict:
    n = args.notebooks
    exercises = exercises_of(assignment)
    row: dict = {"assignment": assignment, "notebooks": n,
                 "nbgrader_cases_per_notebook": sum(c for _, c in exercises.values())}
    nbgrader_runs, batch_runs = [], []
    for run in range(args.repeat):
        if not args.skip_nbgrader:
            print(f"{assignment}: nbgrader autograde, {n} notebooks (run {run + 1}) ...", flush=True)
            nbgrader_runs.append(run_nbgrader(course, assignment))
        print(f"{assignment}: autograder batch, {n} notebooks, {args.workers} workers (run {run + 1}) ...",
              flush=True)
        outcome = run_batch(course, assignment, args.workers, args.cases_factor, run)
        batch_runs.append((outcome["seconds"], outcome))
    if nbgrader_runs:
        seconds, cpu, scores = _median_run(nbgrader_runs)
        row.update(nbgrader_seconds=round(seconds, 2), nbgrader_per_minute=round(60 * n / seconds, 2),
                   nbgrader_cpu_per_notebook=round(cpu / n, 2),
                   nbgrader_short_of_full_marks=short_of_full_marks(scores, exercises, n),
                   nbgrader_runs_seconds=[round(r[0], 2) for r in nbgrader_runs])
    batch = _median_run(batch_runs)[1]
    row["batch_runs_seconds"] = [round(r[0], 2) for r in batch_runs]
    row.update(batch_seconds=round(batch["seconds"], 2), batch_per_minute=round(60 * n / batch["seconds"], 2),
               batch_cpu_per_notebook=round((batch["cpu"] + batch["sandbox_cpu"]) / n, 2),
               batch_sandbox_cpu_per_notebook=round(batch["sandbox_cpu"] / n, 2),
               batch_cases_per_notebook=sum(batch["cases"].get(name, 0) for name in exercises),
               batch_short_of_full_marks=short_of_full_marks(batch["scores"], exercises, n))
    if "nbgrader_seconds" in row:
        row["throughput_ratio"] = round(row["batch_per_minute"] / row["nbgrader_per_minute"], 1)
    row["cases_ratio"] = round(row["batch_cases_per_notebook"] / row["nbgrader_cases_per_notebook"], 1)
    return row


def overall(rows: list[dict]) -> dict:
    """The whole class (every assignment): notebooks per minute and CPU per notebook over the sums."""
    n = sum(r["notebooks"] for r in rows)
    total = {"assignment": "all", "notebooks": n,
             "nbgrader_cases_per_notebook": round(sum(r["nbgrader_cases_per_notebook"] * r["notebooks"]
                                                      for r in rows) / n, 1),
             "batch_cases_per_notebook": round(sum(r["batch_cases_per_notebook"] * r["notebooks"]
                                                   for r in rows) / n, 1)}
    for who in ("nbgrader", "batch"):
        if all(f"{who}_seconds" in r for r in rows):
            seconds = sum(r[f"{who}_seconds"] for r in rows)
            total[f"{who}_seconds"] = round(seconds, 2)
            total[f"{who}_per_minute"] = round(60 * n / seconds, 2)
            total[f"{who}_cpu_per_notebook"] = round(sum(r[f"{who}_cpu_per_notebook"] * r["notebooks"]
                                                         for r in rows) / n, 2)
    if "nbgrader_per_minute" in total:
        total["throughput_ratio"] = round(total["batch_per_minute"] / total["nbgrader_per_minute"], 1)
    total["cases_ratio"] = round(total["batch_cases_per_notebook"] / total["nbgrader_cases_per_notebook"], 1)
    return total


def table(rows: list[dict]) -> str:
    """The figures as a Markdown table (what REPORT.md shows)."""
    head = ("| assignment | nbgrader /min | batch /min | ratio | cases per notebook (nbgrader / batch) | "
            "CPU-s per notebook (nbgrader / batch, of which sandboxes) |")
    lines = [head, "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['assignment']} | {r.get('nbgrader_per_minute', '-')} | {r['batch_per_minute']} | "
                     f"{str(r['throughput_ratio']) + 'x' if 'throughput_ratio' in r else '-'} | "
                     f"{r['nbgrader_cases_per_notebook']} / {r['batch_cases_per_notebook']} "
                     f"({r['cases_ratio']}x) | {r.get('nbgrader_cpu_per_notebook', '-')} / "
                     f"{r['batch_cpu_per_notebook']}" +
                     (f" ({r['batch_sandbox_cpu_per_notebook']})" if "batch_sandbox_cpu_per_notebook" in r else "")
                     + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    available = _examples().assignment_ids()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebooks", "--n", type=int, default=4, help="perfect notebooks per assignment (4)")
    parser.add_argument("--assignments", default=",".join(available),
                        help="comma-separated ids or prefixes (default: all of solutions/)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cases-factor", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--skip-nbgrader", action="store_true")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each per assignment, alternately; the median run is reported (1)")
    parser.add_argument("--nbgrader-without-demos", action="store_true",
                        help="strip the demonstration cells before nbgrader runs (its best case)")
    args = parser.parse_args(argv)
    wanted = [a for a in available if any(a.startswith(p.strip()) for p in args.assignments.split(","))]
    if not wanted:
        raise SystemExit(f"no assignment matches {args.assignments!r} (have: {', '.join(available)})")

    with tempfile.TemporaryDirectory(prefix="convlab-bench-") as tmp:
        course = course_copy(Path(tmp), wanted, args.nbgrader_without_demos)
        rows = []
        for assignment in wanted:
            make_class(course, assignment, args.notebooks, args.nbgrader_without_demos)
            rows.append(bench_assignment(course, assignment, args))
            print(json.dumps(rows[-1]), flush=True)
    rows.append(overall(rows))
    figures = {"notebooks_per_assignment": args.notebooks, "workers": args.workers, "cores": os.cpu_count(),
               "repeat": args.repeat,
               "cases_factor": args.cases_factor, "nbgrader_without_demos": args.nbgrader_without_demos,
               "rows": rows}
    print(json.dumps(figures, indent=2))
    print("\n" + table(rows))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

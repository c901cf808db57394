"""Throughput of grading a class: ``nbgrader autograde`` (in-kernel checks) vs ``python -m autograder batch``.

    .venv/bin/python benchmarks/bench_grading.py [--n 24] [--assignment 01-single-channel] [--workers 2]

Builds N submissions of one assignment from the bundled example students (``examples/submitted``: a correct, a
buggy and a cheating one, repeated), lays them out as nbgrader does in a temporary copy of the course, then times

1. ``nbgrader generate_assignment`` (not counted) and ``nbgrader autograde ASSIGNMENT --force`` over the class:
   every notebook executed in a Jupyter kernel, with the notebook's own visible + hidden checks;
2. ``python -m autograder batch submitted --out ... --workers W``: every notebook in its own sandbox, with the
   isolated grader's (``--cases-factor``) many more cases.

Both are timed end to end as separate processes on this machine (start-up included). It prints notebooks per
minute for each, the ratio, the cases each checks per exercise, and whether both agree on every score that both
grade the same way; ``--json`` writes the figures to a file. Results are recorded in benchmarks/REPORT.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def make_class(course: Path, assignment: str, n: int, strip_demos: bool = False) -> list[str]:
    """``course/submitted/<student>/<assignment>/<assignment>.ipynb`` for n students cycling over the examples
    (without their demonstration cells when ``strip_demos``: nbgrader runs every cell a student submits)."""
    examples = sorted((ROOT / "examples" / "submitted").glob(f"*/{assignment}/{assignment}.ipynb"))
    if not examples:
        raise SystemExit(f"no example submissions for {assignment}: run examples/make_examples.py")
    students = []
    for i in range(n):
        source = examples[i % len(examples)]
        student = f"{source.parts[-3]}{i:03d}"
        target = course / "submitted" / student / assignment / f"{assignment}.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        if strip_demos:
            nb = json.loads(target.read_text())
            nb["cells"] = [c for c in nb["cells"] if "demo" not in c.get("metadata", {}).get("tags", [])]
            target.write_text(json.dumps(nb, indent=1))
        (target.parent / "timestamp.txt").write_text("2026-11-21 12:00:00.000000 UTC")
        students.append(student)
    return students


def course_copy(tmp: Path, assignment: str, strip_demos: bool = False) -> Path:
    """A temporary course root: the assignment's source and the course's nbgrader configuration. With
    ``strip_demos``, the source loses its demonstration cells (plots, timing, training), which nbgrader would
    otherwise execute for every student: a lower bound on nbgrader's time, for a fairer comparison."""
    course = tmp / "course"
    (course / "solutions").mkdir(parents=True)
    shutil.copytree(ROOT / "solutions" / assignment, course / "solutions" / assignment)
    shutil.copyfile(ROOT / "nbgrader_config.py", course / "nbgrader_config.py")
    if strip_demos:
        path = course / "solutions" / assignment / f"{assignment}.ipynb"
        nb = json.loads(path.read_text())
        nb["cells"] = [c for c in nb["cells"] if "demo" not in c.get("metadata", {}).get("tags", [])]
        path.write_text(json.dumps(nb, indent=1))
    return course


def run_nbgrader(course: Path, assignment: str) -> tuple[float, dict]:
    env = _env()
    nbgrader = [sys.executable, "-m", "nbgrader"]
    subprocess.run([*nbgrader, "generate_assignment", assignment, "--force", "--quiet"], cwd=course, env=env,
                   check=True)
    start = time.perf_counter()
    from autograder.integrations.nbgrader_preprocessor import in_kernel_arguments

    # the course config grades in isolation; the baseline measured here is nbgrader's own in-kernel pipeline
    proc = subprocess.run([*nbgrader, "autograde", assignment, "--force", *in_kernel_arguments()], cwd=course,
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        print(proc.stdout[-3000:], proc.stderr[-3000:], file=sys.stderr)
        raise SystemExit("nbgrader autograde failed")
    scores: dict = {}
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student in gb.students:
            submission = gb.find_submission(assignment, student.id)
            for notebook in submission.notebooks:
                for grade in notebook.grades:
                    if grade.name.startswith("test_"):
                        scores.setdefault(student.id, {})[grade.name.removeprefix("test_")] = float(grade.score)
    return seconds, scores


def run_batch(course: Path, workers: int, factor: int) -> tuple[float, dict, dict]:
    out = course / "isolated"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "autograder", "batch", str(course / "submitted"), "--out", str(out),
                    "--workers", str(workers), "--cases-factor", str(factor), "--quiet"], cwd=ROOT, env=_env(),
                   check=True)
    seconds = time.perf_counter() - start
    scores, cases = {}, {}
    for row in csv.DictReader((out / "grades.csv").read_text().splitlines()):
        scores[row["student"]] = {k: float(v) for k, v in row.items()
                                  if k not in ("student", "assignment", "score", "max_score", "status") and v}
    for path in out.glob("*/*.json"):
        for test in json.loads(path.read_text())["tests"]:
            if "cases" in test.get("extra_data", {}) and ": " not in test["name"]:
                cases[test["name"]] = test["extra_data"]["cases"]
    return seconds, scores, cases


def notebook_cases(assignment: str) -> dict:
    from autograder import registry
    from autograder.isolation.grader import notebook_case_count

    return {ex.name: notebook_case_count(ex) for ex in registry.assignments()[assignment]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=24, help="submissions in the class (default 24)")
    parser.add_argument("--assignment", default="01-single-channel")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--cases-factor", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--skip-nbgrader", action="store_true")
    parser.add_argument("--nbgrader-without-demos", action="store_true",
                        help="strip the demonstration cells before nbgrader runs (its best case)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="convlab-bench-") as tmp:
        course = course_copy(Path(tmp), args.assignment, args.nbgrader_without_demos)
        make_class(course, args.assignment, args.n, args.nbgrader_without_demos)
        figures: dict = {"n": args.n, "assignment": args.assignment, "workers": args.workers,
                         "cores": os.cpu_count(), "cases_factor": args.cases_factor,
                         "nbgrader_without_demos": args.nbgrader_without_demos}
        nb_scores: dict = {}
        if not args.skip_nbgrader:
            print(f"nbgrader autograde: {args.n} notebooks ...", flush=True)
            nb_seconds, nb_scores = run_nbgrader(course, args.assignment)
            figures["nbgrader_seconds"] = round(nb_seconds, 2)
            figures["nbgrader_per_minute"] = round(60 * args.n / nb_seconds, 1)
        print(f"autograder batch: {args.n} notebooks, {args.workers} workers ...", flush=True)
        b_seconds, b_scores, b_cases = run_batch(course, args.workers, args.cases_factor)
        figures["batch_seconds"] = round(b_seconds, 2)
        figures["batch_per_minute"] = round(60 * args.n / b_seconds, 1)
        in_notebook = notebook_cases(args.assignment)
        figures["cases_per_exercise"] = {name: {"nbgrader": in_notebook[name], "batch": b_cases.get(name)}
                                         for name in in_notebook}
        if nb_scores:
            figures["throughput_ratio"] = round(figures["batch_per_minute"] / figures["nbgrader_per_minute"], 1)
            # partial credit is proportional to the cases passed, and the two check different case sets: they
            # agree when both give full marks, both give none, or both give partial credit
            def verdict(score: float, full: float) -> str:
                return "full" if score >= full - 1e-9 else ("none" if score <= 1e-9 else "partial")

            from autograder import registry

            points = {ex.name: ex.points for ex in registry.assignments()[args.assignment]}
            disagree = [(s, ex, nb_scores[s].get(ex), b_scores[s].get(ex)) for s in b_scores for ex in b_scores[s]
                        if s in nb_scores and ex in points and
                        verdict(nb_scores[s].get(ex, 0.0), points[ex]) != verdict(b_scores[s][ex], points[ex])]
            figures["score_disagreements"] = disagree
    print(json.dumps(figures, indent=2))
    if "throughput_ratio" in figures:
        ratio = min(v["batch"] / v["nbgrader"] for v in figures["cases_per_exercise"].values() if v["batch"])
        print(f"\nbatch grades {figures['throughput_ratio']}x the notebooks per minute of nbgrader autograde, "
              f"checking at least {ratio:.1f}x as many cases per exercise")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

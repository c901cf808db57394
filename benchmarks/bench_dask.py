"""Throughput of ``python -m autograder batch --executor dask`` with 1 and 2 Dask workers (a ``LocalCluster`` of
processes, one thread each), in notebooks per minute, and where the CPU time goes.

    .venv/bin/python benchmarks/bench_dask.py [--n 48] [--workers 1 2] [--repeat 3] [--cases-factor 10]
                                              [--assignment 01-single-channel] [--local] [--json FILE]

Builds N submissions of one assignment from the bundled example students (``examples/submitted``: correct, buggy and
cheating, repeated). For each worker count it starts a fresh ``LocalCluster``, warms it up on a small class (the
workers' first task imports torch and fills the oracle's cache: that cost is reported apart, as ``cold``), then
times ``batch --executor dask --fresh`` on the class ``--repeat`` times as a separate process, end to end (the
batch process's start, connection and hashing included). Figures: best and median wall time, notebooks per
minute, the CPU seconds per notebook of the batch process (the client side: reading, hashing, writing; for
``--local`` its graders too) and how many cores the whole machine kept busy meanwhile (/proc/stat: the graders, their
sandboxes, the scheduler, and anything else running). ``--local`` also times ``--executor local --workers W``.

On a machine with C cores, if one worker keeps B cores busy (its grader and its sandbox overlap), W workers cannot
be faster than min(W, C / B) times one: the busy-cores figure shows how close to that bound a run came. Results
are recorded in benchmarks/REPORT.md.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONNOUSERSITE"] = "1"
    env.setdefault("MPLBACKEND", "Agg")
    return env


def make_class(root: Path, assignment: str, n: int) -> Path:
    from bench_grading import make_class as _make

    course = root / "course"
    course.mkdir(parents=True, exist_ok=True)
    _make(course, assignment, n)
    return course / "submitted"


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _machine_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine (/proc/stat): the sandboxes are killed, not reaped, by their
    graders, so their CPU time never reaches any parent's rusage; the machine's counters see everything (other
    users' work included)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    total = sum(fields[:8])
    return total - idle, total


def run_batch(submitted: Path, out: Path, args: list[str]) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds of the batch process itself, busy cores of the machine meanwhile, stdout)."""
    cpu0, (busy0, total0), start = _children_cpu(), _machine_cpu(), time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "autograder", "batch", str(submitted), "--out", str(out), "--fresh",
                           *args], cwd=ROOT, env=_env(), capture_output=True, text=True)
    wall = time.perf_counter() - start
    busy1, total1 = _machine_cpu()
    if proc.returncode != 0:
        raise SystemExit(f"batch failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    cores = (busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1)
    return wall, _children_cpu() - cpu0, cores, proc.stdout


def bench_dask(submitted: Path, warm: Path, tmp: Path, workers: int, repeat: int, factor: int) -> dict:
    from distributed import Client, LocalCluster

    common = ["--cases-factor", str(factor)]
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=40) as cluster, Client(cluster, set_as_default=False) as client:
        dask = ["--executor", "dask", "--scheduler", cluster.scheduler_address, *common]
        cold = run_batch(warm, tmp / f"warm-{workers}", dask)[0]
        walls, cpus = [], []
        for i in range(repeat):
            wall, batch_cpu, cores, stdout = run_batch(submitted, tmp / f"dask-{workers}", dask)
            if not re.search(r"graded \d+ submission", stdout):
                raise SystemExit(stdout)
            walls.append(wall)
            cpus.append((batch_cpu, cores))
            print(f"  dask, {workers} worker(s), run {i + 1}: {wall:.1f} s, machine busy {cores:.2f} cores",
                  flush=True)
    return _figures(walls, cpus, cold)


def bench_local(submitted: Path, warm: Path, tmp: Path, workers: int, repeat: int, factor: int) -> dict:
    local = ["--executor", "local", "--workers", str(workers), "--cases-factor", str(factor)]
    walls, cpus = [], []
    for i in range(repeat):
        wall, cpu, cores, _ = run_batch(submitted, tmp / f"local-{workers}", local)
        walls.append(wall)
        cpus.append((cpu, cores))
        print(f"  local, {workers} process(es), run {i + 1}: {wall:.1f} s, machine busy {cores:.2f} cores",
              flush=True)
    return _figures(walls, cpus, None)


N_CLASS = {"n": 0}


def _figures(walls: list[float], cpus: list[tuple[float, float]], cold: float | None) -> dict:
    n = N_CLASS["n"]
    best = min(walls)
    i = walls.index(best)
    out = {"seconds_best": round(best, 2), "seconds_median": round(statistics.median(walls), 2),
           "per_minute_best": round(60 * n / best, 1),
           "per_minute_median": round(60 * n / statistics.median(walls), 1),
           "batch_process_cpu_s_per_notebook": round(cpus[i][0] / n, 3),
           "machine_busy_cores": round(cpus[i][1], 2)}
    if cold is not None:
        out["cold_warmup_seconds"] = round(cold, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=48, help="submissions in the class (default 48)")
    parser.add_argument("--assignment", default="01-single-channel")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cases-factor", type=int, default=10)
    parser.add_argument("--local", action="store_true", help="also time --executor local with as many processes")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    N_CLASS["n"] = args.n

    figures: dict = {"n": args.n, "assignment": args.assignment, "cores": os.cpu_count(),
                     "cases_factor": args.cases_factor, "repeat": args.repeat, "dask": {}, "local": {}}
    with tempfile.TemporaryDirectory(prefix="convlab-bench-dask-") as tmp:
        tmp = Path(tmp)
        submitted = make_class(tmp / "class", args.assignment, args.n)
        warm = make_class(tmp / "warm", args.assignment, 2 * max(args.workers))
        for w in args.workers:
            print(f"dask: {args.n} notebooks, {w} worker(s) ...", flush=True)
            figures["dask"][w] = bench_dask(submitted, warm, tmp, w, args.repeat, args.cases_factor)
            if args.local:
                figures["local"][w] = bench_local(submitted, warm, tmp, w, args.repeat, args.cases_factor)
    if 1 in figures["dask"] and len(figures["dask"]) > 1:
        one = figures["dask"][1]["per_minute_best"]
        figures["speedup"] = {w: round(f["per_minute_best"] / one, 2) for w, f in figures["dask"].items()}
    figures["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(figures, indent=2))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m autograder``: tamper-proof isolated grading.

    python -m autograder grade NOTEBOOK [NOTEBOOK ...] --out RESULT.json [--device cpu|cuda|auto]
                               [--format json|junit|md|table] [--strict-isolation]
    python -m autograder batch SUBMITTED_DIR --out OUT_DIR [--workers N] [--device ...] [--fresh]
                               [--executor local|dask] [--scheduler ADDRESS]
    python -m autograder demo [--out DIR]
    common: [--seed N | --new-seed] [--partial-credit [EXERCISE=]proportional|all-or-nothing]
            [--isolation auto|bwrap|reduced] [--allow-reduced-isolation]

Hidden cases use one seed per assignment, derived from the course secret (autograder.seeds), so every path gives
the same notebook the same score; the seed is recorded only in the instructor's files.

Student code runs in a sandbox (bubblewrap when present); the oracle, the cases and the comparison stay in this
process. Exit status 0 when grading completed, whatever the scores; 1 when the grader itself failed; 2 for a
usage error; 3 when another batch is already grading into the same OUT_DIR; 130 when interrupted (run the same
batch command again to resume: finished, unchanged results are reused).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def defaults() -> dict:
    """The grading defaults the options show, read from the dataclasses that hold them (never restated here)."""
    import dataclasses

    from .isolation.budget import Limits
    from .isolation.grader import Options
    from .isolation.remote import Settings

    option = {f.name: f.default for f in dataclasses.fields(Options)}
    setting = {f.name: f.default for f in dataclasses.fields(Settings)}
    return {"device": option["device"], "cases_factor": option["case_factor"], "memory": Limits().memory_bytes >> 20,
            "call_timeout": setting["call_timeout"], "cell_timeout": setting["cell_timeout"]}


def _add_common(p: argparse.ArgumentParser) -> None:
    d = defaults()
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default=d["device"],
                   help="where the torch oracle runs (default: %(default)s)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the hidden cases (default: the assignment's seed derived from the course secret; "
                        "recorded for the instructor only)")
    p.add_argument("--new-seed", action="store_true",
                   help="a deliberate new draw of hidden cases for this run (recorded for the instructor)")
    p.add_argument("--partial-credit", action="append", default=[], metavar="[EXERCISE=]MODE",
                   help="proportional (default) or all-or-nothing, for every exercise or one (repeatable)")
    p.add_argument("--allow-reduced-isolation", action="store_true",
                   help="accept reduced isolation where bubblewrap is unusable (also CONVLAB_ALLOW_REDUCED=1)")
    p.add_argument("--cases-factor", type=int, default=d["cases_factor"], metavar="K",
                   help="hidden cases per exercise: K times the notebook check's count (default: %(default)s)")
    p.add_argument("--course", type=Path, default=None,
                   help="course root holding solutions/<id>/<id>.ipynb (default: $CONVLAB_COURSE, else the "
                        "nbgrader course directory: the working directory or a parent with nbgrader_config.py)")
    p.add_argument("--isolation", choices=("auto", "bwrap", "reduced"), default=None,
                   help="sandbox: bubblewrap, reduced (rlimits and a process group), or auto (default)")
    p.add_argument("--memory", type=int, default=d["memory"], metavar="MiB",
                   help="memory of the whole sandbox (default %(default)s)")
    p.add_argument("--call-timeout", type=float, default=d["call_timeout"], metavar="S",
                   help="wall-clock limit of one call of a student's function (default %(default)s)")
    p.add_argument("--cell-timeout", type=float, default=d["cell_timeout"], metavar="S",
                   help="wall-clock limit of one notebook cell (default %(default)s)")


def _seed_choice(args) -> tuple[int | None, str]:
    """``(override, origin)`` from ``--seed`` / ``--new-seed`` (None: the course seed of each assignment)."""
    from .seeds import new_draw

    if args.seed is not None and args.new_seed:
        raise ValueError("--seed and --new-seed exclude each other")
    if args.new_seed:
        return new_draw(), "new draw (--new-seed)"
    return args.seed, ("--seed" if args.seed is not None else "")


def guard_isolation(args, strict: bool) -> None:
    """Print (and, when ``strict``, refuse) reduced isolation: :mod:`autograder.isolation.guard`."""
    from .isolation.guard import check

    check(args.isolation, strict=strict or getattr(args, "strict_isolation", False),
          allow_reduced=getattr(args, "allow_reduced_isolation", False))


def _options(args):
    from .course import course_root
    from .isolation.grader import Options
    from .isolation.remote import Settings
    from .scoring import CreditPolicy
    from .isolation.sandbox import Limits
    from .oracle import resolve_device

    settings = Settings(cell_timeout=args.cell_timeout, call_timeout=args.call_timeout,
                        limits=Limits(memory_bytes=args.memory << 20))
    seed, origin = _seed_choice(args)
    options = Options(device=resolve_device(args.device), seed=seed, seed_origin=origin,
                      case_factor=args.cases_factor, isolation=args.isolation, settings=settings,
                      partial_credit=tuple(CreditPolicy.parse(args.partial_credit).as_specs()),
                      course=course_root(args.course))
    return options


def cmd_grade(args) -> int:
    from rich.console import Console

    from .isolation import report
    from .isolation.grader import grade
    from .seeds import describe as seeds_describe

    missing = [p for p in args.notebooks if not Path(p).exists()]
    if missing:
        print(f"error: no such notebook: {', '.join(map(str, missing))}", file=sys.stderr)
        return 2
    guard_isolation(args, strict=False)
    options = _options(args)
    result = grade([Path(p) for p in args.notebooks], options, assignment=args.assignment)
    out = Path(args.out)
    report.atomic_write(out, report.render(result, args.format))
    sidecar = out.with_name(out.name + ".instructor.json")
    report.atomic_write(sidecar, json.dumps(report.instructor_record(
        result, command="grade", notebooks_given=[str(p) for p in args.notebooks],
        seed_source=seeds_describe(options.seed, options.seed_origin)), indent=2) + "\n")
    if not args.quiet:
        report.render_table(result, Console(stderr=False), feedback=False)
        print(f"wrote {out} ({args.format}); seed and logs for the instructor: {sidecar}")
    for nb in result.notebooks:
        for err in nb.grader_errors:
            print(f"grader error in {nb.notebook}: {err}", file=sys.stderr)
    return 1 if result.grader_failed else 0


def cmd_batch(args) -> int:
    from .isolation.batch import run_batch
    from .isolation.resume import BatchLocked

    if args.scheduler and args.executor != "dask":
        print("error: --scheduler needs --executor dask", file=sys.stderr)
        return 2
    if args.executor == "dask" and not args.scheduler:
        print("error: --executor dask needs --scheduler ADDRESS (e.g. tcp://10.0.0.5:8786)", file=sys.stderr)
        return 2
    guard_isolation(args, strict=False)
    device = args.device
    if args.executor == "dask":
        args.device = "cpu"         # resolved where the grading runs: on the Dask workers
    options = _options(args)
    options.device = device if args.executor == "dask" else options.device
    say = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    try:
        summary = run_batch(Path(args.submitted), Path(args.out), options, workers=args.workers,
                            progress=None if not args.quiet else False, executor=args.executor,
                            scheduler=args.scheduler, fresh=args.fresh, log=say)
    except BatchLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    if not args.quiet:
        print(f"graded {summary.graded} submission(s), reused {summary.reused} unchanged, of "
              f"{summary.students} student(s) in {summary.seconds:.1f} s ({summary.per_minute:.0f} notebooks/min, "
              f"{summary.executor}, {summary.isolation}); grades: {Path(args.out) / 'grades.csv'}")
    for line in summary.errors:
        print(f"grader error: {line}", file=sys.stderr)
    return 1 if summary.errors else 0


def cmd_demo(args) -> int:
    from .isolation.demo import run_demo

    guard_isolation(args, strict=True)      # `make demo` shows the real thing, or says why not
    return run_demo(Path(args.out) if args.out else None, _options(args), workers=args.workers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m autograder", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    g = sub.add_parser("grade", help="grade one student's notebooks")
    g.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    g.add_argument("--out", required=True, metavar="RESULT.json")
    g.add_argument("--format", choices=("json", "junit", "md", "table"), default="json")
    g.add_argument("--assignment", default=None, help="assignment id (default: recognised from the notebook)")
    g.add_argument("--quiet", action="store_true", help="print nothing on success")
    g.add_argument("--strict-isolation", action="store_true",
                   help="refuse to grade with reduced isolation unless explicitly allowed (what templates use)")
    _add_common(g)
    g.set_defaults(func=cmd_grade)

    b = sub.add_parser("batch", help="grade a class: SUBMITTED_DIR/<student>/<assignment>/<notebook>.ipynb")
    b.add_argument("submitted", metavar="SUBMITTED_DIR")
    b.add_argument("--out", required=True, metavar="OUT_DIR")
    b.add_argument("--workers", type=int, default=None,
                   help="parallel graders with --executor local (default: CPU count)")
    b.add_argument("--executor", choices=("local", "dask"), default="local",
                   help="local processes (default), or the workers of a Dask cluster (docs/SCALING.md)")
    b.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="the Dask scheduler, e.g. tcp://10.0.0.5:8786 (with --executor dask)")
    b.add_argument("--fresh", action="store_true",
                   help="ignore earlier results and an earlier deliberate draw in OUT_DIR: regrade everything "
                        "(on the course seeds, or a new draw with --new-seed)")
    b.add_argument("--quiet", action="store_true")
    _add_common(b)
    b.set_defaults(func=cmd_batch)

    d = sub.add_parser("demo", help="grade the bundled example submissions and show the feedback")
    d.add_argument("--out", default=None, help="output folder (default: demo-results/)")
    d.add_argument("--workers", type=int, default=None)
    _add_common(d)
    d.set_defaults(func=cmd_demo)
    from .analytics.command import add_command as add_report_command

    add_report_command(sub)
    _integration_commands(sub)
    return parser


def _integration_commands(sub, package_name: str = f"{__package__}.integrations") -> None:
    """Subcommands contributed by :mod:`autograder.integrations` modules: each module may define
    ``add_command(subparsers, add_common, options_from_args)``, which adds its parser and sets ``func``.

    An integration that needs a third-party package which is not installed is left out with a note on stderr;
    any other failure to import it (a bug) is raised, never hidden."""
    import importlib
    import pkgutil

    package = importlib.import_module(package_name)
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        if info.name.endswith("_preprocessor"):
            continue            # loaded by nbgrader itself (nbgrader_config.py), not a command
        module = _import_integration(f"{package.__name__}.{info.name}")
        hook = getattr(module, "add_command", None)
        if callable(hook):
            hook(sub, _add_common, _options)


def _import_integration(name: str):
    """The integration module ``name``, or None (with a note) when a third-party package it needs is missing."""
    import importlib

    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        own = (exc.name or "").split(".")[0] in (__package__, name.split(".")[0])
        if own or not exc.name:
            raise
        print(f"note: {name} is unavailable: it needs {exc.name!r}, which is not installed", file=sys.stderr)
        return None


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (RuntimeError, ValueError, OSError) as exc:   # includes a refused reduced isolation
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())

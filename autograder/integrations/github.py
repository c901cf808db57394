"""GitHub Classroom: provisional feedback in the student's repository, the grade that counts on the instructor's side.

A student's repository (and its Actions runner, which the student controls) only ever gets what students may see:

``python -m autograder github NOTEBOOK [...] --out-dir DIR --provisional`` (what the template workflow
``templates/github-classroom/.github/workflows/convlab.yml`` runs, with the student edition ``convlab-course``)
grades on the visible cases plus public random cases (:func:`autograder.seeds.public_seed`; no course secret
exists there) and marks every point *provisional*. It writes ``DIR/results.json`` (Gradescope schema),
``DIR/junit.xml`` and ``DIR/summary.md``; appends the Markdown to ``$GITHUB_STEP_SUMMARY`` and ``points=X/Y`` to
``$GITHUB_OUTPUT`` when those are set, and prints ``Points X/Y``. With no notebook at all it still writes a summary
(:func:`no_notebook`).

The grade that counts: ``python -m autograder github-collect`` clones every student's repository (with the
instructor's own git credentials) into nbgrader's layout ``SUBMITTED/<student>/<assignment>/``, recording each
commit; then ``python -m autograder batch SUBMITTED --out graded`` grades the class on the course seed.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..isolation import report
from ..isolation.grader import Options, SubmissionResult, grade

PROVISIONAL = ("Provisional: checked on the visible and public random cases only. Your grade is computed by your "
               "instructor, on hidden cases, from the last commit before the deadline.")
URL_TEMPLATE = "https://github.com/{org}/{assignment}-{student}.git"


def _append(env_var: str, text: str) -> None:
    target = os.environ.get(env_var)
    if target:
        with open(target, "a", encoding="utf-8") as fh:
            fh.write(text if text.endswith("\n") else text + "\n")


def points_line(result: SubmissionResult) -> str:
    return f"{result.score:g}/{result.max_score:g}"


def no_notebook(out_dir: Path) -> None:
    """The summary when nothing was pushed: a report that says so, and 0 points."""
    text = "# convlab: no notebook found\n\nPush your assignment notebook (`.ipynb`) to this repository.\n"
    out_dir = Path(out_dir)
    report.atomic_write(out_dir / "summary.md", text)
    report.atomic_write(out_dir / "results.json", json.dumps(
        {"score": 0, "output": "No notebook (.ipynb) was found in this repository.", "tests": []}, indent=2) + "\n")
    _append("GITHUB_STEP_SUMMARY", text)
    _append("GITHUB_OUTPUT", "points=0/0")
    print("Points 0/0 (no notebook found)")


def _own_release(notebooks: list[Path], options: Options, assignment: str | None, tmp: Path) -> None:
    """Student side without the course's release notebooks (a bare student edition): each notebook's own cells
    stand in for the pristine ones, in a temporary course root. Only provisional points can come from this."""
    from .. import registry
    from ..isolation.grader import source_notebook
    from ..isolation.submission import NotebookError, read_notebook, recognise

    names = {aid: [e.name for e in exs] for aid, exs in registry.assignments().items()}
    for nb in notebooks:
        try:
            aid = assignment or recognise(read_notebook(Path(nb)), Path(nb), {}, names)
        except NotebookError:
            continue
        if aid and not source_notebook(options.course, aid).is_file():
            target = tmp / "assignments" / aid / f"{aid}.ipynb"
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(nb, target)
                options.course = tmp


def run(notebooks: list[Path], out_dir: Path, options: Options, assignment: str | None = None,
        provisional: bool = False) -> SubmissionResult:
    options.public_cases = options.public_cases or provisional
    with tempfile.TemporaryDirectory(prefix="convlab-provisional-") as tmp:
        if provisional:
            _own_release(notebooks, options, assignment, Path(tmp))
        result = grade(notebooks, options, assignment=assignment)
    out_dir = Path(out_dir)
    results = report.results_json(result)
    summary = report.render(result, "md")
    if provisional:
        results["output"] = f"{PROVISIONAL}\n{results['output']}"
        results["extra_data"]["provisional"] = True
        summary = f"> **{PROVISIONAL}**\n\n{summary}"
    report.atomic_write(out_dir / "results.json", json.dumps(results, indent=2) + "\n")
    report.atomic_write(out_dir / "junit.xml", report.render(result, "junit"))
    report.atomic_write(out_dir / "summary.md", summary)
    if not provisional:        # the seed is the course's: it stays with the instructor
        report.atomic_write(out_dir / "instructor.json",
                            json.dumps(report.instructor_record(result, command="github"), indent=2) + "\n")
    _append("GITHUB_STEP_SUMMARY", summary)
    _append("GITHUB_OUTPUT", f"points={points_line(result)}")
    print(f"Points {points_line(result)}" + (" (provisional)" if provisional else ""))
    return result


# ------------------------------------------------------------------------------------------ instructor side

def _git(*args: str, cwd: Path | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip() or f"git {' '.join(args)} failed")
    return proc.stdout.strip()


def read_roster(path: Path) -> list[tuple[str, str | None]]:
    """``student`` or ``student,repository-url`` per line; ``#`` comments and blank lines ignored."""
    out = []
    for line in Path(path).read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            student, _, url = (part.strip() for part in line.partition(","))
            out.append((student, url or None))
    return out


def _notebooks(tree: Path) -> list[Path]:
    return sorted(p for p in tree.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and ".git" not in p.parts)


def collect_one(url: str, dest: Path, before: str | None = None) -> str:
    """Clone ``url``, check out the last commit before ``before`` (any date git understands), copy its notebooks
    into ``dest`` (flat; a clash keeps the folder in the name); returns the commit ('' for an empty repository)."""
    with tempfile.TemporaryDirectory(prefix="convlab-collect-") as tmp:
        repo = Path(tmp) / "repo"
        _git("clone", "--quiet", *(() if before else ("--depth", "1")), url, str(repo))
        commit = _git("rev-list", "-1", *((f"--before={before}",) if before else ()), "HEAD", cwd=repo) \
            if _git("branch", "--list", cwd=repo) else ""
        if commit:
            _git("checkout", "--quiet", commit, cwd=repo)
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        for nb in _notebooks(repo) if commit else []:
            name = nb.name if not (dest / nb.name).exists() else "__".join(nb.relative_to(repo).parts)
            shutil.copyfile(nb, dest / name)
        (dest / ".commit").write_text(f"{url} {commit}\n")
    return commit


def collect(roster: Path, assignment: str, submitted: Path, org: str = "", url_template: str = URL_TEMPLATE,
            before: str | None = None) -> dict[str, str]:
    """Every roster student's repository into ``submitted/<student>/<assignment>/``; student -> commit or error."""
    outcome = {}
    for student, url in read_roster(roster):
        url = url or url_template.format(org=org, assignment=assignment, student=student)
        try:
            outcome[student] = collect_one(url, Path(submitted) / student / assignment, before) or "empty"
        except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
            (Path(submitted) / student / assignment).mkdir(parents=True, exist_ok=True)
            outcome[student] = f"error: {exc}"
    return outcome


def add_command(sub, add_common, options_from_args) -> None:
    p = sub.add_parser("github", help="grade in GitHub Actions: JSON, JUnit and Markdown reports, job summary, points")
    p.add_argument("notebooks", nargs="*", metavar="NOTEBOOK")
    p.add_argument("--out-dir", required=True, type=Path, metavar="DIR")
    p.add_argument("--assignment", default=None, help="assignment id (default: recognised from the notebook)")
    p.add_argument("--provisional", action="store_true",
                   help="student side: public cases only, no course secret; points marked provisional")
    add_common(p)

    def cmd(args) -> int:
        from ..cli import guard_isolation
        from ..course import find_course

        if not args.notebooks:
            no_notebook(args.out_dir)
            return 0
        missing = [n for n in args.notebooks if not Path(n).is_file()]
        if missing:
            raise ValueError(f"no such notebook: {', '.join(missing)}")
        guard_isolation(args, strict=True)
        with tempfile.TemporaryDirectory(prefix="convlab-provisional-") as tmp:
            if args.provisional and find_course(args.course) is None:
                args.course = Path(tmp)     # a student's repository knows no course: the notebooks' own cells
            result = run([Path(n) for n in args.notebooks], args.out_dir, options_from_args(args), args.assignment,
                         args.provisional)
        return 1 if result.grader_failed else 0

    p.set_defaults(func=cmd)

    c = sub.add_parser("github-collect", help="instructor side: clone every student's repository into "
                                              "SUBMITTED/<student>/<assignment>/ (then run batch)")
    c.add_argument("assignment", metavar="ASSIGNMENT")
    c.add_argument("--roster", required=True, type=Path, help="one student per line, or student,repository-url")
    c.add_argument("--org", default="", help="GitHub organisation of the classroom")
    c.add_argument("--url-template", default=URL_TEMPLATE,
                   help=f"repository of a student (default: {URL_TEMPLATE})")
    c.add_argument("--before", default=None, metavar="DATE", help="the last commit before this date (deadline)")
    c.add_argument("--submitted", type=Path, default=Path("submitted"), metavar="DIR")

    def collect_cmd(args) -> int:
        outcome = collect(args.roster, args.assignment, args.submitted, args.org, args.url_template, args.before)
        for student, what in outcome.items():
            print(f"{student}: {what}")
        failed = [s for s, what in outcome.items() if what.startswith("error")]
        print(f"collected {len(outcome) - len(failed)} of {len(outcome)} repositories into {args.submitted}; next: "
              f"python -m autograder batch {args.submitted} --out graded")
        return 1 if failed else 0

    c.set_defaults(func=collect_cmd)

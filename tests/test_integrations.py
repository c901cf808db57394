"""Grades reach every workflow, tamper-proof and without leaking anything: nbgrader's own autograde, Gradescope's
autograder, GitHub Classroom (student side provisional, instructor side collected and batch-graded).

Each test runs the real thing locally: a real nbgrader course copy and a plain `nbgrader autograde`, a directory
laid out like Gradescope's with the built zip's `run_autograder` (as root: the student's code as `nobody`), the
workflow's own shell steps with GitHub's environment files, real `git clone`s of local repositories.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest
import yaml

from autograder.seeds import course_seed, secret_text
from tests.coursecopy import ROOT, fill_answers, make_course, nbgrader, solution_answers

pytestmark = pytest.mark.slow
AID = "01-single-channel"
RELEASE = ROOT / "assignments" / AID / f"{AID}.ipynb"
WORKFLOW = ROOT / "templates" / "github-classroom" / ".github" / "workflows" / "convlab.yml"

# Fools in-kernel grading (the answer cell replaces `check` after the locked setup cell imported it) and is
# wrong; the isolated grader never runs the student's copy of test cells, nor their `check`.
CHEAT = {"sobel_magnitude": '''import numpy as np
def sobel_magnitude(img):
    return np.zeros((img.shape[0] - 2, img.shape[1] - 2))
check = lambda name, fn, **kw: {"corr2d": 3.0, "convolve2d": 2.0, "sobel_magnitude": 2.0}[name]
'''}


def autograder(*args: str, cwd: Path = ROOT, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


def _export(course: Path) -> dict[str, float]:
    nbgrader(course, "export")
    with open(course / "grades.csv") as fh:
        return {r["student_id"]: float(r["score"]) for r in csv.DictReader(fh)}


# ------------------------------------------------------------------------------------------ nbgrader

def test_plain_nbgrader_autograde_uses_the_isolated_grader(tmp_path):
    course = make_course(tmp_path / "course", [AID])
    nbgrader(course, "generate_assignment", AID, "--force")
    release = course / "assignments" / AID / f"{AID}.ipynb"
    answers = solution_answers(AID)
    fill_answers(release, answers, course / "submitted" / "alice" / AID / f"{AID}.ipynb")
    fill_answers(release, {**answers, **CHEAT}, course / "submitted" / "mallory" / AID / f"{AID}.ipynb")
    nbgrader(course, "autograde", AID, "--force")          # formgrader's Autograde button: nbgrader's own pipeline
    assert _export(course) == {"alice": 7.0, "mallory": 5.0}   # the cheat bought nothing
    record = json.loads((course / ".convlab-records" / "nbgrader" / AID / "mallory.json").read_text())
    assert record["seed"] == course_seed(course, AID) and record["notebooks"][0]["flags"]
    assert any("redefines check" in f for f in record["flags"])
    assert oct((course / ".convlab-records").stat().st_mode & 0o777) == "0o700"
    nbgrader(course, "generate_feedback", AID, "--force")
    html = next((course / "feedback" / "mallory" / AID).glob("*.html")).read_text()
    assert "sobel_magnitude" in html and "First failing case" in html
    assert "BEGIN HIDDEN TESTS" not in html and "hidden=True" not in html
    # one late submission, through our command: only that student is regraded, same score
    fill_answers(release, answers, course / "submitted" / "bob" / AID / f"{AID}.ipynb")
    proc = autograder("nbgrader", AID, "--course", str(course), "--student", "bob")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "bob: 7" in proc.stdout and "mallory" not in proc.stdout
    assert _export(course) == {"alice": 7.0, "bob": 7.0, "mallory": 5.0}


# ------------------------------------------------------------------------------------------ Gradescope

def _solution_cells(aid: str) -> dict[str, list[str]]:
    """Per answer cell, the lines of the reference answer that the release does not show (what a leak contains)."""
    release = (ROOT / "assignments" / aid / f"{aid}.ipynb").read_text()
    out = {}
    for gid, source in solution_answers(aid).items():
        lines = [ln.strip() for ln in source.splitlines()
                 if len(ln.strip()) > 15 and json.dumps(ln.strip())[1:-1] not in release]
        if len(lines) >= 2:
            out[gid] = lines
    assert out, "the check needs solution code to look for"
    return out


def _leaks(aid: str, texts: dict[str, str]) -> list[tuple[str, str]]:
    """(file, answer cell) where a file holds at least half of a reference answer's hidden lines."""
    return [(name, gid) for gid, lines in _solution_cells(aid).items() for name, text in texts.items()
            if sum(line in text for line in lines) >= max(2, len(lines) / 2)]


@pytest.mark.parametrize("aid", ["01-single-channel", "06-conv-bn-fusion"])
def test_gradescope_zip_holds_no_solution_and_no_secret(tmp_path, aid):
    zip_path = tmp_path / "autograder.zip"
    proc = autograder("gradescope", aid, "--out", str(zip_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    secret = secret_text(ROOT)
    with zipfile.ZipFile(zip_path) as zf:
        names = zf.namelist()
        texts = {n: zf.read(n).decode("utf-8", errors="replace") for n in names}
    assert not [n for n in names if "solutions/" in n or "examples/" in n or "secret" in n], names
    assert f"convlab/assignments/{aid}/{aid}.ipynb" in names
    assert not [n for n, t in texts.items() if secret in t]
    assert not _leaks(aid, texts)
    assert _leaks(aid, {"solutions": (ROOT / "solutions" / aid / f"{aid}.ipynb").read_text()})  # the check works
    assert f"--seed {course_seed(ROOT, aid)}" in texts["run_autograder"]   # the derived seed, baked


def _gradescope_root(tmp_path: Path) -> Path:
    """A world-traversable folder laid out like /autograder (the sandbox user must reach the datasets)."""
    root = Path(tempfile.mkdtemp(prefix="convlab-gs-", dir="/tmp"))
    os.chmod(root, 0o755)
    (tmp_path / "gs-root").symlink_to(root)
    return root


def _python_for_nobody(tmp_path: Path) -> str:
    """An interpreter the unprivileged user can run: /usr/bin/python3.11 with this venv's packages (the course's
    own interpreter lives under /root here). Gradescope's image has /opt/convlab-venv (setup.sh)."""
    venv = Path(tempfile.mkdtemp(prefix="convlab-venv-", dir="/tmp"))
    subprocess.run(["/usr/bin/python3.11", "-m", "venv", "--without-pip", str(venv)], check=True)
    site = venv / "lib" / "python3.11" / "site-packages"
    shutil.rmtree(site)
    site.symlink_to(Path(sys.prefix) / "lib" / "python3.11" / "site-packages")
    os.chmod(venv, 0o755)
    return str(venv / "bin" / "python")


ATTACK = '''import os, socket
def _leaks():
    root = os.environ.get("CONVLAB_ATTACK_ROOT", "{root}")
    found = []
    for path in (root + "/source/run_autograder", root + "/source/convlab/autograder/seeds.py",
                 root + "/results/other.json", root + "/submission_metadata.json"):
        try:
            open(path).read(1)
            found.append(path)
        except Exception:
            pass
    try:
        open(root + "/results/results.json", "w").write("{{}}")
        found.append("wrote results")
    except Exception:
        pass
    try:
        socket.create_connection(("127.0.0.1", {port}), timeout=1).close()
        found.append("network")
    except Exception:
        pass
    return found
LEAKS = _leaks()
def corr2d(x, k):
    if LEAKS:
        return x[:1, :1] * 0 + len(LEAKS)
    windows = np.lib.stride_tricks.sliding_window_view(x, k.shape)
    return np.einsum("ijab,ab->ij", windows, k)
'''


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not Path("/usr/bin/python3.11").exists(),
                    reason="needs root, setpriv and a system Python 3.11 (as in Gradescope's image)")
def test_gradescope_without_bubblewrap_runs_student_code_as_nobody(tmp_path):
    zip_path = tmp_path / "autograder.zip"
    assert autograder("gradescope", AID, "--out", str(zip_path)).returncode == 0
    from autograder.integrations.gradescope import extract

    root = _gradescope_root(tmp_path)
    python = _python_for_nobody(tmp_path)
    try:
        extract(zip_path, root / "source")
        (root / "results").mkdir()
        (root / "results" / "other.json").write_text('{"score": 99}')
        (root / "submission_metadata.json").write_text('{"users": []}')
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        # a name with spaces; the attack reads the zip, other results, metadata; writes results; uses the network
        attack = ATTACK.format(root=root, port=port)
        fill_answers(RELEASE, {**solution_answers(AID), "corr2d": attack}, root / "submission" / "my homework.ipynb")
        run = subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True, text=True,
                             timeout=600, env={**os.environ, "GRADESCOPE_ROOT": str(root),
                                               "CONVLAB_PYTHON": python,
                                               "CONVLAB_ISOLATION": "reduced"})   # a container without bwrap
        listener.close()
        assert run.returncode == 0, run.stdout + run.stderr
        results = json.loads((root / "results" / "results.json").read_text())
        scores = {t["name"]: t["score"] for t in results["tests"]}
        assert scores == {"corr2d": 3.0, "convolve2d": 2.0, "sobel_magnitude": 2.0}, results["output"]
        assert "unprivileged user 'nobody'" in results["output"] and results["extra_data"]["isolation"] == "reduced"
        assert "seed" not in json.dumps(results).lower()
        sidecar = json.loads((root / "results" / "results.json.instructor.json").read_text())
        assert sidecar["seed"] == course_seed(ROOT, AID) and "reduced isolation" in sidecar["flags"]
        # the positive control: the same attack, run as root in the same folder, sees all of it
        probe = subprocess.run([sys.executable, "-c", attack.replace("import os", "import numpy as np, os", 1)
                                + "\nprint(LEAKS)"], capture_output=True, text=True, timeout=60)
        assert "run_autograder" in probe.stdout and "wrote results" in probe.stdout, probe.stderr
    finally:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(Path(python).parents[1], ignore_errors=True)


def test_gradescope_reports_a_grader_fault_as_a_clear_zero(tmp_path):
    zip_path = tmp_path / "autograder.zip"
    assert autograder("gradescope", AID, "--out", str(zip_path)).returncode == 0
    from autograder.integrations.gradescope import extract

    root = tmp_path / "autograder"
    extract(zip_path, root / "source")
    fill_answers(RELEASE, solution_answers(AID), root / "submission" / f"{AID}.ipynb")
    tools = tmp_path / "bin"                     # the usual tools, but no bubblewrap, which is required here
    tools.mkdir()
    for tool in ("bash", "find", "sort", "chmod", "mkdir", "mktemp", "cat", "tail", "id"):
        (tools / tool).symlink_to(shutil.which(tool))
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "PATH": str(tools), "GRADESCOPE_ROOT": str(root),
                                           "CONVLAB_PYTHON": sys.executable, "CONVLAB_ISOLATION": "bwrap"})
    assert run.returncode == 0, run.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0 and "could not grade this submission safely" in results["output"]
    assert "bubblewrap" in results["output"]


def test_gradescope_without_a_notebook_reports_why(tmp_path):
    zip_path = tmp_path / "autograder.zip"
    assert autograder("gradescope", AID, "--out", str(zip_path)).returncode == 0
    from autograder.integrations.gradescope import extract

    root = tmp_path / "autograder"
    extract(zip_path, root / "source")
    (root / "submission").mkdir()
    subprocess.run(["bash", str(root / "source" / "run_autograder")], check=True, capture_output=True,
                   env={**os.environ, "GRADESCOPE_ROOT": str(root), "CONVLAB_PYTHON": sys.executable})
    results = json.loads((root / "results" / "results.json").read_text())
    assert results["score"] == 0 and "No notebook" in results["output"]


# ------------------------------------------------------------------------------------------ GitHub Classroom

def _steps() -> dict[str, dict]:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    return {s.get("name") or s.get("uses"): s for s in next(iter(workflow["jobs"].values()))["steps"]}


def test_github_template_uses_no_secret_and_checks_out_only_the_students_repository():
    text = WORKFLOW.read_text()
    assert "secrets." not in text and "token" not in text.lower()
    steps = _steps()
    checkouts = [s for s in steps.values() if str(s.get("uses", "")).startswith("actions/checkout")]
    assert len(checkouts) == 1 and not checkouts[0].get("with")
    assert steps["actions/setup-python@v5"]["with"]["cache"] == "pip"
    grade = steps["Grade (provisional)"]["run"]
    assert "python -m autograder.selfcheck" in grade      # in the student edition (the instructor CLI is not)
    requirements = (WORKFLOW.parents[1] / "convlab-requirements.txt").read_text()
    assert "convlab-course" in requirements and "download.pytorch.org/whl/cpu" in requirements


def _run_grade_step(work: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, str, str]:
    script = _steps()["Grade (provisional)"]["run"].replace("python -m autograder", f"{sys.executable} -m autograder")
    summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
    summary.write_text("")
    output.write_text("")
    run = subprocess.run(["bash", "-e", "-c", script], cwd=work, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)})
    return run, summary.read_text(), output.read_text()


def test_github_grade_step_with_spaces_in_names_and_without_a_notebook(tmp_path):
    work = tmp_path / "student-repo"
    fill_answers(RELEASE, solution_answers(AID), work / "my work" / "homework one.ipynb")
    run, summary, output = _run_grade_step(work, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Points 7/7 (provisional)" in run.stdout and "points=7/7" in output
    assert "Provisional" in summary and "corr2d" in summary
    results = json.loads((work / "grading" / "results.json").read_text())
    assert results["extra_data"]["provisional"] is True
    assert not (work / "grading" / "instructor.json").exists()
    bare = tmp_path / "bare-student-edition"             # no course anywhere: the notebook's own cells
    bare.mkdir()
    proc = autograder("github", str(work / "my work" / "homework one.ipynb"), "--out-dir", str(bare / "out"),
                      "--provisional", "--cases-factor", "1", cwd=bare, env={"CONVLAB_COURSE": ""})
    assert proc.returncode == 0 and "Points 7/7 (provisional)" in proc.stdout, proc.stdout + proc.stderr
    assert not list(bare.rglob(".convlab-secret"))       # no course secret was created or needed
    empty = tmp_path / "empty-repo"
    empty.mkdir()
    run, summary, output = _run_grade_step(empty, tmp_path)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no notebook found" in summary and "points=0/0" in output


def _git_repo(path: Path, files: dict[str, bytes]) -> str:
    path.mkdir(parents=True)
    git = ["git", "-c", "user.name=s", "-c", "user.email=s@example.edu", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    for name, data in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "work"], cwd=path, check=True)
    return f"file://{path}"


def test_instructor_collects_the_repositories_and_grades_them_with_batch(tmp_path):
    answers = solution_answers(AID)
    good = fill_answers(RELEASE, answers, tmp_path / "good.ipynb").read_bytes()
    wrong = fill_answers(RELEASE, {**answers, "corr2d": "def corr2d(x, k):\n    return x"},
                         tmp_path / "wrong.ipynb").read_bytes()
    other = (ROOT / "assignments" / "02-channels-batch" / "02-channels-batch.ipynb").read_bytes()
    repos = tmp_path / "github"
    _git_repo(repos / f"{AID}-alice", {"notebooks/my homework.ipynb": good})
    _git_repo(repos / f"{AID}-bob", {"README.md": b"nothing yet"})
    _git_repo(repos / f"{AID}-carol", {f"{AID}.ipynb": other})
    _git_repo(repos / f"{AID}-dave", {f"{AID}-Copy1.ipynb": wrong, f"{AID}.ipynb": good})
    _git_repo(repos / f"{AID}-erin", {f"{AID}.ipynb": b"{not json"})
    roster = tmp_path / "roster.txt"
    roster.write_text("alice\nbob\ncarol\ndave\nerin\n")
    submitted, graded = tmp_path / "submitted", tmp_path / "graded"
    proc = autograder("github-collect", AID, "--roster", str(roster), "--submitted", str(submitted),
                      "--url-template", f"file://{repos}/{{assignment}}-{{student}}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (submitted / "alice" / AID / "my homework.ipynb").is_file()
    assert (submitted / "alice" / AID / ".commit").read_text().startswith("file://")
    proc = autograder("batch", str(submitted), "--out", str(graded), "--workers", "2", "--cases-factor", "1")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = {r["student"]: r for r in csv.DictReader((graded / "grades.csv").read_text().splitlines())}
    assert {s: r["status"] for s, r in rows.items()} == {
        "alice": "graded", "bob": "missing", "carol": "other assignment", "dave": "graded", "erin": "unreadable"}
    assert float(rows["alice"]["score"]) == 7 and float(rows["dave"]["score"]) == 7   # not the -Copy1
    assert float(rows["carol"]["score"]) == 0 and float(rows["erin"]["score"]) == 0

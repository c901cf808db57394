"""Grades reach every workflow: nbgrader's gradebook, Gradescope's autograder, GitHub Actions.

Each test runs the real thing locally: a real nbgrader course copy, a directory laid out like Gradescope's,
the workflow's own grading command with GitHub's environment files.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.coursecopy import ROOT, fill_answers, make_course, nbgrader, solution_answers

pytestmark = pytest.mark.slow
AID = "01-single-channel"
RELEASE = ROOT / "assignments" / AID / f"{AID}.ipynb"

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


def test_nbgrader_gradebook_gets_isolated_scores(tmp_path):
    course = make_course(tmp_path / "course", [AID])
    nbgrader(course, "generate_assignment", AID, "--force")
    release = course / "assignments" / AID / f"{AID}.ipynb"
    answers = solution_answers(AID)
    fill_answers(release, answers, course / "submitted" / "alice" / AID / f"{AID}.ipynb")
    fill_answers(release, {**answers, **CHEAT}, course / "submitted" / "mallory" / AID / f"{AID}.ipynb")
    proc = autograder("nbgrader", AID, "--course", str(course))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    nbgrader(course, "export")
    with open(course / "grades.csv") as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh)}
    assert float(rows["alice"]["score"]) == 7.0
    assert float(rows["mallory"]["score"]) == 5.0  # the cheat bought nothing: sobel_magnitude scores 0
    nbgrader(course, "generate_feedback", AID, "--force")
    html = next((course / "feedback" / "mallory" / AID).glob("*.html")).read_text()
    assert "sobel_magnitude" in html and "First failing case" in html
    assert "BEGIN HIDDEN TESTS" not in html and "hidden=True" not in html


def test_gradescope_autograder_grades_a_local_submission(tmp_path):
    zip_path = tmp_path / "autograder.zip"
    proc = autograder("gradescope", AID, "--out", str(zip_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from autograder.integrations.gradescope import extract

    root = tmp_path / "autograder"
    extract(zip_path, root / "source")
    assert os.access(root / "source" / "run_autograder", os.X_OK) and (root / "source" / "setup.sh").is_file()
    fill_answers(RELEASE, {**solution_answers(AID), **CHEAT}, root / "submission" / "homework.ipynb")
    run = subprocess.run(["bash", str(root / "source" / "run_autograder")], capture_output=True, text=True,
                         env={**os.environ, "GRADESCOPE_ROOT": str(root), "CONVLAB_PYTHON": sys.executable},
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads((root / "results" / "results.json").read_text())
    scores = {t["name"]: t["score"] for t in results["tests"]}
    assert scores == {"corr2d": 3.0, "convolve2d": 2.0, "sobel_magnitude": 0.0}
    assert results["score"] == 5.0 and "seed" not in json.dumps(results).lower()


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


def test_github_workflow_grading_command(tmp_path):
    workflow = yaml.safe_load((ROOT / "templates" / "github-classroom" / ".github" / "workflows" /
                               "convlab.yml").read_text())
    steps = workflow["jobs"]["grade"]["steps"]
    command = next(s["run"] for s in steps if s.get("id") == "grade")
    assert "-m autograder github" in command and "--out-dir grading" in command
    # run that command as the workflow does: the student's repo in ./submission, the course in ./convlab
    work = tmp_path / "runner"
    fill_answers(RELEASE, solution_answers(AID), work / "submission" / AID / f"{AID}.ipynb")
    (work / "convlab").symlink_to(ROOT)
    summary, output = tmp_path / "summary.md", tmp_path / "output.txt"
    run = subprocess.run(["bash", "-c", command.replace("convlab/.venv/bin/python", sys.executable)], cwd=work,
                         capture_output=True, text=True, timeout=600,
                         env={**os.environ, "GITHUB_STEP_SUMMARY": str(summary), "GITHUB_OUTPUT": str(output)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Points 7/7" in run.stdout
    assert "points=7/7" in output.read_text()
    assert "corr2d" in summary.read_text()
    for name in ("results.json", "junit.xml", "summary.md"):
        assert (work / "grading" / name).is_file()
    assert json.loads((work / "grading" / "results.json").read_text())["score"] == 7.0

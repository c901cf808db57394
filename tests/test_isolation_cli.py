"""The command line, end to end: ``python -m autograder grade`` and ``batch`` on real notebooks."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from redteam import support

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not support.SOURCE_01.is_file(), reason="assignment 01 is not written yet")]

FAST = ["--cases-factor", "1", "--call-timeout", "5", "--cell-timeout", "10"]
SCHEMA = {"name", "score", "max_score", "status", "output", "visibility"}


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    return subprocess.run([sys.executable, "-m", "autograder", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or support.REPO, timeout=300)


def bob() -> dict:
    from redteam.support import examples_module

    students = examples_module()._students()
    return support.submission(students["bob"][support.A01])


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """One ``grade`` run per format, shared by the tests below."""
    tmp = tmp_path_factory.mktemp("cli")
    nb = support.write(bob(), tmp / "submission" / "bob.ipynb")     # recognised by its cells, not its name
    runs = {}
    for fmt in ("json", "junit", "md", "table"):
        out = tmp / f"result.{fmt}"
        runs[fmt] = (cli("grade", str(nb), "--out", str(out), "--format", fmt, "--seed", "7", *FAST), out)
    return runs


def test_grade_writes_gradescope_json(graded):
    proc, out = graded["json"]
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result) >= {"score", "execution_time", "tests", "output"}
    names = [t["name"] for t in result["tests"]]
    assert names == list(support.EXERCISES_01)
    for t in result["tests"]:
        assert set(t) >= SCHEMA and t["status"] in ("passed", "failed") and t["visibility"] == "visible"
    scores = {t["name"]: t["score"] for t in result["tests"]}
    assert scores["corr2d"] == 3 and scores["sobel_magnitude"] == 0 and 0 < scores["convolve2d"] < 2
    assert "kernel not flipped" in result["tests"][1]["output"]
    assert result["score"] == pytest.approx(sum(scores.values()))
    assert "seed" not in out.read_text().lower()
    sidecar = json.loads(Path(str(out) + ".instructor.json").read_text())
    assert sidecar["seed"] == 7 and sidecar["notebooks"][0]["assignment"] == support.A01


def test_grade_other_formats(graded):
    proc, out = graded["junit"]
    assert proc.returncode == 0, proc.stderr
    suites = ET.fromstring(out.read_text())
    cases = suites.findall(".//testcase")
    assert [c.get("name") for c in cases] == list(support.EXERCISES_01)
    assert len(suites.findall(".//failure")) == 2
    proc, out = graded["md"]
    assert proc.returncode == 0 and "| corr2d | 3/3 | passed |" in out.read_text()
    proc, out = graded["table"]
    assert proc.returncode == 0 and "sobel_magnitude" in out.read_text() and "no square root" in out.read_text()


def test_seeded_grades_are_reproducible(graded, tmp_path):
    nb = next((tmp_path.parent).glob("cli*/submission/bob.ipynb"))
    out = tmp_path / "again.json"
    proc = cli("grade", str(nb), "--out", str(out), "--seed", "7", "--quiet", *FAST)
    assert proc.returncode == 0 and proc.stdout == ""
    first = json.loads(graded["json"][1].read_text())
    again = json.loads(out.read_text())
    assert [t["output"] for t in first["tests"]] == [t["output"] for t in again["tests"]]


@pytest.mark.parametrize("damage", ["invalid-json", "foreign-kernel", "no-answers", "empty-file", "deep"])
def test_broken_notebooks_still_get_a_complete_report(tmp_path, damage):
    path = tmp_path / f"{support.A01}.ipynb"
    nb = support.submission()
    if damage == "invalid-json":
        path.write_text(json.dumps(nb)[:-100])
    elif damage == "foreign-kernel":
        nb["metadata"]["kernelspec"] = {"name": "julia-1.10", "display_name": "Julia", "language": "julia"}
        support.write(nb, path)
    elif damage == "no-answers":
        nb["cells"] = [c for c in nb["cells"] if c["cell_type"] == "markdown"]
        support.write(nb, path)
    elif damage == "deep":
        path.write_text("[" * 100_000 + "]" * 100_000)
    else:
        path.write_bytes(b"")
    out = tmp_path / "r.json"
    proc = cli("grade", str(path), "--out", str(out), *FAST)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert [t["name"] for t in result["tests"]] == list(support.EXERCISES_01)
    assert result["score"] == 0
    reason = {"invalid-json": "invalid JSON", "foreign-kernel": "julia kernel", "no-answers": "is missing",
              "empty-file": "invalid JSON", "deep": "unreadable notebook"}[damage]
    assert reason in result["output"] + result["tests"][0]["output"]


def test_usage_errors_and_grader_failures(tmp_path):
    proc = cli("grade", str(tmp_path / "nope.ipynb"), "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 2
    course = tmp_path / "course"
    (course / "solutions" / support.A01).mkdir(parents=True)
    (course / "solutions" / support.A01 / f"{support.A01}.ipynb").write_text("{broken")
    nb = support.write(support.submission(), tmp_path / f"{support.A01}.ipynb")
    out = tmp_path / "r.json"
    proc = cli("grade", str(nb), "--out", str(out), "--course", str(course), *FAST)
    assert proc.returncode == 1  # the grader failed (its source notebook is unusable), not the student
    result = json.loads(out.read_text())
    assert [t["name"] for t in result["tests"]] == list(support.EXERCISES_01)
    assert "not your fault" in result["output"] + result["tests"][0]["output"]


def test_batch_grades_a_class(tmp_path):
    submitted, out = tmp_path / "submitted", tmp_path / "out"
    support.write(support.submission(), submitted / "alice" / support.A01 / f"{support.A01}.ipynb")
    support.write(bob(), submitted / "bob" / support.A01 / "my-homework.ipynb")
    (submitted / "carol" / support.A01).mkdir(parents=True)                      # submitted nothing
    (submitted / "dave" / support.A01).mkdir(parents=True)
    (submitted / "dave" / support.A01 / f"{support.A01}.ipynb").write_text("garbage")
    (submitted / "dave" / support.A01 / ".ipynb_checkpoints").mkdir()
    proc = cli("batch", str(submitted), "--out", str(out), "--workers", "2", *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "grading" not in proc.stderr  # no progress bar without a terminal
    rows = {r["student"]: r for r in csv.DictReader((out / "grades.csv").read_text().splitlines())}
    assert set(rows) == {"alice", "bob", "carol", "dave"}
    assert float(rows["alice"]["score"]) == 7 and float(rows["alice"]["max_score"]) == 7
    assert float(rows["bob"]["corr2d"]) == 3 and float(rows["bob"]["sobel_magnitude"]) == 0
    assert float(rows["carol"]["score"]) == 0 and float(rows["dave"]["score"]) == 0
    for student in rows:
        report = json.loads((out / student / f"{support.A01}.json").read_text())
        assert [t["name"] for t in report["tests"]] == list(support.EXERCISES_01)
        assert "seed" not in json.dumps(report).lower()
    assert "no notebook was submitted" in (out / "carol" / f"{support.A01}.json").read_text()
    seeds = [json.loads(line) for line in (out / ".instructor" / "seeds.jsonl").read_text().splitlines()]
    assert len(seeds) == 1 and isinstance(seeds[0]["seeds"][support.A01], int)   # the course seed
    assert {s: rows[s]["status"] for s in rows} == {"alice": "graded", "bob": "graded", "carol": "missing",
                                                     "dave": "unreadable"}
    assert oct((out / ".instructor").stat().st_mode & 0o777) == "0o700"


def test_help():
    proc = cli("--help")
    assert proc.returncode == 0 and "grade" in proc.stdout and "batch" in proc.stdout and "demo" in proc.stdout

"""Fair, reproducible scores on every path: seeds, scoring rules, notebook selection, integrity flags, the
isolation guard, the lean grading requirements. The end-to-end checks grade real notebooks in the real sandbox."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

from autograder import scoring, seeds
from autograder.answers import Outcome
from autograder.engine import ExerciseResult, PartResult
from autograder.forbidden import scan_source
from autograder.integrity import notebook_flags, source_flags
from autograder.isolation import guard, selection
from tests.coursecopy import ROOT

A01 = "01-single-channel"
EXAMPLES = ROOT / "examples" / "submitted"


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "autograder", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=600)


# ------------------------------------------------------------------------------------------ seeds

def test_one_seed_per_assignment_per_course(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    assert seeds.course_seed(a, A01) == seeds.course_seed(a, A01)                 # reproducible
    assert seeds.course_seed(a, A01) != seeds.course_seed(a, "02-channels-batch")  # per assignment
    assert seeds.course_seed(a, A01) != seeds.course_seed(b, A01)                  # per course (its secret)
    assert seeds.course_seed(a, A01) != seeds.public_seed(A01)
    assert oct((a / seeds.SECRET_NAME).stat().st_mode & 0o777) == "0o600"
    assert seeds.grading_seed(a, A01, 7) == 7 and seeds.grading_seed(a, A01) == seeds.course_seed(a, A01)
    assert 0 <= seeds.course_seed(a, A01) < 2 ** seeds.SEED_BITS
    assert seeds.new_draw() != seeds.new_draw()


# ------------------------------------------------------------------------------------------ scoring

def _part(passed: int, total: int, points: float = 2.0) -> ExerciseResult:
    score = scoring.correctness_points(points, passed, total, False)
    return ExerciseResult("conv2d", [PartResult("conv2d", score, points, "feedback", passed, total)])


def test_an_answer_that_raises_on_every_case_scores_zero():
    raised = [Outcome(error="NotImplementedError", raised=True)] * 3 + [Outcome(raised=True)]
    assert scoring.raised_everywhere(raised)
    assert scoring.correctness_points(11, 1, 4, scoring.raised_everywhere(raised)) == 0.0
    assert not scoring.raised_everywhere(raised + [Outcome(value=1)])
    assert scoring.correctness_points(11, 1, 4, False) == 2.75
    assert not scoring.raised_everywhere([])


def test_partial_credit_policy():
    policy = scoring.CreditPolicy.parse(["proportional", "conv2d=all-or-nothing"])
    assert policy.mode("conv2d") == "all-or-nothing" and policy.mode("corr2d") == "proportional"
    assert scoring.CreditPolicy.parse(policy.as_specs()) == policy
    assert scoring.apply_policy(_part(3, 4), policy).score == 0.0
    assert "all-or-nothing" in scoring.apply_policy(_part(3, 4), policy).parts[0].output
    assert scoring.apply_policy(_part(4, 4), policy).score == 2.0
    assert scoring.apply_policy(_part(3, 4), scoring.CreditPolicy()).score == 1.5
    with pytest.raises(ValueError):
        scoring.CreditPolicy.parse(["half"])


# ------------------------------------------------------------------------------------------ selection, flags

def test_the_notebook_named_like_the_assignment_counts_first():
    names = [f"{A01}-Copy1.ipynb", "scratch.ipynb", f"{A01} (2).ipynb", f"{A01}.ipynb"]
    assert selection.order([Path(n) for n in names], A01)[0].name == f"{A01}.ipynb"
    assert selection.order([Path(n) for n in names])[0].name == f"{A01}.ipynb"
    assert selection.order([Path("b.ipynb"), Path("a.ipynb")], A01)[0].name == "a.ipynb"


def test_rerunning_checks_is_not_a_violation_but_the_oracle_is():
    assert scan_source("from autograder import check\nresult = check('corr2d', corr2d)") == []
    assert scan_source("from autograder.check import check") == []
    assert scan_source("from autograder.oracle import run_reference") != []
    assert scan_source("import autograder\nautograder.registry.get('corr2d').oracle(x, k)") != []
    assert scan_source("from autograder import check\ncheck.__globals__['hidden_seed']()") != []


def test_integrity_flags_name_what_was_recognised():
    cell = '''import numpy as np, glob
from autograder import check
np.allclose = lambda *a, **k: True
setattr(np, "array_equal", lambda *a: True)
def check(name, fn): return 3.0
print(open("/work/solutions/01.ipynb").read(), glob.glob("../../*.json"), open("data.txt").read())
'''
    flags = source_flags("answer cell corr2d", cell)
    assert "redefines check (answer cell corr2d)" in flags
    assert "patches NumPy (answer cell corr2d)" in flags
    assert any("'/work/solutions/01.ipynb'" in f for f in flags) and any("'../../*.json'" in f for f in flags)
    assert not any("data.txt" in f for f in flags)
    assert source_flags("c", "from autograder import check\ncheck('corr2d', corr2d)") == []

    class Cell:
        label, source = "added cell 1", "import numpy\nnumpy.sum = sum"

    every = notebook_flags([Cell()], {"corr2d": ["scipy.signal.correlate2d"], "convolve2d": []},
                           {"corr2d": "ran out of memory"}, "reduced")
    assert every == ["forbidden call (corr2d: scipy.signal.correlate2d)", "patches NumPy (added cell 1)",
                     "sandbox fault (corr2d: ran out of memory)", "reduced isolation"]


# ------------------------------------------------------------------------------------------ isolation guard

def test_reduced_isolation_is_refused_by_strict_commands_unless_allowed(monkeypatch, capsys):
    monkeypatch.setattr(guard, "isolation_mode", lambda requested: ("reduced", "bubblewrap is not installed"))
    monkeypatch.delenv(guard.ALLOW_VARIABLE, raising=False)
    monkeypatch.delenv("CONVLAB_ISOLATION", raising=False)
    monkeypatch.delenv("CONVLAB_SANDBOX_USER", raising=False)
    with pytest.raises(guard.ReducedIsolationRefused, match="--allow-reduced-isolation"):
        guard.check(None, strict=True)
    assert guard.check(None, strict=False)[0] == "reduced"                    # grade/batch: printed, recorded
    assert "warning: reduced isolation" in capsys.readouterr().err
    assert guard.check(None, strict=True, allow_reduced=True)[0] == "reduced"
    monkeypatch.setenv(guard.ALLOW_VARIABLE, "1")
    assert guard.check(None, strict=True)[0] == "reduced"


@pytest.mark.slow
def test_make_demo_and_templates_refuse_reduced_isolation_without_bubblewrap(tmp_path):
    no_bwrap = {"PATH": str(tmp_path), "CONVLAB_ALLOW_REDUCED": "", "CONVLAB_ISOLATION": ""}   # bwrap not found
    demo = cli("demo", "--out", str(tmp_path / "demo"), env=no_bwrap)
    assert demo.returncode == 1 and "refusing to grade with reduced isolation" in demo.stderr
    assert "sudo apt-get install bubblewrap" in demo.stderr and not (tmp_path / "demo").exists()
    nb = EXAMPLES / "bob" / A01 / f"{A01}.ipynb"
    strict = cli("grade", str(nb), "--out", str(tmp_path / "r.json"), "--strict-isolation", env=no_bwrap)
    assert strict.returncode == 1 and "refusing" in strict.stderr


# ------------------------------------------------------------------------------------------ end to end

@pytest.mark.slow
def test_every_untouched_release_scores_exactly_zero(tmp_path):
    from autograder import registry

    releases = sorted(str(p) for p in (ROOT / "assignments").glob("*/*.ipynb"))
    assert len(releases) == len(registry.assignments()) >= 6
    out = tmp_path / "releases.json"
    proc = cli("grade", *releases, "--out", str(out), "--quiet", "--cases-factor", "1")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert len(result["extra_data"]["assignments"]) == len(releases)
    assert result["score"] == 0 and all(t["score"] == 0 for t in result["tests"]), \
        [(t["name"], t["score"]) for t in result["tests"] if t["score"]]


@pytest.mark.slow
def test_the_same_partly_wrong_notebook_scores_the_same_in_grade_twice_and_batch(tmp_path):
    nb = EXAMPLES / "bob" / A01 / f"{A01}.ipynb"
    scores, recorded = [], []
    for run in ("first", "second"):
        out = tmp_path / f"{run}.json"
        assert cli("grade", str(nb), "--out", str(out), "--quiet").returncode == 0
        scores.append(json.loads(out.read_text())["score"])
        recorded.append(json.loads(Path(f"{out}.instructor.json").read_text())["seed"])
    submitted = tmp_path / "submitted" / "bob" / A01
    submitted.mkdir(parents=True)
    (submitted / nb.name).write_bytes(nb.read_bytes())
    proc = cli("batch", str(tmp_path / "submitted"), "--out", str(tmp_path / "graded"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    scores.append(json.loads((tmp_path / "graded" / "bob" / f"{A01}.json").read_text())["score"])
    assert 0 < scores[0] < 7 and scores[0] == scores[1] == scores[2], scores
    assert recorded[0] == recorded[1] == seeds.course_seed(ROOT, A01)
    drawn = tmp_path / "drawn.json"
    assert cli("grade", str(nb), "--out", str(drawn), "--quiet", "--new-seed").returncode == 0
    record = json.loads(Path(f"{drawn}.instructor.json").read_text())
    assert record["seed_source"] == "new draw (--new-seed)" and record["seed"] != recorded[0]
    strict = tmp_path / "strict.json"
    assert cli("grade", str(nb), "--out", str(strict), "--quiet", "--partial-credit",
               "convolve2d=all-or-nothing").returncode == 0
    tests = {t["name"]: t["score"] for t in json.loads(strict.read_text())["tests"]}
    first = {t["name"]: t["score"] for t in json.loads((tmp_path / "first.json").read_text())["tests"]}
    assert 0 < first["convolve2d"] < 2 and tests == {**first, "convolve2d": 0.0}


# ------------------------------------------------------------------------------------------ requirements

def _pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;#]+)", line.strip())
        if m:
            out[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return out


def _closure(roots: list[str]) -> set[str]:
    """Every distribution ``roots`` need in this environment (from installed metadata, markers evaluated)."""
    env = dict(default_environment(), extra="")
    seen, todo = set(), list(roots)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name not in seen:
            seen.add(name)
            for spec in metadata.requires(name) or []:
                req = Requirement(spec)
                if req.marker is None or req.marker.evaluate(env):
                    todo.append(req.name)
    return seen - {"setuptools", "pip"}


def test_lean_grading_requirements_agree_with_the_lock():
    grading, lock = _pins(ROOT / "requirements-grading.txt"), _pins(ROOT / "requirements.txt")
    assert {n: v for n, v in grading.items() if lock.get(n) != v} == {}
    assert set(grading) == _closure(["numpy", "torch", "matplotlib", "pillow", "rich", "tqdm"])
    assert not {"jupyterlab", "notebook", "nbgrader", "ipykernel"} & set(grading)


def test_setup_can_take_torch_from_the_cpu_index():
    dry = subprocess.run(["make", "-n", "-B", "setup", "TORCH_INDEX=cpu"], cwd=ROOT, capture_output=True, text=True)
    assert "--extra-index-url https://download.pytorch.org/whl/cpu -r requirements.txt" in dry.stdout
    plain = subprocess.run(["make", "-n", "-B", "setup"], cwd=ROOT, capture_output=True, text=True)
    assert "--extra-index-url" not in plain.stdout
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in (ROOT / "environment.yml").read_text()


@pytest.mark.slow
def test_rerunning_the_checks_in_answer_cells_costs_nothing_but_calling_the_oracle_does(tmp_path):
    from tests.coursecopy import fill_answers, solution_answers

    answers = solution_answers(A01)
    rerun = {k: f"from autograder import check\n{answers[k]}\nresult = check({k!r}, {k})\nfloat(result)\n"
             for k in ("corr2d", "convolve2d")}
    oracle = {"sobel_magnitude": "from autograder import registry\n" + answers["sobel_magnitude"]}
    nb = fill_answers(ROOT / "assignments" / A01 / f"{A01}.ipynb", {**answers, **rerun, **oracle},
                      tmp_path / "student.ipynb")
    out = tmp_path / "r.json"
    proc = cli("grade", str(nb), "--out", str(out), "--quiet", "--cases-factor", "1")
    assert proc.returncode == 0, proc.stderr
    scores = {t["name"]: t["score"] for t in json.loads(out.read_text())["tests"]}
    assert scores == {"corr2d": 3.0, "convolve2d": 2.0, "sobel_magnitude": 0.0}
    flags = json.loads(Path(f"{out}.instructor.json").read_text())["flags"]
    assert flags == ["forbidden call (sobel_magnitude: from autograder import registry)"]

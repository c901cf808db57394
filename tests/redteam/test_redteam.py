"""Red team: every attack of :mod:`attacks` scores 0 on the exercise it attacks, the others keep their marks, the
report stays complete, and no process survives.

All attack submissions form one class graded once with ``batch`` (shared by every test of the session, also across
xdist workers): once in the bubblewrap sandbox, and once with reduced isolation for the attacks it defeats too.
"""
from __future__ import annotations

import base64
import csv
import json
import os
import random
import site
import time
from pathlib import Path

import pytest

from . import support
from .attacks import ATTACKS, BY_ID

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not support.SOURCE_01.is_file(), reason="assignment 01 is not written yet")]


def _grade_class(tmp: Path, isolation: str, attacks) -> dict:
    from autograder.isolation.batch import run_batch
    from autograder.isolation.sandbox import isolation_mode

    if isolation == "bwrap" and isolation_mode()[0] != "bwrap":
        return {"skipped": "bubblewrap is not available here"}
    marker = str(random.randrange(10**8, 10**9))
    secret = f"fake-secret-{random.randrange(10**12, 10**13)}"
    submitted, out = tmp / "submitted", tmp / "out"
    site_dir = site.getsitepackages()[0]
    sigtools = _sigtools_base64()
    for attack in attacks:
        def fill(text: str) -> str:
            return (text.replace("{MARKER}", marker).replace("{REPO}", str(support.REPO))
                    .replace("{OUT}", str(out)).replace("{SITE}", site_dir).replace("{SIGTOOLS}", sigtools))
        answers = {attack.target: fill(attack.source)} if attack.target and attack.source else {}
        added = [(after, fill(src)) for after, src in attack.added]
        support.write(support.submission(answers, added), submitted / attack.id / support.A01 / f"{support.A01}.ipynb")
    options = support.options(isolation=isolation)
    started = time.monotonic()
    already = set(support.my_descendants())  # helpers earlier tests of this worker left (resource tracker, Dask)
    os.environ["CONVLAB_FAKE_SECRET"] = secret  # the grader's environment: nothing of it may reach a result
    try:
        summary = run_batch(submitted, out, options, workers=2, progress=False)
    finally:
        del os.environ["CONVLAB_FAKE_SECRET"]
    time.sleep(2.5)  # the detached writer of "fake-results" would strike after 1.5 s
    reports = {a.id: json.loads((out / a.id / f"{support.A01}.json").read_text()) for a in attacks}
    return {"reports": reports, "errors": summary.errors, "seconds": time.monotonic() - started,
            "leftovers": support.leftover_processes(marker), "descendants": sorted(set(support.my_descendants()) - already),
            "grades": (out / "grades.csv").read_text(), "out": str(out), "secret": secret,
            "leaked": sorted(str(p.relative_to(out)) for p in out.rglob("*")
                             if p.is_file() and secret.encode() in p.read_bytes()),
            "instructor": sorted(str(p.relative_to(out)) for p in (out / ".instructor").rglob("*") if p.is_file())}


def _sigtools_base64() -> str:
    """SciPy's compiled ``_sigtools`` (a ready-made 2-D convolution), as the sigtools attack carries it."""
    import importlib.util

    spec = importlib.util.find_spec("scipy.signal._sigtools")
    return base64.b64encode(Path(spec.origin).read_bytes()).decode() if spec and spec.origin else ""


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    return support.shared_once(tmp_path_factory, "redteam-bwrap",
                               lambda: _grade_class(tmp_path_factory.mktemp("redteam"), "bwrap", ATTACKS))


REDUCED = [a for a in ATTACKS if a.reduced]


@pytest.fixture(scope="module")
def graded_reduced(tmp_path_factory):
    return support.shared_once(tmp_path_factory, "redteam-reduced",
                               lambda: _grade_class(tmp_path_factory.mktemp("redteam-reduced"), "reduced",
                                                    REDUCED))


def _check(result: dict, attack_id: str) -> None:
    if "skipped" in result:
        pytest.skip(result["skipped"])
    attack = BY_ID[attack_id]
    report = result["reports"][attack_id]
    tests = {t["name"]: t for t in report["tests"]}
    assert set(tests) == set(support.EXERCISES_01), f"incomplete report: {sorted(tests)}"
    for name, test in tests.items():
        assert set(test) >= {"name", "score", "max_score", "status", "output", "visibility"}
        if name == attack.target:
            assert test["score"] == 0, f"{attack_id} earned points on {name}:\n{test['output']}"
            assert test["status"] == "failed"
            expect = attack.expect if isinstance(attack.expect, tuple) else (attack.expect,)
            assert any(e in test["output"] for e in expect), \
                f"{attack_id}: feedback lacks {attack.expect!r}:\n{test['output']}"
        else:
            assert test["score"] == test["max_score"], f"{attack_id} cost {name} its marks:\n{test['output']}"
    expected = sum(t["max_score"] for n, t in tests.items() if n != attack.target)
    assert report["score"] == pytest.approx(expected)
    assert report["score"] <= 1000 and "1000" not in json.dumps(report["score"])


@pytest.mark.parametrize("attack_id", [a.id for a in ATTACKS])
def test_attack_in_sandbox(graded, attack_id):
    _check(graded, attack_id)


@pytest.mark.parametrize("attack_id", [a.id for a in REDUCED])
def test_attack_with_reduced_isolation(graded_reduced, attack_id):
    _check(graded_reduced, attack_id)
    report = graded_reduced["reports"][attack_id]
    assert "Isolation is reduced" in report["output"]
    assert report["extra_data"]["isolation"] == "reduced"


@pytest.mark.parametrize("fixture", ["graded", "graded_reduced"])
def test_no_process_survives(request, fixture):
    result = request.getfixturevalue(fixture)
    if "skipped" in result:
        pytest.skip(result["skipped"])
    assert result["leftovers"] == [], "processes started by student code survived grading"
    assert result["descendants"] == [], "the grader left child processes behind"


@pytest.mark.parametrize("fixture", ["graded", "graded_reduced"])
def test_class_outputs_complete_and_untampered(request, fixture):
    result = request.getfixturevalue(fixture)
    if "skipped" in result:
        pytest.skip(result["skipped"])
    assert result["errors"] == [], "the grader itself failed"
    rows = list(csv.DictReader(result["grades"].splitlines()))
    assert sorted(r["student"] for r in rows) == sorted(result["reports"])
    for row in rows:
        assert float(row["score"]) == pytest.approx(result["reports"][row["student"]]["score"])
    assert ".instructor/seeds.jsonl" in result["instructor"]
    for report in result["reports"].values():
        assert "seed" not in json.dumps(report).lower()


@pytest.mark.parametrize("fixture", ["graded", "graded_reduced"])
def test_the_graders_environment_never_reaches_a_result(request, fixture):
    result = request.getfixturevalue(fixture)
    if "skipped" in result:
        pytest.skip(result["skipped"])
    if fixture == "graded":
        assert "environ-leak" in result["reports"]
    assert result["leaked"] == [], f"the grader's environment reached {result['leaked']}"


def test_fake_result_files_never_land(graded):
    if "skipped" in graded:
        pytest.skip(graded["skipped"])
    assert graded["reports"]["control"]["score"] == 7
    assert graded["reports"]["fake-results"]["score"] == 5  # 7 minus sobel_magnitude's 2
    assert not (Path(graded["out"]) / "results.json").exists()

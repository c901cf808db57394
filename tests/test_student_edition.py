"""The student edition: built by ``make student-edition``, installed into a fresh venv outside the checkout, it checks
answers, loads the datasets, guides a student whose kernel lacks it or was restarted, and carries no secret.

The archives are built once for the module into a temporary ``dist``; the fresh environment is a real venv whose
``autograder`` comes only from the wheel (see ``tests/student_env.py``).
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from autograder import course, release
from tests.coursecopy import ROOT, solution_answers
from tests.student_env import (FORBIDDEN_TEXT, StudentKernel, build_edition, fresh_venv, install, members,
                                student_env)

INSTRUCTOR_MODULES = ("autograder/isolation/", "autograder/integrations/", "autograder/analytics/", "autograder/cli.py",
                      "autograder/__main__.py", "autograder/release.py", "autograder/edition.py",
                      "autograder/seeds.py", "autograder/course.py", "autograder/curriculum.py",
                      "autograder/figures/attach.py")
_SOLUTION = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)


@pytest.fixture(scope="module")
def edition(tmp_path_factory):
    wheel, notebooks = build_edition(tmp_path_factory.mktemp("dist"))
    return wheel, notebooks


@pytest.fixture(scope="module")
def student(edition, tmp_path_factory):
    """``(python, env, workdir)`` of a fresh venv with the wheel installed, outside the checkout."""
    base = tmp_path_factory.mktemp("student")
    assert ROOT not in base.parents
    python = fresh_venv(base / "venv")
    install(python, edition[0])
    work = base / "work"
    work.mkdir()
    return python, student_env(python, base / "home"), work


def run_python(student, code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    python, env, work = student
    return subprocess.run([str(python), "-c", textwrap.dedent(code)], cwd=work, env=env, capture_output=True,
                          text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------ the archives

def test_edition_is_named_and_versioned(edition):
    wheel, notebooks = edition
    assert wheel.name == release.wheel_name() and wheel.name.startswith("convlab_course-")
    assert re.fullmatch(r"convlab-\d+\.\d+\.\d+-notebooks\.zip", notebooks.name)


def test_wheel_holds_the_student_library_and_no_instructor_tools(edition):
    names = set(members(edition[0]))
    for required in ("autograder/check.py", "autograder/engine.py", "autograder/oracle.py", "autograder/cases.py",
                     "autograder/exercises/a01_single_channel.py", "autograder/data/README.md", "autograder/selfcheck.py",
                     "autograder/data/camera.png", "autograder/data/digits.csv.gz"):
        assert required in names, f"{required} missing from the wheel"
    leaked = sorted(n for n in names if n.startswith(INSTRUCTOR_MODULES))
    assert not leaked, f"instructor-only modules in the student wheel: {leaked}"
    data = {n.split(".data/data/", 1)[1] for n in names if ".data/data/" in n}
    assert data == {"etc/ipython/ipython_kernel_config.json",
                    "etc/jupyter/labconfig/page_config.d/convlab-course.json"}
    metadata = next(v for n, v in members(edition[0]).items() if n.endswith(".dist-info/METADATA")).decode()
    assert "Name: convlab-course" in metadata and "console_scripts" not in metadata


def test_notebooks_zip_holds_the_release_and_a_student_readme(edition):
    files = members(edition[1])
    top = edition[1].name.removesuffix("-notebooks.zip")
    expected = {f"{top}/README.md"} | {f"{top}/{a}/{a}.ipynb" for a in release.assignment_ids()}
    assert set(files) == expected
    readme = files[f"{top}/README.md"].decode()
    for step in ("pip install", release.wheel_name(), "jupyter lab", "Python 3 (convlab)", "check(", "Submit"):
        assert step in readme, f"the student README does not say {step!r}"
    for aid in release.assignment_ids():
        assert files[f"{top}/{aid}/{aid}.ipynb"] == (ROOT / "assignments" / aid / f"{aid}.ipynb").read_bytes()


def test_archives_hold_no_solutions_hidden_tests_or_secret(edition):
    regions = [region for region in map(_distinctive_lines, _solution_regions()) if region]
    assert len(regions) >= 20  # the search below looks for something real
    secret = ROOT / ".convlab-secret"
    secret_text = secret.read_text().strip() if secret.is_file() else None
    for archive in edition:
        for name, blob in members(archive).items():
            assert not re.search(r"(^|/)(solutions|examples|submitted|autograded|feedback)/", name), name
            assert not name.endswith((".convlab-secret", "gradebook.db", "nbgrader_config.py")), name
            text = blob.decode("utf-8", errors="replace")
            for marker in FORBIDDEN_TEXT:
                assert marker not in text, f"{marker!r} in {archive.name}:{name}"
            if secret_text:
                assert secret_text not in text, f"the course secret is in {archive.name}:{name}"
            leaked = [region for region in regions if all(line in text for line in region)]
            assert not leaked, f"solution code in {archive.name}:{name}: {leaked[:2]}"


def _solution_regions() -> list[str]:
    """The body of every ``### BEGIN SOLUTION`` region of every solution notebook."""
    return [region for path in sorted((ROOT / "solutions").glob("*/*.ipynb"))
            for cell in nbformat.read(path, as_version=4).cells for region in _SOLUTION.findall(cell.source)]


def _distinctive_lines(region: str) -> tuple[str, ...]:
    """A region's lines that identify it (long code lines; a region leaks when all of them appear together)."""
    return tuple(line.strip() for line in region.splitlines()
                 if len(line.strip()) > 30 and not line.strip().startswith("#"))


# ------------------------------------------------------------------------------------------ the course root

def test_course_root_comes_from_an_explicit_setting_never_from_the_package(tmp_path, monkeypatch):
    monkeypatch.delenv(course.ENV, raising=False)
    nested = tmp_path / "course" / "autograded" / "alice" / "01"
    nested.mkdir(parents=True)
    (tmp_path / "course" / course.MARKER).write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert course.course_root(start=nested) == (tmp_path / "course").resolve()      # nbgrader's course directory
    monkeypatch.setenv(course.ENV, str(elsewhere))
    assert course.course_root(start=nested) == elsewhere.resolve()                   # the environment variable
    assert course.course_root(tmp_path / "course", start=nested) == (tmp_path / "course").resolve()  # --course
    monkeypatch.delenv(course.ENV)
    with pytest.raises(course.CourseNotFound, match="--course DIR, set CONVLAB_COURSE"):
        course.course_root(start=elsewhere)                    # this checkout is not found from where it is installed
    with pytest.raises(course.CourseNotFound, match="does not exist"):
        course.course_root(tmp_path / "missing")


def test_instructor_command_outside_a_course_says_how_to_name_one(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVLAB_")}
    proc = subprocess.run([sys.executable, "-m", "autograder", "grade", str(ROOT / "assignments" / "01-single-channel"
                           / "01-single-channel.ipynb"), "--out", str(tmp_path / "r.json")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and "no course directory: pass --course DIR" in proc.stderr, proc.stderr


# ------------------------------------------------------------------------------------------ setup cells

@pytest.mark.parametrize("path", sorted((ROOT / "solutions").glob("*/*.ipynb")), ids=lambda p: p.parent.name)
def test_every_setup_cell_is_the_canonical_one(path):
    cell = release.setup_cell(nbformat.read(path, as_version=4))
    assert cell.source.startswith(release.SETUP_HEADER), \
        f"{path.parent.name}: setup cell is not canonical: run `make release` (autograder/release.py applies it)"
    assert release.canonical_setup_source(cell.source) == cell.source
    assert cell.metadata["nbgrader"] == release.SETUP_METADATA


def test_canonical_setup_is_idempotent_and_keeps_the_notebooks_imports():
    old = "%matplotlib inline\nimport numpy as np\n\nfrom autograder import check\n\nfrom autograder.datasets import x"
    once = release.canonical_setup_source(old)
    assert once.startswith(release.SETUP_HEADER) and once.count("from autograder import check") == 1
    assert once.endswith("%matplotlib inline\nimport numpy as np\n\nfrom autograder.datasets import x")
    assert release.canonical_setup_source(once) == once


# ------------------------------------------------------------------------------------------ a fresh venv

@pytest.mark.slow
def test_installed_wheel_checks_a_correct_and_a_wrong_answer_outside_the_checkout(student):
    reference = solution_answers("01-single-channel")["corr2d"]
    proc = run_python(student, f"""
        import importlib.metadata, importlib.util, json, sys
        from packaging.requirements import Requirement
        import numpy as np
        import autograder
        from autograder import check
        from autograder.datasets import load_image
        exec({reference!r})
        good = check("corr2d", corr2d, device="cpu")
        wrong = check("corr2d", lambda x, k: corr2d(x, k[::-1, ::-1]), device="cpu")
        dist = importlib.metadata.distribution("convlab-course")
        unmet = [r for r in map(Requirement, dist.requires or []) if not r.marker
                 and importlib.metadata.version(r.name) not in r.specifier]
        hidden = None
        try:
            check("corr2d", corr2d, hidden=True)
        except RuntimeError as exc:
            hidden = str(exc)
        print(json.dumps({{"file": autograder.__file__, "good": [float(good), good.max_score],
                          "wrong": [float(wrong), wrong.max_score, wrong.text], "camera": load_image("camera").shape,
                          "instructor": [m for m in ("autograder.isolation", "autograder.cli", "autograder.seeds",
                                                     "autograder.course") if importlib.util.find_spec(m)],
                          "unmet": [str(r) for r in unmet], "hidden": hidden}}))
    """)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    python = student[0]
    assert Path(out["file"]).is_relative_to(python.parent.parent), "autograder did not come from the wheel"
    assert out["good"][0] == out["good"][1] > 0
    assert out["wrong"][0] < out["wrong"][1] and "flipped kernel" in out["wrong"][2]
    assert out["camera"] == [512, 512]
    assert out["instructor"] == [] and out["unmet"] == []
    assert "graded by your instructor" in out["hidden"]


@pytest.mark.slow
def test_setup_cell_and_restart_guide_the_student_in_one_line(edition, student, tmp_path):
    python, env, work = student
    setup = release.setup_cell(nbformat.read(ROOT / "assignments" / "01-single-channel" / "01-single-channel.ipynb",
                                             as_version=4)).source
    answer = solution_answers("01-single-channel")["corr2d"]
    check_cell = 'result = check("corr2d", corr2d)\nfloat(result)'

    bare = fresh_venv(tmp_path / "bare")  # a kernel without the course library (the wrong kernel)
    with StudentKernel(bare, student_env(bare, tmp_path / "home"), work) as kernel:
        error = kernel.run(setup)["error"]
    assert error and len(error) == 1, error
    assert '"Python 3 (convlab)"' in error[0] and f"%pip install {release.wheel_name()}" in error[0]

    with StudentKernel(python, env, work) as kernel:
        restarted = kernel.run(check_cell)  # as after a kernel restart: the setup cell has not run
        assert restarted["error"] and len(restarted["error"]) == 1, restarted
        assert "run the setup cell first" in restarted["error"][0] and "'check'" in restarted["error"][0]
        assert kernel.run(setup)["error"] is None
        typo = kernel.run("undefined_name + 1")["error"]  # after set-up, a NameError is shown as usual
        assert len(typo) > 1 and "setup cell" not in "".join(typo)
        kernel.run(answer)
        verdict = kernel.run(check_cell)
    assert verdict["error"] is None and verdict["result"] == "3.0", verdict
    assert "corr2d" in verdict["stdout"]


@pytest.mark.slow
def test_students_jupyterlab_hides_nbgrader_instructor_tools(student):
    proc = run_python(student, """
        from jupyterlab_server.config import get_page_config
        print(sorted(get_page_config([])["disabledExtensions"]))
    """, timeout=120)
    assert proc.returncode == 0, proc.stderr
    disabled = proc.stdout.strip().splitlines()[-1]
    for plugin in ("formgrader", "create-assignment", "course-list"):
        assert f"@jupyter/nbgrader:{plugin}" in disabled
    assert "assignment-list" not in disabled and "validate-assignment" not in disabled

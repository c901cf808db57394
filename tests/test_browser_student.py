"""As a student lives it, in a real browser: JupyterLab from a fresh venv with the student edition's wheel, started
on the edition's notebooks; headless Chromium (Debian's ``chromium``, driven by Playwright) opens a notebook, runs the
setup cell, the answer cell and the check cell, and sees the check's verdict. The student's JupyterLab shows
nbgrader's student tools but not the instructor's.

Skipped where Playwright or a Chromium executable is missing (``.ci/run`` installs both).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

from tests.coursecopy import fill_answers, solution_answers
from tests.student_env import build_edition, fresh_venv, install, student_env

playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
CHROMIUM = next((p for p in (shutil.which("chromium"), "/usr/bin/chromium") if p and Path(p).is_file()), None)
LAB_ASSETS = Path(sys.prefix) / "share" / "jupyter"      # JupyterLab's static files and lab extensions, borrowed
AID = "01-single-channel"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no chromium executable"),
              pytest.mark.skipif(not (LAB_ASSETS / "lab" / "static").is_dir(), reason="no JupyterLab assets")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_server(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("JupyterLab did not answer")


@pytest.fixture
def lab(tmp_path):
    """``(url, notebook path in the lab)``: a student's JupyterLab on the unzipped edition, answer written."""
    wheel, notebooks = build_edition(tmp_path / "dist")
    python = fresh_venv(tmp_path / "venv")
    install(python, wheel)
    with zipfile.ZipFile(notebooks) as zf:
        zf.extractall(tmp_path / "work")
    root = next((tmp_path / "work").iterdir())
    nb = root / AID / f"{AID}.ipynb"
    answer = re.sub(r"\s*### (BEGIN|END) SOLUTION", "", solution_answers(AID)["corr2d"])
    fill_answers(nb, {"corr2d": answer}, nb)                          # the student has written corr2d
    borrowed = tmp_path / "jupyter-path"                                 # lab extensions only, no kernels
    borrowed.mkdir()
    (borrowed / "labextensions").symlink_to(LAB_ASSETS / "labextensions")
    env = student_env(python, tmp_path / "home")
    _lab_settings(Path(env["JUPYTER_CONFIG_DIR"]))
    env.update(JUPYTERLAB_DIR=str(LAB_ASSETS / "lab"), JUPYTER_PATH=str(borrowed))
    port, token = _free_port(), secrets.token_hex(16)
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen([str(python), "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
                             f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
                             "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
                            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_server(f"{base}/api/status?token={token}", proc)
        yield f"{base}/lab/tree/{AID}/{AID}.ipynb?token={token}", tmp_path / "lab.log"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        log.close()


def _lab_settings(config_dir: Path) -> None:
    """Every cell in the page (no windowed rendering, so locators find them), no news pop-up over the notebook."""
    settings = {"notebook-extension/tracker": {"windowingMode": "none"},
                "apputils-extension/notification": {"fetchNews": "false"}}
    for name, values in settings.items():
        path = config_dir / "lab" / "user-settings" / "@jupyterlab" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))


def _run_cell(page, cell) -> None:
    """Select the cell, press the toolbar's Run button, and wait until it has run (its prompt shows a count)."""
    cell.locator(".jp-InputPrompt").click()
    page.locator(".jp-NotebookPanel-toolbar [data-command='notebook:run-cell-and-select-next']").click()
    playwright.expect(cell.locator(".jp-InputPrompt").first).to_have_text(re.compile(r"\[\d+\]"), timeout=90_000)


def test_student_runs_setup_and_check_cells_and_sees_the_verdict(lab):
    url, log = lab
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            page.goto(url)
            page.get_by_text(re.compile(r"\| Idle$")).wait_for(timeout=90_000)   # the kernel is ready
            cells = page.locator(".jp-Notebook .jp-CodeCell")
            setup = cells.filter(has_text="Run this cell first")
            answer = cells.filter(has_text="def corr2d(x, k):")
            check = cells.filter(has_text='result = check("corr2d", corr2d)')
            for cell in (setup, answer, check):
                _run_cell(page, cell)
            verdict = check.locator(".jp-OutputArea").inner_text()
            setup_output = setup.locator(".jp-OutputArea").inner_text()
            page.locator(".lm-MenuBar-item", has_text="Nbgrader").click()
            items = page.locator(".lm-Menu-itemLabel").all_inner_texts()
        except Exception:
            page.screenshot(path=str(log.with_name("failure.png")))
            print(log.read_text()[-3000:])
            raise
        finally:
            browser.close()
    assert "\u2714 corr2d" in verdict and "3/3 points" in verdict and "3.0" in verdict, verdict
    assert not setup_output.strip(), setup_output
    assert "Assignment List" in items and not any("Formgrader" in i or "Course" in i for i in items), items

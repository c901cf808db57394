"""The bundled example class (``examples/``) is in sync with the release, and ``python -m autograder demo`` grades
it: the correct student keeps every mark, the buggy one gets named mistakes, the cheater loses what it cheated on."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from redteam import support


def test_examples_are_in_sync_with_the_release():
    module = support.examples_module()
    assert module.main(["--check"]) == 0, "run: python examples/make_examples.py"


@pytest.mark.slow
@pytest.mark.skipif(not support.SOURCE_01.is_file(), reason="assignment 01 is not written yet")
def test_demo(tmp_path):
    out = tmp_path / "demo"
    env = dict(os.environ, PYTHONNOUSERSITE="1", COLUMNS="120")
    proc = subprocess.run([sys.executable, "-m", "autograder", "demo", "--out", str(out), "--cases-factor", "1"],
                          capture_output=True, text=True, env=env, cwd=support.REPO, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "alice" in proc.stdout and "mallory" in proc.stdout and "bob" in proc.stdout
    reports = {p.parent.name + "/" + p.stem: json.loads(p.read_text()) for p in out.glob("*/*.json")}
    for key, report in reports.items():
        if key.startswith("alice/"):
            assert report["score"] == report["extra_data"]["max_score"], (key, report["output"])
    bob = {t["name"]: t for t in reports[f"bob/{support.A01}"]["tests"]}
    assert bob["corr2d"]["status"] == "passed" and "kernel not flipped" in bob["convolve2d"]["output"]
    assert "no square root" in bob["sobel_magnitude"]["output"]
    mallory = {t["name"]: t for t in reports[f"mallory/{support.A01}"]["tests"]}
    assert mallory["corr2d"]["score"] == 0 and "scipy.signal" in mallory["corr2d"]["output"]
    assert mallory["convolve2d"]["score"] == 0 and mallory["sobel_magnitude"]["status"] == "passed"

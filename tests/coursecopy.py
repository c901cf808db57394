"""A temporary copy of the course for tests that run real nbgrader commands (never the repository itself)."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from autograder.release import nbgrader_env

ROOT = Path(__file__).resolve().parents[1]


def make_course(dest: Path, ids: list[str] | None = None) -> Path:
    """Copy ``nbgrader_config.py`` and ``solutions/`` (all or ``ids``) to ``dest``; returns ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "nbgrader_config.py", dest / "nbgrader_config.py")
    for src in sorted((ROOT / "solutions").iterdir()):
        if src.is_dir() and (ids is None or src.name in ids):
            shutil.copytree(src, dest / "solutions" / src.name,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return dest


def nbgrader(course: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=nbgrader_env(),
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


def fill_answers(release_nb: Path, answers: dict[str, str], out: Path) -> Path:
    """A student's submission: the release notebook with answer cells (by grade_id) replaced."""
    nb = json.loads(release_nb.read_text())
    for cell in nb["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if gid in answers:
            cell["source"] = answers[gid]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(nb, indent=1))
    return out


def solution_answers(assignment: str) -> dict[str, str]:
    """grade_id -> source of every answer cell in the solution notebook (the reference answers)."""
    nb = json.loads((ROOT / "solutions" / assignment / f"{assignment}.ipynb").read_text())
    out = {}
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("solution") and cell["cell_type"] == "code":
            out[meta["grade_id"]] = "".join(cell["source"])
    return out

"""The secret behind hidden cases.

Hidden cases are drawn from a seed that students cannot know:
- the isolated grader draws a fresh seed for every run (``secrets.randbits``) unless the instructor passes one
  to reproduce a grade, and records it in the instructor-only part of its output;
- in-kernel nbgrader grading derives the seed from the course secret, a file ``.convlab-secret`` in the course
  root (git-ignored, created by ``nbgrader_config.py``), found by walking up from the working directory, or
  named by ``CONVLAB_SECRET_FILE``. ``CONVLAB_SEED`` overrides both (for reproducing a grade).
Without any of these (a student's laptop) a fresh random seed is used: hidden cases are then simply new cases.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

SECRET_NAME = ".convlab-secret"


def find_secret_file(start: Path | None = None) -> Path | None:
    named = os.environ.get("CONVLAB_SECRET_FILE")
    if named:
        return Path(named) if Path(named).is_file() else None
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / SECRET_NAME
        if candidate.is_file():
            return candidate
    return None


def ensure_secret(course_root: Path) -> Path:
    """Create the course secret if missing (instructor side); returns its path."""
    path = Path(course_root) / SECRET_NAME
    if not path.exists():
        path.write_text(secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return path


def secret_text(course_root: Path) -> str:
    return ensure_secret(course_root).read_text().strip()


def derive(secret: str, purpose: str) -> str:
    return hashlib.sha256(f"{secret}\x1f{purpose}".encode()).hexdigest()


def hidden_seed() -> tuple[int, str]:
    """``(seed, source)`` for in-kernel hidden checks; ``source`` says where it came from (not the secret)."""
    if os.environ.get("CONVLAB_SEED"):
        return int(os.environ["CONVLAB_SEED"]), "CONVLAB_SEED"
    path = find_secret_file()
    if path is not None:
        return int(derive(path.read_text().strip(), "hidden-cases")[:15], 16), "course secret"
    return secrets.randbits(62), "fresh random seed"


def fresh_seed() -> int:
    return secrets.randbits(62)

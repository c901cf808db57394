"""Regenerate the student release: ``nbgrader generate_assignment`` for every assignment in ``solutions/``.

``python -m autograder.release [--course DIR] [ID ...]`` (``make release``). The release in ``assignments/`` is
committed and never edited by hand; ``tests/test_release.py`` regenerates it in a temporary copy and fails on
any difference.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def assignment_ids(course: Path = ROOT) -> list[str]:
    return sorted(p.name for p in (course / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file())


def nbgrader_env() -> dict:
    """The environment nbgrader needs: the interpreter's bin/ on PATH (nbgrader runs ``alembic`` by name)."""
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    return env


def generate(course: Path, ids: list[str]) -> None:
    for aid in ids:
        subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", aid, "--force", "--quiet"],
                       cwd=course, env=nbgrader_env(), check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ids", nargs="*", help="assignment ids (default: all in solutions/)")
    parser.add_argument("--course", type=Path, default=ROOT, help="course root (default: this repository)")
    args = parser.parse_args(argv)
    generate(args.course, args.ids or assignment_ids(args.course))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Regenerate the student release: canonical setup cells in ``solutions/``, then ``nbgrader generate_assignment``.

``python -m autograder.release [--course DIR] [ID ...]`` (``make release``). Every solution notebook's first code
cell (``grade_id: "setup"``) starts with :data:`SETUP_HEADER`, written here once: it imports ``check`` and, when the
course library is missing from the kernel (or the kernel is the wrong one), stops with one line saying what to do.
Applying it is idempotent; ``tests/test_student_edition.py`` fails when a notebook's setup cell is not canonical.

The release in ``assignments/`` is committed and never edited by hand; ``tests/test_release.py`` regenerates it in
a temporary copy and fails on any difference.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from . import __version__
from .course import course_root

DISTRIBUTION = "convlab-course"            # what students install (import name: autograder)
KERNEL_DISPLAY_NAME = "Python 3 (convlab)"


def wheel_name(version: str = __version__) -> str:
    """The student edition's wheel file name (``make student-edition`` builds it into ``dist/``)."""
    return f"{DISTRIBUTION.replace('-', '_')}-{version}-py3-none-any.whl"


SETUP_HEADER = f'''# Run this cell first, and again after every kernel restart.
try:
    from autograder import check  # the course library, {DISTRIBUTION}
except ImportError:
    class SetupError(ModuleNotFoundError):
        _render_traceback_ = lambda self: [str(self)]  # one line, not a traceback
    raise SetupError('The course library is not installed in this kernel. Select the kernel '
                     '"{KERNEL_DISPLAY_NAME}" (Kernel > Change Kernel...), or install it here: '
                     '%pip install {wheel_name()} (the wheel from your course; '
                     '`pip install autograder` is another project)') from None
'''
SETUP_METADATA = {"grade": False, "grade_id": "setup", "locked": True, "schema_version": 3, "solution": False,
                  "task": False}
_OWN_IMPORT = "from autograder import check"


def canonical_setup_source(source: str) -> str:
    """``source`` of a setup cell with the canonical header and the notebook's own imports after it."""
    body = source[len(SETUP_HEADER):] if source.startswith(SETUP_HEADER) else source
    lines: list[str] = []
    for line in body.splitlines():
        if line.split("#")[0].strip() == _OWN_IMPORT or (not line.strip() and (not lines or not lines[-1].strip())):
            continue  # the header imports check; no leading or repeated blank lines
        lines.append(line)
    return SETUP_HEADER + "\n" + "\n".join(lines) if lines else SETUP_HEADER.rstrip("\n")


def setup_cell(nb):
    """The notebook's setup cell: its first code cell (which must carry ``grade_id: "setup"``)."""
    cell = next((c for c in nb.cells if c.cell_type == "code"), None)
    gid = cell.metadata.get("nbgrader", {}).get("grade_id") if cell is not None else None
    if gid != "setup":
        raise ValueError(f"the first code cell must be the setup cell (grade_id 'setup'), not {gid!r}")
    return cell


def apply_setup_cell(path: Path) -> bool:
    """Make ``path``'s setup cell canonical (source and nbgrader metadata); returns whether the file changed."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    cell = setup_cell(nb)
    source, meta = canonical_setup_source(cell.source), {**cell.metadata.get("nbgrader", {}), **SETUP_METADATA}
    if source == cell.source and meta == cell.metadata.get("nbgrader"):
        return False
    cell.source = source
    cell.metadata["nbgrader"] = meta
    nbformat.write(nb, path)
    return True


def source_notebook(course: Path, aid: str) -> Path:
    return course / "solutions" / aid / f"{aid}.ipynb"


def assignment_ids(course: Path | None = None) -> list[str]:
    course = course_root(course)
    return sorted(p.name for p in (course / "solutions").iterdir() if source_notebook(course, p.name).is_file())


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
    parser.add_argument("--course", type=Path, default=None,
                        help="course root (default: $CONVLAB_COURSE or the nbgrader course directory)")
    args = parser.parse_args(argv)
    course = course_root(args.course)
    ids = args.ids or assignment_ids(course)
    for aid in ids:
        if apply_setup_cell(source_notebook(course, aid)):
            print(f"solutions/{aid}: setup cell made canonical")
    generate(course, ids)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

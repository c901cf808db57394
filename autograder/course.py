"""Where the course root is: the instructor's directory holding ``solutions/``, ``nbgrader_config.py``, the secret.

The course root always comes from an explicit setting, never from where this package is installed (a student's
installed library knows no course):

1. an explicit path (``--course DIR`` on the command line);
2. the environment variable ``CONVLAB_COURSE``;
3. nbgrader's course directory: the working directory or its nearest parent holding ``nbgrader_config.py``
   (nbgrader itself reads that file from the directory it runs in; kernels it starts run below it).
"""
from __future__ import annotations

import os
from pathlib import Path

ENV = "CONVLAB_COURSE"
MARKER = "nbgrader_config.py"


class CourseNotFound(ValueError):
    """No course root is configured; the message says how to name one."""


def nbgrader_course_dir(start: Path | None = None) -> Path | None:
    """The nearest directory from ``start`` (default: the working directory) upwards holding ``nbgrader_config.py``."""
    here = Path(start or Path.cwd()).resolve()
    return next((folder for folder in (here, *here.parents) if (folder / MARKER).is_file()), None)


def find_course(explicit: str | os.PathLike | None = None, start: Path | None = None) -> Path | None:
    """The configured course root (resolved), or ``None`` when nothing names one."""
    named = explicit or os.environ.get(ENV)
    if named:
        return Path(named).expanduser().resolve()
    return nbgrader_course_dir(start)


def course_root(explicit: str | os.PathLike | None = None, start: Path | None = None) -> Path:
    """Like :func:`find_course`, but a missing or invalid setting raises :class:`CourseNotFound` saying what to do."""
    root = find_course(explicit, start)
    if root is None:
        raise CourseNotFound(f"no course directory: pass --course DIR, set {ENV}=DIR, or run from the nbgrader "
                             f"course directory (the one holding {MARKER} and solutions/)")
    if not root.is_dir():
        raise CourseNotFound(f"course directory {root} does not exist (from --course or {ENV})")
    return root

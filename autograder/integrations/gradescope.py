"""Gradescope: build an autograder zip for one assignment.

``python -m autograder gradescope ASSIGNMENT --out autograder.zip`` packs what the isolated grader needs (the
``autograder`` package with its datasets, the assignment's pristine source notebook, the pinned requirements) with
Gradescope's two entry points:

- ``setup.sh`` (run once when the image is built): bubblewrap, Python 3.11 and a virtual environment with the
  pinned requirements, under ``/autograder/source/convlab``;
- ``run_autograder`` (run per submission): grades the notebooks in ``/autograder/submission`` into
  ``/autograder/results/results.json``. The instructor's sidecar (seed, logs) stays in ``/autograder/results``
  beside it, which students do not see.

``GRADESCOPE_ROOT`` (default ``/autograder``) and ``CONVLAB_PYTHON`` (default the set-up venv's python) let the
same script run against a local directory laid out like Gradescope's, which is how it is tested.
"""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path

from ..course import course_root
from ..release import assignment_ids

SETUP_SH = """#!/usr/bin/env bash
# Gradescope image set-up for convlab ({assignment}).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq bubblewrap make
if ! command -v python3.11 >/dev/null 2>&1; then
  apt-get install -y -qq python3.11 python3.11-venv || {{ apt-get install -y -qq software-properties-common &&
    add-apt-repository -y ppa:deadsnakes/ppa && apt-get update -qq && apt-get install -y -qq python3.11 python3.11-venv; }}
fi
cd /autograder/source/convlab
python3.11 -m venv .venv
.venv/bin/python -m pip install --quiet -r requirements.txt
.venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope entry point: grade /autograder/submission into /autograder/results/results.json.
set -uo pipefail
ROOT="${{GRADESCOPE_ROOT:-/autograder}}"
COURSE="$ROOT/source/convlab"
PY="${{CONVLAB_PYTHON:-$COURSE/.venv/bin/python}}"
mkdir -p "$ROOT/results"
mapfile -t NOTEBOOKS < <(find "$ROOT/submission" -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort)
if [ "${{#NOTEBOOKS[@]}}" -eq 0 ]; then
  cat > "$ROOT/results/results.json" <<'JSON'
{{"score": 0, "output": "No notebook (.ipynb) was found in your submission: upload {assignment}.ipynb.", "tests": []}}
JSON
  exit 0
fi
cd "$COURSE"
"$PY" -m autograder grade "${{NOTEBOOKS[@]}}" --assignment {assignment} --course "$COURSE" \\
  --out "$ROOT/results/results.json" --format json --quiet
"""


def build(assignment: str, out: Path, course: Path | None = None) -> Path:
    """Write the autograder zip for ``assignment`` to ``out``; returns ``out``."""
    course = course_root(course)
    if assignment not in assignment_ids(course):
        raise ValueError(f"unknown assignment {assignment!r}; known: {', '.join(assignment_ids(course))}")
    files: list[tuple[Path, str]] = []
    for pattern in ("autograder/**/*.py", "autograder/data/*", "edition/**/*.*"):
        files += [(p, f"convlab/{p.relative_to(course)}") for p in sorted(course.glob(pattern))
                  if "__pycache__" not in p.parts and p.is_file()]
    for name in ("pyproject.toml", "setup.py", "requirements.txt", "README.md"):
        files.append((course / name, f"convlab/{name}"))
    source = course / "solutions" / assignment / f"{assignment}.ipynb"
    files.append((source, f"convlab/solutions/{assignment}/{assignment}.ipynb"))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for script, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(script)
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            zf.writestr(info, text.format(assignment=assignment))
        for path, arcname in files:
            zf.write(path, arcname)
    return out


def extract(zip_path: Path, source_dir: Path) -> None:
    """Unpack like Gradescope does (into ``/autograder/source``), keeping the scripts executable."""
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = zf.extract(info, source_dir)
            mode = info.external_attr >> 16
            if mode & 0o111:
                Path(target).chmod(0o755)


def add_command(sub, add_common, options_from_args) -> None:
    p = sub.add_parser("gradescope", help="build a Gradescope autograder zip for one assignment")
    p.add_argument("assignment", metavar="ASSIGNMENT")
    p.add_argument("--out", required=True, type=Path, metavar="autograder.zip")
    p.add_argument("--course", type=Path, default=None,
                   help="course root (default: $CONVLAB_COURSE or the nbgrader course directory)")

    def cmd(args) -> int:
        out = build(args.assignment, args.out, args.course)
        print(f"wrote {out}: upload it as the assignment's autograder (Gradescope runs setup.sh, then "
              "run_autograder per submission)")
        return 0

    p.set_defaults(func=cmd)

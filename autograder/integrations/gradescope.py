"""Gradescope: build an autograder zip for one assignment, holding no solution and no secret.

``python -m autograder gradescope ASSIGNMENT --out autograder.zip`` packs what the isolated grader needs:

- the ``autograder`` package (exercise specs: case generators and the torch oracle; no reference answers) with
  its datasets (``autograder/data``), the lean ``requirements-grading.txt``;
- the assignment's *release* notebook ``assignments/<id>/<id>.ipynb`` as the pristine instructor cells (never
  ``solutions/``, never the example submissions);
- the assignment's hidden-case seed, derived from the course secret (:func:`autograder.seeds.course_seed`) and
  baked into ``run_autograder``: the same seed as ``grade``/``batch`` on the instructor's machine, and not the
  course secret itself (which would reveal every other assignment's seed);
- Gradescope's two entry points:

  - ``setup.sh`` (run once when the image is built): bubblewrap, Python 3.11 and a virtual environment
    ``/opt/convlab-venv`` (readable by the sandbox user) with the pinned CPU build of torch;
  - ``run_autograder`` (per submission): makes everything under ``/autograder`` unreadable to other users, then
    grades the notebooks in ``/autograder/submission`` into ``/autograder/results/results.json``. With bubblewrap
    usable the sandbox hides the files; without it (Gradescope's containers usually lack user namespaces) the
    student's code runs as ``nobody`` (``setpriv``), without network where ``unshare -n`` is permitted
    (:mod:`autograder.isolation.unprivileged`). Anything weaker is refused unless the zip was built with
    ``--allow-reduced-isolation``. The instructor's sidecar (seed, flags, logs) stays beside ``results.json``.

``GRADESCOPE_ROOT`` (default ``/autograder``) and ``CONVLAB_PYTHON`` (default ``/opt/convlab-venv/bin/python``) let
the same script run against a local directory laid out like Gradescope's, which is how it is tested.
"""
from __future__ import annotations

import stat
import zipfile
from pathlib import Path

from ..course import course_root
from ..release import assignment_ids
from ..seeds import course_seed

VENV = "/opt/convlab-venv"
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"

SETUP_SH = """#!/usr/bin/env bash
# Gradescope image set-up for convlab ({assignment}).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq bubblewrap util-linux
if ! command -v python3.11 >/dev/null 2>&1; then
  apt-get install -y -qq python3.11 python3.11-venv || {{ apt-get install -y -qq software-properties-common &&
    add-apt-repository -y ppa:deadsnakes/ppa && apt-get update -qq && apt-get install -y -qq python3.11 python3.11-venv; }}
fi
python3.11 -m venv {venv}
{venv}/bin/python -m pip install --quiet --extra-index-url {torch_index} -r /autograder/source/convlab/requirements-grading.txt
chmod -R go+rX {venv}
"""

RUN_AUTOGRADER = """#!/usr/bin/env bash
# Gradescope entry point: grade /autograder/submission into /autograder/results/results.json.
set -uo pipefail
ROOT="${{GRADESCOPE_ROOT:-/autograder}}"
COURSE="$ROOT/source/convlab"
PY="${{CONVLAB_PYTHON:-{venv}/bin/python}}"
RESULTS="$ROOT/results/results.json"
mkdir -p "$ROOT/results"
{allow}
fail() {{  # a grader fault: a clear zero report, never a lost result
  "$PY" - "$RESULTS" "$1" <<'PY'
import json, sys
json.dump({{"score": 0, "output": "The autograder could not grade this submission safely (not your fault; the "
           "instructor has been told): " + sys.argv[2][-600:], "tests": []}}, open(sys.argv[1], "w"))
PY
  exit 0
}}
if [ "$(id -u)" = 0 ]; then
  # Nothing under $ROOT (this zip, other results, metadata) is readable by the sandbox user; the datasets are.
  chmod -R go-rwx "$ROOT"
  chmod go+x "$ROOT" "$ROOT/source" "$COURSE" "$COURSE/autograder"
  chmod -R go+rX "$COURSE/autograder/data"
  export CONVLAB_SANDBOX_USER="${{CONVLAB_SANDBOX_USER:-nobody}}"
fi
mapfile -t NOTEBOOKS < <(find "$ROOT/submission" -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | sort)
if [ "${{#NOTEBOOKS[@]}}" -eq 0 ]; then
  cat > "$RESULTS" <<'JSON'
{{"score": 0, "output": "No notebook (.ipynb) was found in your submission: upload {assignment}.ipynb.", "tests": []}}
JSON
  exit 0
fi
cd "$COURSE"
ERR="$(mktemp)"
"$PY" -m autograder grade "${{NOTEBOOKS[@]}}" --assignment {assignment} --course "$COURSE" --seed {seed} \\
  --strict-isolation --out "$RESULTS" --format json --quiet 2>"$ERR"
STATUS=$?
cat "$ERR" >&2
if [ "$STATUS" -ne 0 ] && ! [ -s "$RESULTS" ]; then fail "$(tail -c 600 "$ERR")"; fi
exit 0
"""


def contents(assignment: str, course: Path) -> list[tuple[Path, str]]:
    """``(file, name in the zip)`` for everything but the two scripts: no ``solutions/``, no examples, no secret."""
    files: list[tuple[Path, str]] = []
    for pattern in ("autograder/**/*.py", "autograder/data/*"):
        files += [(p, f"convlab/{p.relative_to(course)}") for p in sorted(course.glob(pattern))
                  if "__pycache__" not in p.parts and p.is_file()]
    for name in ("pyproject.toml", "requirements-grading.txt", "README.md"):
        files.append((course / name, f"convlab/{name}"))
    release = f"assignments/{assignment}/{assignment}.ipynb"
    if not (course / release).is_file():
        raise ValueError(f"no release notebook {course / release}: run `make release` first")
    files.append((course / release, f"convlab/{release}"))
    return files


def build(assignment: str, out: Path, course: Path | None = None, allow_reduced: bool = False) -> Path:
    """Write the autograder zip for ``assignment`` to ``out``; returns ``out``."""
    course = course_root(course)
    if assignment not in assignment_ids(course):
        raise ValueError(f"unknown assignment {assignment!r}; known: {', '.join(assignment_ids(course))}")
    files = contents(assignment, course)
    fields = {"assignment": assignment, "seed": course_seed(course, assignment), "venv": VENV,
              "torch_index": CPU_TORCH_INDEX,
              "allow": "export CONVLAB_ALLOW_REDUCED=1  # built with --allow-reduced-isolation" if allow_reduced
              else "# reduced isolation without an unprivileged user is refused (zip built without opt-in)"}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for script, text in (("setup.sh", SETUP_SH), ("run_autograder", RUN_AUTOGRADER)):
            info = zipfile.ZipInfo(script)
            info.external_attr = (stat.S_IFREG | 0o755) << 16
            zf.writestr(info, text.format(**fields))
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
    p.add_argument("--allow-reduced-isolation", action="store_true",
                   help="let the zip grade where neither bubblewrap nor an unprivileged user is available")

    def cmd(args) -> int:
        out = build(args.assignment, args.out, args.course, args.allow_reduced_isolation)
        print(f"wrote {out}: upload it as the assignment's autograder (Gradescope runs setup.sh, then "
              "run_autograder per submission). It holds the release notebook and this assignment's derived seed, "
              "no solutions and no course secret.")
        return 0

    p.set_defaults(func=cmd)

"""Read a submitted notebook defensively and decide what runs when it is graded.

What runs, in the order of the pristine source notebook ``solutions/<id>/<id>.ipynb``:

- the instructor's cells (setup, helpers) from the *source*, never the student's copy of a locked cell;
- the student's answer cells, matched by nbgrader ``grade_id``;
- cells the student added (no ``grade_id``, an unknown one, or a second copy of an answer cell), each after the
  recognised cell that precedes it in the submission;
- never any test cell (neither copy), never a demonstration cell (tagged ``demo`` in the source: plots, timing,
  training), which keeps grading fast.

Cell kinds come from the source, not from the submission's metadata, so a student cannot turn a test cell into
an answer cell or tag an answer ``demo``. IPython line magics (``%matplotlib``, ``!pip``) become ``pass``; a
cell magic other than timing or capture drops the cell.

Nothing here raises on a malformed submission: problems are returned as messages for the report.
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

MAX_NOTEBOOK_BYTES = 32 << 20
PYTHON_CELL_MAGICS = ("time", "timeit", "capture", "prun")


@dataclass
class Cell:
    name: str          # grade_id, or "added cell N" for a cell the student added
    kind: str          # instructor | answer | added | test | demo
    source: str
    trusted: bool      # runs statement by statement, tolerating imports that a sandbox profile hides

    @property
    def label(self) -> str:
        return {"answer": f"answer cell {self.name}", "instructor": f"instructor cell {self.name}"}.get(
            self.kind, self.name)


@dataclass
class Program:
    """The cells to execute for one submission, and what the report should say about the notebook."""

    assignment: str
    cells: list[Cell] = field(default_factory=list)
    answers: dict[str, Cell] = field(default_factory=dict)   # exercise -> the student's answer cell
    student_cells: list[Cell] = field(default_factory=list)  # answers and added cells, in run order
    notes: list[str] = field(default_factory=list)


class NotebookError(Exception):
    """The submission cannot be run at all (the message is for the student)."""


# ------------------------------------------------------------------------------------------ reading

def read_notebook(path: Path) -> dict:
    """The notebook as a dict, or :class:`NotebookError` with a clear message."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise NotebookError(f"the notebook {path.name} cannot be read ({exc.strerror})") from None
    if size > MAX_NOTEBOOK_BYTES:
        raise NotebookError(f"the notebook {path.name} is {size >> 20} MiB, larger than the "
                            f"{MAX_NOTEBOOK_BYTES >> 20} MiB a submission may be (clear large outputs)")
    try:
        nb = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise NotebookError(f"{path.name} is not a Jupyter notebook (not UTF-8 text)") from None
    except ValueError as exc:
        raise NotebookError(f"{path.name} is not a valid Jupyter notebook: invalid JSON ({exc})") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        if isinstance(nb, dict) and "worksheets" in nb:
            raise NotebookError(f"{path.name} is an old (nbformat 3) notebook; save it with Jupyter 4 or later")
        raise NotebookError(f"{path.name} is not a Jupyter notebook (no list of cells)")
    return nb


def kernel_problem(nb: dict) -> str | None:
    """A message when the notebook's kernel is not Python (a foreign kernel), else None."""
    meta = nb.get("metadata") if isinstance(nb.get("metadata"), dict) else {}
    spec = meta.get("kernelspec") if isinstance(meta.get("kernelspec"), dict) else {}
    info = meta.get("language_info") if isinstance(meta.get("language_info"), dict) else {}
    for language in (spec.get("language"), info.get("name")):
        if isinstance(language, str) and language.strip().lower() not in ("python", "python3", ""):
            name = spec.get("display_name") or spec.get("name") or language
            return f"the notebook uses a {language} kernel ({name}), not Python: it was not run"
    return None


def _source(cell: dict) -> str | None:
    src = cell.get("source", "")
    if isinstance(src, str):
        return src
    if isinstance(src, list) and all(isinstance(s, str) for s in src):
        return "".join(src)
    return None


def _meta(cell: dict) -> tuple[dict, list]:
    meta = cell.get("metadata") if isinstance(cell.get("metadata"), dict) else {}
    nbg = meta.get("nbgrader") if isinstance(meta.get("nbgrader"), dict) else {}
    tags = meta.get("tags") if isinstance(meta.get("tags"), list) else []
    return nbg, [t for t in tags if isinstance(t, str)]


def _grade_id(cell: dict) -> str | None:
    nbg, _ = _meta(cell)
    gid = nbg.get("grade_id")
    return gid if isinstance(gid, str) and gid else None


def code_cells(nb: dict) -> Iterable[tuple[int, dict, str]]:
    """``(index, cell, source)`` for each well-formed code cell."""
    for i, cell in enumerate(nb.get("cells", [])):
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            src = _source(cell)
            if src is not None:
                yield i, cell, src


def grade_ids(nb: dict) -> list[str]:
    return [g for _, c, _ in code_cells(nb) if (g := _grade_id(c))]


def source_kind(cell: dict) -> str:
    """instructor | answer | test | demo, from the *source* notebook's metadata."""
    nbg, tags = _meta(cell)
    gid = _grade_id(cell) or ""
    if "demo" in tags or gid.startswith("demo"):
        return "demo"
    if nbg.get("solution") is True:
        return "answer"
    if nbg.get("grade") is True:
        return "test"
    return "instructor"


# ------------------------------------------------------------------------------------------ magics

_MAGIC_LINE = re.compile(r"^(\s*)(%|!)")


def strip_magics(source: str) -> tuple[str | None, bool]:
    """``(python source or None to drop the cell, whether anything changed)``."""
    lines = source.split("\n")
    first = lines[0].strip() if lines else ""
    changed = False
    if first.startswith("%%"):
        magic = first[2:].split()[0] if first[2:].split() else ""
        if magic not in PYTHON_CELL_MAGICS:
            return None, True
        lines, changed = lines[1:], True
    out = []
    for line in lines:
        m = _MAGIC_LINE.match(line)
        if m and not line.strip().startswith("!="):
            out.append(f"{m.group(1)}pass  # IPython magic removed by the grader")
            changed = True
        else:
            out.append(line)
    return "\n".join(out), changed


# ------------------------------------------------------------------------------------------ recognition

def recognise(nb: dict | None, path: Path, sources: dict[str, dict], exercises: dict[str, list[str]]) -> str | None:
    """The assignment a notebook belongs to: its file name, its folder, then the grade_ids and function names it
    shares with each source notebook."""
    path = Path(path)
    for name in (path.stem, path.parent.name):
        if name in exercises:
            return name
    if nb is None:
        return None
    ids = set(grade_ids(nb))
    best, best_score = None, 0
    for aid, names in exercises.items():
        answer_ids = set(names)
        if aid in sources:
            answer_ids |= {g for _, c, _ in code_cells(sources[aid]) if (g := _grade_id(c))}
        score = len(ids & answer_ids) * 10
        code = "\n".join(src for _, _, src in code_cells(nb))
        score += sum(1 for n in names if re.search(rf"\bdef\s+{re.escape(n)}\s*\(", code))
        if score > best_score:
            best, best_score = aid, score
    return best


# ------------------------------------------------------------------------------------------ pairing

def build_program(submission: dict, source: dict, assignment: str, exercise_names: list[str]) -> Program:
    """Pair the submission's cells with the source's by grade_id (see the module docstring)."""
    program = Program(assignment)
    src_cells = [(_grade_id(c), c, s) for _, c, s in code_cells(source)]
    kinds: dict[str, str] = {}
    for gid, cell, _ in src_cells:
        if gid:
            kinds[gid] = source_kind(cell)

    answers: dict[str, str] = {}
    added: dict[str | None, list[tuple[str, str]]] = {}
    anchor: str | None = None
    seen: dict[str, int] = {}
    n_added = 0
    malformed = 0
    stripped_ids = 0
    for i, cell in enumerate(submission.get("cells", [])):
        if not isinstance(cell, dict):
            malformed += 1
            continue
        if cell.get("cell_type") != "code":
            continue
        src = _source(cell)
        if src is None:
            malformed += 1
            continue
        gid = _grade_id(cell)
        kind = kinds.get(gid) if gid else None
        if gid is not None and kind is not None:
            seen[gid] = seen.get(gid, 0) + 1
            if seen[gid] == 1:
                anchor = gid
                if kind == "answer":
                    answers[gid] = src
                continue  # instructor, test and demo cells run from the source, or not at all
            if kind != "answer":
                continue  # a copy of a locked cell: never the student's
            program.notes.append(f"the answer cell {gid} appears {seen[gid]} times; the first is the answer, "
                                 "later copies run as cells you added")
        elif gid is None and cell.get("metadata") is not None and not isinstance(cell.get("metadata"), dict):
            malformed += 1
        if gid is None:
            stripped_ids += 1
        n_added += 1
        added.setdefault(anchor, []).append((f"added cell {n_added}", src))
    if malformed:
        program.notes.append(f"{malformed} malformed cell(s) were ignored")

    def emit(name: str, kind: str, src: str, trusted: bool) -> None:
        code, changed = strip_magics(src)
        if code is None:
            program.notes.append(f"{name} is a cell magic that is not Python; it was not run")
            return
        cell = Cell(name, kind, code, trusted)
        program.cells.append(cell)
        if not trusted:
            program.student_cells.append(cell)
        if kind == "answer":
            program.answers[name] = cell

    for name, src in added.get(None, []):
        emit(name, "added", src, False)
    for gid, cell, src in src_cells:
        kind = kinds.get(gid) if gid else "instructor"
        if kind == "instructor":
            emit(gid or "instructor cell", "instructor", src, True)
        elif kind == "answer":
            if gid in answers:
                emit(gid, "answer", answers[gid], False)
            elif gid in exercise_names:
                program.notes.append(f"the answer cell {gid} is missing (deleted, or its metadata was "
                                     "stripped); a cell you added may still define it")
        if gid:
            for name, a_src in added.get(gid, []):
                emit(name, "added", a_src, False)
    for gid in exercise_names:
        if gid not in kinds:
            program.notes.append(f"the source notebook has no answer cell {gid}")
    missing_ids = [g for g in exercise_names if g not in answers]
    if stripped_ids and missing_ids:
        program.notes.append(f"{stripped_ids} cell(s) without nbgrader metadata ran as cells you added")
    return program


# ------------------------------------------------------------------------------------------ helpers' reach

def _defined_and_used(source: str) -> tuple[set, set]:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return set(), set()
    defined, used = set(), set()
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                defined.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        defined.add(n.id)
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            used.add(node.id)
    return defined, used


def cells_reached(program: Program, exercise: str) -> list[Cell]:
    """The student's cells an exercise's answer depends on: its answer cell, and every other student cell that
    defines a name it uses, transitively (helpers, aliases of imports, other answers it calls)."""
    start = program.answers.get(exercise)
    info = {id(c): _defined_and_used(c.source) for c in program.student_cells}
    reached: list[Cell] = []
    todo: set = set()
    if start is not None:
        reached.append(start)
        todo |= info[id(start)][1]
    else:
        # no answer cell: whichever student cell defines the function is its answer
        todo.add(exercise)
    done: set = set()
    while todo:
        name = todo.pop()
        done.add(name)
        for cell in program.student_cells:
            if any(cell is r for r in reached):
                continue
            defined, used = info[id(cell)]
            if name in defined:
                reached.append(cell)
                todo |= used - done
    return reached

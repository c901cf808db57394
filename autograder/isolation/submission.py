"""Read a submitted notebook defensively and decide what runs when it is graded.

What runs, in the order of the pristine source notebook ``solutions/<id>/<id>.ipynb``:

- the instructor's cells (setup, helpers) from the *source*, never the student's copy of a locked cell;
- the student's answer cells, matched by nbgrader ``grade_id``;
- cells the student added (no ``grade_id``, an unknown one, or a second copy of an answer cell), each after the
  recognised cell that precedes it in the submission;
- never any test cell (neither copy), never a demonstration cell (tagged ``demo`` in the source: plots, timing,
  training), which keeps grading fast.

Cell kinds come from the source, not from the submission's metadata, so a student cannot turn a test cell into
an answer cell or tag an answer ``demo``. IPython magics are removed as IPython parses them (:mod:`.magics`).

Building the program is a pipeline of small steps, each linear in the notebook's size: :func:`source_cells` (the
pristine cells and their kinds), :func:`pair_cells` (the submission's cells matched to them), :func:`assemble`
(the cells in run order). :class:`~.reach.Reach` then answers which student cells each answer depends on.

Nothing here raises on a malformed submission: problems are returned as messages for the report.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from .magics import strip_magics
from .reach import Reach

MAX_NOTEBOOK_BYTES = 32 << 20


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
    _reach: Reach | None = field(default=None, repr=False)

    @property
    def reach(self) -> Reach:
        """Which student cells each name depends on (each cell parsed once, on first use)."""
        if self._reach is None:
            self._reach = Reach(self.student_cells, self.answers)
        return self._reach


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
    if not path.is_file():
        raise NotebookError(f"{path.name} is not a file")
    if size > MAX_NOTEBOOK_BYTES:
        raise NotebookError(f"the notebook {path.name} is {size >> 20} MiB, larger than the "
                            f"{MAX_NOTEBOOK_BYTES >> 20} MiB a submission may be (clear large outputs)")
    try:
        nb = json.loads(path.read_bytes().decode("utf-8-sig"))  # a byte-order mark is tolerated, as Jupyter does
    except UnicodeDecodeError:
        raise NotebookError(f"{path.name} is not a Jupyter notebook (not UTF-8 text)") from None
    except RecursionError:
        raise NotebookError(f"{path.name} is an unreadable notebook (its JSON is nested too deeply)") from None
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
    defined = set(re.findall(r"\bdef\s+(\w+)\s*\(", "\n".join(src for _, _, src in code_cells(nb))))
    best, best_score = None, 0
    for aid, names in exercises.items():
        answer_ids = set(names)
        if aid in sources:
            answer_ids |= {g for _, c, _ in code_cells(sources[aid]) if (g := _grade_id(c))}
        score = len(ids & answer_ids) * 10 + len(defined & set(names))
        if score > best_score:
            best, best_score = aid, score
    return best


# ------------------------------------------------------------------------------------------ pairing

@dataclass
class Pairing:
    """The submission's code cells sorted by what they are to the source notebook."""

    answers: dict[str, str] = field(default_factory=dict)                          # grade_id -> source
    added: dict[str | None, list[tuple[str, str]]] = field(default_factory=dict)   # anchor -> (name, source)
    notes: list[str] = field(default_factory=list)
    without_ids: int = 0
    n_added: int = 0


def source_cells(source: dict) -> list[tuple[str | None, str, str]]:
    """``(grade_id, kind, source)`` of the pristine notebook's code cells, in order."""
    return [(_grade_id(c), source_kind(c), s) for _, c, s in code_cells(source)]


def pair_cells(submission: dict, kinds: dict[str, str]) -> Pairing:
    """Match the submission's code cells to the source's ``kinds`` (grade_id -> kind) by grade_id: the first copy
    of an answer cell is the answer, locked cells are ignored (they run from the source), and every other cell is
    added after the recognised cell that precedes it."""
    pairing = Pairing()
    anchor: str | None = None
    seen: dict[str, int] = {}
    malformed = 0
    for cell in submission.get("cells", []):
        src = _source(cell) if isinstance(cell, dict) else None
        if not isinstance(cell, dict) or (cell.get("cell_type") == "code" and src is None):
            malformed += 1
            continue
        if cell.get("cell_type") != "code":
            continue
        gid = _grade_id(cell)
        kind = kinds.get(gid) if gid else None
        if kind is not None:
            seen[gid] = seen.get(gid, 0) + 1
            if seen[gid] == 1:
                anchor = gid
                if kind == "answer":
                    pairing.answers[gid] = src
                continue
            if kind != "answer":
                continue  # a copy of a locked cell: never the student's
            pairing.notes.append(f"the answer cell {gid} appears {seen[gid]} times; the first is the answer, "
                                 "later copies run as cells you added")
        elif gid is None:
            pairing.without_ids += 1
            malformed += cell.get("metadata") is not None and not isinstance(cell.get("metadata"), dict)
        pairing.n_added += 1
        pairing.added.setdefault(anchor, []).append((f"added cell {pairing.n_added}", src))
    if malformed:
        pairing.notes.append(f"{malformed} malformed cell(s) were ignored")
    return pairing


def _emit(program: Program, name: str, kind: str, src: str, trusted: bool) -> None:
    code, _ = strip_magics(src)
    if code is None:
        program.notes.append(f"{name} is a cell magic that is not Python; it was not run")
        return
    cell = Cell(name, kind, code, trusted)
    program.cells.append(cell)
    if not trusted:
        program.student_cells.append(cell)
    if kind == "answer":
        program.answers[name] = cell


def assemble(program: Program, cells: list[tuple[str | None, str, str]], pairing: Pairing,
             exercise_names: list[str]) -> Program:
    """The cells in the source's order: instructor cells from the source, the student's answers in their place,
    added cells after their anchor; never a test or demo cell."""
    for name, src in pairing.added.get(None, []):
        _emit(program, name, "added", src, False)
    for gid, kind, src in cells:
        if kind == "instructor":
            _emit(program, gid or "instructor cell", "instructor", src, True)
        elif kind == "answer" and gid in pairing.answers:
            _emit(program, gid, "answer", pairing.answers[gid], False)
        elif kind == "answer" and gid in exercise_names:
            program.notes.append(f"the answer cell {gid} is missing (deleted, or its metadata was "
                                 "stripped); a cell you added may still define it")
        for name, added_src in pairing.added.get(gid, []) if gid else []:
            _emit(program, name, "added", added_src, False)
    return program


def build_program(submission: dict, source: dict, assignment: str, exercise_names: list[str]) -> Program:
    """Pair the submission's cells with the source's by grade_id (see the module docstring)."""
    cells = source_cells(source)
    kinds = {gid: kind for gid, kind, _ in cells if gid}
    pairing = pair_cells(submission, kinds)
    program = assemble(Program(assignment, notes=list(pairing.notes)), cells, pairing, exercise_names)
    program.notes += [f"the source notebook has no answer cell {gid}" for gid in exercise_names if gid not in kinds]
    if pairing.without_ids and any(g not in pairing.answers for g in exercise_names):
        program.notes.append(f"{pairing.without_ids} cell(s) without nbgrader metadata ran as cells you added")
    return program


def cells_reached(program: Program, exercise: str) -> list[Cell]:
    """The student's cells an exercise's answer depends on (see :class:`~.reach.Reach`)."""
    return program.reach.cells_reached(exercise)

"""Integrity flags: what the grader recognised in a submission, for the instructor (never the score).

One place collects them (:func:`notebook_flags`); the grader stores them on each notebook's result, and they are
written to the instructor's record and the class report (``grades.csv``'s ``flags`` column). Scores never
depend on a flag: forbidden calls already score 0 through :mod:`autograder.forbidden`; the rest is evidence.

Recognised in the student's cells (answers and added cells, by reading their source):
- ``forbidden call``: a ready-made convolution or the course's oracle in an exercise's answer;
- ``redefines check``: an assignment, ``def`` or import that rebinds ``check`` (``from autograder import check``,
  re-running the notebook's checks, is fine);
- ``patches NumPy``: assigning to an attribute of NumPy (``np.allclose = ...``) or ``setattr`` on it;
- ``reads files``: ``open``, ``np.load``, ``os.listdir`` and friends on an absolute path, ``~`` or ``..``.
From the run: ``sandbox fault`` (a cell that timed out, ran out of memory or killed its worker), and
``reduced isolation``.
"""
from __future__ import annotations

import ast
from typing import Iterable, Mapping

from .forbidden import dotted_name

READERS = {"open", "io.open", "os.listdir", "os.scandir", "os.walk", "os.open", "glob.glob", "glob.iglob",
           "numpy.load", "numpy.loadtxt", "numpy.genfromtxt", "numpy.fromfile", "pathlib.Path", "shutil.copy",
           "shutil.copyfile", "shutil.copytree", "subprocess.run", "subprocess.Popen", "os.system"}
NUMPY_NAMES = ("numpy", "np")


def _dotted(node: ast.AST) -> str:
    return dotted_name(node) or ""


def _aliases(tree: ast.AST) -> dict[str, str]:
    out = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[(a.asname or a.name).split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _resolve(dotted: str, aliases: Mapping[str, str]) -> str:
    head, _, rest = dotted.partition(".")
    full = aliases.get(head, head) + ("." + rest if rest else "")
    return "numpy." + full[3:] if full.startswith("np.") else full


def _suspicious_path(node: ast.AST) -> str | None:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            text = sub.value
            if text.startswith(("/", "~")) or ".." in text.split("/"):
                return text
    return None


def _rebinds_check(node: ast.AST) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return node.name == "check"
    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
        return node.id == "check"
    if isinstance(node, ast.ImportFrom):
        return any((a.asname or a.name) == "check" and not (node.module in ("autograder", "autograder.check")
                                                           and a.name == "check") for a in node.names)
    if isinstance(node, ast.Import):
        return any(a.asname == "check" for a in node.names)
    return False


def _patches_numpy(node: ast.AST, aliases: Mapping[str, str]) -> bool:
    targets = []
    if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    for t in targets:
        if isinstance(t, ast.Attribute) and _resolve(_dotted(t.value), aliases).split(".")[0] == "numpy":
            return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr" and node.args:
        return _resolve(_dotted(node.args[0]), aliases).split(".")[0] == "numpy"
    return False


def source_flags(label: str, source: str) -> list[str]:
    """The flags one cell's source raises, each naming ``label``."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    aliases = _aliases(tree)
    found: list[str] = []
    for node in ast.walk(tree):
        if _rebinds_check(node):
            found.append(f"redefines check ({label})")
        if _patches_numpy(node, aliases):
            found.append(f"patches NumPy ({label})")
        if isinstance(node, ast.Call):
            name = _resolve(_dotted(node.func), aliases)
            path = _suspicious_path(node) if (name in READERS or name.endswith((".read_text", ".read_bytes"))) \
                else None
            if path is not None:
                found.append(f"reads files outside the sandbox ({label}: {name}({path!r}))")
    return list(dict.fromkeys(found))


def notebook_flags(student_cells: Iterable, violations: Mapping[str, list[str]], faults: Mapping[str, str],
                   isolation: str) -> list[str]:
    """Every flag of one notebook: ``student_cells`` (``.label``, ``.source``), ``violations`` (exercise ->
    forbidden uses), ``faults`` (cell -> what the sandbox did to it), ``isolation`` (``bwrap`` or ``reduced``)."""
    flags: list[str] = []
    for exercise, uses in violations.items():
        if uses:
            flags.append(f"forbidden call ({exercise}: {', '.join(uses)})")
    for cell in student_cells:
        flags += source_flags(cell.label, cell.source)
    flags += [f"sandbox fault ({cell}: {why})" for cell, why in faults.items()]
    if isolation != "bwrap":
        flags.append("reduced isolation")
    return list(dict.fromkeys(flags))

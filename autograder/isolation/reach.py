"""Which of the student's cells an answer depends on: its answer cell, and every other student cell that defines
a name it uses, transitively (helpers, aliases of imports, other answers it calls).

Each cell is parsed once; a query walks names through an index (name -> cells defining it), so the work is linear
in the notebook's size however many exercises ask.
"""
from __future__ import annotations

import ast
from typing import Protocol, Sequence


class _Cell(Protocol):
    source: str


def defined_and_used(source: str) -> tuple[set, set]:
    """``(names the cell's top level binds, names it reads anywhere)``; empty for a cell that does not parse."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return set(), set()
    defined: set = set()
    for node in tree.body:
        defined |= _bound(node)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    return defined, used


def _bound(node: ast.stmt) -> set:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return {(a.asname or a.name).split(".")[0] for a in node.names}
    if isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return set()


class Reach:
    """The dependency index of a program's student cells (see the module docstring)."""

    def __init__(self, cells: Sequence[_Cell], answers: dict):
        self.cells, self.answers = list(cells), answers
        self.info = [defined_and_used(c.source) for c in self.cells]
        self.definers: dict[str, list[int]] = {}
        for i, (defined, _) in enumerate(self.info):
            for name in defined:
                self.definers.setdefault(name, []).append(i)
        self._memo: dict[str, list] = {}

    def _start(self, exercise: str) -> tuple[list[int], set]:
        start = self.answers.get(exercise)
        index = next((i for i, c in enumerate(self.cells) if c is start), None)
        if index is None:  # no answer cell: whichever student cell defines the function is its answer
            return [], {exercise}
        return [index], set(self.info[index][1])

    def cells_reached(self, exercise: str) -> list:
        """The answer cell first, then the cells it depends on, in the order they were found."""
        if exercise not in self._memo:
            order, todo = self._start(exercise)
            reached, done = set(order), set()
            while todo:
                name = todo.pop()
                done.add(name)
                for i in self.definers.get(name, ()):
                    if i not in reached:
                        reached.add(i)
                        order.append(i)
                        todo |= self.info[i][1] - done
            self._memo[exercise] = [self.cells[i] for i in order]
        return list(self._memo[exercise])

    def reached_by_any(self, exercises: Sequence[str]) -> set[int]:
        """``id()`` of every cell some exercise's answer depends on."""
        return {id(c) for ex in exercises for c in self.cells_reached(ex)}

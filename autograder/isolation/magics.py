"""IPython syntax in a cell, removed as IPython itself parses it.

A notebook cell is IPython, not Python: ``%timeit f()``, ``!pip install x``, ``x = !ls``, ``%%time``. The grader
runs plain Python, so each line magic or shell escape becomes ``None`` (the value IPython's call would mostly
return); which lines are magics is decided by IPython's own :class:`~IPython.core.inputtransformer2.
TransformerManager` (the parser the notebook's kernel uses), never by a line prefix: a continuation line that
starts with ``%`` (``x = (a\\n% b)``) is Python and stays as it is.

A cell magic other than a timing or capture one drops the cell (``%%bash`` is not Python); ``%%time`` and friends
run their body.
"""
from __future__ import annotations

import ast
import re

PYTHON_CELL_MAGICS = ("time", "timeit", "capture", "prun")
_IPYTHON_CALLS = ("run_line_magic", "system", "getoutput", "run_cell_magic", "set_next_input")
_MAYBE_MAGIC = re.compile(r"^[ \t]*[%!?]|[?][ \t]*$|=[ \t]*[%!]", re.M)

_manager = None


def transformer():
    """IPython's ``TransformerManager`` (imported on first use)."""
    global _manager
    if _manager is None:
        from IPython.core.inputtransformer2 import TransformerManager

        _manager = TransformerManager()
    return _manager


def _is_ipython_call(node: ast.AST) -> bool:
    """``get_ipython().<method>(...)``: what IPython turns a magic or shell escape into."""
    return (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in _IPYTHON_CALLS
            and isinstance(node.func.value, ast.Call) and isinstance(node.func.value.func, ast.Name)
            and node.func.value.func.id == "get_ipython")


def _replace_calls(code: str) -> str:
    """``code`` with every ``get_ipython().<magic call>(...)`` replaced by ``None`` (text spans, so the rest of the
    cell keeps its lines and columns)."""
    tree = ast.parse(code)
    spans = [(n.lineno, n.col_offset, n.end_lineno, n.end_col_offset) for n in ast.walk(tree) if _is_ipython_call(n)]
    lines = code.split("\n")
    for l0, c0, l1, c1 in sorted(spans, reverse=True):
        first, last = lines[l0 - 1], lines[l1 - 1]
        lines[l0 - 1:l1] = [first[:c0] + "None" + last[c1:]]
    return "\n".join(lines)


def _python_body(source: str) -> tuple[str | None, bool]:
    """The cell without its ``%%magic`` line when that magic runs Python; None when the cell is not Python."""
    first, _, rest = source.lstrip("\n").partition("\n")
    if not first.startswith("%%"):
        return source, False
    words = first[2:].split()
    return (rest if words and words[0] in PYTHON_CELL_MAGICS else None), True


def strip_magics(source: str) -> tuple[str | None, bool]:
    """``(python source or None to drop the cell, whether anything changed)``."""
    body, changed = _python_body(source)
    if body is None or not _MAYBE_MAGIC.search(body):
        return body, changed
    try:
        code = transformer().transform_cell(body)
        if code.rstrip("\n") == body.rstrip("\n"):
            return body, changed
        return _replace_calls(code).rstrip("\n") + ("\n" if body.endswith("\n") else ""), True
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return body, changed  # not valid IPython either: the sandbox reports the student's own SyntaxError

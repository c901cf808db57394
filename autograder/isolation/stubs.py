"""What the sandbox sees of convlab and of the libraries: the worker, a stand-in ``autograder`` package, and what is
hidden, replaced or removed.

:class:`Layout` builds, once per grading process, a host directory that is bound read-only into every sandbox:

- ``lib/``: the worker's files (:data:`manifest.WORKER_FILES`: standalone, stdlib + NumPy);
- ``stub/autograder/``: ``check`` is a no-op returning 0.0 (the grader checks from outside), plus copies of the
  standalone modules notebooks and the protocol use (:data:`manifest.STUB_MODULES`);
- ``blocked/``: what is bound over what a profile hides: a package whose ``__init__`` raises
  ``ModuleNotFoundError``, an empty file (over compiled modules and their bytecode), the stand-ins
  (:data:`manifest.STAND_INS`), and copies of library files whose ready-made functions raise.

Profiles, from the one policy in :mod:`autograder.forbidden`: ``scratch`` (NumPy exercises: every forbidden module
absent, ``ctypes`` a stand-in without foreign calls, SciPy's ready-made convolutions replaced in its files, NumPy's
removed from the worker's process before student code runs) and ``torch`` (torch exercises: torch, but not its
conv-BN fusion, neither as source, nor as compiled bytecode, nor as compiled passes).
"""
from __future__ import annotations

import ast
import atexit
import importlib
import inspect
import py_compile
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .. import forbidden
from ..datasets import data_dir
from . import manifest
from .interpreter import site_dirs

PACKAGE = Path(__file__).resolve().parents[1]          # autograder/
PROFILES = ("scratch", "torch")
SANDBOX_ROOT = "/opt/convlab"   # where the layout appears inside the bwrap sandbox

_STUB_INIT = '''"""Stand-in for convlab's grader package inside the grading sandbox.

The grader checks answers from outside this process; here ``check`` does nothing. The real package (its oracle,
its cases, its seeds) does not exist in this sandbox.
"""
__all__ = ["check"]


def check(name, fn=None, *args, **kwargs):
    return 0.0
'''

_BLOCKED_INIT = '''raise ModuleNotFoundError(
    f"No module named {__name__!r} (not available in the grading sandbox)",
    name=__name__)
'''


def _check(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"unknown sandbox profile {profile!r}")


def hidden_modules(profile: str) -> list[str]:
    """Modules absent from the sandbox of ``profile``."""
    _check(profile)
    names = [m for m in forbidden.FORBIDDEN_MODULES if m not in manifest.STAND_INS]
    if profile == "torch":
        return [m for m in names if m not in forbidden.TORCH_FAMILY]
    return names + ["_ctypes"]  # the compiled half of ctypes; the stand-in takes the other's place


def stand_ins(profile: str) -> list[str]:
    """Modules replaced by a stand-in in the sandbox of ``profile`` (torch loads the real ctypes)."""
    _check(profile)
    return [] if profile == "torch" else list(manifest.STAND_INS)


def removed_names(profile: str) -> tuple[str, ...]:
    """Objects the worker removes from its process before any student code runs."""
    _check(profile)
    return forbidden.READY_MADE_NUMPY if profile == "scratch" else forbidden.FUSION_PASSES


def _raising_stub(real: Path, dotted: str) -> str:
    """A stand-in for ``real``: the same imports and module-level values, but every function and class it defines
    raises when used (so that torch, which imports these names, still imports)."""
    try:
        tree = ast.parse(real.read_text())
    except (OSError, SyntaxError):
        tree = ast.Module([], [])
    future, imports, functions, classes, values = [], [], [], [], []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            future.append(ast.unparse(node))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            imports.append(ast.unparse(node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            functions.append(node.name)
        elif isinstance(node, ast.ClassDef):
            classes.append(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [t.id for t in targets if isinstance(t, ast.Name)]
            values.append((ast.unparse(node), names))
    why = f"{dotted} is not available while grading: write it yourself"
    lines = [*future, f'"""Stand-in for {dotted}: {why}."""', *imports, "",
             f"_WHY = {why!r}", "", "", "def _refuse(*args, **kwargs):", "    raise RuntimeError(_WHY)", ""]
    lines += [f"{name} = _refuse" for name in functions]
    for name in classes:
        lines += ["", "", f"class {name}:", "    def __init__(self, *args, **kwargs):",
                  "        raise RuntimeError(_WHY)"]
    for statement, names in values:  # module-level values other modules import (a failing one becomes None)
        lines += ["try:", *("    " + line for line in statement.splitlines()), "except Exception:",
                  *(f"    {n} = None" for n in names), "    pass"]
    return "\n".join(lines) + "\n"


def _refusing_copy(real: Path, names: dict) -> str:
    """``real``'s source with the top-level functions named in ``names`` (name -> public dotted name) replaced by
    ones that raise (the rest unchanged, line for line: the body's lines are replaced, not the file re-printed)."""
    source = real.read_text()
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    targets = [node for node in tree.body
               if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name in names]
    if any(node.body[0].lineno <= node.lineno for node in targets):  # a one-line def: re-print the whole file
        for node in targets:
            node.body = [_raise_statement(names[node.name])]
        return ast.unparse(tree) + "\n"
    for node in sorted(targets, key=lambda n: n.lineno, reverse=True):
        first, last = _body_lines(node)
        indent = " " * (node.col_offset + 4)
        lines[first - 1:last] = [indent + ast.unparse(_raise_statement(names[node.name])) + "\n"]
    return "".join(lines)


def _raise_statement(public: str) -> ast.stmt:
    why = f"{public} is ready-made, not available while grading: write it yourself"
    return ast.parse(f"raise RuntimeError({why!r})").body[0]


def _body_lines(node: ast.AST) -> tuple[int, int]:
    """First and last line (1-based) of a function's body, its docstring included."""
    return node.body[0].lineno, node.end_lineno


def _defined_in(dotted: str) -> tuple[str, str] | None:
    """``(module, function name)`` of the top-level definition of the function ``dotted`` names, found in the
    installed sources without importing the package: the one ``.py`` file under the package (tests aside) with
    ``def <name>(`` at the start of a line. None unless there is exactly one (the caller then imports to find
    out)."""
    package, _, name = dotted.rpartition(".")
    pattern = re.compile(rf"^(?:async )?def {re.escape(name)}\(", re.M)
    for site in site_dirs():
        base = Path(site, *package.split("."))
        if not base.is_dir():
            continue
        hits = [path for path in base.rglob("*.py") if "tests" not in path.relative_to(base).parts
                and pattern.search(path.read_text(errors="replace"))]
        if len(hits) != 1:
            return None
        return ".".join(hits[0].relative_to(site).with_suffix("").parts), name
    return None


def _defined_in_imported(dotted: str) -> tuple[str, str] | None:
    """Like :func:`_defined_in`, by importing the package (slow: SciPy takes 0.2-0.3 s)."""
    module, _, name = dotted.rpartition(".")
    try:
        fn = inspect.unwrap(getattr(importlib.import_module(module), name))
    except (ImportError, AttributeError):
        return None
    return fn.__module__, fn.__name__


def _ready_made_scipy() -> dict[str, dict]:
    """Defining module -> {function name: public name} of :data:`forbidden.READY_MADE_SCIPY` (as installed)."""
    found: dict[str, dict] = {}
    for dotted in forbidden.READY_MADE_SCIPY:
        where = _defined_in(dotted) or _defined_in_imported(dotted)
        if where is not None:
            found.setdefault(where[0], {})[where[1]] = dotted
    return found


def _write_stubs(blocked: Path) -> dict[str, dict[str, Path]]:
    """Profile -> dotted module -> host file bound over that module's source."""
    stubbed: dict[str, dict[str, Path]] = {"scratch": {}, "torch": {}}
    wanted = [("torch", dotted, None) for dotted in forbidden.FUSION_MODULES]
    wanted += [("scratch", dotted, names) for dotted, names in _ready_made_scipy().items()]
    for profile, dotted, names in wanted:
        for site in site_dirs():
            real = Path(site, *dotted.split(".")).with_suffix(".py")
            if real.is_file():
                path = blocked / (dotted.replace(".", "_") + ".py")
                path.write_text(_raising_stub(real, dotted) if names is None else _refusing_copy(real, names))
                stubbed[profile][dotted] = path
                break
    return stubbed


def _bytecode(source: Path) -> list[Path]:
    """Compiled bytecode of ``source`` (``__pycache__/name.*.pyc``): loadable on its own, so hidden with it."""
    cache = source.parent / "__pycache__"
    return sorted(cache.glob(f"{source.stem}.*.pyc")) if cache.is_dir() else []


@dataclass
class Layout:
    root: Path
    datasets: Path | None
    stubbed: dict  # profile -> dotted name -> host stub file

    def hidden(self, profile: str, site_dirs: list[str]) -> list[tuple[str, str]]:
        """``(target, source)`` binds that hide, replace or stub modules in every directory of ``site_dirs``."""
        blocked = self.root / "blocked"
        binds = []
        for site in site_dirs:
            base = Path(site)
            for dotted in hidden_modules(profile):
                binds += self._hide(base / Path(*dotted.split(".")), blocked)
            for name in stand_ins(profile):
                target = base / name
                if target.is_dir():
                    binds.append((str(target), str(blocked / "standins" / name)))
            for dotted, stub in self.stubbed.get(profile, {}).items():
                real = base / Path(*dotted.split(".")).with_suffix(".py")
                if real.is_file():
                    binds.append((str(real), str(stub)))
                    binds += [(str(pyc), str(blocked / "empty")) for pyc in _bytecode(real)]
        return binds

    @staticmethod
    def _hide(target: Path, blocked: Path) -> list[tuple[str, str]]:
        """Binds that make the module at ``target`` (a package, a source file, compiled modules) absent."""
        if target.is_dir():
            return [(str(target), str(blocked / "pkg"))]
        binds = []
        py = target.with_suffix(".py")
        if py.is_file():
            binds.append((str(py), str(blocked / "module.py")))
            binds += [(str(pyc), str(blocked / "empty")) for pyc in _bytecode(py)]
        if target.parent.is_dir():
            binds += [(str(ext), str(blocked / "empty")) for ext in target.parent.glob(f"{target.name}.*.so")]
        return binds


def _precompile(root: Path, folders: list[Path]) -> None:
    """Bytecode next to the worker's and the stand-in package's sources (``__pycache__``), as Python would write
    it if it could: the sandbox's filesystem is read-only, so without it every sandbox compiles them again
    (~30 ms a start). Tracebacks name the files where the sandbox sees them (:data:`SANDBOX_ROOT`)."""
    for folder in folders:
        for source in folder.glob("*.py"):
            inside = f"{SANDBOX_ROOT}/{source.relative_to(root).as_posix()}"
            py_compile.compile(str(source), dfile=inside, doraise=True)


_LAYOUT: Layout | None = None


def layout() -> Layout:
    """The host directory bound into every sandbox of this process (built on first use, removed at exit)."""
    global _LAYOUT
    if _LAYOUT is not None and _LAYOUT.root.is_dir():
        return _LAYOUT
    root = Path(tempfile.mkdtemp(prefix="convlab-sandbox-"))
    atexit.register(shutil.rmtree, root, True)
    here = Path(__file__).resolve().parent
    lib = root / "lib"
    lib.mkdir()
    for name in manifest.WORKER_FILES:
        shutil.copyfile(here / name, lib / name)
    stub = root / "stub" / "autograder"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(_STUB_INIT)
    for name in manifest.STUB_MODULES:
        if (PACKAGE / f"{name}.py").is_file():
            shutil.copyfile(PACKAGE / f"{name}.py", stub / f"{name}.py")
    blocked = root / "blocked"
    (blocked / "pkg").mkdir(parents=True)
    (blocked / "pkg" / "__init__.py").write_text(_BLOCKED_INIT)
    (blocked / "module.py").write_text(_BLOCKED_INIT)
    (blocked / "empty").write_bytes(b"")
    for name, source in manifest.STAND_INS.items():
        (blocked / "standins" / name).mkdir(parents=True)
        shutil.copyfile(here / source, blocked / "standins" / name / "__init__.py")
    (root / "datasets").mkdir()  # mount point of the datasets (bound read-only over it)
    stubbed = _write_stubs(blocked)
    _precompile(root, [lib, stub])
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    root.chmod(0o755)
    datasets = data_dir()
    _LAYOUT = Layout(root, datasets if datasets.is_dir() else None, stubbed)
    return _LAYOUT

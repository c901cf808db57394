"""What the sandbox sees of convlab: the worker, a stand-in ``autograder`` package, and the hidden modules.

:class:`Layout` builds, once per grading process, a host directory that is bound read-only into every sandbox:

- ``lib/``: ``worker.py`` and ``protocol.py`` (standalone: stdlib + NumPy);
- ``stub/autograder/``: ``check`` is a no-op returning 0.0 (the grader checks from outside), plus copies of the
  standalone modules notebooks and the protocol use: ``datasets`` (loaders; the files are bound read-only at
  ``$CONVLAB_DATASETS``), ``probe_functions`` (test functions passed as arguments), ``module_codec``
  (``nn.Module`` <-> plain data). A module that does not exist yet is simply absent;
- ``blocked/``: what is bound over a hidden module: a package whose ``__init__`` raises ``ModuleNotFoundError``,
  and, for the torch profile, stand-ins for torch's fusion helpers whose functions raise.

Profiles: ``scratch`` (NumPy exercises: no torch, no scipy.signal / scipy.ndimage, no other ready-made
convolution) and ``torch`` (torch exercises: torch, but not its conv-BN fusion helpers).
"""
from __future__ import annotations

import ast
import atexit
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..datasets import data_dir

PACKAGE = Path(__file__).resolve().parents[1]          # autograder/
STANDALONE = ("datasets.py", "probe_functions.py", "module_codec.py")

#: modules no from-scratch answer can import in the sandbox (absent from its filesystem)
SCRATCH_HIDDEN = ("torch", "torchgen", "functorch", "torchvision", "torchaudio", "triton", "scipy.signal",
                  "scipy.ndimage", "tensorflow", "jax", "jaxlib", "keras", "cv2", "skimage", "sklearn", "numba",
                  "cupy", "astropy", "autograder", "nbgrader")
#: torch exercises keep torch but lose its ready-made conv-BN fusion
TORCH_FREE_ONLY = ("torch", "torchgen", "functorch")
TORCH_STUBBED = ("torch.nn.utils.fusion", "torch.ao.quantization.fuse_modules",
                 "torch.ao.quantization.fuser_method_mappings", "torch.fx.experimental.optimization")
PROFILES = ("scratch", "torch")

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


def hidden_modules(profile: str) -> list[str]:
    if profile not in PROFILES:
        raise ValueError(f"unknown sandbox profile {profile!r}")
    if profile == "scratch":
        return list(SCRATCH_HIDDEN)
    return [m for m in SCRATCH_HIDDEN if m not in TORCH_FREE_ONLY]


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
             f"_WHY = {why!r}", "", "", "def _refuse(*args, **kwargs):", "    raise NotImplementedError(_WHY)", ""]
    lines += [f"{name} = _refuse" for name in functions]
    for name in classes:
        lines += ["", "", f"class {name}:", "    def __init__(self, *args, **kwargs):",
                  "        raise NotImplementedError(_WHY)"]
    for statement, names in values:  # module-level values other modules import (a failing one becomes None)
        lines += ["try:", *("    " + line for line in statement.splitlines()), "except Exception:",
                  *(f"    {n} = None" for n in names), "    pass"]
    return "\n".join(lines) + "\n"


@dataclass
class Layout:
    root: Path
    datasets: Path | None
    stubbed: dict  # dotted name -> host stub file

    def hidden(self, profile: str, site_dirs: list[str]) -> list[tuple[str, str]]:
        """``(target, source)`` binds that hide or replace modules in every site directory."""
        binds = []
        blocked_pkg = str(self.root / "blocked" / "pkg")
        blocked_py = str(self.root / "blocked" / "module.py")
        empty = str(self.root / "blocked" / "empty")
        for site in site_dirs:
            base = Path(site)
            for dotted in hidden_modules(profile):
                rel = Path(*dotted.split("."))
                target = base / rel
                if target.is_dir():
                    binds.append((str(target), blocked_pkg))
                    continue
                py = target.with_suffix(".py") if rel.name else target
                if py.is_file():
                    binds.append((str(py), blocked_py))
                for ext in target.parent.glob(f"{rel.name}.*.so") if target.parent.is_dir() else ():
                    binds.append((str(ext), empty))
            if profile == "torch":
                for dotted, stub in self.stubbed.items():
                    real = base / Path(*dotted.split(".")).with_suffix(".py")
                    if real.is_file():
                        binds.append((str(real), str(stub)))
        return binds


_LAYOUT: Layout | None = None


def layout() -> Layout:
    """The host directory bound into every sandbox of this process (built on first use, removed at exit)."""
    global _LAYOUT
    if _LAYOUT is not None and _LAYOUT.root.is_dir():
        return _LAYOUT
    root = Path(tempfile.mkdtemp(prefix="convlab-sandbox-"))
    atexit.register(shutil.rmtree, root, True)
    lib = root / "lib"
    lib.mkdir()
    here = Path(__file__).resolve().parent
    for name in ("worker.py", "protocol.py"):
        shutil.copyfile(here / name, lib / name)
    stub = root / "stub" / "autograder"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text(_STUB_INIT)
    for name in STANDALONE:
        if (PACKAGE / name).is_file():
            shutil.copyfile(PACKAGE / name, stub / name)
    blocked = root / "blocked"
    (blocked / "pkg").mkdir(parents=True)
    (blocked / "pkg" / "__init__.py").write_text(_BLOCKED_INIT)
    (blocked / "module.py").write_text(_BLOCKED_INIT)
    (blocked / "empty").write_bytes(b"")
    (root / "datasets").mkdir()  # mount point of the datasets (bound read-only over it)
    stubbed = {}
    from .sandbox import site_dirs

    for dotted in TORCH_STUBBED:
        for site in site_dirs():
            real = Path(site, *dotted.split(".")).with_suffix(".py")
            if real.is_file():
                path = blocked / (dotted.replace(".", "_") + ".py")
                path.write_text(_raising_stub(real, dotted))
                stubbed[dotted] = path
                break
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    root.chmod(0o755)
    datasets = data_dir()
    _LAYOUT = Layout(root, datasets if datasets.is_dir() else None, stubbed)
    return _LAYOUT

"""Forbidden APIs in from-scratch answers: ready-made convolutions (torch, scipy.signal, scipy.ndimage, ...).

The one list of what a from-scratch answer may not use. The sandbox enforces it at run time (its profiles hide
the modules, and remove or replace the single functions: :mod:`autograder.isolation.stubs`); the scanners below
name the attempt in the feedback. Two scanners share it:
- :func:`scan_function` inspects a live function (in a notebook): the names it uses are resolved through its
  globals and closure, so ``from scipy.signal import correlate2d as c`` is caught when the function calls ``c``;
  helper functions defined in the notebook are followed.
- :func:`scan_source` reads source text (the isolated grader, which never runs student code in its own
  process): imports, aliases, attribute chains and dynamic imports (``__import__``, ``importlib``).

The isolated grader does not rely on scanning: there the forbidden modules are absent from the sandbox. The scan
names the attempt in the feedback.
"""
from __future__ import annotations

import ast
import inspect
import textwrap
import types
from typing import Any, Callable, Iterable

#: modules (and their submodules) that no from-scratch answer may use; the sandbox's scratch profile hides them
#: (absent from its filesystem), and the torch profile hides all but :data:`TORCH_FAMILY`
FORBIDDEN_MODULES = ("torch", "torchgen", "functorch", "torchvision", "torchaudio", "triton", "scipy.signal",
                     "scipy.ndimage", "tensorflow", "jax", "jaxlib", "keras", "cv2", "skimage", "sklearn", "numba",
                     "cupy", "astropy", "autograder", "nbgrader", "ctypes")
#: what a torch exercise keeps of :data:`FORBIDDEN_MODULES` (torch itself loads ctypes)
TORCH_FAMILY = ("torch", "torchgen", "functorch", "ctypes")
#: ready-made convolutions inside NumPy: removed from the sandbox's process before any student code runs (every
#: module attribute and container that holds them), in the scratch profile. Power-series and Chebyshev products
#: are convolutions of their coefficients; Legendre, Hermite and Laguerre products are not. ``np.fft`` and
#: ``np.lib.stride_tricks.sliding_window_view`` are NOT ready-made: they are the tools the course teaches
#: (docs/SANDBOX.md)
READY_MADE_NUMPY = ("numpy.convolve", "numpy.correlate", "numpy.polymul",
                    "numpy._core.multiarray.correlate", "numpy._core.multiarray.correlate2",
                    "numpy.polynomial.polynomial.polymul", "numpy.polynomial.chebyshev.chebmul",
                    "numpy.ma.convolve", "numpy.ma.correlate")
#: ready-made convolutions inside SciPy's otherwise allowed modules: replaced, in the sandbox's files, by
#: functions that raise (``toeplitz``, ``circulant`` and ``hankel`` stay: general matrix constructors)
READY_MADE_SCIPY = ("scipy.linalg.convolution_matrix", "scipy.linalg.matmul_toeplitz")
FORBIDDEN_CALLS = READY_MADE_NUMPY + READY_MADE_SCIPY
#: torch exercises: torch's ready-made conv-BN fusion, replaced in the sandbox's files by functions that raise
#: (compiled bytecode next to them hidden too) ...
FUSION_MODULES = ("torch.nn.utils.fusion", "torch.ao.quantization.fuse_modules",
                  "torch.ao.quantization.fuser_method_mappings", "torch.fx.experimental.optimization",
                  "torch.jit._freeze")
#: ... and its compiled passes (``torch.jit.freeze`` folds Conv-BN through them), removed from the process
FUSION_PASSES = ("torch._C._freeze_module", "torch._C._jit_pass_fold_convbn", "torch._C._jit_pass_fold_frozen_conv_bn",
                 "torch._C._jit_pass_fold_frozen_linear_bn", "torch._C._jit_pass_fold_frozen_conv_add_or_sub",
                 "torch._C._jit_pass_fold_frozen_conv_mul_or_div", "torch._C._jit_pass_optimize_frozen_graph")
DYNAMIC = ("__import__", "importlib", "exec", "eval", "compile")


FROM_SCRATCH = FORBIDDEN_MODULES + FORBIDDEN_CALLS


#: allowed although inside a forbidden module: students re-running the notebook's checks (not the oracle)
ALLOWED = ("autograder.check", "autograder.check.check")


def is_forbidden(dotted: str, names: Iterable[str] = FROM_SCRATCH) -> bool:
    """Whether ``dotted`` (e.g. ``scipy.signal.correlate2d``) is one of ``names`` or inside one of them."""
    return dotted not in ALLOWED and any(dotted == n or dotted.startswith(n + ".") for n in names)


def dotted_name(node: ast.AST) -> str | None:
    """``a.b.c`` for a chain of attributes on a plain name; ``None`` for anything else (a call, a subscript)."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def _import_bindings(node: ast.AST, names: tuple[str, ...]) -> list[tuple[str, str, str | None]]:
    """``(local name, dotted target, forbidden statement or None)`` for each name an import statement binds."""
    if isinstance(node, ast.Import):
        return [((a.asname or a.name).split(".")[0], a.name if a.asname else a.name.split(".")[0],
                 f"import {a.name}" if is_forbidden(a.name, names) else None) for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.module:
        return [_from_import_binding(node.module, a, names) for a in node.names]
    return []


def _from_import_binding(module: str, a: ast.alias, names: tuple[str, ...]) -> tuple[str, str, str | None]:
    full = f"{module}.{a.name}"
    forbidden = is_forbidden(full, names) or (full not in ALLOWED and is_forbidden(module, names))
    return a.asname or a.name, full, f"from {module} import {a.name}" if forbidden else None


def _references(node: ast.AST, aliases: dict[str, str], names: tuple[str, ...]) -> list[str]:
    """Forbidden uses in one loaded name or attribute chain (resolved through the import ``aliases``)."""
    if not isinstance(node, (ast.Attribute, ast.Name)) or not isinstance(getattr(node, "ctx", None), ast.Load):
        return []
    dotted = dotted_name(node)
    if not dotted:
        return []
    head, _, rest = dotted.partition(".")
    full = aliases.get(head, head) + ("." + rest if rest else "")
    if full.startswith("np."):
        full = "numpy." + full[3:]
    found = [full] if is_forbidden(full, names) else []
    if head in DYNAMIC and isinstance(node, ast.Name):
        found.append(f"dynamic code ({head})")
    return found


def _add_new(found: list[str], more: Iterable[str]) -> None:
    """Append to ``found`` what it does not hold yet, in order."""
    for what in more:
        if what not in found:
            found.append(what)


def scan_source(source: str, names: Iterable[str] = FROM_SCRATCH) -> list[str]:
    """Forbidden uses of ``names`` in ``source`` (a cell or a whole notebook's student code), deduplicated, in order."""
    names = tuple(names)
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []
    aliases: dict[str, str] = {}
    found: list[str] = []
    for node in ast.walk(tree):
        for local, target, statement in _import_bindings(node, names):
            aliases[local] = target
            _add_new(found, [statement] if statement else [])
    for node in ast.walk(tree):
        _add_new(found, _references(node, aliases, names))
    return _tidy(found)


def _tidy(found: list[str]) -> list[str]:
    """Drop entries that only repeat a longer one (``scipy.signal`` beside ``scipy.signal.correlate2d``)."""
    return [f for f in found if not any(o != f and o.startswith(f + ".") for o in found)]


def _local_names(fn_node: ast.AST) -> set[str]:
    """Names bound inside a function (arguments, assignments, loop/with/except targets, comprehensions, nested
    defs and imports) minus those declared ``global``: they never refer to the notebook's globals."""
    bound, declared_global = set(), set()
    for node in ast.walk(fn_node):
        if isinstance(node, ast.arg):
            bound.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            bound.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node is not fn_node:
            bound.add(node.name)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Global):
            declared_global.update(node.names)
    return bound - declared_global


def _module_of(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return obj.__name__
    module = getattr(obj, "__module__", None) or ""
    name = getattr(obj, "__name__", "")
    return f"{module}.{name}" if module and name else module


def _source_tree(fn: Callable) -> tuple[str, ast.AST, ast.AST] | None:
    """``(source, module tree, the function's own node)`` of a live function, or None without source."""
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    tree = ast.parse(source)
    fn_node = next((n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))),
                   tree)
    return source, tree, fn_node


def _free_namespace(fn: Callable, fn_node: ast.AST) -> dict[str, Any]:
    """What the function's free names refer to: its globals and closure, minus the names it binds itself."""
    namespace = dict(getattr(fn, "__globals__", {}))
    if getattr(fn, "__closure__", None):
        namespace.update({name: cell.cell_contents for name, cell in
                          zip(fn.__code__.co_freevars, fn.__closure__) if _has_contents(cell)})
    for name in _local_names(fn_node):
        namespace.pop(name, None)
    return namespace


def _module_attribute_use(node: ast.Attribute, namespace: dict[str, Any], names: tuple[str, ...]) -> list[str]:
    """``module.attr`` where ``module`` is a module object of the namespace (whatever its local name)."""
    head, _, rest = (dotted_name(node) or "").partition(".")
    if not isinstance(namespace.get(head), types.ModuleType):
        return []
    full = f"{namespace[head].__name__}.{rest}"
    return [full] if is_forbidden(full, names) else []


def _name_use(node: ast.Name, fn: Callable, namespace: dict[str, Any], names: tuple[str, ...], found: list[str],
              seen: set) -> list[str]:
    """A free name bound to something forbidden, or to a notebook helper (scanned in turn)."""
    if node.id not in namespace:
        return []
    obj = namespace[node.id]
    origin = _module_of(obj)
    if origin and is_forbidden(origin, names) and origin not in found:
        return [f"{node.id} (from {origin})"]
    if isinstance(obj, types.FunctionType) and obj.__module__ in ("__main__", fn.__module__):
        return scan_function(obj, names, seen)
    return []


def scan_function(fn: Callable, names: Iterable[str] = FROM_SCRATCH, _seen: set | None = None) -> list[str]:
    """Forbidden uses in a live function and the notebook helpers it calls."""
    names = tuple(names)
    seen = _seen if _seen is not None else set()
    if id(fn) in seen:
        return []
    seen.add(id(fn))
    fn = inspect.unwrap(fn)
    parsed = _source_tree(fn)
    if parsed is None:
        return []
    source, tree, fn_node = parsed
    found = [f for f in scan_source(source, names) if not f.startswith("dynamic")]
    namespace = _free_namespace(fn, fn_node)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            _add_new(found, _module_attribute_use(node, namespace, names))
        elif isinstance(node, ast.Name):
            _add_new(found, _name_use(node, fn, namespace, names, found, seen))
    return _tidy(found)


def _has_contents(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True

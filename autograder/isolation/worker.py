"""The sandboxed worker: executes a notebook's cells, then serves calls of the student's functions as plain data.

STANDALONE: this file imports only the standard library, NumPy and its siblings ``protocol.py`` and ``manifest.py``;
all are copied into the sandbox, where the grader package does not exist. Everything here runs with the student's
code in the same process, so nothing here is trusted: the grader treats whatever comes back as untrusted data, and
computes every score itself.

Life cycle (requests arrive on ``--in`` and replies leave on ``--out``, frames of :mod:`protocol`):

Before reading anything, it sets its limits (``--limits``), drops to the sandbox's own user (``--uid``, under
bubblewrap as root) and caps its user's tasks (``--tasks``).

1. ``hello``: the modules to block (reduced isolation only) and the ready-made functions to remove arrive; NumPy
   is imported once, and those functions are removed from the process, before any student code exists.
2. ``exec``: one cell. Instructor cells (``trusted``) run statement by statement, so that an import that is
   unavailable in this sandbox (``import torch`` in a from-scratch profile) does not stop the rest of the cell;
   ``import matplotlib...`` is bound lazily (plots are skipped when grading, the import costs 0.7 s). Student
   cells run whole, like a notebook cell.
3. ``fork``: a child process serves one exercise (``probe``, ``call``, ``calls``, ``end``) while this process
   waits. Whatever the answer does to global state, threads it starts, or how it dies (``sys.exit``,
   ``os._exit``, a crash) stays in the child; the parent then reports ``joined`` and is ready for the next one.

Or, right after ``hello`` and before anything else, ``zygote`` (``--zygote FD``, bubblewrap as root only): the
worker becomes a pristine parent (:class:`Zygote`) that forks one notebook's worker at a time, each under a user id
of its own, and wipes what that notebook left before the next (``autograder/isolation/zygote.py`` says why nothing
crosses from one notebook to the next). Before it does, ``preload`` requests may give it chunks of calls whose
arguments it rebuilds once for all its notebooks (:meth:`Worker.preload`).
"""
from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.machinery
import io
import json
import linecache
import os
import signal
import socket
import sys
import time
import traceback
import types
import warnings

_HERE = os.path.dirname(os.path.abspath(__file__))
protocol = manifest = None  # the sibling modules, imported by main() once sys.path holds NumPy


def _import_protocol():
    global protocol, manifest
    if __package__:
        from . import manifest as listed, protocol as module
    else:  # in the sandbox: a plain script next to protocol.py and manifest.py
        sys.path.insert(0, _HERE)
        try:
            import manifest as listed  # type: ignore[no-redef]
            import protocol as module  # type: ignore[no-redef]
        finally:
            sys.path.remove(_HERE)
    protocol, manifest = module, listed


if __package__:  # imported by the grader's own code (tests): the siblings import as usual
    _import_protocol()

_perf = time.perf_counter
OUTPUT_CAP = 8 << 10
#: replies of a ``calls`` request leave in groups: at most this old (seconds), this many, this many array bytes
GROUP_HOLD, GROUP_MAX, GROUP_BYTES = 0.02, 256, 4 << 20
LAZY_MODULES = ("matplotlib",)  # and its submodules: imported on first use


# ------------------------------------------------------------------------------------------ output capture

class CappedText(io.TextIOBase):
    """A text stream that keeps the first ``cap`` characters and counts the rest."""

    def __init__(self, cap: int = OUTPUT_CAP):
        self.cap, self.parts, self.kept, self.dropped = cap, [], 0, 0

    def writable(self) -> bool:
        return True

    def write(self, s) -> int:
        s = str(s)
        room = self.cap - self.kept
        if room > 0:
            self.parts.append(s[:room])
            self.kept += min(room, len(s))
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def text(self) -> str:
        out = "".join(self.parts)
        return out + (f"\n... ({self.dropped} more characters)" if self.dropped else "")


class Capture:
    """Redirect sys.stdout/stderr and record warnings for one cell or one call. ``within``: the capture of a
    whole chunk of calls, which records the warnings instead (entering ``catch_warnings`` once per chunk, not once
    per call); this one then reports only the warnings caught while it was active."""

    def __init__(self, within: "Capture | None" = None):
        self.within = within

    def __enter__(self):
        self.out, self.err = CappedText(), CappedText()
        self._saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.out, self.err
        if self.within is not None:
            self._warn, self.caught = None, self.within.caught
            self.mark = len(self.caught)
            return self
        self._warn = warnings.catch_warnings(record=True)
        self.caught = self._warn.__enter__()
        self.mark = 0
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc):
        try:
            if self._warn is not None:
                self._warn.__exit__(*exc)
        finally:
            sys.stdout, sys.stderr = self._saved
        return False

    def notes(self) -> list:
        notes = []
        for w in list(self.caught)[self.mark:self.mark + 3]:
            try:
                notes.append(f"{w.category.__name__}: {w.message}"[:300])
            except Exception:  # noqa: BLE001 - a warning with an unprintable message
                notes.append("a warning")
        err = self.err.text().strip()
        if err:
            notes.append(f"wrote to stderr: {err[:200]}")
        return notes


# ------------------------------------------------------------------------------------------ helpers

def _safe_str(obj) -> str:
    try:
        return str(obj)
    except BaseException:  # noqa: BLE001 - a hostile __str__
        return "<unprintable>"


def describe_exception(exc: BaseException, limit: int = 3) -> str:
    """Like :func:`autograder.answers.describe_exception`: the last frames in the student's code (their source
    lines looked up only for those frames)."""
    if isinstance(exc, SystemExit):
        return f"the function called sys.exit({_safe_str(exc.code)!s})" if exc.code is not None else \
            "the function called sys.exit()"
    try:
        frames = [(f.f_code.co_filename, line, f.f_code.co_name) for f, line in traceback.walk_tb(exc.__traceback__)
                  if f.f_code.co_filename.startswith("<cell")][-limit:]
        lines = [(line, name, linecache.getline(filename, line).strip()) for filename, line, name in frames]
        where = "; ".join(f"line {line} in {name}: {text}" for line, name, text in lines if text)
    except BaseException:  # noqa: BLE001
        where = ""
    head = f"{type(exc).__name__}: {_safe_str(exc)}".strip()[:500]
    return head + (f"  (at {where[:300]})" if where else "")


_PLAIN_SCALARS = frozenset((type(None), bool, int, float, str))
#: bytes of the arrays :func:`to_plain` has copied so far (the worker bounds a group of replies by it)
COPIED = [0]


def to_plain(value, depth: int = 0):
    """The worker's half of :func:`autograder.compare.to_plain` (the grader applies the real one again).
    Plain values and exact lists and tuples are recognised by their exact type first (an encoded module is a tree
    of hundreds of them per call); anything else by NumPy's or torch's types."""
    if depth > 32:
        raise TypeError("a structure nested too deeply")
    cls = type(value)
    if cls in _PLAIN_SCALARS:
        return value
    if cls is list:  # stays a list: the grader scores it like a tuple but calls it a list in feedback
        return [to_plain(v, depth + 1) for v in value]
    if cls is tuple:
        for v in value:
            if type(v) not in _PLAIN_SCALARS:
                return tuple([to_plain(v, depth + 1) for v in value])
        return value        # plain already (immutable: kept as it is)
    import numpy as np

    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.ndarray):
        base = np.ndarray.view(value, np.ndarray)
        if base.dtype.kind not in protocol.ARRAY_KINDS:
            raise TypeError(f"an array of dtype {base.dtype} (expected numbers)")
        COPIED[0] += base.nbytes
        return np.ndarray.copy(base, order="C")
    if (cls.__module__ or "").startswith("torch") and cls.__name__ in ("Tensor", "Parameter"):
        return to_plain(value.detach().cpu().numpy(), depth + 1)
    raise TypeError(f"a {cls.__module__}.{cls.__qualname__}")


def _resolve_ref(ref: str):
    module, _, name = ref.partition(":")
    if module not in manifest.REFERENCE_MODULES:
        raise protocol.ProtocolError(f"reference to a module outside the sandbox's reach: {module}")
    obj = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _resolve(kind: str, payload):
    if kind == "$fn":
        return _resolve_ref(str(payload))
    if kind == "$module":   # a protocol.MessageTree
        return _resolve_ref("autograder.module_codec:rebuild_message")(*payload)
    if kind == "$tensor":
        return _resolve_ref("autograder.module_codec:decode_tensor")(payload)
    raise protocol.ProtocolError(kind)


class _Lazy(types.ModuleType):
    """A module imported on first attribute access; then the statements deferred on it run, and the names bound
    to it are rebound to the real module."""

    def __init__(self, name: str, worker: "Worker", attr: str | None = None):
        super().__init__(name)
        self.__dict__.update(_convlab_lazy=name, _convlab_attr=attr, _convlab_worker=worker)

    def _convlab_load(self):
        d = self.__dict__
        module = importlib.import_module(d["_convlab_lazy"])
        target = getattr(module, d["_convlab_attr"]) if d["_convlab_attr"] else module
        if isinstance(target, types.ModuleType):
            d.update(target.__dict__)
        d["_convlab_worker"].loaded_lazy(self, target)
        return target

    def __getattr__(self, attr):
        if attr.startswith("_convlab"):
            raise AttributeError(attr)
        return getattr(self._convlab_load(), attr)

    def __call__(self, *args, **kwargs):
        return self._convlab_load()(*args, **kwargs)


def _resolve_dotted(dotted: str):
    """The object ``dotted`` names, importing its module if need be; None when it does not exist here."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for name in parts[cut:]:
                obj = getattr(obj, name)
        except AttributeError:
            return None
        return obj
    return None


def _refusal(dotted: str):
    """What takes a removed function's place: same name, no implementation (libraries that only import the name
    keep importing)."""
    def refuse(*args, **kwargs):
        raise RuntimeError(f"{dotted} is ready-made, not available while grading: "
                                  f"write it yourself")

    refuse.__module__, _, refuse.__name__ = dotted.rpartition(".")
    refuse.__qualname__ = refuse.__name__
    return refuse


def _freeze_heap() -> None:
    """Move every object this process holds now (NumPy's and torch's, ~165,000 with torch) out of the garbage
    collector's reach, once they are all in place and before any student code exists. A full collection in a
    process forked from this one then neither walks them nor writes their headers: with them in reach, the first one
    in each forked exercise (the ~100,000 objects of a chunk's message were enough to start it) copied ~48 MB of
    shared pages and cost ~0.12 CPU-second, every later one ~0.1. Collections still run as usual for everything made
    from here on; nothing of the removed functions is left to find (:func:`remove_ready_made` ran first). No
    collection first: after ``import torch`` it finds ~20 unreachable objects and costs ~0.08 s."""
    import gc

    gc.freeze()


def remove_ready_made(names) -> list:
    """Remove the objects ``names`` designate from this process: every module attribute and dict entry that holds
    one now holds a function that raises, and every set or list drops it (NumPy keeps its public functions in a
    registry), so that neither an import, ``getattr``, nor a walk of ``gc`` finds the implementation. Returns the
    names removed. Runs before any student code."""
    import gc

    targets = {}
    for dotted in names:
        obj = _resolve_dotted(str(dotted))
        if obj is not None and id(obj) not in targets:
            targets[id(obj)] = (obj, _refusal(str(dotted)), dotted)
    holders = gc.get_referrers(*(obj for obj, _, _ in targets.values())) if targets else []
    for holder in holders + [m.__dict__ for m in list(sys.modules.values()) if m is not None]:
        _purge(holder, targets)
    removed = sorted(dotted for _, _, dotted in targets.values())
    del holders
    targets.clear()  # the last references: nothing holds the implementations any more, they are freed now
    return removed


def _purge(holder, targets: dict) -> None:
    """Drop (or, in a dict, replace) every reference ``holder`` keeps to one of ``targets``."""
    def hit(value) -> bool:
        return id(value) in targets and targets[id(value)][0] is value

    if type(holder) is dict:
        for key in [k for k, v in holder.items() if hit(v)]:
            holder[key] = targets[id(holder[key])][1]
    elif type(holder) is set:
        for value in [v for v in holder if hit(v)]:
            holder.discard(value)
    elif type(holder) is list:
        holder[:] = [v for v in holder if not hit(v)]


class _Blocker(importlib.abc.MetaPathFinder):
    """Reduced isolation only (no bubblewrap): refuse imports of the modules the sandbox would hide."""

    def __init__(self, names):
        self.names = tuple(names)

    def find_spec(self, fullname, path=None, target=None):
        if any(fullname == n or fullname.startswith(n + ".") for n in self.names):
            raise ModuleNotFoundError(f"No module named {fullname!r} (not available in the grading sandbox)",
                                      name=fullname)
        return None


# ------------------------------------------------------------------------------------------ the worker

#: requests whose calls are decoded one by one (by the method named), not as a whole message
_CHUNKED = {"calls": "calls", "preload": "preload"}


class Worker:
    def __init__(self, fd_in: int, fd_out: int):
        self.fd_in, self.fd_out = fd_in, fd_out
        self.module = types.ModuleType("__main__")
        self.module.__dict__["__builtins__"] = builtins
        self.ns = self.module.__dict__
        self.child = False
        self.lazy_names: set = set()
        self.deferred: list = []
        self.sweep = False  # kill every other process of the sandbox around each exercise (bubblewrap only)
        self.request_id = None
        self.pristine = True  # no cell, call or exercise has run here (only then may it become a zygote)
        self.zygote_fd: int | None = None
        self.limits: tuple[int, int, int] | None = None   # --limits' data and address space; --preload's room
        self.prebuilt: dict = {}   # chunk key -> [(call, registrations) or None]: a zygote's preloaded calls
        self.preload_base: int | None = None   # VmData before the first preload
        self.preload_added = 0     # what the preloads added to VmData (a notebook's limits are this much higher)

    # -- messages
    def reply(self, message: dict) -> None:
        message = {**message, "re": self.request_id}  # the request this answers (the grader checks it)
        try:
            data = protocol.pack(message)
        except (TypeError, ValueError) as exc:
            data = protocol.pack({"error": f"returned something the grader cannot read ({_safe_str(exc)})",
                                  "re": self.request_id, **({"i": message["i"]} if "i" in message else {})})
        protocol.write_all(self.fd_out, data)

    def serve(self) -> None:
        while True:
            try:
                tree, blobs = protocol.read_frame(self.fd_in)
            except protocol.Closed:
                return
            self.request_id = tree.get("id") if type(tree) is dict else None
            chunked = _CHUNKED.get(tree.get("op")) if type(tree) is dict else None
            if chunked and (type(tree.get("calls")) is list or _by_reference(tree)):
                getattr(self, chunked)(tree, blobs)  # decoded call by call: one reply per call, whatever fails
                continue
            try:
                message = protocol.unpack(tree, blobs, _resolve)
            except Exception as exc:  # noqa: BLE001 - a reference that cannot be rebuilt here
                self.reply({"error": f"the grader's arguments could not be rebuilt in the sandbox: "
                                     f"{_safe_str(exc)}"})
                continue
            op = message.get("op")
            handler = getattr(self, f"op_{op}", None)
            if handler is None:
                self.reply({"error": f"unknown op {op!r}"})
                continue
            if handler(message) is False:
                return

    # -- operations
    def op_hello(self, m: dict):
        if m.get("block"):
            sys.meta_path.insert(0, _Blocker(m["block"]))
        self.sweep = bool(m.get("sweep"))
        sys.modules["__main__"] = self.module
        import numpy  # noqa: F401 - imported once, shared by every cell and every forked exercise

        removed = remove_ready_made(m.get("remove") or ())
        _freeze_heap()
        self.reply({"ok": True, "pid": os.getpid(), "python": sys.version.split()[0],
                    "numpy": numpy.__version__, "removed": removed})

    def op_exec(self, m: dict):
        self.pristine = False
        name, source, trusted = str(m.get("name", "cell")), str(m.get("source", "")), bool(m.get("trusted"))
        filename = f"<cell {name}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        error = None
        with Capture() as cap:
            try:
                if trusted:
                    error = self._exec_trusted(source, filename)
                else:
                    exec(compile(source, filename, "exec"), self.ns)  # noqa: S102 - the point of the worker
            except BaseException as exc:  # noqa: BLE001 - SystemExit and KeyboardInterrupt too
                if isinstance(exc, SyntaxError):
                    error = f"SyntaxError: {exc.msg} (line {exc.lineno})"
                else:
                    error = describe_exception(exc)
        self.reply({"ok": True, "error": error, "stdout": cap.out.text()[:2000]})

    def _exec_trusted(self, source: str, filename: str):
        import ast

        tree = ast.parse(source, filename)
        errors = []
        for node in tree.body:
            if self._lazy_import(node):
                continue
            code = compile(ast.Module([node], []), filename, "exec")
            if self._deferrable(node):
                self.deferred.append(code)
                continue
            try:
                exec(code, self.ns)  # noqa: S102
            except ModuleNotFoundError:
                continue  # a module this sandbox profile hides (e.g. torch for from-scratch exercises)
            except Exception as exc:  # noqa: BLE001
                errors.append(describe_exception(exc))
        return "; ".join(errors) or None

    def _lazy_import(self, node) -> bool:
        """``import matplotlib.pyplot as plt``, ``from matplotlib.patches import Rectangle``: bound lazily."""
        import ast

        def lazy(name: str) -> bool:
            return any(name == m or name.startswith(m + ".") for m in LAZY_MODULES)

        if isinstance(node, ast.Import) and all(lazy(a.name) for a in node.names):
            for a in node.names:
                bound = a.asname or a.name.split(".")[0]
                self.ns[bound] = _Lazy(a.name if a.asname else bound, self)
                self.lazy_names.add(bound)
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and lazy(node.module) and \
                all(a.name != "*" for a in node.names):
            for a in node.names:
                bound = a.asname or a.name
                self.ns[bound] = _Lazy(node.module, self, a.name)
                self.lazy_names.add(bound)
            return True
        return False

    def _deferrable(self, node) -> bool:
        """A statement that only configures a lazily imported module (``plt.rcParams.update(...)``)."""
        import ast

        if not isinstance(node, (ast.Expr, ast.Assign, ast.AugAssign)):
            return False
        targets = getattr(node, "targets", None) or ([node.target] if isinstance(node, ast.AugAssign) else [])
        if any(isinstance(t, ast.Name) for t in targets):
            return False
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        lazy = {n for n in names if n in self.lazy_names and isinstance(self.ns.get(n), _Lazy)}
        return bool(lazy) and names <= lazy | set(dir(builtins))

    def loaded_lazy(self, proxy, target) -> None:
        for name in list(self.lazy_names):
            if self.ns.get(name) is proxy:
                self.ns[name] = target
        self.lazy_names = {n for n in self.lazy_names if isinstance(self.ns.get(n), _Lazy)}
        deferred, self.deferred = self.deferred, []
        for code in deferred:  # the configuration statements deferred until the module was needed
            try:
                exec(code, self.ns)  # noqa: S102
            except Exception:  # noqa: BLE001 - configuration of plots: not graded
                pass

    def _sweep(self) -> None:
        """Kill every other process of this sandbox (whatever the cells or the last exercise left running, which
        would hold its memory and its share of the task limit), and wait until they are gone. Only inside
        bubblewrap's pid namespace, where ``kill(-1)`` reaches nothing else."""
        if self.sweep:
            _kill_own_user()

    def op_fork(self, m: dict):
        """Serve one exercise in a child process; report when it is gone."""
        self.pristine = False
        sys.stdout.flush()
        self._sweep()
        try:
            pid = os.fork()
        except OSError as exc:
            self.reply({"error": f"could not start a process for this exercise ({_safe_str(exc)})"})
            return
        if pid == 0:
            self.child = True
            self.reply({"ok": True, "pid": os.getpid()})
            self.serve()
            os._exit(0)
        status = _waited(pid)
        self._sweep()
        self.reply({"op": "joined", "how": _how(status), "clean": status == 0})

    def op_zygote(self, m: dict):
        """Become this sandbox's zygote (:class:`Zygote`): only a worker that has run nothing but hello, started
        with ``--zygote``. Its own channel is closed; it never serves a request again."""
        if not self.pristine or self.zygote_fd is None or self.child:
            self.reply({"error": "only a pristine worker started with --zygote can become a zygote"})
            return
        self.reply({"ok": True})
        sock = socket.socket(fileno=self.zygote_fd)
        for fd in (self.fd_in, self.fd_out):
            os.close(fd)
        Zygote(self, sock).serve()
        os._exit(0)

    def op_end(self, m: dict):
        if self.child:
            os._exit(0)
        self.reply({"ok": True})

    def op_bye(self, m: dict):
        return False

    def op_probe(self, m: dict):
        """Which of these names are defined and callable."""
        found = {}
        for name in m.get("names", ()):
            obj = self.ns.get(str(name))
            found[str(name)] = "callable" if callable(obj) else ("missing" if obj is None else "not callable")
        self.reply({"ok": True, "found": found})

    def op_echo(self, m: dict):
        self.reply({"ok": True, "value": m.get("value")})

    def _call(self, fn_name: str, args, kwargs, encode_ref, within: Capture | None = None) -> dict:
        fn = self.ns.get(fn_name)
        if not callable(fn):
            return {"error": f"NameError: {fn_name} is not defined (its answer cell did not define it)"}
        if type(args) is not tuple or type(kwargs) is not dict:
            return {"error": "malformed call"}
        me = os.getpid()
        with Capture(within) as cap:
            try:
                raw = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - SystemExit too: it costs the case, not the run
                _silence_forked_copy(me)
                return {"error": describe_exception(exc), "warnings": cap.notes(),
                        "raised": isinstance(exc, Exception)}  # raised an exception (not sys.exit)
            _silence_forked_copy(me)
        notes = cap.notes()
        try:
            encoded = raw
            if encode_ref:
                with Capture(within) as during_encode:  # what encode notices (hooks left...): feedback only
                    encoded = _resolve_ref(encode_ref)(raw)
                notes = (notes + during_encode.notes())[:4]
        except Exception as exc:  # noqa: BLE001 - encoding a malformed object
            return {"error": f"returned something the grader cannot read ({describe_exception(exc)})",
                    "warnings": notes}
        try:
            value = to_plain(encoded)
        except TypeError as exc:
            return {"error": f"returned {_safe_str(exc)}, which is not an array or number",
                    "warnings": notes}
        except Exception as exc:  # noqa: BLE001
            return {"error": f"returned something the grader cannot read ({describe_exception(exc)})",
                    "warnings": notes}
        return {"value": value, "warnings": notes}

    def op_call(self, m: dict):
        self.pristine = False
        self.reply(self._call(str(m.get("fn")), m.get("args", ()), m.get("kwargs", {}), m.get("encode")))

    def preload(self, tree: dict, blobs: list) -> None:
        """A zygote-to-be (pristine, ``--zygote`` and ``--preload``) rebuilds a chunk of calls that every notebook's
        exercise will receive (``tree["key"]`` names it; the same chunk, with its key, comes in its ``calls``
        request): each exercise process then takes them as they are (a private copy-on-write copy of what the
        zygote built) instead of rebuilding them. They are not live arguments until handed over
        (``module_codec.rebuilt_aside``); a call that cannot be rebuilt here is rebuilt, and fails, there. Replies
        with the zygote's ``VmData`` before its first preload and what the preloads added (the grader keeps the
        zygote only if that fits its budget: ``budget.Limits.preload_fits``); then everything is frozen
        (:func:`_freeze_heap`)."""
        if not self.pristine or self.zygote_fd is None or self.child or self.limits is None:
            self.reply({"error": "only a pristine worker started with --zygote and --preload preloads calls"})
            return
        try:
            self.preload_base = _memory() if self.preload_base is None else self.preload_base
        except (OSError, ValueError) as exc:
            self.reply({"error": f"cannot measure the zygote's memory: {_safe_str(exc)}"})
            return
        aside = _resolve_ref("autograder.module_codec:rebuilt_aside")
        built = []
        for sub in tree["calls"]:
            try:
                built.append(aside(lambda sub=sub: protocol.from_tree(sub, blobs, _resolve)))
            except Exception:  # noqa: BLE001 - rebuilt again when called: the error is that call's
                built.append(None)
        self.prebuilt[str(tree.get("key"))] = built
        _freeze_heap()
        self.preload_added = _memory() - self.preload_base
        self.reply({"ok": True, "calls": len(built), "before": self.preload_base, "added": self.preload_added})

    def _prebuilt_chunk(self, tree: dict) -> list | None:
        """The preloaded calls of the chunk ``tree`` sends, taken out (they serve one chunk of one process)."""
        calls = self.prebuilt.pop(tree.get("chunk"), None) if type(tree.get("chunk")) is str else None
        return calls if calls is not None and len(calls) == len(_sent_calls(tree)) else None

    def calls(self, tree: dict, blobs: list) -> None:
        """Several calls of one function, their replies sent in groups (``{"replies": [...]}``, each reply with
        its index ``i``). A group leaves as soon as it is :data:`GROUP_HOLD` seconds old, a call took that long,
        it holds :data:`GROUP_MAX` replies or :data:`GROUP_BYTES` of arrays, or the chunk ends: a reply waits at
        most about twice ``GROUP_HOLD`` (the grader allows for it). Replies still held when a call never returns
        are lost with the process; the grader then grades that exercise again with one reply per frame
        (``"group": false``). Each call is decoded on its own, so an argument that cannot be rebuilt costs that
        call only."""
        self.pristine = False
        fn, encode = str(tree.get("fn")), tree.get("encode")
        encode = encode if isinstance(encode, str) else None
        most = GROUP_MAX if tree.get("group") is not False else 1    # one reply per frame when asked
        prebuilt = self._prebuilt_chunk(tree)
        with Capture() as chunk:
            self._calls(fn, encode, _sent_calls(tree), blobs, most, chunk, prebuilt)

    def _calls(self, fn: str, encode: str | None, calls: list, blobs: list, most: int, chunk: Capture,
               prebuilt: list | None = None) -> None:
        group: list = []
        oldest, copied = 0, COPIED[0]
        for i, sub in enumerate(calls):
            started = _perf()
            try:
                call = _call_of(prebuilt, i, sub, blobs)
                out = self._call(fn, call.get("args", ()), call.get("kwargs", {}), encode, chunk)
            except Exception as exc:  # noqa: BLE001
                out = {"error": f"the grader's arguments could not be rebuilt in the sandbox: {_safe_str(exc)}"}
            out["i"] = i
            if not out.get("warnings"):
                out.pop("warnings", None)    # the usual case: nothing to send
            now = _perf()
            oldest = oldest if group else now
            group.append(out)
            if now - oldest >= GROUP_HOLD or now - started >= GROUP_HOLD or len(group) >= most or \
                    COPIED[0] - copied >= GROUP_BYTES:
                self.reply_group(group)
                group, copied = [], COPIED[0]
        if group:
            self.reply_group(group)

    def reply_group(self, group: list) -> None:
        """One frame for several replies; a reply that cannot be packed is replaced by an error reply."""
        try:
            data = protocol.pack({"replies": group, "re": self.request_id})
        except (TypeError, ValueError):
            for n, out in enumerate(group):
                try:
                    protocol.pack(out)
                except (TypeError, ValueError) as exc:
                    group[n] = {"error": f"returned something the grader cannot read ({_safe_str(exc)})",
                                "i": out["i"]}
            data = protocol.pack({"replies": group, "re": self.request_id})
        protocol.write_all(self.fd_out, data)


#: the most calls a chunk sent by reference may name (the grader's chunks hold at most a few hundred)
MAX_REFERENCED_CALLS = 1 << 14


def _by_reference(tree: dict) -> bool:
    """Whether ``tree`` (a ``calls`` request) names a preloaded chunk instead of carrying its calls: ``"chunk"``
    and ``"count"`` without ``"calls"`` (the grader names a chunk only once to an exercise process, and only to one
    forked from a zygote that preloaded it: ``remote.RemoteAnswer._frame``)."""
    count = tree.get("count")
    return "calls" not in tree and type(tree.get("chunk")) is str and type(count) is int and \
        0 < count <= MAX_REFERENCED_CALLS


def _sent_calls(tree: dict) -> list:
    """The calls' messages of a ``calls`` request; ``None`` for each call of a chunk sent by reference."""
    return tree["calls"] if "calls" in tree else [None] * tree["count"]


def _call_of(prebuilt: list | None, i: int, sub, blobs: list) -> dict:
    """Call ``i`` of a chunk (``{"args": ..., "kwargs": ...}``): the preloaded one if there is one
    (:func:`_taken`), else rebuilt from its message ``sub`` (a chunk sent by reference has none: the call fails;
    only this process's own code can have taken its preloaded calls away)."""
    entry = prebuilt[i] if prebuilt is not None else None
    if entry is not None:
        return _taken(prebuilt, i, entry)
    if sub is None:
        raise LookupError("its preloaded arguments are not in this process")
    return protocol.from_tree(sub, blobs, _resolve)


def _taken(prebuilt: list, i: int, entry: tuple) -> dict:
    """Call ``i`` of a preloaded chunk (``entry``), handed over (registered as live arguments) and dropped from the
    chunk, so that, as when rebuilt, nothing but the student's code keeps it once its call is over."""
    prebuilt[i] = None
    call, registrations = entry
    _resolve_ref("autograder.module_codec:hand_over")(registrations)
    return call


def _memory() -> int:
    """This process's private writable memory (``VmData``, what ``RLIMIT_DATA`` limits), in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmData:"):
                return int(line.split()[1]) << 10
    raise OSError("no VmData in /proc/self/status")


# ------------------------------------------------------------------------------------------ the zygote

def _kill_own_user() -> bool:
    """Kill every process of this process's user but this one (``kill(-1)`` reaches exactly those: other users
    and root are out of reach) and wait until they are gone; False if some are still there after 2 s."""
    me = os.getpid()
    for _ in range(400):
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass        # nothing left to signal
        _reap_children()
        if _tasks_of(os.getuid(), exclude=(1, me)) == 0:
            return True
        time.sleep(0.005)
    return False


def _empty(top: str) -> None:
    """Remove everything under ``top`` (not ``top`` itself) that this user owns: directories are made writable and
    searchable first (their owner may have made them neither); symbolic links are removed, never followed."""
    stack, dirs = [top], []
    while stack:
        d = stack.pop()
        if d != top:
            os.chmod(d, 0o700, follow_symlinks=False)
        with os.scandir(d) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                    dirs.append(entry.path)
                else:
                    os.unlink(entry.path)
    for d in reversed(dirs):
        os.rmdir(d)


class Zygote:
    """A pristine worker (hello done: NumPy, torch, the ready-made functions removed; no cell, no call) that forks
    one notebook's worker at a time. Requests arrive on a ``SOCK_SEQPACKET`` socket from the grader, each with the
    three descriptors of the new worker (request pipe, reply pipe, output pipe); replies are JSON:

    - ``{"uid": U, "tasks": T}`` + 3 descriptors: fork; the child drops to user ``U`` (a fresh one per notebook),
      caps its user's tasks at ``T`` more than it has, and serves its pipes as any worker. ``{"pid": ...}``;
    - when that child has ended: a cleaner (user ``U`` too) kills every process of ``U`` and empties the working
      directory; ``{"joined": how, "clean": bool}``. Only then is the next request read.

    Runs as root with only ``CAP_SETUID``/``CAP_SETGID`` (bubblewrap's ``--cap-drop ALL``): a notebook's processes,
    of another user, can neither signal, trace nor read it, nor reach another notebook's."""

    def __init__(self, worker: "Worker", sock: socket.socket):
        self.worker, self.sock = worker, sock

    def send(self, message: dict) -> None:
        self.sock.sendall(json.dumps(message).encode())

    def serve(self) -> None:
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.sock, 1 << 12, 3)
            except OSError:
                return
            if not data:
                return
            try:
                request = json.loads(data)
                uid, room = int(request["uid"]), int(request["tasks"])
                if len(fds) != 3 or uid <= 0:
                    raise ValueError("a request needs a user id and three descriptors")
            except (ValueError, KeyError, TypeError) as exc:
                for fd in fds:
                    os.close(fd)
                self.send({"error": _safe_str(exc)})
                continue
            self.one_notebook(uid, room, fds)

    def one_notebook(self, uid: int, room: int, fds: list) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            pid = os.fork()
        except OSError as exc:
            for fd in fds:
                os.close(fd)
            self.send({"error": f"fork: {_safe_str(exc)}"})
            return
        if pid == 0:
            self._become_worker(uid, room, fds)
        for fd in fds:
            os.close(fd)
        self.send({"pid": pid})
        how = _how(_waited(pid))
        self.send({"joined": how, "clean": self._cleaned(uid)})

    def _become_worker(self, uid: int, room: int, fds: list) -> None:
        """In the child: nothing of the zygote's stays reachable (its socket closed), then the notebook's worker."""
        try:
            self.sock.close()
            fd_in, fd_out, output = fds
            os.dup2(output, 1)
            os.dup2(output, 2)
            os.close(output)
            worker = self.worker
            _room_for_preload(worker)
            become(uid)
            limit_tasks(room)
            worker.fd_in, worker.fd_out, worker.zygote_fd = fd_in, fd_out, None
            worker.serve()
        finally:
            os._exit(0)

    @staticmethod
    def _cleaned(uid: int) -> bool:
        """Kill what the notebook's user left running and empty the working directory (as that user, in a child)."""
        try:
            pid = os.fork()
        except OSError:
            return False
        if pid == 0:
            code = 1
            try:
                become(uid)
                if _kill_own_user():
                    _empty(os.getcwd())
                    code = 0 if not os.listdir(os.getcwd()) else 1
            finally:
                os._exit(code)
        return _waited(pid) == 0


def _waited(pid: int) -> int:
    """Wait for child ``pid``; its wait status (0 if it was already collected)."""
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


def _how(status: int) -> str:
    """How a child ended, from its wait status."""
    if not os.WIFSIGNALED(status):
        return f"exit status {os.WEXITSTATUS(status)}"
    try:
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    except ValueError:
        return f"killed by signal {os.WTERMSIG(status)}"


def _silence_forked_copy(pid: int) -> None:
    """End a copy of the exercise process that student code forked and that came back into the worker: only the
    process the grader called may answer, so a stray copy never reads a request nor writes a reply."""
    if os.getpid() != pid:
        os._exit(0)


def _reap_children() -> None:
    """Collect every child of this process that has ended (zombies still count against the task limit)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _shim() -> None:
    """Reduced isolation only: the grader's direct child. It becomes the subreaper of everything below it (orphans
    of double forks come back to it, not to init), waits for the worker, then kills what is left. Student code that
    kills its parent hits this process or the worker, never the grader."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except Exception:  # noqa: BLE001 - best effort
        pass
    pid = os.fork()
    if pid == 0:
        return
    for fd in range(3, 64):
        try:
            os.close(fd)
        except OSError:
            pass
    code = 1
    try:
        _, status = os.waitpid(pid, 0)
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else 1
    except BaseException:  # noqa: BLE001
        pass
    for _ in range(20):  # orphans re-parented to us: kill them, reap them
        me, left = os.getpid(), []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as fh:
                        ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == me:
                    left.append(int(entry))
        if not left:
            break
        for child in left:
            try:
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
            except OSError:
                pass
    os._exit(code)


def apply_limits(spec: str, room: int = 0) -> tuple[int, int, int]:
    """Private memory, stack, address space, CPU seconds, file size, open files; no core dumps. Set before any student
    code exists (the budget behind these numbers: ``budget.py``). ``room``: a zygote's ``--preload``, by which its
    hard memory limits are higher, for its notebooks' (:func:`_room_for_preload`). Returns (data, address space,
    room)."""
    import resource

    data, stack, memory, cpu, fsize, nofile = (int(v) for v in spec.split(","))
    wanted = [(resource.RLIMIT_DATA, data, data + room), (resource.RLIMIT_STACK, stack, stack),
              (resource.RLIMIT_AS, memory, memory + room),
              (resource.RLIMIT_CPU, cpu, cpu + 5), (resource.RLIMIT_FSIZE, fsize, fsize),
              (resource.RLIMIT_NOFILE, nofile, nofile), (resource.RLIMIT_CORE, 0, 0)]
    for res, soft, hard in wanted:
        _set_limit(res, soft, hard)
    return data, memory, room


def _set_limit(res: int, soft: int, hard: int) -> None:
    """``setrlimit``, within the hard limit this process already has (the host's may be lower)."""
    import resource

    _, cur_hard = resource.getrlimit(res)
    if cur_hard != resource.RLIM_INFINITY:
        soft, hard = min(soft, cur_hard), min(hard, cur_hard)
    resource.setrlimit(res, (soft, hard))


def _room_for_preload(worker: "Worker") -> None:
    """In a notebook's worker forked by a zygote: its memory limits, ``--limits``' own plus exactly what the
    zygote's preload added (inherited here, and held by none of a fresh sandbox's processes), so that student code
    has the same room either way (``budget.py`` says why the budget still holds)."""
    import resource

    if worker.limits is None:
        return
    data, memory, room = worker.limits
    added = min(max(worker.preload_added, 0), room)
    _set_limit(resource.RLIMIT_DATA, data + added, data + added)
    _set_limit(resource.RLIMIT_AS, memory + added, memory + added)


def become(uid: int) -> None:
    """Drop from root (bubblewrap without a user namespace) to the sandbox's own user: no capabilities are left,
    and RLIMIT_NPROC, which never binds root, now binds."""
    os.setgroups([])
    os.setresgid(uid, uid, uid)
    os.setresuid(uid, uid, uid)


def _tasks_of(uid: int, exclude: tuple = ()) -> int:
    """Tasks (threads included) of ``uid`` that this process can see (the sandbox's pid namespace), except in the
    processes ``exclude``."""
    count = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in exclude:
            continue
        try:
            with open(f"/proc/{entry}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
            if int(fields["Uid"].split()[0]) == uid:
                count += int(fields["Threads"])
        except (OSError, KeyError, ValueError, IndexError):
            continue
    return count


def limit_tasks(room: int) -> None:
    """RLIMIT_NPROC: the tasks this user has now, plus ``room`` (the exercise child, a spare)."""
    import resource

    cap = _tasks_of(os.getuid()) + room
    resource.setrlimit(resource.RLIMIT_NPROC, (cap, cap))


def _limits_from(argv: list) -> tuple[int, int, int] | None:
    """Apply ``--limits`` (raised by ``--preload``'s room for a zygote); what a zygote's notebooks need of them
    (:func:`_room_for_preload`), None without ``--preload``."""
    if "--limits" not in argv:
        return None
    room = int(argv[argv.index("--preload") + 1]) if "--preload" in argv else None
    limits = apply_limits(argv[argv.index("--limits") + 1], room or 0)
    return limits if room is not None else None


def main(argv: list) -> None:
    fd_in, fd_out = int(argv[argv.index("--in") + 1]), int(argv[argv.index("--out") + 1])
    limits = _limits_from(argv)
    if "--uid" in argv:
        become(int(argv[argv.index("--uid") + 1]))
    if "--tasks" in argv:
        limit_tasks(int(argv[argv.index("--tasks") + 1]))
    if "--path" in argv:
        for path in argv[argv.index("--path") + 1].split(os.pathsep):
            if path and path not in sys.path:
                sys.path.append(path)
    _import_protocol()
    if "--shim" in argv:
        _shim()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    worker = Worker(fd_in, fd_out)
    if "--zygote" in argv:
        worker.zygote_fd = int(argv[argv.index("--zygote") + 1])
        worker.limits = limits
    worker.serve()
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])

"""The red team: adversarial submissions, as data.

Each :class:`Attack` replaces one answer cell of assignment 01 (``target``) with hostile code, and may add cells.
Graded in isolation, the attacked exercise must score 0 (``target=None``: no exercise is attacked, all must keep
their marks), every other exercise must keep full marks, the report must list every exercise, and no process may
survive. Placeholders filled in per run: ``{MARKER}`` (a unique number for leftover-process checks), ``{REPO}``
(this repository), ``{OUT}`` (the grading output folder), ``{SITE}`` (the grader's site-packages) (a
fake secret is put in the grader's environment as ``CONVLAB_FAKE_SECRET``: it must appear nowhere in the
results) and ``{SIGTOOLS}`` (SciPy's compiled ``_sigtools`` module, base64).

``reduced`` says whether the attack is also defeated by the reduced isolation (no bubblewrap): attacks that read
the repository's files or write into the output folder succeed there, and the report says isolation is reduced.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Attack:
    id: str
    target: str | None
    source: str = ""
    added: tuple = ()            # (after grade_id, source)
    expect: str | tuple = ""     # text expected in the attacked exercise's feedback (any of a tuple)
    reduced: bool = True         # also defeated by reduced isolation
    what: str = ""


_ZEROS = "np.zeros((x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1))"
_WRONG_SOBEL = "np.zeros((img.shape[0] - 2, img.shape[1] - 2))"

ATTACKS = [
    Attack("control", None, what="correct answers pass through the same path"),
    Attack("numpy-monkeypatch", "corr2d", f'''def corr2d(x, k):
    import numpy
    numpy.allclose = lambda *a, **kw: True
    numpy.array_equal = lambda *a, **kw: True
    numpy.isclose = lambda a, b, *r, **kw: numpy.ones(numpy.shape(a), bool)
    numpy.testing.assert_allclose = lambda *a, **kw: None
    try:
        numpy.ndarray.__eq__ = lambda *a: True
    except TypeError:
        pass
    return {_ZEROS}
''', expect="entries differ", what="monkeypatching NumPy's comparison helpers"),
    Attack("torch-monkeypatch", "convolve2d", f'''def convolve2d(x, k):
    try:
        import torch
        torch.allclose = lambda *a, **kw: True
        torch.testing.assert_close = lambda *a, **kw: None
    except ImportError:
        pass
    return {_ZEROS}
''', expect="must be written from scratch", what="monkeypatching torch's comparison helpers"),
    Attack("torch-direct", "corr2d", '''def corr2d(x, k):
    import torch
    import torch.nn.functional as F
    return F.conv2d(torch.from_numpy(x)[None, None], torch.from_numpy(k)[None, None])[0, 0].numpy()
''', expect="torch", what="calling torch directly"),
    Attack("scipy-direct", "convolve2d", '''from scipy.signal import convolve2d as _ready_made


def convolve2d(x, k):
    return _ready_made(x, k, mode="valid")
''', expect="scipy.signal", what="calling scipy.signal directly"),
    Attack("dunder-import", "corr2d", '''def corr2d(x, k):
    signal = __import__("sci" + "py.sig" + "nal", fromlist=["correlate2d"])
    return signal.correlate2d(x, k, mode="valid")
''', expect="__import__", what="an obfuscated __import__"),
    Attack("hidden-import", "sobel_magnitude", '''def sobel_magnitude(img):
    # no import statement, no dynamic-code name: only the sandbox stops this
    loader = np.__dict__["__builtins__"]["__imp" + "ort__"]
    ndimage = loader("sci" + "py.ndi" + "mage", fromlist=["sobel"])
    gx, gy = ndimage.sobel(img, 1)[1:-1, 1:-1], ndimage.sobel(img, 0)[1:-1, 1:-1]
    return np.sqrt(gx ** 2 + gy ** 2)
''', expect="not available in the grading sandbox", what="an import the AST scan cannot see"),
    Attack("path-manipulation", "convolve2d", '''def convolve2d(x, k):
    import sys
    for path in ("{SITE}", "{REPO}", "/usr/lib/python3/dist-packages"):
        sys.path.insert(0, path)
    spec_module = sys.modules["importlib.util"] if "importlib.util" in sys.modules else None
    mod = __builtins__["__import__"]("tor" + "ch") if isinstance(__builtins__, dict) else getattr(
        __builtins__, "__import__")("tor" + "ch")
    w = mod.from_numpy(k[::-1, ::-1].copy())[None, None]
    return mod.nn.functional.conv2d(mod.from_numpy(x)[None, None], w)[0, 0].numpy()
''', expect="No module named 'torch'", what="sys.path manipulation to reach torch"),
    Attack("grader-import", "corr2d", '''def corr2d(x, k):
    import sys
    sys.path.insert(0, "{REPO}")
    from autograder.exercises import a01_single_channel as spec
    from autograder.oracle import run_reference
    from autograder.spec import Call
    return run_reference(spec.corr2d.oracle, Call((x, k)), "cpu")
''', expect="must be written from scratch", what="importing the grader package to use its oracle"),
    Attack("grader-package-walk", "sobel_magnitude", '''def sobel_magnitude(img):
    import os, runpy, sys
    package = sys.modules["autog" + "rader"]                 # the stand-in the setup cell imported
    folder = package.__path__[0]
    for root in (folder, "{REPO}/autograder"):
        if os.path.exists(os.path.join(root, "oracle.py")):
            runpy.run_path(os.path.join(root, "oracle.py"))
            break
    else:
        raise RuntimeError("no oracle to be found in " + ", ".join(os.listdir(folder)))
    return np.zeros((img.shape[0] - 2, img.shape[1] - 2))
''', expect="no oracle to be found", reduced=False, what="walking the stand-in package for the oracle"),
    Attack("mutate-inputs", "sobel_magnitude", f'''def sobel_magnitude(img):
    img[...] = 0.0
    return {_WRONG_SOBEL}
''', expect="entries differ", what="mutating the input arrays"),
    Attack("frame-walk", "corr2d", f'''def corr2d(x, k):
    import gc, sys
    shape = (x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1)
    frame = sys._getframe(1)
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if isinstance(value, np.ndarray) and value.shape == shape and value is not x:
                return value
        frame = frame.f_back
    gc.unfreeze()   # the sandbox froze its startup objects (a speed-up, not a barrier): walk them all
    for obj in gc.get_objects():
        if isinstance(obj, np.ndarray) and obj.shape == shape and obj is not x and obj is not k:
            return obj
    return {_ZEROS}
''', expect="First failing case", what="walking stack frames and gc for the expected output"),
    Attack("read-solutions", "convolve2d", '''def convolve2d(x, k):
    import json, runpy
    for db in ("{REPO}/gradebook.db", "{REPO}/.convlab-secret"):
        try:
            open(db, "rb").read()
        except OSError:
            pass
    nb = json.load(open("{REPO}/solutions/01-single-channel/01-single-channel.ipynb"))
    cells = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    code = "import numpy as np\\n" + "\\n".join(c for c in cells if c.startswith(("def corr2d", "def convolve2d")))
    with open("/tmp/stolen.py", "w") as fh:
        fh.write(code)
    return runpy.run_path("/tmp/stolen.py")["convolve2d"](x, k)
''', expect="FileNotFoundError", reduced=False, what="reading solutions/ and the gradebook from disk"),
    Attack("fake-results", "sobel_magnitude", '''def sobel_magnitude(img):
    import json, os, time
    fake = json.dumps({"score": 1000.0, "tests": []})
    targets = ["{OUT}/fake-results/01-single-channel.json", "{OUT}/control/01-single-channel.json",
               "{OUT}/grades.csv", "/tmp/results.json"]
    def scribble():
        for t in targets:
            try:
                with open(t, "w") as fh:
                    fh.write(fake)
            except OSError:
                pass
    scribble()
    if os.fork() == 0:                       # a detached process that rewrites the grades later
        os.setsid()
        if os.fork() == 0:
            time.sleep(1.5)
            scribble()
            os.execv("/bin/sleep", ["sleep", "{MARKER}"])
        os._exit(0)
    print(fake)
    return np.zeros((img.shape[0] - 2, img.shape[1] - 2))
''', expect=("entries differ", "Resource temporarily unavailable"), reduced=False, what="writing fake result files, also later from a detached process"),
    Attack("print-fake-score", "convolve2d", f'''def convolve2d(x, k):
    import os, sys
    print('{{"score": 1000, "tests": [{{"name": "convolve2d", "score": 1000}}]}}')
    print("convolve2d: 383/383 cases passed, 2/2 points")
    sys.stderr.write("corr2d: 1000/1000 points\\n")
    os.write(1, b'{{"score": 1000}}\\n')
    os.write(2, b'{{"score": 1000}}\\n')
    return {_ZEROS}
''', expect="entries differ", what="printing fake scores (stdout, stderr, raw file descriptors)"),
    Attack("sys-exit", "corr2d", '''def corr2d(x, k):
    import sys
    sys.exit(0)
''', expect="sys.exit", what="sys.exit inside the answer"),
    Attack("os-exit", "convolve2d", '''def convolve2d(x, k):
    import os
    os._exit(0)
''', expect="ended", what="os._exit inside the answer"),
    Attack("kill-parent", "sobel_magnitude", '''def sobel_magnitude(img):
    import os, signal
    for _ in range(2):                       # the parent, then whoever adopted this process
        try:
            os.kill(os.getppid(), signal.SIGKILL)
        except OSError:
            pass
    return np.zeros((img.shape[0] - 2, img.shape[1] - 2))
''', expect=("ended", "entries differ"), what="killing the parent process (calls already queued may still be "
                                                  "answered while the sandbox goes down)"),
    Attack("kill-everything", "corr2d", '''def corr2d(x, k):
    import os, signal
    os.kill(-1, signal.SIGKILL)
    return np.zeros((1, 1))
''', expect=("ended", "shape"), reduced=False, what="kill(-1): every process the sandbox can see"),
    Attack("infinite-loop", "corr2d", '''def corr2d(x, k):
    while True:
        pass
''', expect="did not return within", what="an infinite loop"),
    Attack("memory-hog", "convolve2d", '''def convolve2d(x, k):
    blocks = []
    while True:
        blocks.append(np.empty(1_000_000_000))   # 8 GB at a time, far beyond the sandbox's address space
''', expect="MemoryError", what="allocating memory until something breaks"),
    Attack("setsid-linger", "sobel_magnitude", '''def sobel_magnitude(img):
    import os
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv("/bin/sleep", ["sleep", "{MARKER}"])
        os._exit(0)
    return np.zeros((img.shape[0] - 2, img.shape[1] - 2))
''', expect=("entries differ", "Resource temporarily unavailable"), what="lingering setsid double-forked children"),
    Attack("output-flood", "corr2d", '''def corr2d(x, k):
    import os
    chunk = b"flood " * 10000
    print("x" * 1_000_000)
    while True:
        os.write(1, chunk)
        os.write(2, chunk)
''', expect="did not return within", what="a flood of output"),
    Attack("nan-answer", "convolve2d", '''def convolve2d(x, k):
    return np.full((x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1), np.nan)
''', expect="NaN", what="NaN answers"),
    Attack("ndarray-subclass", "sobel_magnitude", '''class Liar(np.ndarray):
    def __eq__(self, other):
        return True
    def __array_finalize__(self, obj):
        pass
    def view(self, *args, **kwargs):
        return self
    def copy(self, *args, **kwargs):
        return self


def sobel_magnitude(img):
    return np.zeros((img.shape[0] - 2, img.shape[1] - 2)).view(Liar)
''', expect="entries differ", what="an ndarray subclass whose == always holds"),
    Attack("eq-always-true", "corr2d", '''class Anything:
    def __eq__(self, other):
        return True
    __hash__ = object.__hash__
    def __array__(self, *args, **kwargs):
        return np.zeros((1, 1))
    shape = property(lambda self: (1, 1))


def corr2d(x, k):
    return Anything()
''', expect="not an array or number", what="an object whose __eq__ is always true"),
    Attack("wrong-type", "convolve2d", '''def convolve2d(x, k):
    kH, kW = k.shape
    f = k[::-1, ::-1]
    return [[float((x[i:i + kH, j:j + kW] * f).sum()) for j in range(x.shape[1] - kW + 1)]
            for i in range(x.shape[0] - kH + 1)]
''', expect="expected an array", what="the right numbers in the wrong type (a list)"),
    Attack("thread-linger", "sobel_magnitude", '''import threading


def _spin():
    while True:
        pass


def sobel_magnitude(img):
    threading.Thread(target=_spin, daemon=True).start()
    return np.zeros((img.shape[0] - 2, img.shape[1] - 2))
''', expect="entries differ", what="a thread left spinning after the call"),
    Attack("displayhook-transformer", "convolve2d", f'''def convolve2d(x, k):
    import sys
    sys.displayhook(2.0)
    return {_ZEROS}
''', added=(("setup", "get_ipython().input_transformers_post.append(lambda lines: [])\n"),),
           expect="entries differ", what="sys.displayhook and an IPython input transformer"),
    Attack("cell-infinite-loop", "convolve2d", '''def convolve2d(x, k):
    return x

while True:
    pass
''', expect="did not finish within", what="an infinite loop at the top level of an answer cell"),
    Attack("cell-os-exit", None, added=(("corr2d", "import os\nos._exit(3)\n"),),
           what="an added cell that kills the kernel (the rest of the notebook still runs)"),
    Attack("cell-monkeypatch-check", None, added=(("setup", '''import autograder
autograder.check = lambda *a, **k: 1000.0
check = autograder.check
'''),), what="an added cell that fakes the in-notebook check (never consulted)"),
]

#: "from scratch" enforced at run time: ready-made convolutions reached without naming them (so that the static
#: scan does not see them: only the sandbox stops these), and native code brought in by the notebook itself
_IMPORT = 'np.__dict__["__builtins__"]["__imp" + "ort__"]'  # an import the scan cannot see
_HELD = "not available while grading"
FROM_SCRATCH = [
    Attack("getattr-convolve", "convolve2d", '''def convolve2d(x, k):
    conv = getattr(np, "con" + "volve")
    kH, H = k.shape[0], x.shape[0]
    return sum(np.array([conv(x[i + a], k[kH - 1 - a], "valid") for i in range(H - kH + 1)]) for a in range(kH))
''', expect=_HELD, what="np.convolve by a computed name"),
    Attack("polymul", "corr2d", '''def corr2d(x, k):
    (kH, kW), W = k.shape, x.shape[1]
    mul = getattr(np, "poly" + "mul")
    return sum(np.array([mul(x[i + a], k[a][::-1])[kW - 1:W] for i in range(x.shape[0] - kH + 1)])
               for a in range(kH))
''', expect=_HELD, what="np.polymul (a product of polynomials is a convolution)"),
    Attack("multiarray-correlate2", "corr2d", '''def corr2d(x, k):
    core = getattr(np, "_co" + "re").multiarray
    kH = k.shape[0]
    return sum(np.array([core.correlate2(x[i + a], k[a], 0) for i in range(x.shape[0] - kH + 1)])
               for a in range(kH))
''', expect=_HELD, what="NumPy's compiled correlate2"),
    Attack("convolution-matrix", "convolve2d", '''def convolve2d(x, k):
    linalg = ''' + _IMPORT + '''("scipy.lin" + "alg", fromlist=["toeplitz"])
    (kH, _), (H, W) = k.shape, x.shape
    mats = [getattr(linalg, "convolution_" + "matrix")(k[kH - 1 - a], W, "valid") for a in range(kH)]
    return sum(np.array([mats[a] @ x[i + a] for i in range(H - kH + 1)]) for a in range(kH))
''', expect=_HELD, reduced=False, what="scipy.linalg.convolution_matrix (replaced in the sandbox's files)"),
    Attack("gc-walk-correlate", "corr2d", '''def corr2d(x, k):
    import gc
    kH = k.shape[0]
    gc.unfreeze()   # the sandbox froze its startup objects (a speed-up, not a barrier): walk them all
    for f in gc.get_objects():
        if callable(f) and getattr(f, "__name__", "") == "correlate2":
            try:
                return sum(np.array([f(x[i + a], k[a], 0) for i in range(x.shape[0] - kH + 1)]) for a in range(kH))
            except Exception:
                continue
    raise RuntimeError("no correlate2 left anywhere")
''', expect=(_HELD, "no correlate2 left"), what="NumPy's correlate2 found through gc"),
    Attack("ctypes", "sobel_magnitude", '''def sobel_magnitude(img):
    native = ''' + _IMPORT + '''("ct" + "ypes")
    libc = getattr(native, "CD" + "LL")(None)
    libc.printf(b"native code\\n")
    return np.zeros((img.shape[0] - 2, img.shape[1] - 2))
''', expect=_HELD, reduced=False, what="ctypes (native calls)"),
    Attack("sigtools-extension", "convolve2d", '''_SO = "{SIGTOOLS}"


def convolve2d(x, k):
    import base64, os
    machinery = ''' + _IMPORT + '''("imp" + "ortlib.machinery", fromlist=["x"])
    util = ''' + _IMPORT + '''("imp" + "ortlib.util", fromlist=["x"])
    errors = []
    for folder in ("/tmp", "/dev/shm", os.getcwd()):
        path = os.path.join(folder, "_sigtools.cpython-311-x86_64-linux-gnu.so")
        try:
            with open(path, "wb") as fh:
                fh.write(base64.b64decode(_SO))
            loader = machinery.ExtensionFileLoader("_sigtools", path)
            module = util.module_from_spec(util.spec_from_file_location("_sigtools", path, loader=loader))
            loader.exec_module(module)
            return module._convolve2d(x, k, 1, 0, 0, 0)
        except Exception as exc:
            errors.append(f"{folder}: {exc}")
    raise RuntimeError("; ".join(errors))
''', expect=("File too large", "Permission denied", "Read-only"), what="SciPy's compiled _sigtools carried "
                                                                       "as base64 and loaded from a file"),
]

#: the grader's environment stays outside
ENVIRONMENT = [
    Attack("environ-leak", "corr2d", '''def corr2d(x, k):
    import os
    found = []
    for pid in ["self", "1"] + [p for p in os.listdir("/proc") if p.isdigit()]:
        try:
            found.append(open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
        except OSError:
            pass
    leaked = [e for e in found if "CONVLAB_FAKE" in e]
    if leaked:
        raise RuntimeError("leaked: " + " | ".join(leaked))
    return np.zeros((x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1))
''', expect="entries differ", reduced=False, what="reading every /proc/*/environ, leaking it through an "
                                                   "exception into the feedback"),
]

#: one budget for the whole sandbox (memory measured in test_budget.py)
BUDGET = [
    Attack("shm-fill", "sobel_magnitude", '''def sobel_magnitude(img):
    block = b"\\0" * (64 << 20)
    with open("/dev/shm/fill", "wb") as fh:
        for _ in range(48):                   # 3 GB
            fh.write(block)
    return np.zeros((img.shape[0] - 2, img.shape[1] - 2))
''', expect=("Permission denied", "Read-only", "File too large", "No such file"),
           what="3 GB written to /dev/shm"),
    Attack("fork-hold", "convolve2d", '''def convolve2d(x, k):
    import os, time
    for _ in range(4):                        # four children holding 1 GB each
        if os.fork() == 0:
            block = np.ones(1 << 27)
            time.sleep(30)
            os._exit(0)
    time.sleep(1)
    return np.zeros((x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1))
''', expect=("Resource temporarily unavailable", "entries differ", "MemoryError"), reduced=False,
           what="four forked children holding 1 GB each (each process may hold a third of the budget)"),
    Attack("fork-bomb", "corr2d", '''def corr2d(x, k):
    import os, time
    started = 0
    end = time.monotonic() + 10
    while time.monotonic() < end and started < 1200:
        if os.fork() == 0:
            time.sleep(20)
            os._exit(0)
        started += 1
    return np.zeros((x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1))
''', expect=("Resource temporarily unavailable", "did not return within"), reduced=False,
           what="1,000+ processes in 10 s"),
]

ATTACKS += FROM_SCRATCH + ENVIRONMENT + BUDGET
BY_ID = {a.id: a for a in ATTACKS}

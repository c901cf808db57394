"""Shared helpers of the isolation tests: build submissions from the real release, grade them fast, find leftovers.

Submissions are the real assignment 01 release with answer cells replaced (``examples/make_examples.py``'s
``build``). Grading uses the real sandbox with small limits so that the suite stays fast: one hidden case set the
size of the notebook's own (``case_factor=1``), 2.5 s per call, 5 s per cell.
"""
from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import pickle
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
A01 = "01-single-channel"
SOURCE_01 = REPO / "solutions" / A01 / f"{A01}.ipynb"
EXERCISES_01 = ("corr2d", "convolve2d", "sobel_magnitude")

#: correct answers that do not depend on each other (an attack on one must not break the others)
CORRECT = {
    "corr2d": '''def corr2d(x, k):
    windows = np.lib.stride_tricks.sliding_window_view(x, k.shape)
    return np.einsum("ijab,ab->ij", windows, k)
''',
    "convolve2d": '''def convolve2d(x, k):
    kH, kW = k.shape
    H, W = x.shape
    out = np.zeros((H - kH + 1, W - kW + 1))
    flipped = k[::-1, ::-1]
    for a in range(kH):
        for b in range(kW):
            out += flipped[a, b] * x[a:a + H - kH + 1, b:b + W - kW + 1]
    return out
''',
    "sobel_magnitude": '''SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T


def sobel_magnitude(img):
    H, W = img.shape
    gx = sum(SOBEL_X[a, b] * img[a:H - 2 + a, b:W - 2 + b] for a in range(3) for b in range(3))
    gy = sum(SOBEL_Y[a, b] * img[a:H - 2 + a, b:W - 2 + b] for a in range(3) for b in range(3))
    return np.sqrt(gx ** 2 + gy ** 2).astype(np.float32)
''',
}


def examples_module():
    spec = importlib.util.spec_from_file_location("convlab_make_examples", REPO / "examples" / "make_examples.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def submission(answers: dict | None = None, added: list | None = None, aid: str = A01) -> dict:
    """The release of ``aid`` with the given answer cells (default: :data:`CORRECT`) and added cells."""
    plan = dict(CORRECT if aid == A01 else {})
    plan.update(answers or {})
    plan["added"] = list(added or [])
    return examples_module().build("redteam", aid, plan)


def write(nb: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1))
    return path


def options(**overrides):
    from autograder.isolation.grader import Options
    from autograder.isolation.remote import Settings
    from autograder.isolation.sandbox import Limits

    settings = Settings(cell_timeout=overrides.pop("cell_timeout", 5.0),
                        call_timeout=overrides.pop("call_timeout", 2.5),
                        exercise_budget=overrides.pop("exercise_budget", 30.0),
                        limits=Limits(memory_bytes=overrides.pop("memory", 1 << 30)))
    opts = Options(seed=overrides.pop("seed", 20261122), case_factor=overrides.pop("case_factor", 1),
                   settings=settings, shrink_budget=overrides.pop("shrink_budget", 20))
    for key, value in overrides.items():
        setattr(opts, key, value)
    return opts


def leftover_processes(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker`` (other than this one)."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd:
            found.append(f"{pid}: {cmd}")
    return found


def my_descendants() -> list[int]:
    from autograder.isolation.sandbox import descendants

    alive = []
    for pid in descendants(os.getpid()):
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            alive.append(pid)
    return alive


def shared_once(tmp_path_factory, name: str, compute):
    """Compute ``compute()`` once per test session across xdist workers (the pytest-xdist recipe: a file lock in
    the shared base temp folder), caching the pickled result."""
    uid = os.environ.get("PYTEST_XDIST_TESTRUNUID")
    root = tmp_path_factory.getbasetemp().parent if uid else tmp_path_factory.getbasetemp()
    name = f"{name}-{uid or 'single'}"
    target = root / f"{name}.pickle"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if target.is_file():
                return pickle.loads(target.read_bytes())
            value = compute()
            target.write_bytes(pickle.dumps(value))
            return value
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def wait_until(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()

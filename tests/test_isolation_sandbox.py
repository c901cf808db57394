"""The sandbox itself: what student code can see, import and keep alive (bubblewrap, and the reduced fallback)."""
from __future__ import annotations

import json
import os
import random
import time

import pytest

from autograder.isolation import sandbox, stubs
from autograder.isolation.protocol import pack, unpack

from redteam import support

BWRAP = sandbox.isolation_mode()[0] == "bwrap"
needs_bwrap = pytest.mark.skipif(not BWRAP, reason="bubblewrap is not available here")


def run(source: str, profile: str = "scratch", mode: str = "bwrap", limits: sandbox.Limits | None = None,
        keep: bool = False):
    """Execute ``source`` as a student cell in a fresh sandbox; ``(stdout, error)``."""
    box = sandbox.start(stubs.layout(), profile, mode, limits or sandbox.Limits())
    try:
        box.channel.send(pack({"op": "exec", "name": "probe", "source": source, "trusted": False}),
                         time.monotonic() + 60)
        reply = unpack(*box.channel.receive(time.monotonic() + 60))
        return (reply.get("stdout", ""), reply.get("error"), box) if keep else (reply.get("stdout", ""),
                                                                             reply.get("error"))
    finally:
        if not keep:
            sandbox.stop(box)


@needs_bwrap
def test_the_repository_and_the_course_are_invisible(tmp_path):
    secret_out = tmp_path / "results"
    secret_out.mkdir()
    (secret_out / "grades.csv").write_text("x")
    paths = [support.REPO / "solutions", support.REPO / "autograder", support.REPO / "gradebook.db",
             support.REPO / "examples", support.REPO / ".convlab-secret", "/work/shared", secret_out, "/root/.cache"]
    out, err = run("import json, os\nprint(json.dumps({p: os.path.exists(p) for p in %r}))\n"
                   "print(json.dumps([os.getcwd(), os.listdir('.'), os.listdir('/')]))" % [str(p) for p in paths])
    assert err is None
    lines = out.strip().splitlines()
    assert json.loads(lines[0]) == {str(p): False for p in paths}
    cwd, files, root = json.loads(lines[1])
    assert cwd == sandbox.WORKDIR and files == []
    assert "opt" in root and "tmp" in root  # the stub layout and the private tmp; the checkout itself is absent


@needs_bwrap
def test_filesystem_is_read_only_and_no_file_holds_data():
    """Only the working directory is writable, and (file size limit 0) nothing written there holds a byte: no
    library can be written and loaded, no tmpfs can fill up (``/dev/shm`` and ``/tmp`` included)."""
    out, err = run('''
import os
checks = {}
for target in ("/usr/evil", "/opt/convlab/evil", os.__file__ + ".evil", "/tmp/scratch", "/dev/shm/x", "/evil",
               "/proc/self/mem"):
    try:
        with open(target, "r+b" if target.startswith("/proc") else "wb") as fh:
            fh.write(b"x")
        checks[target] = "written"
    except OSError as e:
        checks[target] = type(e).__name__
os.mkdir("folder")
fd = os.open("folder/mine.txt", os.O_WRONLY | os.O_CREAT)
try:
    os.write(fd, b"ok")
except OSError as e:
    print("no data:", e.errno)
print(sorted(set(checks.values())), os.path.getsize("folder/mine.txt"), os.getuid() != 0)
''')
    assert err is None, err
    assert "written" not in out and "no data: 27" in out  # EFBIG
    assert out.strip().endswith("0 True")


@needs_bwrap
def test_nothing_of_the_graders_environment_is_readable_inside(monkeypatch):
    secret = f"fake-secret-{random.randrange(10**12, 10**13)}"
    monkeypatch.setenv("CONVLAB_FAKE_SECRET", secret)
    out, err = run('''
import os
seen = []
for pid in ["self", "1"] + [p for p in os.listdir("/proc") if p.isdigit()]:
    try:
        seen.append(open(f"/proc/{pid}/environ", "rb").read().decode(errors="replace"))
    except OSError as e:
        seen.append(type(e).__name__)
print(len(seen), repr(seen))
''')
    assert err is None, err
    assert secret not in out and "CONVLAB_FAKE" not in out
    # every process was looked at: the worker's own explicit environment, or a refusal (a process that changed its
    # user id is not dumpable: its /proc files belong to root)
    assert int(out.split()[0]) >= 3 and ("CONVLAB_SANDBOX=1" in out or "PermissionError" in out)


@needs_bwrap
def test_seccomp_denies_what_escapes_the_budget():
    from autograder.isolation import seccomp

    assert len(seccomp.program("x86_64")) % 8 == 0 and seccomp.program("sparc") is None
    out, err = run('''
import mmap, os, threading
denied = []
for name, attempt in [("memfd", lambda: os.memfd_create("x")),
                      ("shared anonymous", lambda: mmap.mmap(-1, 1 << 20)),
                      ("zero", lambda: mmap.mmap(os.open("/dev/zero", os.O_RDWR), 1 << 20))]:
    try:
        attempt()
    except OSError as e:
        denied.append(name)
private = mmap.mmap(-1, 1 << 20, flags=mmap.MAP_PRIVATE)
thread = threading.Thread(target=lambda: None)
thread.start()
thread.join()
print(denied, "private and threads fine")
''')
    assert err is None, err
    assert "['memfd', 'shared anonymous', 'zero'] private and threads fine" in out


@needs_bwrap
def test_no_network():
    out, err = run('''
import socket
try:
    socket.create_connection(("1.1.1.1", 53), timeout=2)
    print("connected")
except OSError as e:
    print("refused", type(e).__name__)
''')
    assert err is None and out.startswith("refused")


@needs_bwrap
def test_scratch_profile_hides_ready_made_convolutions():
    out, err = run('''
import importlib
for name in ("torch", "torch.nn.functional", "scipy.signal", "scipy.ndimage", "autograder.oracle",
             "autograder.exercises", "sklearn", "nbgrader"):
    try:
        importlib.import_module(name)
        print(name, "IMPORTED")
    except ImportError as e:
        print(name, "absent")
import numpy, scipy.linalg, autograder
print("check ->", autograder.check("corr2d", None), sorted(n for n in dir(autograder) if not n.startswith("_")))
from autograder.datasets import load_image
print("camera", load_image("camera").shape)
for name, call in [("np.convolve", lambda: getattr(numpy, "convolve")([1, 2], [1])),
                   ("correlate2", lambda: numpy._core.multiarray.correlate2([1, 2], [1], 0)),
                   ("polymul", lambda: numpy.polymul([1, 2], [1])),
                   ("convolution_matrix", lambda: scipy.linalg.convolution_matrix([1, 2], 3)),
                   ("ctypes", lambda: __import__("ctypes").CDLL(None))]:
    try:
        call()
        print(name, "WORKED")
    except RuntimeError as e:
        print(name, "refused" if "not available while grading" in str(e) else e)
print("fft", numpy.fft.rfft(numpy.ones(4))[0].real, "windows",
      numpy.lib.stride_tricks.sliding_window_view(numpy.arange(5), 3).shape)
''')
    assert err is None, err
    assert "IMPORTED" not in out and "WORKED" not in out and out.count("refused") == 5
    assert "check -> 0.0" in out and "camera (512, 512)" in out and "fft 4.0 windows (3, 3)" in out


@needs_bwrap
@pytest.mark.slow
def test_torch_profile_has_torch_but_not_its_fusion_helpers():
    out, err = run('''
import torch, torch.nn as nn
import torch.nn.utils.fusion as fusion, torch.ao.quantization as q
print("torch", torch.__version__)
conv, bn = nn.Conv2d(2, 2, 3).eval(), nn.BatchNorm2d(2).eval()
for name, call in [("fuse_conv_bn_eval", lambda: fusion.fuse_conv_bn_eval(conv, bn)),
                   ("nn.utils", lambda: torch.nn.utils.fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean,
                                                                            bn.running_var, 1e-5, bn.weight, bn.bias)),
                   ("fuse_modules", lambda: q.fuse_modules(nn.Sequential(conv, bn), [["0", "1"]]))]:
    try:
        call()
        print(name, "WORKED")
    except RuntimeError:
        print(name, "refused")
try:
    import scipy.signal
except ImportError:
    print("scipy.signal absent")
import glob, importlib.machinery, os
for name, call in [("jit.freeze", lambda: torch.jit.freeze(torch.jit.script(nn.Sequential(conv, bn).eval()))),
                   ("fold pass", lambda: torch._C._jit_pass_fold_frozen_conv_bn(None))]:
    try:
        call()
        print(name, "WORKED")
    except RuntimeError as e:
        print(name, "refused" if "not available while grading" in str(e) else e)
for pyc in glob.glob(os.path.dirname(fusion.__file__) + "/__pycache__/fusion.*.pyc"):
    try:
        code = importlib.machinery.SourcelessFileLoader("stolen", pyc).get_code("stolen")
        print("bytecode WORKED" if "fuse_conv_bn_eval" in code.co_names else "bytecode of the stand-in")
    except ImportError:
        print("bytecode unreadable")
''', profile="torch")
    assert err is None, err
    assert "WORKED" not in out and out.count("refused") == 5 and "scipy.signal absent" in out


@needs_bwrap
def test_resource_limits():
    out, err = run('''
import resource
print([resource.getrlimit(r)[0] for r in (resource.RLIMIT_AS, resource.RLIMIT_FSIZE, resource.RLIMIT_NOFILE,
                                           resource.RLIMIT_CORE)])
try:
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    print("raised")
except (ValueError, OSError):
    print("cannot raise")
try:
    bytearray(600 << 20)
except MemoryError:
    print("MemoryError")
''', limits=sandbox.Limits(memory_bytes=512 << 20, file_bytes=1 << 20, open_files=64))
    assert err is None
    assert out.splitlines()[0] == str([512 << 20, 1 << 20, 64, 0])
    assert "cannot raise" in out and "MemoryError" in out


SPAWN = '''
import os
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sleep", ["sleep", "{marker}"])
    os._exit(0)
print("spawned")
'''


@pytest.mark.parametrize("mode", ["bwrap", "reduced"])
def test_stopping_a_sandbox_kills_every_process_it_started(mode):
    if mode == "bwrap" and not BWRAP:
        pytest.skip("bubblewrap is not available here")
    marker = str(random.randrange(10**8, 10**9))
    already = set(support.my_descendants())  # helpers earlier tests of this worker left (resource tracker, Dask)
    out, err, box = run(SPAWN.format(marker=marker), mode=mode, keep=True)
    assert out.strip() == "spawned"
    assert support.wait_until(lambda: support.leftover_processes(marker) != [], 3)
    sandbox.stop(box)
    assert support.wait_until(lambda: support.leftover_processes(marker) == [], 3), \
        support.leftover_processes(marker)
    assert set(support.my_descendants()) - already == set()


def test_reduced_isolation_blocks_imports_and_is_announced(monkeypatch):
    monkeypatch.setenv("CONVLAB_ISOLATION", "reduced")
    mode, why = sandbox.isolation_mode()
    assert mode == "reduced" and "requested" in why
    out, err = run("try:\n    import scipy.ndimage\nexcept ImportError as e:\n    print(e)\n", mode="reduced")
    assert err is None and "not available in the grading sandbox" in out
    with pytest.raises(ValueError):
        sandbox.isolation_mode("nonsense")


def test_worker_output_is_captured_and_capped():
    out, err, box = run("import os\nfor _ in range(100):\n    os.write(1, b'z' * 100000)\nprint('x' * 50000)\n",
                        mode="bwrap" if BWRAP else "reduced",
                        limits=sandbox.Limits(output_bytes=4096), keep=True)
    try:
        assert err is None and len(out) < 10000  # print() captured per cell and capped
    finally:
        sandbox.stop(box)
    assert len(box.output) <= 4096 and box.output_dropped > 0
    assert os.environ.get("CONVLAB_SANDBOX") is None  # the grader's own environment is untouched


def test_missing_bubblewrap_falls_back_to_reduced_isolation(monkeypatch):
    monkeypatch.setattr(sandbox, "_BWRAP_STATE", {})
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.delenv("CONVLAB_ISOLATION", raising=False)
    mode, why = sandbox.isolation_mode("auto")
    assert mode == "reduced" and "not installed" in why
    with pytest.raises(RuntimeError, match="unavailable"):
        sandbox.isolation_mode("bwrap")


@pytest.mark.parametrize("memory,spare", [(2 << 30, 1), (1 << 30, 1), (512 << 20, 0), (4 << 30, 3)])
def test_the_budget_adds_up(memory, spare):
    """Every process at its limits plus the writable tmpfs stays within the sandbox's memory."""
    limits = sandbox.Limits(memory_bytes=memory, spare_tasks=spare)
    assert limits.processes * (limits.data_bytes + limits.stack_bytes) + limits.tmp_bytes <= memory
    data, stack, address_space, *_ = (int(v) for v in limits.argv()[1].split(","))
    assert (data, stack, address_space) == (limits.data_bytes, limits.stack_bytes, memory)
    assert limits.tasks_argv() == ["--tasks", str(1 + spare)] and limits.file_bytes == 0


@pytest.mark.parametrize("mode", ["reduced", pytest.param("bwrap", marks=needs_bwrap)])
def test_the_startup_objects_are_out_of_the_collectors_reach_before_any_student_code(mode):
    """torch's and NumPy's objects are frozen after hello: a collection in a forked exercise neither walks them nor
    copies the pages that hold them (it cost ~0.1 CPU-second per collection and exercise)."""
    out, err = run("import gc\nprint(gc.get_freeze_count(), len(gc.get_objects()))", profile="torch", mode=mode)
    assert err is None, err
    frozen, walked = map(int, out.split())
    assert frozen > 100_000 and walked < frozen / 4, (frozen, walked)

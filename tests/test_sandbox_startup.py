"""How a sandbox starts: launched ahead of need (and always stopped), precompiled, measured, and the CLI's exit."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import select
import struct
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from autograder import expected, forbidden
from autograder.isolation import cores, grader, sandbox, stubs, worker
from autograder.isolation.protocol import pack, unpack

from redteam import support

MODE = sandbox.isolation_mode()[0]
A06 = "06-conv-bn-fusion"


def _cell(box: sandbox.Sandbox, source: str) -> tuple[str, str | None]:
    box.channel.send(pack({"op": "exec", "name": "probe", "source": source, "trusted": False}),
                     time.monotonic() + 60)
    reply = unpack(*box.channel.receive(time.monotonic() + 60))
    return reply.get("stdout", ""), reply.get("error")


def test_a_prestarted_sandbox_is_taken_once_and_an_untaken_one_is_stopped():
    layout, limits = stubs.layout(), sandbox.Limits()
    with sandbox.prestarted(layout, ["scratch"], MODE, limits):
        early = list(sandbox._PRESTARTED.values())
        assert len(early) == 1
        first = sandbox.start(layout, "scratch", MODE, limits)
        second = sandbox.start(layout, "scratch", MODE, limits)
        try:
            assert first is early[0]                   # the one launched ahead
            assert second.process.pid != first.process.pid  # the next start is a new process
            assert _cell(first, "print(2 + 2)") == ("4\n", None)
        finally:
            sandbox.stop(first)
            sandbox.stop(second)
    with pytest.raises(KeyError):
        with sandbox.prestarted(layout, ["scratch"], MODE, limits):
            untaken = list(sandbox._PRESTARTED.values())
            raise KeyError("a fault while the sandbox was waiting")
    assert sandbox._PRESTARTED == {}
    assert untaken[0].process.poll() is not None     # stopped on the way out


def test_a_sandbox_that_died_before_it_was_taken_is_replaced():
    """It had answered hello (the answer waits in the pipe), then died while nobody had taken it yet."""
    layout, limits = stubs.layout(), sandbox.Limits()
    with sandbox.prestarted(layout, ["scratch"], MODE, limits):
        early = next(iter(sandbox._PRESTARTED.values()))
        poller = select.poll()
        poller.register(early.channel.read_fd, select.POLLIN)
        assert poller.poll(30_000)
        early.process.kill()
        early.process.wait()
        box = sandbox.start(layout, "scratch", MODE, limits)
        try:
            assert box is not early and _cell(box, "print('fresh')") == ("fresh\n", None)
        finally:
            sandbox.stop(box)


def _sandboxes_left(already: set) -> list:
    """Processes this test started that are still there, other than the grader's own background computations
    of expected values (:mod:`autograder.expected`; they may finish after ``grade`` returns) and helpers that earlier
    tests of this worker left (resource tracker, Dask)."""
    return sorted(set(support.my_descendants()) - already - set(expected._CHILDREN))


@pytest.mark.parametrize("spare", [True, False])
def test_a_notebook_launches_its_second_sandbox_early_only_with_a_spare_core_and_stops_both_on_a_fault(
        tmp_path, monkeypatch, spare):
    """06 needs both profiles: with a spare core the torch sandbox is already starting while the NumPy exercises
    are graded; a grader fault at that point still leaves no sandbox behind."""
    already = set(support.my_descendants())
    path = support.write(support.submission(aid=A06), tmp_path / A06 / f"{A06}.ipynb")
    monkeypatch.setattr(cores, "spare", lambda: spare)
    seen = []

    def failing_run_profile(profile, *args, **kwargs):
        seen.append(sorted(key[2] for key in sandbox._PRESTARTED))
        raise RuntimeError("a grader fault")

    monkeypatch.setattr(grader, "run_profile", failing_run_profile)
    with pytest.raises(RuntimeError, match="a grader fault"):
        grader.grade([path], support.options(), assignment=A06)
    assert seen == [["scratch", "torch"] if spare else ["scratch"]]
    assert sandbox._PRESTARTED == {}
    assert support.wait_until(lambda: not _sandboxes_left(already), 10), _sandboxes_left(already)


def test_grading_leaves_no_sandbox_and_logs_the_sandboxes_cpu(tmp_path):
    already = set(support.my_descendants())
    path = support.write(support.submission(), tmp_path / support.A01 / f"{support.A01}.ipynb")
    result = grader.grade([path], support.options())
    assert result.score == result.max_score
    assert sandbox._PRESTARTED == {}
    assert support.wait_until(lambda: not _sandboxes_left(already), 10), _sandboxes_left(already)
    cpu = [line for line in result.notebooks[0].log if line.startswith("[scratch sandbox]")]
    assert len(cpu) == 1 and float(cpu[0].split()[2]) > 0, cpu  # NumPy alone takes CPU to import
    assert cpu[0].endswith(" s waited for it to start")


def test_a_stopped_sandboxs_cpu_time_is_counted():
    before = sandbox.cpu_seconds()
    box = sandbox.start(stubs.layout(), "scratch", MODE, sandbox.Limits())
    _cell(box, "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3:\n    pass")
    sandbox.stop(box)
    assert box.cpu_seconds >= 0.3
    assert sandbox.cpu_seconds() - before == pytest.approx(box.cpu_seconds)


def test_the_worker_runs_from_valid_precompiled_bytecode_and_its_folder_leaves_the_path():
    layout = stubs.layout()
    for source in [*(layout.root / "lib").glob("*.py"), *(layout.root / "stub" / "autograder").glob("*.py")]:
        cached = importlib.util.cache_from_source(str(source))
        header = open(cached, "rb").read(16)
        mtime, size = struct.unpack("<II", header[8:16])
        stat = source.stat()
        assert (mtime, size) == (int(stat.st_mtime) & 0xFFFFFFFF, stat.st_size & 0xFFFFFFFF), source
    box = sandbox.start(layout, "scratch", MODE, sandbox.Limits())
    try:
        out, err = _cell(box, "import sys\nprint(any(p.endswith('/lib') and 'convlab' in p for p in sys.path))")
        assert (out, err) == ("False\n", None)
    finally:
        sandbox.stop(box)


def test_the_ready_made_scipy_functions_are_found_without_importing_scipy_as_with_it():
    for dotted in forbidden.READY_MADE_SCIPY:
        assert stubs._defined_in(dotted) == stubs._defined_in_imported(dotted) is not None


def test_a_refusing_copy_changes_only_the_named_functions(tmp_path):
    real = tmp_path / "mod.py"
    real.write_text(textwrap.dedent('''\
        """A module."""
        import functools


        def keep(x):
            return x + 1


        @functools.lru_cache
        def refuse(x,
                   y=2):
            """Docs."""
            total = x + y
            return total


        class Thing:
            def refuse(self):
                return 1
        '''))
    copy = stubs._refusing_copy(real, {"refuse": "pkg.refuse"})
    namespace: dict = {}
    exec(compile(copy, "mod", "exec"), namespace)
    assert namespace["keep"](1) == 2 and namespace["Thing"]().refuse() == 1
    with pytest.raises(RuntimeError, match="pkg.refuse is ready-made"):
        namespace["refuse"](1)
    kept = [n for n in ast.parse(copy).body if not (isinstance(n, ast.FunctionDef) and n.name == "refuse")]
    original = [n for n in ast.parse(real.read_text()).body
                if not (isinstance(n, ast.FunctionDef) and n.name == "refuse")]
    assert [ast.dump(n) for n in kept] == [ast.dump(n) for n in original]


def test_a_second_sandbox_waits_for_a_spare_core(monkeypatch):
    monkeypatch.setattr(cores, "available", lambda: 2)
    monkeypatch.setitem(cores._GRADERS, "count", 1)
    assert cores.spare()            # `grade` of one notebook on 2 cores
    cores.graders_here(2)
    assert not cores.spare()        # `batch --workers 2` on 2 cores
    monkeypatch.setattr(cores, "available", lambda: 4)
    assert cores.spare()


def test_the_workers_to_plain_keeps_types_and_refuses_objects():
    torch = pytest.importorskip("torch")
    value = worker.to_plain([np.float32(1.5), (np.int64(2), np.bool_(True)), None, "s",
                             torch.ones(2, dtype=torch.float64), np.arange(3)[::2]])
    assert value[0] == 1.5 and type(value[0]) is float
    assert value[1] == (2, True) and type(value[1]) is tuple and type(value[1][1]) is bool
    assert value[2:4] == [None, "s"]
    assert value[4].tolist() == [1.0, 1.0] and value[5].tolist() == [0, 2] and value[5].flags.c_contiguous
    for bad in ({"a": 1}, object(), np.array(["x"])):
        with pytest.raises(TypeError):
            worker.to_plain(bad)


def _run_exit(body: str) -> subprocess.CompletedProcess:
    code = "import atexit, threading\nfrom autograder.fastexit import exit\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=str(support.REPO))


def test_the_cli_exit_runs_exit_handlers_and_flushes_and_waits_for_threads():
    done = _run_exit('''
        atexit.register(lambda: print("handler ran"))
        print("output", end=" ")
        exit(3)
        ''')
    assert (done.returncode, done.stdout) == (3, "output handler ran\n")
    waited = _run_exit('''
        import time
        threading.Thread(target=lambda: (time.sleep(0.5), print("thread finished"))).start()
        exit(0)
        ''')
    assert (waited.returncode, waited.stdout) == (0, "thread finished\n")
    profiled = _run_exit('''
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            exit(5)
        except SystemExit as stop:
            profiler.disable()
            print("the profiler can write its results", stop.code)
        ''')
    assert (profiled.returncode, profiled.stdout) == (0, "the profiler can write its results 5\n")


def test_python_m_autograder_still_writes_its_report(tmp_path):
    path = support.write(support.submission(), tmp_path / support.A01 / f"{support.A01}.ipynb")
    out = tmp_path / "result.json"
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    done = subprocess.run([sys.executable, "-m", "autograder", "grade", "--quiet", "--cases-factor", "1",
                           "--out", str(out), str(path)], capture_output=True, text=True, timeout=300,
                          cwd=str(support.REPO), env={**os.environ, "TMPDIR": str(scratch)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(out.read_text())["score"] == 7.0
    assert list(scratch.iterdir()) == []         # the run's scratch folder (and the sandbox layout) removed

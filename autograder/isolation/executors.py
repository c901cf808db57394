"""Where a batch's submissions are graded: in this process, in a local pool of processes, or on a Dask cluster.

Every executor runs the same task, :func:`grade_task`: one submission (one student's notebooks for one
assignment) travels as plain data (the notebooks' names and bytes), is written to a private temporary folder,
graded there with :func:`autograder.isolation.jobs.grade_job` (the sandbox runs on the machine that grades), and
comes back as a plain JSON-able dict. Only the batch process writes files, so results never depend on a shared
filesystem, and a worker that dies costs only the submissions it was grading (retried by the next run).

Tasks are submitted through a bounded window (a few per worker), so the batch never holds every notebook of a large
class in memory, and an interrupted batch leaves little work in flight.

``SerialExecutor``: one submission after the other in this process (``--workers 1``).
``PoolExecutor``: a local ``ProcessPoolExecutor`` (``fork`` where available). Its processes ignore SIGINT (the
batch handles Ctrl-C and kills them) and die with the batch (``PR_SET_PDEATHSIG``), so ``kill -9`` of the batch
leaves no grader running; their sandboxes die with them (bubblewrap's ``--die-with-parent``), their zygotes with the
batch, which launched them before forking the pool (:mod:`.head_start`).
``DaskExecutor``: a Dask distributed cluster (``--executor dask --scheduler ADDRESS``). Before the first task,
every worker reports its convlab environment (grader code and course hashes, isolation level, devices); a worker
whose checkout differs from this one is refused, and each task checks it again.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import socket
import tempfile
import uuid
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from . import head_start

EXECUTORS = ("local", "dask")


# ------------------------------------------------------------------------------------------ the task

def options_to_plain(options, remote: bool = False) -> dict:
    """The grading options as plain data. ``remote``: the course root travels only when it is not this
    process's default course (a worker grades with its own, ``$CONVLAB_COURSE`` or its nbgrader course directory,
    checked against this one's hashes)."""
    from ..course import find_course

    course = Path(options.course).resolve()
    return {"device": options.device, "case_factor": options.case_factor, "isolation": options.isolation,
            "settings": dataclasses.asdict(options.settings), "shrink_budget": options.shrink_budget,
            "notebook_budget": options.notebook_budget, "partial_credit": list(options.partial_credit),
            "course": None if remote and course == find_course() else str(course)}


def options_from_plain(plain: dict):
    from ..course import course_root
    from ..oracle import resolve_device
    from .grader import Options
    from .remote import Settings
    from .sandbox import Limits

    settings = dict(plain["settings"])
    limits = Limits(**settings.pop("limits"))
    options = Options(device=resolve_device(plain["device"]), case_factor=plain["case_factor"],
                      isolation=plain["isolation"], settings=Settings(**settings, limits=limits),
                      shrink_budget=plain["shrink_budget"], notebook_budget=plain["notebook_budget"],
                      partial_credit=tuple(plain.get("partial_credit", ())),
                      course=course_root(plain.get("course")))
    return options


def worker_environment(options_plain: dict) -> dict:
    """What this grading process would grade with: the hashes every grader of a run must share, plus facts
    for the report (host, isolation level, CUDA)."""
    from .resume import environment
    from .sandbox import isolation_mode

    options = options_from_plain(dict(options_plain, device="cpu"))
    mode, why = isolation_mode(options.isolation)
    try:
        import torch

        cuda = bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001 - only informative
        cuda = False
    return dict(environment(options.course), host=socket.gethostname(), pid=os.getpid(), mode=mode, why=why,
                cuda=cuda)


def grade_task(task: dict, options_plain: dict, seed: int, expect: dict | None = None) -> dict:
    """Grade one submission given as plain data; returns ``{"results", "instructor", "errors", "graded_by"}``,
    plain JSON-able data. Runs in a pool process or on a Dask worker (both with the grader's collector setting)."""
    from ..collector import tune
    from .jobs import Job, grade_job
    from .resume import environment

    tune()
    options = options_from_plain(options_plain)
    if expect:
        mine = environment(options.course)
        if mine != expect:
            differ = ", ".join(k for k in expect if mine.get(k) != expect[k])
            raise RuntimeError(f"the grader on {socket.gethostname()} (pid {os.getpid()}) runs a different convlab "
                               f"checkout than the batch ({differ} differ): install the same commit everywhere")
    tmp = Path(tempfile.mkdtemp(prefix="convlab-task-"))
    try:
        folder = tmp / _safe(task["student"]) / _safe(task["assignment"])
        folder.mkdir(parents=True)
        paths = []
        for nb in task["notebooks"]:
            path = folder / _safe(nb["name"])
            with open(path, "wb") as fh:
                fh.write(nb["data"])
                if nb["size"] > len(nb["data"]):
                    fh.truncate(nb["size"])   # an oversized notebook keeps its size (sparse), not its bytes
            paths.append(path)
        outcome = grade_job(Job(task["student"], task["assignment"], paths), options, seed)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    outcome["graded_by"] = {"host": socket.gethostname(), "pid": os.getpid()}
    return json.loads(json.dumps(outcome))     # plain data, whatever travels back


def _safe(name: str) -> str:
    name = os.path.basename(str(name)) or "_"
    return "_" if name in (".", "..") else name


# ------------------------------------------------------------------------------------------ executors

class SerialExecutor:
    """Grade in this process, one submission after the other."""

    name = "local"

    def __init__(self):
        self.modes: set[str] = set()
        self.note = ""
        self.warnings: list[str] = []

    def start(self, options) -> None:
        from .sandbox import isolation_mode

        mode, why = isolation_mode(options.isolation)
        self.modes, self.note = {mode}, why

    def describe(self) -> str:
        return "1 process"

    def map(self, tasks: Iterable[dict], options_plain: dict, seed: int, expect: dict | None,
            count: int, plan: Sequence[tuple[str, int]] = ()) -> Iterator[tuple[dict, Any]]:
        """``(task, outcome)`` for each task, as they finish. ``plan``: ``(assignment, seed)`` in the order the
        tasks come (a local pool shares one oracle process for them: :mod:`autograder.expected_feed`)."""
        from . import stubs, zygote

        stubs.layout()      # the run's one layout (each grade's own scratch folder would hold a new one, and its
        zygote.enable()     # zygotes); many notebooks in this process: their sandboxes are forked from zygotes
        try:
            for task in tasks:
                try:
                    outcome = grade_task(task, options_plain, seed)
                except Exception as exc:  # noqa: BLE001 - recorded as a grader error for this submission
                    outcome = exc
                yield task, outcome
        finally:
            zygote.enable(False)
            zygote.stop_all()

    def close(self) -> None:
        pass


_PARENT: dict[str, int] = {}


def _pool_init(parent: int, close_fds: tuple[int, ...], graders: int = 1, feed=None) -> None:
    """In each pool process: die with the batch, leave Ctrl-C to it, drop inherited descriptors (the output
    folder's lock must end with the batch, not with its last grader), know how many graders share the machine
    (:mod:`.cores`), take its pipes of the batch's oracle process (``feed``: :mod:`autograder.expected_feed`), and
    fork its notebooks' sandboxes from zygotes (:mod:`.zygote`: the set the batch launched for it, if any)."""
    from .cores import graders_here

    graders_here(graders)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the pool's own broken-pipe detection remains
        pass
    if os.getppid() != parent:
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for fd in close_fds:
        try:
            os.close(fd)
        except OSError:
            pass
    from .. import expected_feed
    from . import zygote

    expected_feed.attach(feed)
    zygote.adopt()      # the zygotes the batch launched for this process (:mod:`.head_start`)
    zygote.enable()     # this process grades many notebooks: their sandboxes are forked from zygotes


def _start_method(device: str) -> str:
    """``fork`` where available (cheap, shares what the batch has prepared: :mod:`.head_start`); ``spawn`` when
    grading on a GPU, since CUDA cannot be used in a process forked from one that has probed it."""
    import multiprocessing

    return "fork" if "fork" in multiprocessing.get_all_start_methods() and device == "cpu" else "spawn"


class PoolExecutor(SerialExecutor):
    """A local pool of grading processes (each keeps the oracle's results for the run's cases)."""

    def __init__(self, workers: int, close_fds: tuple[int, ...] = ()):
        super().__init__()
        self.workers = max(1, workers)
        self.close_fds = close_fds
        self.pool: ProcessPoolExecutor | None = None
        self.feed = None

    def describe(self) -> str:
        return f"{self.workers} local processes"

    def _new_feed(self, plan, options_plain: dict, device: str, count: int):
        """One oracle process for the pool's processes (forked ones, on the CPU, when there are several)."""
        import multiprocessing

        from ..expected_feed import Feed, pays
        from .grader import grading_cases

        graders = min(self.workers, count)
        plan = [(a, s) for a, s in plan if pays(a, device)]
        if not plan or graders < 2 or "fork" not in multiprocessing.get_all_start_methods():
            return None
        return Feed(plan, int(options_plain.get("case_factor", 10)), device, graders, grading_cases,
                    oracles=max(1, graders // 4)).start()

    def _new_pool(self, count: int, device: str) -> ProcessPoolExecutor:
        """``fork`` where available (cheap, shares what this process has loaded); ``spawn`` when grading on a GPU,
        since CUDA cannot be used in a process forked from one that has probed it (``--device cuda`` does)."""
        import multiprocessing

        method = _start_method(device)
        close = self.close_fds if method == "fork" else ()   # spawned processes inherit no descriptor
        feed = self.feed if method == "fork" else None
        return ProcessPoolExecutor(max(1, min(self.workers, count)), mp_context=multiprocessing.get_context(method),
                                   initializer=_pool_init,
                                   initargs=(os.getpid(), close, min(self.workers, count), feed))

    def map(self, tasks, options_plain, seed, expect, count, plan=()):
        tasks = iter(tasks)
        window = 2 * self.workers
        pending: dict = {}
        device = str(options_plain.get("device", "cpu"))
        self.feed = self._new_feed(plan, options_plain, device, count)
        head_start.before_fork(plan, options_plain, min(self.workers, count), _start_method(device) == "fork")
        self.pool = self._new_pool(count, device)
        interrupted = True
        try:
            def fill() -> None:
                while len(pending) < window:
                    task = next(tasks, None)
                    if task is None:
                        return
                    try:
                        future = self.pool.submit(grade_task, task, options_plain, seed)
                    except BrokenProcessPool:     # a grader process died (memory?): start a new pool
                        self.pool.shutdown(wait=False, cancel_futures=True)
                        self.pool = self._new_pool(count, device)
                        future = self.pool.submit(grade_task, task, options_plain, seed)
                    pending[future] = task

            fill()
            if self.feed is not None:
                self.feed.release()           # every pool process has its pipe now
            head_start.after_fork()
            while pending:
                done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
                for future in done:
                    task = pending.pop(future)
                    try:
                        outcome = future.result()
                    except Exception as exc:  # noqa: BLE001 - a pool process died, or grade_task raised
                        outcome = exc
                    yield task, outcome
                fill()
            interrupted = False
        finally:
            self._stop(kill=interrupted)
            head_start.end()

    def _stop(self, kill: bool) -> None:
        feed, self.feed = self.feed, None
        if feed is not None:
            feed.close()
        pool, self.pool = self.pool, None
        if pool is None:
            return
        if kill:  # Ctrl-C, SIGTERM, or the consumer stopped early: the graders and their sandboxes go now
            for proc in list(getattr(pool, "_processes", {}).values()):
                try:
                    proc.kill()
                except Exception:  # noqa: BLE001
                    pass
        pool.shutdown(wait=not kill, cancel_futures=True)

    def close(self) -> None:
        self._stop(kill=True)


class DaskExecutor(SerialExecutor):
    """Submissions as tasks on a Dask distributed cluster; results come back as plain dicts."""

    name = "dask"

    def __init__(self, scheduler, connect_timeout: float = 60.0):
        super().__init__()
        self.scheduler = scheduler
        self.connect_timeout = connect_timeout
        self.client = None
        self.own_client = False
        self.environments: dict[str, dict] = {}

    def start(self, options) -> None:
        try:
            from distributed import Client
        except ImportError:
            raise RuntimeError("--executor dask needs Dask distributed: pip install -e '.[cluster]' "
                               "(or the pins of requirements.txt)") from None
        if self.scheduler is None:
            raise ValueError("--executor dask needs --scheduler ADDRESS (e.g. tcp://10.0.0.5:8786)")
        if isinstance(self.scheduler, Client):
            self.client = self.scheduler
        else:
            try:
                self.client = Client(self.scheduler, timeout=self.connect_timeout, set_as_default=False)
            except OSError as exc:
                raise RuntimeError(f"cannot reach the Dask scheduler at {self.scheduler}: {exc}") from None
            self.own_client = True
        try:
            self.client.wait_for_workers(1, timeout=self.connect_timeout)
        except Exception:  # noqa: BLE001 - distributed raises its own TimeoutError
            raise RuntimeError(f"the Dask scheduler at {self.scheduler} has no worker "
                               f"(waited {self.connect_timeout:g} s)") from None
        plain = options_to_plain(options, remote=True)
        self.environments = self.client.run(worker_environment, plain)
        self.expect = self.expected(options)
        wrong = {w: env for w, env in self.environments.items()
                 if {k: env.get(k) for k in self.expect} != self.expect}
        if wrong:
            raise RuntimeError("these Dask workers run a different convlab checkout than this one (grader code or "
                               "course sources differ): " + ", ".join(sorted(wrong)) +
                               "; install the same commit on every worker (docs/SCALING.md)")
        if options.device == "cuda":
            no_gpu = sorted(w for w, env in self.environments.items() if not env.get("cuda"))
            if no_gpu:
                raise RuntimeError(f"--device cuda, but these Dask workers see no CUDA GPU: {', '.join(no_gpu)}")
        threads = {w: n for w, n in self.client.nthreads().items() if n > 1}
        if threads:
            self.warnings.append(f"{len(threads)} Dask worker(s) run several threads (e.g. {next(iter(threads))}: "
                                 f"{next(iter(threads.values()))}); start workers with --nthreads 1 (one grader per "
                                 f"process, as tested) and more of them: dask worker ADDRESS --nworkers N --nthreads 1")
        self.modes = {env["mode"] for env in self.environments.values()}
        self.note = "; ".join(sorted({env["why"] for env in self.environments.values() if env["mode"] != "bwrap"}))

    @staticmethod
    def expected(options) -> dict:
        from .resume import environment

        return environment(options.course)

    def describe(self) -> str:
        threads = sum(self.client.nthreads().values()) if self.client else 0
        return f"Dask at {self.client.scheduler.address if self.client else self.scheduler}: " \
               f"{len(self.environments)} workers, {threads} threads"

    def map(self, tasks, options_plain, seed, expect, count, plan=()):
        from distributed import as_completed

        client = self.client
        assert client is not None
        window = max(4, 2 * sum(client.nthreads().values()))
        tasks = iter(tasks)
        pending: dict = {}
        queue = as_completed(loop=client.loop)

        def fill() -> None:
            while len(pending) < window:
                task = next(tasks, None)
                if task is None:
                    return
                key = f"convlab-grade-{task['student']}-{task['assignment']}-{uuid.uuid4().hex[:8]}"
                future = client.submit(grade_task, task, options_plain, seed, expect, key=key, pure=False,
                                       retries=1)
                pending[future.key] = (future, task)
                queue.add(future)

        try:
            fill()
            for future in queue:
                _, task = pending.pop(future.key)
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - the task failed on its worker, or the worker died
                    outcome = exc
                future.release()
                yield task, outcome
                fill()
        finally:
            if pending:   # interrupted: what has not finished is cancelled on the cluster
                try:
                    client.cancel([f for f, _ in pending.values()])
                except Exception:  # noqa: BLE001
                    pass
            queue.clear()

    def close(self) -> None:
        if self.client is not None and self.own_client:
            try:
                self.client.close()
            except Exception:  # noqa: BLE001
                pass
        self.client = None


def make_executor(kind: str, workers: int, scheduler=None, close_fds: tuple[int, ...] = ()) -> SerialExecutor:
    if kind == "dask":
        return DaskExecutor(scheduler)
    if kind != "local":
        raise ValueError(f"unknown executor {kind!r}; choose from {', '.join(EXECUTORS)}")
    if scheduler is not None:
        raise ValueError("--scheduler only makes sense with --executor dask")
    return SerialExecutor() if workers <= 1 else PoolExecutor(workers, close_fds)

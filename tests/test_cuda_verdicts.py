"""``--device cuda`` gives the same verdicts as the CPU: every correct alternative and every buggy answer of the
exercise tests (``tests/test_a0*.py``), graded on both devices with the same seed, passes and fails the same cases
and earns the same score; and the isolated grader gives full marks to the solution notebooks on the GPU.

Without a CUDA GPU the whole module is skipped, with one reason.
"""
from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU on this machine (CPU/CUDA verdict comparison and `grade --device cuda` need one)",
                allow_module_level=True)

from autograder import registry  # noqa: E402
from autograder.answers import local_answer  # noqa: E402
from autograder.cases import hidden_cases, visible_cases  # noqa: E402
from autograder.engine import grade_correctness  # noqa: E402
from autograder.forbidden import scan_function  # noqa: E402
from autograder.oracle import exact_numerics  # noqa: E402
from tests.harness import SEED, grade  # noqa: E402

pytestmark = [pytest.mark.cuda]

ROOT = Path(__file__).resolve().parents[1]
#: the exercise test modules; their answer lists are today CORRECT/BUGGY (01-05) and PASSES/FAILS (06), and any
#: module-level list of ``(exercise, answer, ...)`` tuples is taken, whatever its name
MODULES = [f"tests.{p.stem}" for p in sorted((ROOT / "tests").glob("test_a0*.py"))]
#: parts graded by wall-clock time on the CPU whatever the device (their verdict is timing, not numerics)
TIMED = (": speed",)


def _is_answer_list(value, exercises: set) -> bool:
    return (isinstance(value, list) and value and
            all(isinstance(e, tuple) and len(e) >= 2 and e[0] in exercises and callable(e[1]) for e in value))


def _answers() -> list:
    exercises = {ex.name for ex in registry.all_exercises()}
    found = []
    for module_name in MODULES:
        module = importlib.import_module(module_name)
        lists = {k: v for k, v in vars(module).items() if k.isupper() and _is_answer_list(v, exercises)}
        assert len(lists) >= 2, f"{module_name}: expected lists of correct and buggy answers, found {sorted(lists)}"
        for list_name, entries in lists.items():
            for i, entry in enumerate(entries):
                name, fn = entry[0], entry[1]
                label = f"{module_name[11:14]}-{list_name.lower()}-{name}-{getattr(fn, '__name__', i)}-{i}"
                found.append(pytest.param(name, fn, id=label))
    return found


ANSWERS = _answers()


def _per_case(name: str, fn, device: str) -> list[bool] | None:
    """Pass/fail of every case (visible + the harness's hidden set), one case at a time; None when the answer
    uses a forbidden API (then no case runs, on either device)."""
    ex = registry.get(name)
    if scan_function(fn, ex.forbidden_names):
        return None
    cases = visible_cases(ex) + hidden_cases(ex, SEED)
    answer = local_answer(fn, ex.encode, device)
    return [grade_correctness(ex, answer, [case], device, shrink_budget=0).passed == 1 for case in cases]


def _scores(result) -> dict[str, float]:
    return {p.name: p.score for p in result.parts if not p.name.endswith(TIMED)}


@pytest.mark.parametrize("name, fn", ANSWERS)
def test_cuda_and_cpu_give_the_same_verdict_on_every_case(name, fn):
    torch.manual_seed(0)
    cpu_cases = _per_case(name, fn, "cpu")
    torch.manual_seed(0)
    gpu_cases = _per_case(name, fn, "cuda")
    if cpu_cases is not None:
        differ = [i for i, (a, b) in enumerate(zip(cpu_cases, gpu_cases)) if a != b]
        assert cpu_cases == gpu_cases, \
            f"{name}/{fn.__name__}: cases {differ} differ (cpu {cpu_cases}, cuda {gpu_cases})"
    torch.manual_seed(0)
    on_cpu = grade(name, fn, "cpu")
    torch.manual_seed(0)
    on_gpu = grade(name, fn, "cuda")
    assert _scores(on_cpu) == _scores(on_gpu), f"cpu:\n{on_cpu.text}\n\ncuda:\n{on_gpu.text}"
    assert [(p.passed, p.total) for p in on_cpu.parts if not p.name.endswith(TIMED)] == \
           [(p.passed, p.total) for p in on_gpu.parts if not p.name.endswith(TIMED)]


def test_every_exercise_is_covered():
    covered = {p.values[0] for p in ANSWERS}
    assert covered == {ex.name for ex in registry.all_exercises()}


def test_float32_convolutions_are_exact_inside_the_grader():
    """TF32 would cost ~3e-4 of max|y| in a float32 CUDA convolution; inside the grader it must be off."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 16, 32, 32, generator=g)
    w = torch.randn(32, 16, 3, 3, generator=g)
    ref = torch.nn.functional.conv2d(x.double(), w.double())
    with exact_numerics():
        got = torch.nn.functional.conv2d(x.cuda(), w.cuda()).cpu().double()
    err = ((got - ref).abs().max() / ref.abs().max()).item()
    assert err < 1e-5, f"relative error {err:.2e}: TF32 is on"


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    return subprocess.run([sys.executable, "-m", "autograder", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=600)


@pytest.mark.slow
def test_isolated_grader_on_cuda_gives_the_solutions_full_marks(tmp_path):
    notebooks = sorted((ROOT / "solutions").glob("*/*.ipynb"))
    notebooks = [p for p in notebooks if p.parent.name == p.stem and ".ipynb_checkpoints" not in p.parts]
    assert notebooks, "no solution notebooks"
    for nb in notebooks:
        out = tmp_path / f"{nb.stem}.json"
        proc = _cli("grade", str(nb), "--out", str(out), "--device", "cuda", "--cases-factor", "1", "--quiet")
        assert proc.returncode == 0, proc.stderr
        result = json.loads(out.read_text())
        lost = [(t["name"], t["score"], t["max_score"]) for t in result["tests"] if t["score"] < t["max_score"]
                and not t["name"].endswith(TIMED)]
        assert not lost, f"{nb.name} on cuda lost points: {lost}\n{result['output']}"
        assert result["tests"], nb.name

"""Feedback points at the real cause: the helper that failed, the list that is not a tuple, one forbidden-API
message, a short line for an endless loop, the assignment's own notation, inputs changed in place, and the
mistakes named since issue 15 (interleaved groups, @ for *, an integer output array)."""
from __future__ import annotations

import linecache
import textwrap
import time

import numpy as np

from autograder.attribution import helpers_called, helpers_in_source
from autograder.check import check
from autograder.compare import compare, to_plain
from tests.harness import SEED

CORRECT_CORR2D = """
def corr2d(x, k):
    windows = np.lib.stride_tricks.sliding_window_view(x, k.shape)
    return np.einsum("ijab,ab->ij", windows, k)
"""
SOBEL = """
SOBEL_X = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
SOBEL_Y = SOBEL_X.T

def sobel_magnitude(img):
    gx = corr2d(img, SOBEL_X)
    gy = corr2d(img, SOBEL_Y)
    return np.sqrt(gx**2 + gy**2)
"""


def notebook(*cells: str) -> dict:
    """Cells exec'd in one namespace as a kernel would (each cell's source registered like IPython's)."""
    namespace: dict = {"__name__": "__main__"}
    exec("import numpy as np", namespace)  # noqa: S102
    for i, source in enumerate(cells):
        source = textwrap.dedent(source)
        filename = f"<cell {i}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), namespace)  # noqa: S102
    return namespace


def run(name: str, fn, **kw):
    return check(name, fn, hidden=True, device="cpu", seed=SEED, show=False, **kw)


def test_a_correct_sobel_calling_an_unfinished_corr2d_blames_corr2d():
    ns = notebook("def corr2d(x, k):\n    raise NotImplementedError()\n", SOBEL)
    text = run("sobel_magnitude", ns["sobel_magnitude"]).text
    assert "`corr2d` is not implemented yet" in text and "sobel_magnitude calls it" in text, text
    assert "sobel_magnitude: not implemented" not in text


def test_an_off_by_one_corr2d_is_blamed_not_the_sobel_exercise():
    off_by_one = """
    def corr2d(x, k):
        h, w = x.shape[0] - k.shape[0], x.shape[1] - k.shape[1]
        return np.array([[np.sum(x[i:i + k.shape[0], j:j + k.shape[1]] * k) for j in range(w)] for i in range(h)])
    """
    result = run("sobel_magnitude", notebook(off_by_one, SOBEL)["sobel_magnitude"])
    assert result.score == 0
    assert "Real cause: sobel_magnitude calls your `corr2d`, which fails its own check" in result.text
    assert result.text.index("Real cause") < result.text.index("First failing case"), result.text


def test_a_correct_helper_is_not_blamed_for_a_wrong_sobel():
    wrong = SOBEL.replace("np.sqrt(gx**2 + gy**2)", "gx**2 + gy**2")
    text = run("sobel_magnitude", notebook(CORRECT_CORR2D, wrong)["sobel_magnitude"]).text
    assert "Real cause" not in text and "no square root" in text


def test_an_error_raised_in_a_helper_names_the_helper():
    ns = notebook("def corr2d(x, k):\n    return x[100]\n", SOBEL)
    text = run("sobel_magnitude", ns["sobel_magnitude"]).text
    assert "in corr2d: return x[100]" in text, text


def test_helpers_are_found_in_functions_and_in_source():
    ns = notebook(CORRECT_CORR2D, "def convolve2d(x, k):\n    return corr2d(x, k[::-1, ::-1])\n",
                  "def outer(img):\n    return convolve2d(img, np.ones((1, 1)))\n")
    assert list(helpers_called(ns["outer"], ["corr2d", "convolve2d", "sobel_magnitude"])) == \
        ["convolve2d", "corr2d"]
    assert helpers_in_source(SOBEL, ["corr2d", "convolve2d"]) == ["corr2d"]


def test_a_list_is_called_a_list_not_a_tuple():
    ns = notebook(CORRECT_CORR2D.replace('return np.einsum("ijab,ab->ij", windows, k)',
                                         'return np.einsum("ijab,ab->ij", windows, k).tolist()'))
    text = run("corr2d", ns["corr2d"]).text
    assert "got list of" in text and "tuple" not in text, text
    # scored exactly like the isolated grader's tuple: a list of numbers where a tuple is expected passes
    assert compare((1, 2), to_plain([1, 2]))


def test_the_forbidden_api_message_appears_once_per_exercise():
    ns = notebook("""
    import torch
    def conv2d_im2col(x, w, b):
        return torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)).numpy()
    """)
    text = run("conv2d_im2col", ns["conv2d_im2col"]).text
    assert text.count("must be written from scratch") == 1, text
    assert "speed: not graded" in text


def test_a_hanging_answer_stops_with_one_short_message():
    ns = notebook("def corr2d(x, k):\n    while True:\n        pass\n")
    start = time.perf_counter()
    result = run("corr2d", ns["corr2d"], call_seconds=0.5)
    assert time.perf_counter() - start < 10          # one time limit, not one per case (there are 32)
    assert result.score == 0 and "stopped after 0.5 s" in result.text
    assert len(result.text.splitlines()) <= 3 and "Traceback" not in result.text, result.text


def test_an_answer_that_catches_everything_still_stops():
    ns = notebook("""
    def corr2d(x, k):
        while True:
            try:
                while True:
                    pass
            except Exception:
                pass
    """)
    result = run("corr2d", ns["corr2d"], call_seconds=0.3)
    assert "stopped after 0.3 s" in result.text


def test_hints_use_the_notation_of_assignment_01():
    ns = notebook("""
    def corr2d(x, k):
        h, w = x.shape[0] - k.shape[0] + 2, x.shape[1] - k.shape[1] + 2
        out = np.zeros((h, w))
        xp = np.pad(x, 1)
        for i in range(h):
            for j in range(w):
                out[i, j] = np.sum(xp[i:i + k.shape[0], j:j + k.shape[1]] * k)
        return out
    """, """
    def convolve2d(x, k):
        return corr2d(x, k[::-1, ::-1])[:-1, :-1]
    """)
    for name in ("corr2d", "convolve2d"):
        text = run(name, ns[name]).text
        assert "dilation" not in text and "2p" not in text and "d(k-1)" not in text, text


def test_inputs_changed_in_place_are_pointed_out():
    ns = notebook(CORRECT_CORR2D.replace("    windows =", "    x -= x.mean()\n    windows ="))
    text = run("corr2d", ns["corr2d"]).text
    assert "changes its input x in place" in text, text


def test_an_integer_output_array_is_named():
    ns = notebook("""
    def corr2d(x, k):
        out = np.zeros((x.shape[0] - k.shape[0] + 1, x.shape[1] - k.shape[1] + 1), dtype=int)
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                out[i, j] = np.sum(x[i:i + k.shape[0], j:j + k.shape[1]] * k)
        return out
    """)
    assert "integer output array" in run("corr2d", ns["corr2d"]).text


def test_matmul_where_elementwise_was_meant_is_named():
    ns = notebook("""
    def corr2d(x, k):
        kh, kw = k.shape
        return np.array([[np.sum(x[i:i + kh, j:j + kw] @ k) for j in range(x.shape[1] - kw + 1)]
                         for i in range(x.shape[0] - kh + 1)])
    """)
    assert "@ where * was meant" in run("corr2d", ns["corr2d"]).text


def test_interleaved_groups_are_named():
    ns = notebook("""
    def conv2d_grouped(x, w, b, groups):
        n, c_in, h, wd = x.shape
        c_out, cg, kh, kw = w.shape
        out = np.zeros((n, c_out, h - kh + 1, wd - kw + 1))
        for o in range(c_out):
            xs = x[:, o % groups::groups]
            win = np.lib.stride_tricks.sliding_window_view(xs, (kh, kw), axis=(2, 3))
            out[:, o] = np.einsum("ncijab,cab->nij", win, w[o]) + (0 if b is None else b[o])
        return out
    """)
    assert "interleaved groups" in run("conv2d_grouped", ns["conv2d_grouped"]).text


def test_the_isolated_report_blames_a_failing_helper_too():
    from autograder.attribution import attribute_report
    from autograder.engine import ExerciseResult, PartResult

    results = {"corr2d": ExerciseResult("corr2d", [PartResult("corr2d", 0, 3, "\u2718 corr2d: 0/13 cases", 0, 13)]),
               "sobel_magnitude": ExerciseResult("sobel_magnitude", [
                   PartResult("sobel_magnitude", 0, 2, "\u2718 sobel_magnitude: 0/3 cases\n  First failing case", 0, 3)])}
    attribute_report(results, {"sobel_magnitude": SOBEL, "corr2d": CORRECT_CORR2D})
    text = results["sobel_magnitude"].text
    assert "Real cause: sobel_magnitude calls your `corr2d`" in text and results["sobel_magnitude"].score == 0
    assert "Real cause" not in results["corr2d"].text


def test_a_list_stays_a_list_across_the_sandbox_boundary(monkeypatch):
    """The isolated path: the worker keeps a list a list, the protocol carries it, the grader calls it a list."""
    from autograder.compare import describe_value
    from autograder.isolation import protocol, worker

    monkeypatch.setattr(worker, "protocol", protocol)      # what the worker imports when it starts in the sandbox
    blobs: list = []
    tree = protocol.to_tree(worker.to_plain([np.zeros(2), 1.5]), blobs)
    value = to_plain(protocol.from_tree(tree, blobs))
    assert describe_value(value) == "list of 2" and compare((np.zeros(2), 1.5), value)

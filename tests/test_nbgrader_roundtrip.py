"""A real nbgrader round trip in a temporary course: release, submit, autograde, export.

A correct submission gets full marks (no stderr-induced zeros); a buggy one gets exactly the partial score its
bugs deserve, cell by cell.
"""
from __future__ import annotations

import csv

import pytest

from tests.coursecopy import fill_answers, make_course, nbgrader, solution_answers

pytestmark = pytest.mark.slow
AID = "01-single-channel"

BUGGY = {
    # off-by-one output size: fails every case
    "corr2d": '''import numpy as np
def corr2d(x, k):
    H, W = x.shape
    kH, kW = k.shape
    out = np.zeros((H - kH, W - kW))
    for i in range(H - kH):
        for j in range(W - kW):
            out[i, j] = np.sum(x[i:i + kH, j:j + kW] * k)
    return out
''',
    # correct, independent of the buggy corr2d above; it warns, which must not zero the cell (nbgrader zeroes
    # any cell that writes to stderr, and the check captures the answer's warnings)
    "convolve2d": '''import numpy as np
import warnings
from numpy.lib.stride_tricks import sliding_window_view
def convolve2d(x, k):
    warnings.warn("einsum path not optimised")
    return np.einsum("ijab,ab->ij", sliding_window_view(x, k.shape), k[::-1, ::-1])
''',
    # L1 magnitude: fails every random case
    "sobel_magnitude": '''import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
def sobel_magnitude(img):
    kx = np.array([[-1., 0., 1.], [-2., 0., 2.], [-1., 0., 1.]])
    win = sliding_window_view(img, (3, 3))
    gx = np.einsum("ijab,ab->ij", win, kx)
    gy = np.einsum("ijab,ab->ij", win, kx.T)
    return np.abs(gx) + np.abs(gy)
''',
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course = make_course(tmp_path_factory.mktemp("course"), [AID])
    nbgrader(course, "generate_assignment", AID, "--force")
    release = course / "assignments" / AID / f"{AID}.ipynb"
    fill_answers(release, solution_answers(AID), course / "submitted" / "alice" / AID / f"{AID}.ipynb")
    fill_answers(release, BUGGY, course / "submitted" / "bob" / AID / f"{AID}.ipynb")
    nbgrader(course, "autograde", AID, "--force")
    nbgrader(course, "export")
    with open(course / "grades.csv") as fh:
        rows = {r["student_id"]: r for r in csv.DictReader(fh)}
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        cells = {(s, g): gb.find_grade(f"test_{g}", AID, AID, s).score
                 for s in ("alice", "bob") for g in ("corr2d", "convolve2d", "sobel_magnitude")}
    return rows, cells


def test_correct_submission_gets_full_marks(graded):
    rows, cells = graded
    assert float(rows["alice"]["score"]) == float(rows["alice"]["max_score"]) == 7.0
    assert cells[("alice", "corr2d")] == 3 and cells[("alice", "sobel_magnitude")] == 2


def test_buggy_submission_gets_the_expected_partial_score(graded):
    rows, cells = graded
    assert cells[("bob", "corr2d")] == 0
    assert cells[("bob", "convolve2d")] == 2
    assert cells[("bob", "sobel_magnitude")] == 0
    assert float(rows["bob"]["score"]) == 2.0

"""What runs when a submission is graded: instructor cells from the pristine source, the student's answers and
added cells, never test or demo cells; malformed notebooks give clear messages (no sandbox needed here)."""
from __future__ import annotations

import copy
import json

import pytest

from autograder.isolation import submission
from autograder.isolation.submission import NotebookError, build_program, recognise

from redteam import support

pytestmark = pytest.mark.skipif(not support.SOURCE_01.is_file(), reason="assignment 01 is not written yet")
NAMES = list(support.EXERCISES_01)


@pytest.fixture(scope="module")
def source():
    return json.loads(support.SOURCE_01.read_text())


@pytest.fixture(scope="module")
def base():
    return support.submission()


def _cell(nb, gid):
    return next(c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == gid)


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def test_instructor_cells_come_from_the_source(source, base):
    nb = copy.deepcopy(base)
    _cell(nb, "setup")["source"] = ["import numpy as np\nnp.allclose = lambda *a, **k: True\n"]
    program = build_program(nb, source, support.A01, NAMES)
    setup = next(c for c in program.cells if c.name == "setup")
    assert setup.trusted and "allclose" not in setup.source
    assert "\nNone\nimport numpy" in setup.source  # after the canonical header: %matplotlib inline, removed
    assert "from autograder import check" in setup.source


def test_test_and_demo_cells_never_run(source, base):
    nb = copy.deepcopy(base)
    _cell(nb, "test_corr2d")["source"] = ["result = 3.0\nfloat(result)\n"]
    program = build_program(nb, source, support.A01, NAMES)
    names = [c.name for c in program.cells]
    assert not any(n.startswith("test_") or n.startswith("demo") for n in names)
    assert not any("check(" in c.source for c in program.cells)
    assert [n for n in names if n in NAMES] == NAMES
    for name in NAMES:
        assert program.answers[name].source == support.CORRECT[name].rstrip("\n") or \
            program.answers[name].source == support.CORRECT[name]


def test_cell_kinds_come_from_the_source_not_the_submission(source, base):
    nb = copy.deepcopy(base)
    answer = _cell(nb, "corr2d")
    answer["metadata"]["tags"] = ["demo", "skip-execution"]
    answer["metadata"]["nbgrader"].update(solution=False, grade=True, locked=True)
    program = build_program(nb, source, support.A01, NAMES)
    assert "corr2d" in program.answers and not program.answers["corr2d"].trusted


def test_added_cells_run_after_their_anchor(source):
    nb = support.submission(added=[("setup", "HELPER = 1\n"), ("corr2d", "AFTER_CORR = 2\n")])
    program = build_program(nb, source, support.A01, NAMES)
    names = [c.name for c in program.cells]
    first, second = names.index("added cell 1"), names.index("added cell 2")
    assert names.index("setup") < first < names.index("corr2d") < second < names.index("convolve2d")
    assert all(not c.trusted for c in program.cells if c.kind == "added")


def test_duplicated_and_stripped_answer_cells(source, base):
    nb = copy.deepcopy(base)
    twin = copy.deepcopy(_cell(nb, "convolve2d"))
    nb["cells"].append(twin)
    stripped = _cell(nb, "sobel_magnitude")
    stripped["metadata"] = {}
    program = build_program(nb, source, support.A01, NAMES)
    assert any("appears 2 times" in n for n in program.notes)
    assert any("sobel_magnitude is missing" in n for n in program.notes)
    assert "sobel_magnitude" not in program.answers
    assert any(c.kind == "added" and "def sobel_magnitude" in c.source for c in program.cells)
    reached = submission.cells_reached(program, "sobel_magnitude")
    assert reached and "def sobel_magnitude" in reached[0].source


def test_deleted_answer_and_malformed_cells(source, base):
    nb = copy.deepcopy(base)
    nb["cells"] = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") != "corr2d"]
    nb["cells"] += ["not a cell", {"cell_type": "code", "source": 12, "metadata": {}}]
    program = build_program(nb, source, support.A01, NAMES)
    assert "corr2d" not in program.answers
    assert any("corr2d is missing" in n for n in program.notes)
    assert any("malformed" in n for n in program.notes)


def test_magics_are_removed_as_ipython_parses_them():
    assert submission.strip_magics("%timeit f()\nx = 1\nif x:\n    !pip install torch")[0] == \
        "None\nx = 1\nif x:\n    None"
    assert submission.strip_magics("files = !ls\n%load_ext foo \\\n  bar\ny = 2")[0] == "files = None\nNone\ny = 2"
    continued = "def f(a, b):\n    return (a\n% b)\n"          # a continuation line, not a magic
    assert submission.strip_magics(continued) == (continued, False)
    assert submission.strip_magics("y = 5 % 3\n") == ("y = 5 % 3\n", False)
    in_a_string = "s = '''\n%not a magic\n!nor this\n'''\n"
    assert submission.strip_magics(in_a_string) == (in_a_string, False)
    assert submission.strip_magics("%%bash\nrm -rf /\n")[0] is None
    assert submission.strip_magics("%%time\ny = 2\n")[0] == "y = 2\n"


def test_reading_malformed_files(tmp_path):
    bad = tmp_path / "a.ipynb"
    for content, message in [(b"{not json", "invalid JSON"), (b"\xff\xfe\x00", "not UTF-8"),
                             (b"[1, 2]", "no list of cells"), (b'{"worksheets": []}', "nbformat 3")]:
        bad.write_bytes(content)
        with pytest.raises(NotebookError, match=message):
            submission.read_notebook(bad)
    with pytest.raises(NotebookError, match="cannot be read"):
        submission.read_notebook(tmp_path / "missing.ipynb")


def test_foreign_kernel(base):
    nb = copy.deepcopy(base)
    nb["metadata"]["kernelspec"] = {"name": "ir", "display_name": "R", "language": "R"}
    nb["metadata"]["language_info"] = {"name": "R"}
    assert "R kernel" in submission.kernel_problem(nb)
    assert submission.kernel_problem(base) is None


def test_recognising_the_assignment(tmp_path, source, base):
    exercises = {support.A01: NAMES, "02-channels-batch": ["conv2d_multi"]}
    sources = {support.A01: source}
    assert recognise(None, tmp_path / f"{support.A01}.ipynb", sources, exercises) == support.A01
    assert recognise(None, tmp_path / support.A01 / "homework.ipynb", sources, exercises) == support.A01
    assert recognise(base, tmp_path / "my work (copy).ipynb", sources, exercises) == support.A01
    assert recognise({"cells": []}, tmp_path / "empty.ipynb", sources, exercises) is None


def test_helpers_reached_by_an_answer(source):
    helper = "from scipy.signal import correlate2d as _c\n\ndef _helper(x, k):\n    return _c(x, k, 'valid')\n"
    nb = support.submission({"corr2d": "def corr2d(x, k):\n    return _helper(x, k)\n"},
                            added=[("setup", helper), ("setup", "import torch as unused\n")])
    program = build_program(nb, source, support.A01, NAMES)
    reached = submission.cells_reached(program, "corr2d")
    assert any("_helper" in c.source and c.kind == "added" for c in reached)
    assert not any("unused" in c.source for c in reached)
    assert not any(c.kind == "added" for c in submission.cells_reached(program, "convolve2d"))

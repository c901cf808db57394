"""Regenerate ``examples/submitted/<student>/<assignment>/<assignment>.ipynb`` from the student release.

    python examples/make_examples.py            # rewrite the example submissions
    python examples/make_examples.py --check    # exit 1 if they are out of date (tests/test_isolation_examples.py)

Each example is the release notebook ``assignments/<id>/<id>.ipynb`` (what students receive) with its answer cells
filled in as ``examples/students.py`` says: the reference solution (the ``### BEGIN SOLUTION`` regions of
``solutions/<id>/<id>.ipynb`` put in place of the release's stubs), or a student's own cell source; cells a student
added are inserted after the named cell. Where no release exists yet, the release is derived from the source the
way nbgrader does it (solution regions replaced by the stub, hidden tests removed).
"""
from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STUB = "# YOUR CODE HERE\nraise NotImplementedError()"
_SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION[^\n]*(\n|$)", re.M | re.S)
_STUB = re.compile(r"^([ \t]*)# YOUR CODE HERE\n[ \t]*raise NotImplementedError\(\)[^\n]*", re.M)
_HIDDEN = re.compile(r"^[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS[^\n]*\n?", re.M | re.S)


def _students() -> dict:
    spec = importlib.util.spec_from_file_location("convlab_example_students", HERE / "students.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.STUDENTS


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _set_source(cell: dict, text: str) -> None:
    cell["source"] = text.splitlines(keepends=True)


def _gid(cell: dict) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def assignment_ids() -> list[str]:
    return sorted(p.name for p in (ROOT / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file())


def release(aid: str) -> dict:
    """The student release of ``aid`` (committed by ``make release``), or one derived from the source."""
    path = ROOT / "assignments" / aid / f"{aid}.ipynb"
    if path.is_file():
        return json.loads(path.read_text())
    nb = json.loads((ROOT / "solutions" / aid / f"{aid}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell.get("cell_type") != "code":
            continue
        text = _source(cell)
        text = _SOLUTION.sub(lambda m: "\n".join(m.group(1) + line for line in STUB.split("\n")) + m.group(3), text)
        _set_source(cell, _HIDDEN.sub("", text))
        cell["outputs"], cell["execution_count"] = [], None
    return nb


def solution_cells(aid: str) -> dict[str, list[str]]:
    """grade_id -> the solution regions of that answer cell in the source, in order."""
    nb = json.loads((ROOT / "solutions" / aid / f"{aid}.ipynb").read_text())
    out = {}
    for cell in nb["cells"]:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.get("cell_type") == "code" and meta.get("solution"):
            out[meta["grade_id"]] = [m.group(2) for m in _SOLUTION.finditer(_source(cell))]
    return out


def fill_with_solution(text: str, regions: list[str]) -> str:
    parts = iter(regions)
    return _STUB.sub(lambda m: next(parts, m.group(0)).rstrip("\n"), text)


def _code_cell(source: str) -> dict:
    cell = {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": []}
    _set_source(cell, source)
    return cell


def build(student: str, aid: str, answers) -> dict:
    nb = copy.deepcopy(release(aid))
    solutions = solution_cells(aid)
    added = answers.get("added", []) if isinstance(answers, dict) else []
    cells = []
    for n, cell in enumerate(nb["cells"]):
        gid = _gid(cell)
        if cell.get("cell_type") == "code" and gid in solutions:
            if answers == "solution":
                _set_source(cell, fill_with_solution(_source(cell), solutions[gid]))
            elif gid in answers:
                _set_source(cell, answers[gid])
        cells.append(cell)
        for i, (after, source) in enumerate(added):
            if after == gid:
                new = _code_cell(source)
                new["id"] = f"{student}-added-{i}"
                cells.append(new)
    nb["cells"] = cells
    return nb


def examples() -> dict[Path, str]:
    """Relative path -> notebook text, for every example submission."""
    out = {}
    available = assignment_ids()
    for student, plan in _students().items():
        per_assignment = {aid: "solution" for aid in available} if plan == "solution" else plan
        for aid, answers in per_assignment.items():
            if aid not in available:
                continue
            nb = build(student, aid, answers)
            out[Path(student) / aid / f"{aid}.ipynb"] = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the examples are up to date")
    parser.add_argument("--out", type=Path, default=HERE / "submitted")
    args = parser.parse_args(argv)
    wanted = examples()
    present = {p.relative_to(args.out) for p in args.out.rglob("*.ipynb")} if args.out.is_dir() else set()
    stale = sorted(str(p) for p, text in wanted.items()
                   if not (args.out / p).is_file() or (args.out / p).read_text() != text)
    extra = sorted(str(p) for p in present - set(wanted))
    if args.check:
        if stale or extra:
            print("examples out of date (run: python examples/make_examples.py): " + ", ".join(stale + extra))
            return 1
        return 0
    for rel, text in wanted.items():
        path = args.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel in extra:
        (args.out / rel).unlink()
    print(f"wrote {len(wanted)} example notebook(s) under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

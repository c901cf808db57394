"""Similar answers across students, listed for an instructor to review (never a verdict, never points).

Each student's answer cell of an exercise (from the submitted notebook, paired with the source by grade_id as the
grader does: :func:`autograder.isolation.submission.build_program`) is normalised (parsed, docstrings dropped,
re-printed by :func:`ast.unparse`, so comments, blank lines and formatting vanish) and fingerprinted by copydetect
(pygments tokens with every name replaced by one symbol, winnowed k-grams). The fingerprints of the reference
solution's cell and of the release's given cell (signature, docstring, stub) are boilerplate: removed from every
student's fingerprints, so neither answering like the reference nor keeping the given code makes two students
similar. A pair is listed when both answers keep at least ``min_tokens`` fingerprinted characters and each
covers at least ``threshold`` of the other; clusters are the connected groups of listed pairs.
"""
from __future__ import annotations

import ast
import io
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from ..isolation import submission
from .load import ClassRun, Submission

THRESHOLD = 0.8
MIN_TOKENS = 40
NOISE = 25          # copydetect's defaults: k-grams of 25 characters of filtered code,
WINDOW = 6          # winnowing window 30 - 25 + 1 (every match of 30 characters is found)


@dataclass
class Course:
    """Where the pristine notebooks are: ``solutions/<id>/<id>.ipynb`` and ``assignments/<id>/<id>.ipynb``."""

    root: Path

    def notebook(self, folder: str, assignment: str) -> dict | None:
        try:
            return submission.read_notebook(self.root / folder / assignment / f"{assignment}.ipynb")
        except submission.NotebookError:
            return None


def normalise(source: str) -> str:
    """The code without comments, docstrings or formatting choices (the source itself if it does not parse)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return source
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) and \
                isinstance(getattr(body[0], "value", None), ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return ast.unparse(tree)


def fingerprint(source: str, boilerplate: frozenset = frozenset()):
    """copydetect's fingerprint of the normalised ``source`` without the ``boilerplate`` hashes (removed here:
    copydetect's own removal assumes unique hashes, which winnowed documents do not have)."""
    from copydetect import CodeFingerprint
    from copydetect.utils import get_token_coverage

    fp = CodeFingerprint("answer.py", NOISE, WINDOW, language="python", fp=io.StringIO(normalise(source)))
    if boilerplate:
        fp.hashes = {h for h in fp.hashes if h not in boilerplate}
        fp.hash_idx = {h: i for h, i in fp.hash_idx.items() if h not in boilerplate}
        fp.token_coverage = get_token_coverage(fp.hash_idx, NOISE, len(fp.filtered_code))
    return fp


def answer_cells(nb: dict, source: dict, assignment: str, exercises: list[str]) -> dict[str, str]:
    """exercise -> the answer cell's source in ``nb`` (paired with ``source`` by grade_id)."""
    program = submission.build_program(nb, source, assignment, exercises)
    return {ex: cell.source for ex, cell in program.answers.items() if ex in exercises}


def _submitted_notebook(folder: Path, sub: Submission) -> dict | None:
    """The first notebook the grader graded for ``sub`` (named in the instructor's record), else the first one
    in its folder; None when it cannot be read."""
    graded = (sub.record.get("key") or {}).get("notebooks") if isinstance(sub.record.get("key"), dict) else None
    names = list(graded) if isinstance(graded, dict) else []
    where = folder / sub.student / sub.assignment
    paths = [where / n for n in names] or sorted(where.glob("*.ipynb"))
    for path in paths[:1]:
        try:
            return submission.read_notebook(path)
        except submission.NotebookError:
            return None
    return None


def _boilerplate(course: Course, assignment: str, exercises: list[str]) -> dict[str, frozenset]:
    """exercise -> hashes of its reference solution cell and its given (release) cell."""
    source = course.notebook("solutions", assignment)
    if source is None:
        return {}
    given = {}
    for folder in ("solutions", "assignments"):
        nb = course.notebook(folder, assignment)
        for ex, text in (answer_cells(nb, source, assignment, exercises) if nb else {}).items():
            given.setdefault(ex, []).append(text)
    return {ex: frozenset().union(*(fingerprint(t).hashes for t in texts)) for ex, texts in given.items()}


def _pairs(prints: dict[str, object], threshold: float, min_tokens: int) -> list[dict]:
    from copydetect import compare_files

    usable = {s: fp for s, fp in prints.items() if fp.token_coverage >= min_tokens}
    pairs = []
    for a, b in combinations(sorted(usable), 2):
        _, (sim_a, sim_b), _ = compare_files(usable[a], usable[b])
        if min(sim_a, sim_b) >= threshold:
            pairs.append({"students": [a, b], "similarity": round(float(min(sim_a, sim_b)), 3)})
    return pairs


def clusters(pairs: list[dict]) -> list[dict]:
    """Connected groups of students in ``pairs`` (each ``{"exercise", "students": [a, b]}``), largest first."""
    groups: list[tuple[set, set]] = []
    for p in pairs:
        members = set(p["students"])
        touching = [g for g in groups if g[0] & members]
        merged = (members.union(*(g[0] for g in touching)), {p["exercise"]}.union(*(g[1] for g in touching)))
        groups = [g for g in groups if not any(g is t for t in touching)] + [merged]
    rows = [{"students": sorted(m), "exercises": sorted(e)} for m, e in groups]
    return sorted(rows, key=lambda r: (-len(r["students"]), r["students"]))


def similar_answers(run: ClassRun, course: Path, submitted: Path, exercises: dict[str, list[str]],
                    threshold: float = THRESHOLD, min_tokens: int = MIN_TOKENS) -> dict[str, dict]:
    """assignment -> ``{"threshold", "pairs": [{"exercise", "students": [a, b], "similarity"}], "clusters",
    "compared": {exercise: n answers compared}}`` over the notebooks under ``submitted``."""
    course_ = Course(Path(course))
    out = {}
    for aid, names in exercises.items():
        source = course_.notebook("solutions", aid)
        boiler = _boilerplate(course_, aid, names)
        answers: dict[str, dict[str, str]] = {}
        for sub in run.of(aid):
            nb = _submitted_notebook(Path(submitted), sub) if source is not None else None
            for ex, text in (answer_cells(nb, source, aid, names) if nb else {}).items():
                answers.setdefault(ex, {})[sub.student] = text
        pairs, compared = [], {}
        for ex in names:
            prints = {s: fingerprint(t, boiler.get(ex, frozenset())) for s, t in answers.get(ex, {}).items()}
            compared[ex] = sum(1 for fp in prints.values() if fp.token_coverage >= min_tokens)
            pairs += [dict(p, exercise=ex) for p in _pairs(prints, threshold, min_tokens)]
        out[aid] = {"threshold": threshold, "pairs": pairs, "clusters": clusters(pairs), "compared": compared}
    return out

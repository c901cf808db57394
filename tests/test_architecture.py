"""Architecture rules that a review would otherwise have to re-check by hand: small functions everywhere in the
grader (radon cyclomatic complexity at most C, the developers' standard)."""
from __future__ import annotations

from pathlib import Path

from radon.complexity import cc_rank, cc_visit

PACKAGE = Path(__file__).resolve().parents[1] / "autograder"
#: the worst rank allowed: C is complexity 11..20
WORST_ALLOWED = "C"


def complex_functions(root: Path = PACKAGE) -> list[str]:
    """``path:line name rank(complexity)`` of each function, method or class of ``root`` above
    :data:`WORST_ALLOWED` (what ``radon cc -n D`` lists: a closure counts in its enclosing function)."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for block in cc_visit(path.read_text(encoding="utf-8")):
            rank = cc_rank(block.complexity)
            if rank > WORST_ALLOWED:
                found.append(f"{path.relative_to(root.parent)}:{block.lineno} {block.fullname} "
                             f"{rank}({block.complexity})")
    return found


def test_no_function_in_the_grader_is_above_complexity_c():
    assert complex_functions() == []


def test_the_complexity_check_sees_a_complex_function(tmp_path):
    """The rule can fail: a function with 21 branches is rank D and named."""
    branches = "".join(f"    if x == {i}:\n        return {i}\n" for i in range(21))
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "tangled.py").write_text(f"def tangled(x):\n{branches}    return -1\n")
    assert complex_functions(tmp_path / "pkg") == ["pkg/tangled.py:1 tangled D(22)"]

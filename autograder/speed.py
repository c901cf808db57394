"""Speed parts (``conv2d_im2col: speed``, ``conv2d_fft: speed``): one thread for torch, one verdict format.

A speed part times the answer and ``F.conv2d`` interleaved in the same run, on fresh random inputs each run, and
checks every timed result (the exercise module does that: its inputs and reference differ). This module holds what
they share: pinning torch to one thread while timing, and turning the best times into a :class:`PartResult` with
the measured ratio, the bound and, when too slow, the likely mistake.
"""
from __future__ import annotations

from .oracle import one_thread


#: torch on one intra-op thread for the block (a fair comparison with single-threaded NumPy): the oracle's
#: one place for thread pinning
one_torch_thread = one_thread


def wrong_result(name: str, points: float, case_text: str, why: str):
    """0 points: a timed result was wrong or raised (a fast wrong answer earns nothing)."""
    from .engine import PartResult

    return PartResult(name, 0.0, points, f"\u2718 {name}: 0/{points:g} points\n  First failing case: {case_text}\n"
                                         f"    {why}", 0, 1)


def verdict(name: str, points: float, bound: float, answer_best: float, torch_best: float, runs: int,
            case_text: str, hint: str):
    """Full marks when ``answer_best / torch_best <= bound``, else 0 with ``hint`` as the likely mistake."""
    from .engine import PartResult

    ratio = answer_best / torch_best
    measured = (f"{ratio:.2f}x the time of F.conv2d (float32, one thread) on {case_text}: "
                f"{answer_best * 1e3:.1f} ms vs {torch_best * 1e3:.2f} ms, best of {runs} run{'s' if runs > 1 else ''}"
                ", a fresh random input each run")
    if ratio <= bound:
        return PartResult(name, float(points), points, f"\u2714 {name}: {measured}; full marks up to {bound:g}x, "
                                                       f"{points:g}/{points:g} points", 1, 1)
    return PartResult(name, 0.0, points, f"\u2718 {name}: {measured}; needs at most {bound:g}x, 0/{points:g} points\n"
                                         f"  First failing case: the speed shape {case_text}\n"
                                         f"  Likely mistake: {hint}", 0, 1)

"""Exercise specifications as data.

An :class:`Exercise` says everything the grader needs about one graded function of the curriculum
(``docs/CURRICULUM.md``): its name and points, how to draw test cases, the torch oracle, the comparison
tolerance, and the known wrong variants (misconceptions) used to explain failures. No exercise carries its own
comparison code: :mod:`autograder.compare` is the one engine for all of them.

Case parameters are flat dicts of small ints (sizes, strides, flags). ``build(params, draw)`` turns them into
the call's positional and keyword arguments; the shrinker (:mod:`autograder.shrink`) lowers the ints to find the
smallest failing input, so ``valid(params)`` must say which combinations make sense. Each parameter is declared once,
as a :class:`autograder.params.Param` in ``Exercise(params=[...])``: drawing, the shrinker's minima and the default
description of a case are derived from that list.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NoReturn, Sequence

from .outcome import slug

Params = Mapping[str, int]


class _Raises:
    """What an oracle returns for a case with no valid answer (PyTorch rejects the arguments, or the exercise says
    to raise, e.g. a kernel of rank > 1 for ``separable_factors``): the correct answer is to raise an exception."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "an exception (these arguments have no valid answer)"

    def __deepcopy__(self, memo):
        return self


RAISES = _Raises()


@dataclass(frozen=True)
class Call:
    """The arguments of one call of a graded function: ``fn(*args, **kwargs)``."""

    args: tuple
    kwargs: Mapping[str, Any] = field(default_factory=dict)


class NotApplicable(Exception):
    """Raised by a misconception's ``compute`` where its mistake cannot be told apart in this case (no bias, one
    channel, no padding...): the diagnosis skips that misconception. Any other exception is a grader bug, reported."""


def not_applicable(reason: str = "this mistake cannot be told apart in this case") -> NoReturn:
    """Raise :class:`NotApplicable` (usable inside a lambda: ``... if padding else not_applicable()``)."""
    raise NotApplicable(reason)


def unless_torch_rejects(compute: Callable[..., Any]) -> Callable[..., Any]:
    """A misconception whose wrong arguments PyTorch may reject (a kernel turned on its side that no longer fits
    the image): that rejection, torch's ``RuntimeError``, means :class:`NotApplicable`, as an oracle's means
    :data:`RAISES`."""

    @functools.wraps(compute)
    def applicable(*args, **kwargs):
        try:
            return compute(*args, **kwargs)
        except RuntimeError as exc:
            raise NotApplicable(f"PyTorch rejects this variant's arguments: {exc}") from exc

    return applicable


@dataclass(frozen=True)
class Misconception:
    """A known wrong answer. ``compute`` has the oracle's signature (torch tensors in, result out);
    when a student's answer matches it, the feedback names the mistake and explains it. Where the mistake cannot
    be told apart in a case, ``compute`` raises :class:`NotApplicable`. ``id`` is the stable machine-readable
    name that class analytics count (default: a slug of ``name``)."""

    name: str
    explanation: str
    compute: Callable[..., Any]
    id: str = ""

    def __post_init__(self) -> None:
        if not self.id:
            object.__setattr__(self, "id", slug(self.name))


@dataclass(frozen=True)
class Tolerance:
    """Extra slack on top of the dtype-derived tolerance, relative to ``max|expected|``.

    The default (0) means: only floating-point rounding of the answer's dtype is forgiven. Exercises whose
    reference is itself approximate (a finite difference) set a floor here.
    """

    rel_floor: float = 0.0


@dataclass(frozen=True)
class Part:
    """An extra graded part beyond correctness (for example ``conv2d_im2col: speed``).

    ``grade(answer, context) -> PartResult`` gets the same answer proxy as the correctness check.
    """

    name: str
    points: float
    grade: Callable[..., Any]


@dataclass(frozen=True, kw_only=True)
class Exercise:
    """One graded function of the curriculum, as data.

    Attributes:
        name: the function name, also the nbgrader ``grade_id`` of the answer cell (test cell: ``test_<name>``).
        assignment: the assignment id, e.g. ``"01-single-channel"``.
        points: points of the correctness part.
        signature: the signature shown to students, e.g. ``"corr2d(x, k)"``.
        params: the case parameters, each declared once (:class:`autograder.params.Param`): ``draw_params``,
            ``params_min`` and (unless given) ``describe`` are derived from them.
        draw_params: ``rng -> params``; random parameters for one case (derived from ``params`` when given).
        build: ``(params, draw) -> Call``; the arrays and arguments of the case (see :class:`autograder.cases.Draw`).
        oracle: the torch reference; called like the student function but with float64 torch tensors on the
            grading device in place of arrays. Returns tensors, numbers, bools or tuples of them.
        fixed_params: adversarial cases always included in the visible set (1x1 and full-size kernels...).
        valid: which parameter dicts make sense (the shrinker only proposes valid ones).
        params_min: the smallest value of each int parameter, for the shrinker (derived from ``params``).
        describe: ``params -> str``, the case in words (shapes, stride, padding) for feedback (default with
            ``params``: ``name=value`` of each shown parameter).
        misconceptions: known wrong variants, recognised in feedback.
        output_names: names of tuple outputs, e.g. ``("dx", "dw", "db")``.
        from_scratch: NumPy-only exercise: torch/scipy convolutions are forbidden in the answer.
        forbidden: extra dotted names forbidden in the answer (beyond the from-scratch list).
        tolerance: extra slack for approximate references.
        parts: extra graded parts (speed...).
        n_visible, n_hidden: numbers of random cases in the visible and hidden sets.
        encode: runs where the student's code runs (notebook kernel or sandbox): turns the raw return value
            into plain data (default: :func:`autograder.compare.to_plain`). For answers that are objects, e.g. an
            ``nn.Module`` encoded as layer types and weights. Must not rely on trusted state.
        view: runs in the trusted grader: ``(plain_answer, call, device) -> plain`` values compared with the
            oracle's (e.g. rebuild the module and evaluate it). The oracle must return the same view.
    """

    name: str
    assignment: str
    points: float
    signature: str
    build: Callable[[Params, Any], Call]
    oracle: Callable[..., Any]
    params: Sequence[Any] = ()
    draw_params: Callable[[Any], dict] | None = None
    describe: Callable[[Params], str] | None = None
    fixed_params: Sequence[dict] = ()
    valid: Callable[[Params], bool] = lambda p: True
    params_min: Mapping[str, int] = field(default_factory=dict)
    misconceptions: Sequence[Misconception] = ()
    output_names: Sequence[str] = ()
    from_scratch: bool = True
    forbidden: Sequence[str] = ()
    tolerance: Tolerance = Tolerance()
    parts: Sequence[Part] = ()
    n_visible: int = 8
    n_hidden: int = 24
    encode: Callable[[Any], Any] | None = None
    view: Callable[[Any, Call, str], Any] | None = None

    def __post_init__(self) -> None:
        from .params import ParamsDraw, ParamsText, minimums

        if self.params:
            if self.draw_params is not None and not isinstance(self.draw_params, ParamsDraw):
                raise TypeError(f"{self.name}: give params or draw_params, not both")
            object.__setattr__(self, "draw_params", ParamsDraw(tuple(self.params)))
            object.__setattr__(self, "params_min", minimums(self.params))
            if self.describe is None or isinstance(self.describe, ParamsText):
                object.__setattr__(self, "describe", ParamsText(tuple(self.params)))
        if self.draw_params is None or self.describe is None:
            raise TypeError(f"{self.name}: an exercise needs params (or draw_params and describe)")

    @property
    def total_points(self) -> float:
        return self.points + sum(p.points for p in self.parts)

    @property
    def forbidden_names(self) -> tuple[str, ...]:
        """Dotted names the answer may not use: every ready-made convolution for from-scratch exercises, and
        always the grader itself (its oracle) plus the exercise's own extras."""
        from .forbidden import FROM_SCRATCH

        base = FROM_SCRATCH if self.from_scratch else ("autograder",)
        return tuple(base) + tuple(self.forbidden)

    @property
    def test_id(self) -> str:
        return f"test_{self.name}"

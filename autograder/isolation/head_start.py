"""What a local batch prepares once, in its own process, just before it forks its grading processes, instead of
once in each of them after the fork.

Each grading process needs, for its first notebook: the sandbox layout and IPython's cell parser; a zygote per
sandbox profile (:mod:`.zygote`; a torch one imports torch: ~1.3-1.9 CPU-s); and where it uses torch itself (views,
extra parts: 02, 06, 07, which the batch's oracle process does not serve: :func:`autograder.expected_feed.pays`)
``import torch`` (~1.7 CPU-s), the grading cases (06: ~1.2), their expected values and their encoded messages (06:
~0.8). All of that is the same in every grading process, so the batch makes it before the fork and the processes
inherit it (copy-on-write: ~0.1-0.3 CPU-s of page faults each instead).

The order matters on 2 cores: the zygotes are launched first, so that they import torch on the other core while this
process does the rest (launched after the fork, they kept the grading processes waiting while this process had
worked alone); once the cases are drawn, a forked process computes their expected values (the other core again)
while this one encodes the messages (:func:`autograder.expected.fill_forked`; its values are read by a thread at
once, so it never waits on a full pipe). Each grading process takes one set of zygotes (:func:`.zygote.adopt`); their bubblewrap is this
process's child, so they die with the batch and it stops them at the end (:func:`end`).

Nothing changes what is graded: the same cases from the same seed (the batch's plan), the same oracle, the same
sandboxes; a grading process that finds none of it (a pool restarted after a crash, ``spawn`` on a GPU, an
assignment after the first) makes it itself, as before.
"""
from __future__ import annotations

from typing import Sequence


def before_fork(plan: Sequence[tuple[str, int]], options_plain: dict, graders: int, forking: bool) -> None:
    """Prepare the first assignment of ``plan`` (``(assignment, seed)`` in grading order) for ``graders`` processes
    about to be forked (``forking``: False when they are spawned, and inherit nothing). Never raises: what it
    could not prepare, the grading processes make themselves."""
    from . import stubs
    from .magics import transformer

    layout = stubs.layout()     # the run's one sandbox layout (removed at exit; ~0.13 s)
    transformer()               # IPython's cell parser (~0.2 CPU-s per process)
    if not (forking and plan):
        return
    from .. import expected_feed, registry
    from .executors import options_from_plain
    from .grader import profiles_of, ready_ahead
    from .sandbox import isolation_mode
    from . import zygote

    options = options_from_plain(options_plain)
    assignment, seed = plan[0]
    exercises = registry.assignments().get(assignment, [])
    try:
        if exercises and zygote.usable(isolation_mode(options.isolation)[0]):
            zygote.launch_for_pool(layout, profiles_of(exercises), options.settings.limits, graders)
        if exercises and options.device == "cpu" and not expected_feed.pays(assignment, options.device):
            ready_ahead(exercises, seed, options)
    except Exception:  # noqa: BLE001 - only a head start: each grading process makes what is missing (and
        pass           # reports, per notebook, whatever fails again there)


def after_fork() -> None:
    """Once every grading process has been forked: drop this process's copies of their zygotes' descriptors."""
    from . import zygote

    zygote.release_launched()


def end() -> None:
    """When the batch's pool has ended: stop the zygotes launched for it."""
    from . import zygote

    zygote.stop_launched()

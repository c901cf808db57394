"""Isolation is never weaker in silence.

:func:`check` is called once per command before anything is graded. With bubblewrap usable, nothing happens.
Otherwise the fallback is printed (stderr) and recorded in every report by the grader (``isolation_note``), and
where the command is *strict* (the shipped templates, ``make demo``, ``grade --strict-isolation``) it is refused
with a clear message, unless:

- the instructor opts in explicitly (``--allow-reduced-isolation``, ``CONVLAB_ALLOW_REDUCED=1``, or asking for
  ``--isolation reduced`` / ``CONVLAB_ISOLATION=reduced``), or
- the deployment runs student code as an unprivileged user (:mod:`.unprivileged`: Gradescope without
  bubblewrap), which is the strongest isolation such a platform gives.
"""
from __future__ import annotations

import os
import sys

from . import unprivileged
from .sandbox import isolation_mode

ALLOW_VARIABLE = "CONVLAB_ALLOW_REDUCED"
HOW_TO_FIX = ("install bubblewrap (sudo apt-get install bubblewrap); on Ubuntu 24.04, which blocks its user "
              "namespaces, also run: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0")


class ReducedIsolationRefused(RuntimeError):
    """Strict command, bubblewrap unusable, and no explicit opt-in."""


def opted_in(requested: str | None, allow_reduced: bool) -> bool:
    wanted = (requested or os.environ.get("CONVLAB_ISOLATION") or "").lower()
    return allow_reduced or os.environ.get(ALLOW_VARIABLE, "") == "1" or wanted == "reduced"


def check(requested: str | None, *, strict: bool, allow_reduced: bool = False) -> tuple[str, str]:
    """``(mode, why)``; prints the fallback; raises :class:`ReducedIsolationRefused` when strict and not allowed."""
    mode, why = isolation_mode(requested)
    if mode == "bwrap":
        return mode, why
    extra = unprivileged.describe()
    if strict and not extra and not opted_in(requested, allow_reduced):
        raise ReducedIsolationRefused(
            f"refusing to grade with reduced isolation ({why}): student code would run without a private "
            f"filesystem or namespaces. To fix: {HOW_TO_FIX}. To accept reduced isolation explicitly: "
            f"--allow-reduced-isolation or {ALLOW_VARIABLE}=1.")
    print(f"warning: reduced isolation ({why}){'; ' + extra if extra else ''}; recorded in every report",
          file=sys.stderr)
    return mode, why

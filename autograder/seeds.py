"""The seeds behind hidden cases: one per assignment per course, reproducible, known only to instructors.

The one policy, used by every path (``grade``, ``batch``, ``demo``, nbgrader's autograde, the Gradescope zip and
the instructor-side ``github`` collection):

- by default an assignment's hidden cases are drawn from ``HMAC-SHA256(course secret, "hidden-cases/<id>")``
  (:func:`course_seed`): the same notebook gets the same score on every path and every run;
- ``--seed N`` overrides it (to reproduce a grade made elsewhere); ``--new-seed`` is a deliberate new draw
  (:func:`new_draw`); both are recorded with their origin (:func:`describe`) in the instructor's records only;
- a Gradescope zip carries the *derived* seed of its assignment, never the course secret;
- a student's own machine or repository has no secret: the student edition uses :func:`public_seed`, derived
  from the assignment name alone (those cases are public; such points are provisional).

The course secret is ``.convlab-secret`` in the course root (git-ignored, created on first use by the instructor),
or the file named by ``CONVLAB_SECRET_FILE``. In-kernel checks (:func:`hidden_seed`) find it by walking up from
the working directory; ``CONVLAB_SEED`` overrides it there.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

SECRET_NAME = ".convlab-secret"
SEED_BITS = 62


def find_secret_file(start: Path | None = None) -> Path | None:
    named = os.environ.get("CONVLAB_SECRET_FILE")
    if named:
        return Path(named) if Path(named).is_file() else None
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / SECRET_NAME
        if candidate.is_file():
            return candidate
    return None


def ensure_secret(course_root: Path) -> Path:
    """Create the course secret if missing (instructor side); returns its path."""
    named = os.environ.get("CONVLAB_SECRET_FILE")
    if named and Path(named).is_file():
        return Path(named)
    path = Path(course_root) / SECRET_NAME
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
    return path


def secret_text(course_root: Path) -> str:
    return ensure_secret(course_root).read_text().strip()


def derive(secret: str, purpose: str) -> str:
    """A hex digest of ``purpose`` keyed by ``secret`` (HMAC-SHA256): not invertible to the secret."""
    return hmac.new(secret.encode(), purpose.encode(), hashlib.sha256).hexdigest()


def _to_seed(hex_digest: str) -> int:
    return int(hex_digest, 16) >> (256 - SEED_BITS)


def course_seed(course_root: Path, assignment: str | None) -> int:
    """The default seed of ``assignment``'s hidden cases in the course at ``course_root``."""
    return _to_seed(derive(secret_text(course_root), f"hidden-cases/{assignment or ''}"))


def public_seed(assignment: str | None) -> int:
    """A seed anyone can compute (student edition, provisional points): it hides nothing."""
    return _to_seed(hashlib.sha256(f"convlab-public/{assignment or ''}".encode()).hexdigest())


def new_draw() -> int:
    """A deliberate fresh draw (``--new-seed``); the caller records it."""
    return secrets.randbits(SEED_BITS)


fresh_seed = new_draw


def grading_seed(course_root: Path, assignment: str | None, override: int | None = None,
                 public: bool = False) -> int:
    """The seed that grades ``assignment``: ``override`` when given, else the public seed (student edition) or
    the course's derived seed."""
    if override is not None:
        return int(override)
    return public_seed(assignment) if public else course_seed(course_root, assignment)


def describe(override: int | None, origin: str | None = None) -> str:
    """Where a run's seeds came from, for the instructor's record."""
    if override is None:
        return "course secret (HMAC per assignment)"
    return origin or "--seed"


def hidden_seed() -> tuple[int, str]:
    """``(seed, source)`` for in-kernel hidden checks; ``source`` says where it came from (not the secret)."""
    if os.environ.get("CONVLAB_SEED"):
        return int(os.environ["CONVLAB_SEED"]), "CONVLAB_SEED"
    path = find_secret_file()
    if path is not None:
        return int(derive(path.read_text().strip(), "hidden-cases")[:15], 16), "course secret"
    return secrets.randbits(SEED_BITS), "fresh random seed"

"""Reduced isolation as a different user: where bubblewrap cannot run but the grader is root (a Gradescope
container), the student's code runs as an unprivileged user that cannot read the grader's files, and in a network
namespace of its own where the platform allows one.

Opt-in by the deployment (``run_autograder`` sets it): ``CONVLAB_SANDBOX_USER=nobody`` names the user; the
command becomes ``[unshare -n] setpriv --reuid U --regid G --clear-groups --no-new-privs -- worker...``. The
deployment makes its own files unreadable to that user (``chmod``); the worker's private working directory is
handed to the user here. Nothing changes when the variable is unset, or when the grader is not root.
"""
from __future__ import annotations

import functools
import os
import pwd
import shutil
import subprocess

USER_VARIABLE = "CONVLAB_SANDBOX_USER"


def sandbox_user() -> pwd.struct_passwd | None:
    """The user named by ``$CONVLAB_SANDBOX_USER`` when this process can switch to it (root), else None."""
    name = os.environ.get(USER_VARIABLE, "").strip()
    if not name or os.geteuid() != 0 or shutil.which("setpriv") is None:
        return None
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        return None
    return user if user.pw_uid != 0 else None


@functools.lru_cache(maxsize=1)
def network_namespace_allowed() -> bool:
    """Whether ``unshare -n`` works here (root in most containers; refused by some platforms' seccomp)."""
    if shutil.which("unshare") is None:
        return False
    try:
        return subprocess.run(["unshare", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def describe() -> str:
    """What the reduced sandbox adds here, for reports ('' when nothing)."""
    user = sandbox_user()
    if user is None:
        return ""
    net = "no network" if network_namespace_allowed() else "network not isolated (unshare -n refused)"
    return f"student code ran as the unprivileged user {user.pw_name!r}, {net}"


def _traversable(run_folder: str) -> None:
    """Let the user pass through (not list) the grading run's scratch folder, which holds its work folder and the
    sandbox layout under random names (:mod:`.scratch`); nothing above it is changed."""
    from .scratch import RUN_PREFIX

    if os.path.basename(run_folder).startswith(RUN_PREFIX):
        os.chmod(run_folder, os.stat(run_folder).st_mode | 0o001)


def wrap(command: list[str], workdir: str | None) -> list[str]:
    """``command`` run as the sandbox user (and without network), ``workdir`` handed to that user."""
    user = sandbox_user()
    if user is None:
        return command
    if workdir:
        for folder, dirs, files in os.walk(workdir):
            for name in [folder, *(os.path.join(folder, n) for n in dirs + files)]:
                os.chown(name, user.pw_uid, user.pw_gid)
        _traversable(os.path.dirname(os.path.abspath(workdir)))
    drop = ["setpriv", "--reuid", str(user.pw_uid), "--regid", str(user.pw_gid), "--clear-groups",
            "--no-new-privs", "--"]
    net = ["unshare", "-n", "--"] if network_namespace_allowed() else []
    return net + drop + command

"""Where this interpreter's files are: the directories the sandbox binds read-only, and those it hides modules in."""
from __future__ import annotations

import os
import site
import sys
import sysconfig
from pathlib import Path


def python_executable() -> str:
    return os.path.realpath(sys.executable)


def site_dirs() -> list[str]:
    """The site-packages directories of this interpreter (the worker sees the same packages, minus the hidden)."""
    dirs = []
    for d in site.getsitepackages() + [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]]:
        d = os.path.realpath(d)
        if os.path.isdir(d) and d not in dirs:
            dirs.append(d)
    return dirs


def python_roots() -> list[str]:
    """Directories to bind so that the interpreter and its standard library work (outside /usr)."""
    roots = []
    for d in (sys.base_prefix, sys.base_exec_prefix, os.path.dirname(os.path.dirname(python_executable()))):
        d = os.path.realpath(d)
        if not d.startswith("/usr/") and d != "/usr" and d not in roots and os.path.isdir(d):
            roots.append(d)
    return roots


def site_like_dirs() -> list[str]:
    """Every directory modules are imported from inside the sandbox (to hide modules in all): the standard
    library and its compiled modules, and every site-packages or dist-packages directory."""
    found = [d for d in (sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"],
                         os.path.join(sysconfig.get_paths()["platstdlib"], "lib-dynload")) if os.path.isdir(d)]
    found = list(dict.fromkeys(os.path.realpath(d) for d in found))
    found += [d for d in site_dirs() if d not in found]
    for root in python_roots() + ["/usr", "/usr/local"]:
        for sub in ("lib", "lib64"):
            base = Path(root) / sub
            if not base.is_dir():
                continue
            for py in base.glob("python3*"):
                for name in ("site-packages", "dist-packages"):
                    d = os.path.realpath(py / name)
                    if os.path.isdir(d) and d not in found:
                        found.append(d)
    for d in Path("/usr/lib/python3").glob("dist-packages"):
        if os.path.realpath(d) not in found:
            found.append(os.path.realpath(d))
    return found

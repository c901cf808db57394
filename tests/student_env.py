"""A student's environment for the tests: the edition built into ``dist``, a fresh virtual environment outside the
checkout with the wheel installed, and an environment dict that knows nothing of the course.

The fresh environment is a real ``venv`` (no system site-packages). To stay fast it borrows the heavy third-party
dependencies (torch, NumPy, JupyterLab...) from the repository's venv through a ``.pth`` line; the ``autograder``
package itself comes only from the wheel (the checkout's editable install is not active there: ``.pth`` files in a
borrowed directory are not processed).
"""
from __future__ import annotations

import os
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from autograder import edition

#: text every archive member is searched for: solution regions, hidden tests, the in-kernel hidden check
FORBIDDEN_TEXT = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "hidden=True")


def build_edition(dist: Path) -> tuple[Path, Path]:
    """``(wheel, notebooks_zip)`` built from this checkout into ``dist``."""
    return edition.build(dist=dist)


def members(archive: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(archive) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def fresh_venv(where: Path) -> Path:
    """A new venv at ``where`` borrowing the heavy dependencies; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    borrowed = [p for p in site.getsitepackages() if Path(p).is_dir()] or [sysconfig.get_path("purelib")]
    (Path(purelib) / "_borrowed_dependencies.pth").write_text("\n".join(borrowed) + "\n")
    return python


def install(python: Path, wheel: Path) -> None:
    """Install ``wheel`` into ``python``'s environment with this venv's pip (the fresh one has none)."""
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
                    "--no-index", "--force-reinstall", "--disable-pip-version-check", str(wheel)],
                   check=True, capture_output=True, text=True)


def student_env(python: Path, home: Path) -> dict:
    """Environment of a student's process: the fresh venv's bin/ first, no course setting, no checkout paths."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CONVLAB_", "PYTHON", "JUPYTER", "VIRTUAL_ENV", "PYTEST", "IPYTHON"))}
    home.mkdir(parents=True, exist_ok=True)
    env.update(PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}", HOME=str(home), MPLBACKEND="Agg",
               PYTHONNOUSERSITE="1", JUPYTER_CONFIG_DIR=str(home / ".jupyter"),
               JUPYTER_DATA_DIR=str(home / ".local/share/jupyter"), IPYTHONDIR=str(home / ".ipython"))
    return env


class StudentKernel:
    """An IPython kernel of ``python``'s environment, started the way JupyterLab starts one; ``run`` executes a
    cell and returns what the student sees: ``stdout``, the ``result`` (text/plain) and the ``error`` traceback
    lines (``None`` when the cell ran)."""

    def __init__(self, python: Path, env: dict, cwd: Path):
        self.python, self.env, self.cwd = python, env, cwd

    def __enter__(self) -> "StudentKernel":
        import json
        import tempfile

        from jupyter_client import KernelManager
        from jupyter_client.kernelspec import KernelSpecManager

        self._specs = tempfile.TemporaryDirectory(prefix="convlab-kernelspec-")
        spec = Path(self._specs.name) / "student"
        spec.mkdir()
        (spec / "kernel.json").write_text(json.dumps({
            "argv": [str(self.python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3 (convlab)", "language": "python"}))
        specs = KernelSpecManager(kernel_dirs=[self._specs.name], ensure_native_kernel=False)
        self.manager = KernelManager(kernel_name="student", kernel_spec_manager=specs)
        self.manager.start_kernel(env=self.env, cwd=str(self.cwd))
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=120)
        return self

    def run(self, code: str, timeout: float = 180) -> dict:
        seen: dict = {"stdout": "", "result": None, "error": None}

        def collect(msg):
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream" and content["name"] == "stdout":
                seen["stdout"] += content["text"]
            elif kind == "execute_result":
                seen["result"] = content["data"].get("text/plain")
            elif kind == "error":
                seen["error"] = content["traceback"]

        self.client.execute_interactive(code, output_hook=collect, timeout=timeout)
        return seen

    def __exit__(self, *exc) -> None:
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)
        self._specs.cleanup()

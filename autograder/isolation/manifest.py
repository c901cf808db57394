"""The sandbox-side modules: the one list of the code that crosses into the sandbox.

STANDALONE: standard library only; copied into the sandbox next to the worker, which imports it.

- :data:`WORKER_FILES` (from ``autograder/isolation/``) run the sandbox: they import only the standard library,
  NumPy and each other;
- :data:`STUB_MODULES` (from ``autograder/``) are copied into the stand-in ``autograder`` package that notebooks and
  the protocol import inside the sandbox; they must never import the rest of the grader. A module that does not
  exist yet is simply absent;
- :data:`REFERENCE_MODULES` are those of them whose functions the grader may name in a call (``$fn``), resolved
  inside the sandbox;
- :data:`STAND_INS` replace a module inside the sandbox (``ctypes``: types that exist, calls that refuse).
"""
from __future__ import annotations

WORKER_FILES = ("worker.py", "protocol.py", "manifest.py")
STUB_MODULES = ("datasets", "probe_functions", "module_codec")
REFERENCE_MODULES = ("autograder.probe_functions", "autograder.module_codec")
STAND_INS = {"ctypes": "ctypes_standin.py"}

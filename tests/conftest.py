"""Test configuration: the tests folder is importable both as `tests.harness` and as `harness`."""
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ.setdefault("MPLBACKEND", "Agg")

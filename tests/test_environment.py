"""The three descriptions of the environment agree: requirements.in (direct pins), requirements.txt (full lock),
environment.yml (conda), and pyproject.toml's ranges admit every pin (torch 2.13.0 in particular)."""
from __future__ import annotations

import re
import tomllib

import yaml
from packaging.requirements import Requirement

from tests.coursecopy import ROOT


def _pins(lines) -> dict[str, str]:
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        m = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)$", line)
        if m:
            out[m.group(1).lower().replace("_", "-")] = m.group(2)
    return out


DIRECT = _pins((ROOT / "requirements.in").read_text().splitlines())
LOCK = _pins((ROOT / "requirements.txt").read_text().splitlines())


def test_lock_contains_every_direct_pin_at_the_same_version():
    for name, version in DIRECT.items():
        assert LOCK.get(name) == version, f"{name}: requirements.in {version}, requirements.txt {LOCK.get(name)}"


def test_lock_pins_cpu_torch_and_no_cuda_packages():
    assert LOCK["torch"] == "2.13.0"
    assert not [n for n in LOCK if n.startswith("nvidia") or n == "triton"]


def test_environment_yml_repeats_the_direct_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert _pins(pip) == DIRECT


def test_pyproject_ranges_admit_the_pins():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    for spec in reqs:
        req = Requirement(spec)
        name = req.name.lower().replace("_", "-")
        assert name in LOCK, f"{name} is a dependency but not in requirements.txt"
        assert req.specifier.contains(LOCK[name], prereleases=True), f"{spec} excludes the pinned {LOCK[name]}"

"""A CPU-only install stays CPU-only through the extras: installing `.[test]` over an environment that
has torch and torchvision (the README installs the pair from PyTorch's CPU index) must not replace them.

torchvision cannot leave the test extra: timm, open_clip and grad-cam, the peers the tests compare
with, import it. A torchvision from PyPI pins its own torch build (0.29.1 requires torch==2.14.1),
so the README installs torch and torchvision together from the CPU index, and vitcli pins neither."""

import json
import re
import subprocess
import sys
from importlib import metadata

import pytest
import tomllib

from tests.conftest import SAMPLES

ROOT = SAMPLES.parent
CPU_COMMAND = "pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu"


def requirements() -> list[str]:
    """vitcli's dependencies and every extra's, as written in pyproject.toml."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]


def test_no_extra_pins_torch_or_torchvision():
    """Lower bounds only: an exact or upper pin would make pip swap the CPU build for PyPI's."""
    for req in requirements():
        name = re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower()
        if name in ("torch", "torchvision"):
            assert re.fullmatch(rf"{name}>=[\d.]+", req.replace(" ", "")), req


def test_readme_gives_the_cpu_only_pair():
    readme = (ROOT / "README.md").read_text()
    assert CPU_COMMAND in readme
    assert "pip install -e '.[test]' && python -m pytest" in readme.splitlines()[4]


@pytest.mark.slow
def test_test_extra_keeps_the_installed_torch(tmp_path):
    """pip's own resolver, asked to install `.[test]` here, installs nothing of torch, torchvision or CUDA."""
    torch_version = metadata.version("torch")
    report = tmp_path / "report.json"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--report", str(report),
                        f"{ROOT}[test]"], capture_output=True, text=True, timeout=600, check=False)
    if r.returncode != 0 and "Could not find a version" in r.stderr:
        pytest.skip(f"pip could not reach an index for the missing test extras: {r.stderr.strip()[-200:]}")
    assert r.returncode == 0, r.stderr[-2000:]
    names = {item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]}
    assert not names & {"torch", "torchvision"}, names
    assert not {n for n in names if n.startswith("nvidia-")}, names
    assert metadata.version("torch") == torch_version

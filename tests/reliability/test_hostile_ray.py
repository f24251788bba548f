"""Ray that is not there: a --ray-address that is not Ray is one line within a cap, --num-gpus the cluster
cannot give is refused before anything is written, and -q keeps Ray's INFO lines off standard error.

Each case runs in its own network namespace (`unshare -n`, loopback only, RAY_AUTH_MODE=disabled) through
tests/reliability/ray_hostile.py, as tests/cli/test_ray.py runs its cluster.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.cli.test_ray import namespace_problem
from tests.conftest import ROOT

pytest.importorskip("ray")
pytest.importorskip("pyarrow")
PROBLEM = namespace_problem()
pytestmark = [pytest.mark.ray, pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")]


def in_namespace(case: str, tmp: Path) -> dict:
    photos = tmp / "photos"
    photos.mkdir()
    for i in range(3):
        Image.fromarray(np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(photos / f"p{i}.png")
    inner = f"ip link set lo up; exec {sys.executable} -m tests.reliability.ray_hostile {case} {tmp}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    r = subprocess.run(["unshare", "-n", "sh", "-c", inner], cwd=ROOT, env=env, capture_output=True, timeout=900)
    assert r.returncode == 0, r.stderr.decode()[-4000:]
    return json.loads(r.stdout.decode().strip().splitlines()[-1])


# Ray's C++ core warns when the host has no route out; the loopback-only namespace has none (a
# machine on a network does not print it), so that one line is not the run's own output.
NO_ROUTE = "Failed to determine local IP via external connectivity"


CORE_NOTE = re.compile(r"\[\d{4}-\d\d-\d\d [\d:,]+ [DIWE] \d+ \d+\] \w+\.cc:\d+: ")


def own_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip() and NO_ROUTE not in line]


def one_line(run: dict, *words: str) -> str:
    lines = own_lines(run["stderr"])
    assert run["code"] == 1 and len(lines) == 1, run
    assert all(w in lines[0] for w in words), (words, lines[0])
    assert not run["written"], "the output folder was made"
    return lines[0]


@pytest.mark.slow  # imports Ray in a network namespace (about 28 s)
def test_an_address_that_is_not_ray_is_one_line(tmp_path: Path) -> None:
    for kind, run in in_namespace("listeners", tmp_path).items():
        one_line(run, "--ray-address", "127.0.0.1:")


@pytest.mark.slow
def test_gpus_the_cluster_lacks_are_refused_first_and_q_is_quiet(tmp_path: Path) -> None:
    result = in_namespace("cluster", tmp_path)
    one_line(result["gpus"], "--num-gpus", "the Ray cluster has 0")
    quiet = result["quiet"]
    assert quiet["code"] == 0 and quiet["written"], quiet
    # Ray's C++ core writes its own notes ("[time E pid pid] core_worker.cc: ...", here that a restartable
    # actor's arguments live in the object store) past any Python logging setting; no Python line is left.
    python_lines = [line for line in own_lines(quiet["stderr"]) if not CORE_NOTE.match(line)]
    assert python_lines == [], quiet["stderr"][-2000:]

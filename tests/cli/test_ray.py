"""`embed --backend ray` on a real two-node Ray cluster, each test in a network namespace of its own.

The body of each test (tests/cli/ray_driver.py) runs under `unshare -n sh -c 'ip link set lo up;
exec python …'` with RAY_AUTH_MODE=disabled: 127.0.0.1 is the only address there, so Ray binds
nothing on the machine's network. Marked `ray` (pytest -m "not ray" skips them); CI runs them.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.conftest import ROOT, SAMPLES, assert_clean_error, run_cli

pytestmark = pytest.mark.ray


def namespace_problem() -> str | None:
    """Why a Ray test cannot run here (None when it can)."""
    try:
        import ray  # noqa: F401
        import pyarrow  # noqa: F401
    except ImportError as e:
        return f"ray[data] and pyarrow are not installed ({e.name}): pip install 'vitcli[ray]'"
    if not shutil.which("unshare") or not shutil.which("ip"):
        return "unshare or ip is missing (apt-get install util-linux iproute2)"
    probe = subprocess.run(["unshare", "-n", "sh", "-c", "ip link set lo up"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot make a network namespace (needs root): {probe.stderr.decode().strip()}"
    return None


PROBLEM = namespace_problem()


def in_namespace(case: str, tmp: Path, count: int) -> dict:
    """Run one case of ray_driver in a fresh network namespace over `count` small JPEGs."""
    photos = tmp / "photos"
    photos.mkdir()
    samples = sorted(SAMPLES.glob("*.jpg"))
    for i in range(count):
        Image.open(samples[i % len(samples)]).convert("RGB").resize((120 + 8 * i, 100)).save(photos / f"p{i:02d}.jpg")
    inner = f"ip link set lo up; exec {sys.executable} -m tests.cli.ray_driver {case} {tmp}"
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    r = subprocess.run(["unshare", "-n", "sh", "-c", inner], cwd=ROOT, env=env, capture_output=True, timeout=1200)
    assert r.returncode == 0, r.stderr.decode()[-4000:]
    result = json.loads(r.stdout.decode().strip().splitlines()[-1])
    print(f"{case}: {time.perf_counter() - start:.0f} s", result)
    return result


@pytest.mark.slow  # a two-node Ray cluster starts (about 45 s)
@pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")
def test_two_nodes_on_loopback_share_the_work_and_rows_equal_local(tmp_path):
    result = in_namespace("both_nodes", tmp_path, 8)
    assert len(result["nodes"]) == 2


@pytest.mark.slow
@pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")
def test_model_worker_killed_mid_run_still_gives_the_local_rows(tmp_path):
    result = in_namespace("worker_killed", tmp_path, 12)
    assert result["killed"] is not None


def test_ray_not_installed_is_one_line_and_writes_nothing(tmp_path):
    code = ("import sys; sys.modules['ray'] = None; sys.argv = ['vitcli'] + sys.argv[1:]; "
            "from vitcli.cli import main; main()")
    out = tmp_path / "run"
    r = subprocess.run([sys.executable, "-c", code, "embed", str(SAMPLES), "--model", "vit-ti16", "--dim", "64",
                        "--depth", "2", "--heads", "2", "--output-dir", str(out), "--format", "parquet",
                        "--backend", "ray"], capture_output=True, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"}, timeout=300)
    assert_clean_error(r, "--backend", "pip install 'vitcli[ray]'")
    assert not out.exists()

"""Helpers of the reliability tests: batched CLI runs, output slots, private mounts."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.corpus import ROOT

PREVIOUS = b"an earlier output that must survive"


def run_batch(cases: list[list[str]], tmp_path: Path, prefix: list[str] | None = None,
              cwd: Path | None = None) -> list[subprocess.CompletedProcess]:
    """Run each argument list through vitcli.cli.main() in one subprocess (started with `prefix`,
    e.g. setpriv or prlimit, in folder `cwd`, default the repository); results in order."""
    (tmp_path / "cases.json").write_text(json.dumps([[str(a) for a in c] for c in cases]))
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([*(prefix or []), sys.executable, "-m", "tests.reliability.driver", tmp_path / "cases.json",
                           tmp_path / "results.json"], cwd=cwd or ROOT, env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    results = json.loads((tmp_path / "results.json").read_text())
    return [subprocess.CompletedProcess(c, r["code"], r["stdout"].encode(), r["stderr"].encode())
            for c, r in zip(cases, results)]


def output_slot(folder: Path) -> Path:
    """A folder holding only an earlier `out.npy`: the path every failing command is told to write."""
    folder.mkdir(parents=True)
    (folder / "out.npy").write_bytes(PREVIOUS)
    return folder / "out.npy"


def assert_untouched(out: Path) -> None:
    """The earlier output is intact and nothing else (no temporary file) appeared beside it."""
    assert out.read_bytes() == PREVIOUS
    assert sorted(p.name for p in out.parent.iterdir()) == ["out.npy"]


def in_private_mount(script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a shell script in a private mount namespace (root only); skip where that is not allowed."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare for a private mount")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m refused: {probe.stderr.decode().strip()}")
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT), "PY": sys.executable}
    return subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, env=env,
                          cwd=tmp_path, timeout=120)


CASE_SECONDS = 20.0  # a case's time cap: far above what a refusal takes, far below a hang's
CASE_GROWTH = 600 << 20  # a case's memory cap over the process's resident size at its start
ADDRESS_SPACE = 6 << 30  # the whole batch's RLIMIT_AS: torch maps much it never touches


def run_capped(cases: list[list[str]], tmp_path: Path, seconds: float = CASE_SECONDS,
               env: dict | None = None) -> list[dict]:
    """Run each argument list through vitcli.cli.main() in one subprocess under RLIMIT_AS, each with a
    time cap; per case {"args", "code" (or "timeout"), "stdout", "stderr", "growth" (peak bytes)}."""
    import resource

    (tmp_path / "cases.json").write_text(json.dumps([[str(a) for a in c] for c in cases]))
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", "PYTHONPATH": str(ROOT), **(env or {})}

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))

    done = subprocess.run([sys.executable, "-m", "tests.reliability.capped", tmp_path / "cases.json",
                           tmp_path / "results.json", str(seconds)], cwd=ROOT, env=full_env, capture_output=True,
                          timeout=60 + seconds * len(cases), preexec_fn=cap, check=False)
    assert done.returncode == 0, done.stderr.decode()
    results = json.loads((tmp_path / "results.json").read_text())
    return [{"args": [str(a) for a in c], **r} for c, r in zip(cases, results)]


def assert_one_line(result: dict, *words: str, code: int = 1, growth: int = CASE_GROWTH) -> str:
    """A capped case refused: exit `code` within its time cap and memory cap, one line naming `words`,
    no traceback, no internal error, nothing on standard output."""
    err, args = result["stderr"], result["args"]
    assert result["code"] == code, (args, result["code"], err)
    assert result["growth"] < growth, (args, result["growth"])
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, (args, err)
    for word in words:
        assert word in lines[0], (args, word, lines[0])
    assert result["stdout"] == "", (args, result["stdout"][:200])
    return lines[0]


def save_tiny_hf_vit(folder: Path) -> Path:
    """A tiny transformers ViT saved by the peer into `folder` (config.json, preprocessor_config.json, weights)."""
    transformers = pytest.importorskip("transformers")
    config = transformers.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=128, image_size=32, patch_size=16)
    transformers.ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder

"""Shared test helpers: run the real CLI in a subprocess, make small images with known pixels."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"


def run_cli(*args: str, stdin: bytes | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m vitcli ARGS` as a user would run it; stdout and stderr as bytes."""
    import os

    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "120", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "vitcli", *map(str, args)],
        input=stdin, capture_output=True, env=full_env, timeout=300,
    )


def assert_clean_error(result: subprocess.CompletedProcess, *words: str, code: int = 1) -> str:
    """Exit code `code`, one line on stderr naming `words`, no traceback, nothing on stdout."""
    err = result.stderr.decode()
    assert result.returncode == code, (result.returncode, err)
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert result.stdout == b""
    return lines[0]


@pytest.fixture
def random_rgb(tmp_path: Path):
    """Write a random RGB PNG of (h, w) and return (path, pixels (H, W, 3))."""

    def make(h: int, w: int, seed: int = 0, name: str = "img.png") -> tuple[Path, np.ndarray]:
        pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
        path = tmp_path / name
        Image.fromarray(pixels).save(path)
        return path, pixels

    return make

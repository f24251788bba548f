"""Faults: SIGINT / SIGTERM in the middle of a run, and a disk that fills up during the write.

A signal gives exit 130 (SIGINT) or 143 (SIGTERM), leaves no partial file and keeps an earlier
file at the output path. The long single-image run is signalled from outside (a real signal to a
real process); the signal landing in the middle of the write itself is made deterministic by
sending it from inside the writer, in-process. Mid-batch signals are covered by
tests/cli/test_batch.py::test_signal_mid_batch_leaves_the_previous_output.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.reliability.corpus import ROOT, SAMPLES
from tests.reliability.helpers import PREVIOUS, assert_untouched, in_private_mount, output_slot
from vitcli.cli import Terminated, install_signal_handlers
from vitcli.errors import VitcliError
from vitcli.io.arrays import save_npy, write_bytes


def _rss(pid: int) -> int:
    """Resident memory of a process in bytes (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1]) * 1024


IN_FORWARD = 1_000_000_000  # bytes: interpreter + torch (~0.5 GB) + ViT-B weights (0.35 GB) + activations


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow)])
def test_signal_during_a_long_single_image_run(tmp_path: Path, sig: int, code: int) -> None:
    out = output_slot(tmp_path / "out")
    env = {**os.environ, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    # ViT-B/16 on 2048×2048 (16,385 tokens): minutes of work on this machine; signalled once its
    # memory shows the forward pass under way. SIGINT is reset in the child: a shell running the
    # tests in the background would otherwise hand down "ignore SIGINT".
    proc = subprocess.Popen([sys.executable, "-m", "vitcli", "embed", str(SAMPLES / "chelsea.jpg"), "--model",
                             "vit-b16", "--size", "2048", "-o", str(out)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for _ in range(12_000):
            if _rss(proc.pid) > IN_FORWARD or proc.poll() is not None:
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.stderr.read().decode()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.decode()
    assert proc.returncode == code, text
    assert "Traceback" not in text
    if sig == signal.SIGTERM:
        assert text.strip() == "vitcli: terminated"
    assert_untouched(out)


@pytest.mark.parametrize("sig, exc", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_signal_in_the_middle_of_the_write(tmp_path: Path, sig: int, exc: type) -> None:
    out = output_slot(tmp_path / "out")
    previous = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    install_signal_handlers()

    def half_then_signal(f) -> None:
        f.write(b"\x93NUMPY half of a new array")
        f.flush()
        os.kill(os.getpid(), sig)  # delivered before the next bytecode
        f.write(b" the rest, never reached")

    try:
        with pytest.raises(exc):
            write_bytes(str(out), half_then_signal)
    finally:
        signal.signal(signal.SIGTERM, previous[0])
        signal.signal(signal.SIGINT, previous[1])
    assert_untouched(out)


def test_full_device_in_process() -> None:
    with pytest.raises(VitcliError, match="No space left on device"):
        save_npy("/dev/full", np.zeros((64, 64)))


def test_disk_filling_up_during_the_write(tmp_path: Path) -> None:
    """A 64 kB tmpfs holding an earlier output: a 150 kB array does not fit; the earlier file survives."""
    disk = tmp_path / "disk"
    disk.mkdir()
    image = SAMPLES / "chelsea.jpg"
    script = (f"mount -t tmpfs -o size=64k tmpfs {disk} && printf '{PREVIOUS.decode()}' > {disk}/out.npy && "
              f'"$PY" -m vitcli patchify {image} -o {disk}/out.npy; echo "exit $?" >&2; '
              f'"$PY" -m vitcli patchify {image} --size 1024 --grid-png {disk}/grid.png; echo "exit $?" >&2; '
              f"ls -A {disk}; cat {disk}/out.npy")
    result = in_private_mount(script, tmp_path)
    err = result.stderr.decode().splitlines()
    assert err[0].startswith(f"vitcli: error: {disk}/out.npy: cannot write: No space left on device")
    assert err[1] == "exit 1"
    assert err[2].startswith(f"vitcli: error: {disk}/grid.png: cannot write: No space left on device")
    assert err[3] == "exit 1" and "Traceback" not in result.stderr.decode()
    assert result.stdout.decode() == f"out.npy\n{PREVIOUS.decode()}"


"""Shared test helpers: run the real CLI in a subprocess, make small images with known pixels; and how
`python -m pytest` spreads the tests over the cores (pytest-xdist, see `pytest_cmdline_main`)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"
MAX_WORKERS = 4  # each worker's tests start whole vitcli processes (up to ~2 GB for a ViT-B explain)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cores() -> int:
    """The CPUs this process may run on (a container's or taskset's share, not the machine's)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> None:
    """Without `-n`, run on min(cores, MAX_WORKERS) xdist workers, a test file at a time per worker (its
    module fixtures are built once); `-n 0`, `-p no:xdist`, `--pdb` and one core run in this process."""
    option = config.option
    if getattr(option, "numprocesses", 0) is not None or hasattr(config, "workerinput"):
        return  # -n given, xdist disabled or absent, or this is a worker
    if option.usepdb or option.collectonly or min(cores(), MAX_WORKERS) < 2:
        return
    option.numprocesses = min(cores(), MAX_WORKERS)
    if option.dist == "no":
        option.dist = "loadgroup"


def _share_the_cores() -> None:
    """In an xdist worker: torch, OpenMP and BLAS take cores ÷ workers threads (default: all cores each), in
    this process and in the vitcli processes its tests start, so N workers do not oversubscribe N cores."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers < 2:
        return
    threads = max(1, cores() // workers)
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(threads))
    if "torch" in sys.modules:  # imported before this file (a plugin): the variables came too late for it
        sys.modules["torch"].set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def _interruptible_children() -> None:
    """In an xdist worker (which ignores SIGINT, leaving Ctrl-C to the controller): SIGINT back to Python's
    default, so the vitcli processes its tests start do not inherit an ignored SIGINT (the signal tests
    send it, and `import vitcli` must find the interpreter's own handler)."""
    import signal

    if os.environ.get("PYTEST_XDIST_WORKER") and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


_share_the_cores()
_interruptible_children()

ONE_AT_A_TIME = ("ray", "browser")  # markers whose tests run in one worker: one Ray cluster, one chromium at a time


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """In the controller, for each xdist worker: pass on the --dist chosen. A worker parses only the command
    line as typed, so without this it never learns of the `loadgroup` that `pytest_cmdline_main` set."""
    node.workerinput["dist"] = node.config.option.dist


@pytest.hookimpl(tryfirst=True)  # before xdist's worker reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup`, group the tests that must share a worker: those marked ONE_AT_A_TIME, and the
    tests of a file with a module fixture (built once, not once per worker); other tests spread one by one."""
    if getattr(config, "workerinput", {}).get("dist") == "loadgroup":
        config.option.loadgroup = True  # xdist's worker names each test's group only when this is set
    if not (getattr(config.option, "loadgroup", False) or getattr(config.option, "dist", "no") == "loadgroup"):
        return
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        group = next((name for name in ONE_AT_A_TIME if item.get_closest_marker(name)), None)
        if group is None and _uses_a_module_fixture(item):
            group = item.nodeid.split("::")[0]
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


def _uses_a_module_fixture(item: pytest.Item) -> bool:
    """Whether the test needs a fixture that lives as long as its file or class (pytest has no public API)."""
    definitions = getattr(item, "_fixtureinfo", None)
    if definitions is None:
        return False
    return any(defs[-1].scope in ("module", "class", "package") for defs in definitions.name2fixturedefs.values())


def sampled(argnames: str, cases: list, keep: int = 1, **kwargs) -> pytest.MarkDecorator:
    """`pytest.mark.parametrize` with every case after the first `keep` marked `slow`: the quick run
    (`pytest -m "not slow"`) keeps a sample of a sweep whose cases each start processes, CI runs them all."""
    several = "," in argnames

    def slow(case: object) -> object:
        return pytest.param(*(case if several else (case,)), marks=pytest.mark.slow)

    return pytest.mark.parametrize(argnames, [c if i < keep else slow(c) for i, c in enumerate(cases)], **kwargs)


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


@pytest.fixture
def torch_threads():
    """`torch.set_num_threads` for one test, the count before it restored after it."""
    import torch

    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)

"""Shared helpers for the benchmarks: the machine, timing, photo folders, running vitcli."""

import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sample_images"


def machine() -> str:
    """CPU model, cores and torch's thread count: the context every figure needs."""
    model = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    import torch

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"CPU: {model}, {cores} cores, torch {torch.__version__} with {torch.get_num_threads()} threads, "
            f"Python {platform.python_version()}, load average {load:.1f}")


def vitcli_command() -> list[str]:
    """The installed `vitcli` script beside this Python, else `python -m vitcli`."""
    script = Path(sys.executable).parent / "vitcli"
    return [str(script)] if script.exists() else [sys.executable, "-m", "vitcli"]


def run(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    """Wall time of one subprocess, and its result (raises when it fails)."""
    env = {**os.environ, "NO_COLOR": "1", **kw.pop("env", {})}
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT, **kw)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(map(str, cmd))}\n{result.stderr.decode()}")
    return seconds, result


def peak_rss_mb(cmd: list[str]) -> float:
    """Peak resident memory (MB) of one subprocess, measured by a fresh helper process."""
    code = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
            "print(r.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", code, *map(str, cmd)], capture_output=True, text=True,
                         env={**os.environ, "NO_COLOR": "1"}, cwd=ROOT)
    code_, kb = out.stdout.split()
    if code_ != "0":
        raise SystemExit(f"failed ({code_}): {' '.join(map(str, cmd))}")
    return int(kb) / 1024


def best_of(repeats: int, *actions: Callable[[], float]) -> list[float]:
    """Run the actions interleaved `repeats` times, the order reversed every other round (so a
    drifting machine load favours none); the best time of each (its least disturbed run)."""
    times: list[list[float]] = [[] for _ in actions]
    for i in range(repeats):
        order = list(zip(times, actions))
        for t, action in order[::-1] if i % 2 else order:
            t.append(action())
    return [min(t) for t in times]


def paired_ratio(a: list[float], b: list[float]) -> float:
    """The median of a[i] / b[i]: runs of the same round compared, so a load that drifts between
    rounds (this machine is shared) cancels out of each ratio."""
    return statistics.median(x / y for x, y in zip(a, b))


def median_time(repeats: int, action: Callable[[], float]) -> float:
    return statistics.median(action() for _ in range(repeats))


def make_photos(folder: Path, count: int, long_sides: tuple[int, int] = (640, 1600), seed: int = 0) -> list[Path]:
    """`count` JPEGs: the shipped samples resized to long sides in `long_sides`, aspect kept."""
    import random

    from PIL import Image, ImageOps

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sources = [ImageOps.exif_transpose(Image.open(p)).convert("RGB") for p in sorted(SAMPLES.glob("*.jpg"))]
    paths = []
    for i in range(count):
        img = sources[i % len(sources)]
        side = rng.randint(*long_sides)
        scale = side / max(img.size)
        path = folder / f"photo_{i:04d}.jpg"
        img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BICUBIC).save(path, quality=90)
        paths.append(path)
    return paths


def max_rss_mb() -> float:
    """This process's peak resident memory so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], object]) -> Callable[[], float]:
    """A function that runs `fn` once under torch's inference mode and returns the seconds it took."""

    def go() -> float:
        import torch

        with torch.inference_mode():
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

    return go

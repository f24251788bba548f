"""Dataset outputs of `vitcli embed --stage pooled` on ViT-S/16 (random weights): Parquet, Ray, memory.

1. Parquet vs .npy: `-o emb.parquet` against `-o emb.npy` over the same JPEGs (target ≥ 0.98×).
2. Ray vs local: `--backend ray --output-dir` (Ray started locally, 1 and 2 actors) against the
   local backend's sharded Parquet run (target ≥ 0.8×). Ray runs inside `unshare -n` (loopback
   only), so this needs root, unshare and ip.
3. Peak RSS of the local backend (sharded Parquet) on many images against few (target ≤ 1.3×),
   on small JPEGs (96-160 px) generated in a temporary folder; `--rss-size` is the model input
   (224 by default; a smaller one makes the 10,000-image run minutes instead of an hour, and the
   memory bound is the pipeline's: batches, row groups, index, manifest).

images/s is the in-run figure (`seconds` of the JSON: decode + model + write, without Python
start-up and model building), and the whole command's wall time is printed beside it. Each pair
is run `--repeats` times interleaved (the order alternating); the ratio of the medians and the
median of the per-round ratios (`paired`, robust to a load that drifts between rounds) are printed. Usage:
    python benchmarks/bench_dataset.py [--images 1000] [--repeats 5] [--rss-images 10000 100] [--no-ray]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine, make_photos, paired_ratio, peak_rss_mb, run, vitcli_command  # noqa: E402

MODEL = ["--model", "vit-s16", "--stage", "pooled", "--batch-size", "16", "--json", "-q"]


def timed(cmd: list[str], netns: bool = False) -> tuple[float, float]:
    """(images/s inside the run, wall seconds of the whole command)."""
    if netns:
        env = {**os.environ, "RAY_AUTH_MODE": "disabled", "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
        inner = "ip link set lo up; exec " + " ".join(f"'{c}'" for c in cmd)
        start = time.perf_counter()
        r = subprocess.run(["unshare", "-n", "sh", "-c", inner], capture_output=True, env=env, cwd=ROOT)
        wall = time.perf_counter() - start
        if r.returncode:
            raise SystemExit(r.stderr.decode()[-2000:])
    else:
        wall, r = run(cmd)
    doc = json.loads(r.stdout)
    return doc["images_per_second"], wall


def fresh(path: Path) -> str:
    """`path` with nothing there (the previous repeat's output removed)."""
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()
    return str(path)


def interleaved(repeats: int, *runs) -> list[tuple[float, float, list[float]]]:
    """Each run `repeats` times, interleaved, the order reversed every other round; for each, the
    medians of (images/s, wall seconds) and every round's images/s (for paired ratios)."""
    results: list[list[tuple[float, float]]] = [[] for _ in runs]
    for i in range(repeats):
        order = list(zip(results, runs))
        for out, run_once in order[::-1] if i % 2 else order:
            out.append(run_once())
    return [(statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs), [r[0] for r in rs])
            for rs in results]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--rss-images", type=int, nargs=2, default=(10_000, 100), metavar=("MANY", "FEW"))
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--rss-size", type=int, default=224)
    ap.add_argument("--parts", default="1,2,3", help="which measurements to run, e.g. 2,3")
    args = ap.parse_args()
    print(machine())
    work = Path(tempfile.mkdtemp(prefix="vitcli-bench-dataset-"))
    try:
        photos = work / "photos"
        make_photos(photos, args.images)
        vit = vitcli_command()
        parts = set(args.parts.split(","))
        if "1" in parts:
            npy, pq = interleaved(args.repeats, lambda: timed([*vit, "embed", str(photos), *MODEL, "-o", fresh(work / "emb.npy")]),
                                  lambda: timed([*vit, "embed", str(photos), *MODEL, "-o", fresh(work / "emb.parquet")]))
            print(f"1. {args.images} JPEGs, ViT-S/16 pooled, median of {args.repeats}: .npy {npy[0]:.2f} images/s "
                  f"(wall {npy[1]:.0f} s), Parquet {pq[0]:.2f} images/s (wall {pq[1]:.0f} s): ratio {pq[0] / npy[0]:.3f}, "
                  f"paired {paired_ratio(pq[2], npy[2]):.3f} (target ≥ 0.98)")
        if not args.no_ray and "2" in parts:
            def local() -> tuple[float, float]:
                return timed([*vit, "embed", str(photos), *MODEL, "--output-dir", fresh(work / "local"), "--format", "parquet"])
            for actors in (1, 2):
                def ray(actors: int = actors) -> tuple[float, float]:
                    return timed([*vit, "embed", str(photos), *MODEL, "--output-dir", fresh(work / f"ray{actors}"),
                                  "--format", "parquet", "--backend", "ray", "--actors", str(actors)], netns=True)
                lo, ra = interleaved(args.repeats, local, ray)
                print(f"2. Ray, {actors} actor(s), local Ray on this machine, median of {args.repeats}: {ra[0]:.2f} images/s "
                      f"(wall {ra[1]:.0f} s) vs local backend {lo[0]:.2f} images/s (wall {lo[1]:.0f} s): ratio "
                      f"{ra[0] / lo[0]:.3f}, paired {paired_ratio(ra[2], lo[2]):.3f} (whole command {lo[1] / ra[1]:.3f}; "
                      "target ≥ 0.8)")
        many, few = args.rss_images
        rss = {}
        for count in (few, many) if "3" in parts else ():
            folder = work / f"rss{count}"
            start = time.perf_counter()
            make_photos(folder, count, long_sides=(96, 160))
            made = time.perf_counter() - start
            rss[count] = peak_rss_mb([*vit, "embed", str(folder), *MODEL, "--size", str(args.rss_size),
                                      "--output-dir", fresh(work / f"out{count}"), "--format", "parquet",
                                      "--shard-size", "1000"])
            print(f"   {count} images: made in {made:.0f} s, run in {time.perf_counter() - start - made:.0f} s, "
                  f"peak RSS {rss[count]:.0f} MB")
            shutil.rmtree(folder)
        if rss:
            print(f"3. peak RSS, local sharded Parquet, ViT-S/16 at {args.rss_size} px: {many} images {rss[many]:.0f} MB, "
                  f"{few} images {rss[few]:.0f} MB: ratio {rss[many] / rss[few]:.3f} (target ≤ 1.3)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Run every benchmark script in turn and print their figures (each prints its machine line first).

    python benchmarks/run_all.py                 # every script with its own defaults (an hour or more)
    python benchmarks/run_all.py --quick         # every script with its quick settings (about 15 minutes)
    python benchmarks/run_all.py --only view,explain

A script that fails is reported and the others still run; the exit code is 1 if any failed. The
dated log of past figures is docs/benchmarks.md.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# script → the arguments of its quick run (the full run passes none: each script's defaults)
QUICK: dict[str, list[str]] = {
    "bench_startup.py": ["--repeats", "3"],
    "bench_info.py": ["--repeats", "2"],
    "bench_decode.py": ["--repeats", "2"],
    "bench_embed.py": ["--images", "40", "--models", "vit_small_patch16_224", "--runs", "1", "--repeats", "3"],
    "bench_batch_embed.py": ["--quick"],
    "bench_classify.py": ["--images", "40", "--labels", "20", "--repeats", "1"],
    "bench_compare.py": ["--images", "16"],
    "bench_view.py": ["--quick"],
    "bench_explain.py": ["--quick"],
    "bench_attend_memory.py": ["--size", "896"],
    "bench_families.py": [],
    "bench_modern_forward.py": ["--batch", "2", "--repeats", "2"],
    "bench_dataset.py": ["--images", "40", "--repeats", "1", "--no-ray", "--rss-images", "200", "20",
                         "--rss-size", "64"],
}


def scripts() -> list[str]:
    """Every bench_*.py beside this file; one missing from QUICK is an error (its quick flag unknown)."""
    found = sorted(p.name for p in HERE.glob("bench_*.py"))
    unknown = [name for name in found if name not in QUICK]
    if unknown:
        raise SystemExit(f"run_all.py: add {', '.join(unknown)} to QUICK (its quick arguments)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="each script's quick settings")
    parser.add_argument("--only", help="comma-separated names, e.g. view,explain (bench_NAME.py)")
    args = parser.parse_args()
    names = scripts()
    if args.only:
        wanted = {f"bench_{n.strip()}.py" for n in args.only.split(",")}
        missing = wanted - set(names)
        if missing:
            raise SystemExit(f"run_all.py: --only: no {', '.join(sorted(missing))} in {HERE}")
        names = [n for n in names if n in wanted]
    failed = []
    for name in names:
        extra = QUICK[name] if args.quick else []
        print(f"\n=== {name} {' '.join(extra)}", flush=True)
        start = time.perf_counter()
        if subprocess.run([sys.executable, str(HERE / name), *extra], check=False).returncode:
            failed.append(name)
        print(f"=== {name}: {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()

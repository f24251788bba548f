"""Run every benchmark in turn (about 10-15 minutes on a quiet 2-core machine) and print the figures.

    python benchmarks/run_all.py            # all five
    python benchmarks/run_all.py --quick    # 40 photos, ViT-S only, 896 px attention: a few minutes
"""

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = parser.parse_args().quick
    runs = [
        ["bench_startup.py"],
        ["bench_decode.py"],
        ["bench_embed.py", *(["--images", "40", "--models", "vit_small_patch16_224"] if quick else [])],
        ["bench_attend_memory.py", *(["--size", "896"] if quick else [])],
    ]
    for script, *args in runs:
        subprocess.run([sys.executable, str(HERE / script), *args], check=True)


if __name__ == "__main__":
    main()

"""Benchmark 3: peak memory of `attend --query cls` at 1792 px against full attention with weights.

At 1792×1792 with P = 16 there are T = 112² + 1 = 12,545 tokens. `--query cls --layer all` keeps
one row per head and layer, (L, H, 1, T); full attention keeps the (H, T, T) weights of a layer
(H·T²·4 bytes: 1.8 GiB per layer for vit-ti16's 3 heads). Each figure is the peak resident memory of one
`vitcli attend` process (ru_maxrss), with the array it writes and its size.
The full-attention run needs about 3.7 GB at 1792 px with vit-ti16 (measured: 1.8 GB of weights,
0.8 GB of Python, torch and model); use --size 896 on a smaller machine. Usage: python benchmarks/bench_attend_memory.py [--model vit-ti16] [--size 1792]
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SAMPLES, machine, peak_rss_mb, vitcli_command  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit-ti16")
    parser.add_argument("--size", type=int, default=1792)
    args = parser.parse_args()
    import numpy as np

    print(machine())
    image = str(SAMPLES / "astronaut.jpg")
    with tempfile.TemporaryDirectory() as tmp:
        cls_out, full_out = Path(tmp) / "cls.npy", Path(tmp) / "full.npy"
        common = [*vitcli_command(), "attend", image, "--model", args.model, "--size", str(args.size), "-q"]
        baseline = peak_rss_mb([*vitcli_command(), "info", "--model", args.model, "-q"])
        cls_mb = peak_rss_mb([*common, "--query", "cls", "--layer", "all", "-o", str(cls_out)])
        full_mb = peak_rss_mb([*common, "--query", "all", "--layer", "-1", "-o", str(full_out)])
        a, b = np.load(cls_out, mmap_mode="r"), np.load(full_out, mmap_mode="r")
    tokens = (args.size // 16) ** 2 + 1
    print(f"[3] {args.model} at {args.size}x{args.size} ({tokens:,} tokens): attend --query cls --layer all "
          f"→ {list(a.shape)} ({a.nbytes / 2**20:.1f} MB), peak {cls_mb:,.0f} MB; full attention with weights, "
          f"last layer only → {list(b.shape)} ({b.nbytes / 2**20:,.0f} MB), peak {full_mb:,.0f} MB "
          f"→ {full_mb / cls_mb:.1f}x; (vitcli info alone: {baseline:,.0f} MB)")


if __name__ == "__main__":
    main()

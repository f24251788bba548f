"""Benchmark 5: the single-image commands people type most, against `python -c "import torch"`.

Median of N runs of each, interleaved, each a fresh process (the installed `vitcli` script); a
ratio is the median of the per-round ratios (runs of one round against each other):
`--help`, `patchify IMAGE`, `info` (a preset), `embed IMAGE` and `attend IMAGE` (ViT-B/16, random
weights) and `figures filters --model vit-b16`. Targets: --help < 0.3 s, info < 0.5 s, patchify
≤ 0.3× and embed / attend ≤ 1.25× import torch, figures filters < 3 s.
Usage: python benchmarks/bench_startup.py [--repeats 7]
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SAMPLES, machine, paired_ratio, run, vitcli_command  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(machine())
    commands = {
        "vitcli --help": [*vitcli_command(), "--help"],
        "vitcli patchify chelsea.jpg": [*vitcli_command(), "patchify", str(SAMPLES / "chelsea.jpg"), "-q"],
        "vitcli info": [*vitcli_command(), "info", "-q"],
        "vitcli embed chelsea.jpg": [*vitcli_command(), "embed", str(SAMPLES / "chelsea.jpg"), "-q"],
        "vitcli attend chelsea.jpg": [*vitcli_command(), "attend", str(SAMPLES / "chelsea.jpg"), "-q"],
        "vitcli figures filters": [*vitcli_command(), "figures", "filters", "--model", "vit-b16", "-q"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, cmd in commands.items():
            times[name].append(run(cmd)[0])
    median = {name: statistics.median(t) for name, t in times.items()}
    torch_times = times['python -c "import torch"']
    figures = ", ".join(f"{name} {t:.2f} s" + ("" if "torch" in name else
                                               f" ({paired_ratio(times[name], torch_times):.2f}× import torch)")
                        for name, t in median.items())
    print(f"[5] start-up (median of {args.repeats}): {figures} (targets: --help < 0.3 s, info < 0.5 s, "
          "patchify ≤ 0.3×, embed/attend ≤ 1.25× import torch, figures filters < 3 s)")


if __name__ == "__main__":
    main()

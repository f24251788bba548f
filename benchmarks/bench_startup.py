"""Benchmark 5: start-up time of `vitcli --help`, `vitcli patchify IMAGE` and `python -c "import torch"`.

Median of N runs of each, interleaved, each a fresh process (the installed `vitcli` script).
Target: `vitcli --help` under 0.3 s. Usage: python benchmarks/bench_startup.py [--repeats 7]
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SAMPLES, machine, run, vitcli_command  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(machine())
    commands = {
        "vitcli --help": [*vitcli_command(), "--help"],
        "vitcli patchify chelsea.jpg": [*vitcli_command(), "patchify", str(SAMPLES / "chelsea.jpg"), "-q"],
        'python -c "import torch"': [sys.executable, "-c", "import torch"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, cmd in commands.items():
            times[name].append(run(cmd)[0])
    figures = ", ".join(f"{name} {statistics.median(t):.2f} s" for name, t in times.items())
    print(f"[5] start-up (median of {args.repeats}): {figures} (target: --help < 0.3 s)")


if __name__ == "__main__":
    main()

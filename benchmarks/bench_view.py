"""`vitcli view` against `vitcli embed` on the same image and model, then the page in headless chromium.

Writing (issue 26): the whole `vitcli view chelsea.jpg` process against `vitcli embed chelsea.jpg`
(ViT-B/16 at 224, random weights, each a fresh process), interleaved, median of the per-round
ratios; target ≤ 1.3×. `view` runs one forward pass (attend's, with Q, K and every layer's weights,
from which the rollout is taken, joined with the block outputs and attention rows of similarity
and norms).

Reading, ViT-B/16 at 224, all 12 layers (skipped without chromium):
Targets (the page's own performance.now()): ready < 1.5 s from navigation start, one hover update
(attention rows of 12 heads from float16 Q, K, every panel redrawn) < 30 ms. The peer in the same
run: `Model.attend` computing the same query's map in Python (the model already loaded), i.e. what
one question costs without the page.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import SAMPLES, machine, paired_ratio, run, vitcli_command  # noqa: E402
from tests.browser.chromium import missing, run_page  # noqa: E402


def write_cost(repeats: int, against: Path | None) -> None:
    """`vitcli view` against `vitcli embed` as whole processes, interleaved: medians and the paired ratio;
    with `against` (another checkout's root), its `view` too, for a before/after."""
    image = str(SAMPLES / "chelsea.jpg")
    with tempfile.TemporaryDirectory() as d:
        page = ["view", image, "-o", str(Path(d) / "page.html"), "-q"]
        commands = {"embed": ([*vitcli_command(), "embed", image, "-q"], {}),
                    "view": ([*vitcli_command(), *page], {})}
        if against:
            commands["view of --against"] = ([*vitcli_command(), *page], {"PYTHONPATH": str(against)})
        times: dict[str, list[float]] = {name: [] for name in commands}
        for i in range(repeats):
            for name in (list(commands) if i % 2 == 0 else list(commands)[::-1]):
                cmd, env = commands[name]
                times[name].append(run(cmd, env=env)[0])
    print(f"view vs embed, chelsea.jpg, ViT-B/16 (median of {repeats}, interleaved): "
          + ", ".join(f"{name} {statistics.median(t):.2f} s" for name, t in times.items())
          + f"; view ÷ embed {paired_ratio(times['view'], times['embed']):.2f}x (target ≤ 1.3)"
          + (f", --against's view ÷ embed {paired_ratio(times['view of --against'], times['embed']):.2f}x"
             if against else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="rounds of view against embed")
    parser.add_argument("--quick", action="store_true", help="3 rounds, no browser part")
    parser.add_argument("--against", type=Path, help="another checkout's root: its view timed too (before/after)")
    args = parser.parse_args()
    print(machine())
    write_cost(3 if args.quick else args.repeats, args.against)
    reason = missing()
    if args.quick or reason:
        print(f"page in chromium: skipped ({'--quick' if args.quick else reason})")
        return
    import vitcli.api as api

    model = api.load_model("vit-b16", seed=0)
    with tempfile.TemporaryDirectory() as d:
        page = Path(d) / "chelsea.html"
        t0 = time.perf_counter()
        result = model.view(str(SAMPLES / "chelsea.jpg"), output=str(page))
        write_s = time.perf_counter() - t0
        cells = [(r, c) for r in range(0, 14, 2) for c in range(1, 14, 3)]  # 35 hovers, each a new query
        steps = [{"mouse": [16 + 30 * c, 16 + 30 * r]} for r, c in [(0, 0)]]  # warm-up
        for r, c in cells:
            steps += [{"mouse": [c * 30 + 15, r * 30 + 15]}, {"eval": "window.vitcli.lastUpdateMs()"}]
        reports = [run_page(page, steps) for _ in range(3)]
        t0 = time.perf_counter()
        for r, c in cells[:5]:
            model.attend(str(SAMPLES / "chelsea.jpg"), layer="5", head="3", query=f"{r},{c}")
        attend_s = (time.perf_counter() - t0) / 5
    ready = [r["ready_ms"] for r in reports]
    hovers = [v for r in reports for v in r["results"][2::2]]
    assert all(r["requests"] == [page.as_uri()] for r in reports)
    print(f"page: {result.size / 2**20:.2f} MB, written in {write_s:.1f} s ({result.document['storage'][0]['layers']['0']} storage)")
    print(f"ready: median {statistics.median(ready):.0f} ms, max {max(ready):.0f} ms over {len(ready)} loads (target < 1500)")
    p95 = sorted(hovers)[int(0.95 * (len(hovers) - 1))]
    print(f"hover update: median {statistics.median(hovers):.1f} ms, p95 {p95:.1f} ms, max {max(hovers):.1f} ms over {len(hovers)} hovers "
          f"(target < 30)")
    print(f"peer, Model.attend for one query's map: {attend_s * 1000:.0f} ms = "
          f"{attend_s * 1000 / statistics.median(hovers):.0f}x the page's median hover")


if __name__ == "__main__":
    main()

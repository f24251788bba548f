"""`vitcli view` in headless chromium: page ready and one hover update, ViT-B/16 at 224, all 12 layers.

Targets (the page's own performance.now()): ready < 1.5 s from navigation start, one hover update
(attention rows of 12 heads from float16 Q, K, every panel redrawn) < 30 ms. The peer in the same
run: `Model.attend` computing the same query's map in Python (the model already loaded), i.e. what
one question costs without the page.
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._common import SAMPLES, machine  # noqa: E402
from tests.browser.chromium import missing, run_page  # noqa: E402


def main() -> None:
    import vitcli.api as api

    reason = missing()
    if reason:
        sys.exit(f"bench_view: {reason}")
    print(machine())
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

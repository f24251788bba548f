"""Benchmark 4: Pillow draft-mode decoding against a full decode, for 12-megapixel JPEGs.

Three figures per photo size, best of N, interleaved:
  - Pillow alone: `Image.open(f).load()` against `Image.open(f); draft("RGB", (448, 448)); load()`;
  - vitcli's path to a 224×224 crop (`fit_one`: decode, orient, fit) with `--no-draft` and
    with draft (the default), and how far apart the two crops are (mean / max |Δ| in 0..255 levels).
Usage: python benchmarks/bench_decode.py [--repeats 5]
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SAMPLES, best_of, machine  # noqa: E402


def make_jpeg(path: Path, size: tuple[int, int]) -> None:
    """A photo (chelsea.jpg) upscaled to `size` (W, H), quality 90: a 12-MP camera-like file."""
    from PIL import Image

    Image.open(SAMPLES / "chelsea.jpg").convert("RGB").resize(size, Image.Resampling.BICUBIC).save(path, quality=90)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import numpy as np
    from PIL import Image

    from vitcli.api.images import ImageSpec, fit_one

    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "12mp.jpg"
        make_jpeg(path, (4000, 3000))

        def full() -> float:
            start = time.perf_counter()
            Image.open(path).load()
            return time.perf_counter() - start

        def draft() -> float:
            start = time.perf_counter()
            img = Image.open(path)
            img.draft("RGB", (448, 448))
            img.load()
            return time.perf_counter() - start

        def prepare(use_draft: bool):
            def go() -> float:
                start = time.perf_counter()
                fit_one(str(path), ImageSpec(size="224", draft=use_draft), 16)
                return time.perf_counter() - start
            return go

        t_full, t_draft, p_full, p_draft = best_of(args.repeats, full, draft, prepare(False), prepare(True))
        a = fit_one(str(path), ImageSpec(size="224", draft=False), 16).pixels.astype(int)
        b = fit_one(str(path), ImageSpec(size="224", draft=True), 16).pixels.astype(int)
        print(f"[4] 4000x3000 JPEG (12 MP), target 224: Pillow full decode {t_full * 1000:.0f} ms, draft decode "
              f"(1/4 scale, 1000x750) {t_draft * 1000:.0f} ms → {t_full / t_draft:.1f}x faster; vitcli decode+fit to "
              f"224x224: --no-draft {p_full * 1000:.0f} ms, draft {p_draft * 1000:.0f} ms → {p_full / p_draft:.1f}x; "
              f"crops differ by mean {np.abs(a - b).mean():.2f}, max {np.abs(a - b).max()} levels of 255")


if __name__ == "__main__":
    main()

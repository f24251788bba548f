"""Benchmark: `vitcli compare` of two ViT-S/16 models against two `vitcli embed` runs over the same folder.

Issue 28's target: 1,000 images through two ViT-S/16 models (every block's class token, linear CKA
streamed by minibatches) within 1.2× the time of two `embed --stage pooled` runs, one per model, over
the same folder. Also the peak memory of compare at N/4 and N images: streaming CKA holds a batch,
so it must not grow with N. Both models are timm's vit_small_patch16_224 with random weights
(seeds 0 and 1), saved as safetensors.

    python benchmarks/bench_compare.py [--images 1000] [--batch-size 32]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, make_photos, peak_rss_mb, run, vitcli_command

NAME = "vit_small_patch16_224"


def save_weights(path: Path, seed: int) -> None:
    """timm's randomly initialised ViT-S/16 (seed `seed`) as safetensors."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    save_file({k: v.contiguous() for k, v in timm.create_model(NAME, pretrained=False).state_dict().items()}, str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    print(machine())
    vitcli = vitcli_command()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        make_photos(d / "photos", args.images)
        make_photos(d / "quarter", max(8, args.images // 4))
        a, b, photos = str(d / "a.safetensors"), str(d / "b.safetensors"), str(d / "photos")
        save_weights(Path(a), 0)
        save_weights(Path(b), 1)
        common = ["--batch-size", str(args.batch_size), "-q"]
        embed_a, _ = run([*vitcli, "embed", photos, "--stage", "pooled", "--weights", a, "-o", str(d / "a.npy"), *common])
        embed_b, _ = run([*vitcli, "embed", photos, "--stage", "pooled", "--weights", b, "-o", str(d / "b.npy"), *common])
        compare, _ = run([*vitcli, "compare", photos, "--weights", a, "--with", b, "-o", str(d / "sim.npy"), *common])
        _, done = run([*vitcli, "compare", photos, "--weights", a, "--with", b, "--json", *common[:-1]])
        doc = json.loads(done.stdout)
        cmd = [*vitcli, "compare", "--weights", a, "--with", b, *common]
        small, large = peak_rss_mb([*cmd, str(d / "quarter")]), peak_rss_mb([*cmd, photos])
    ratio = compare / (embed_a + embed_b)
    print(f"{args.images} images, batch {args.batch_size}: two embed runs {embed_a:.1f} s + {embed_b:.1f} s; "
          f"compare (12 × 12 layers, {doc['cka_estimator']}) {compare:.1f} s")
    print(f"compare ÷ two embeds: {ratio:.2f}× (target ≤ 1.2×)")
    print(f"peak memory of compare: {small:.0f} MB at {max(8, args.images // 4)} images, {large:.0f} MB at "
          f"{args.images} images ({large / small:.2f}×; streaming CKA: should stay about 1×)")


if __name__ == "__main__":
    main()

"""Benchmark: `explain` memory at 1792 px and speed at 224 px against peers, ViT-B/16, one run.

  memory  peak resident memory (ru_maxrss of a child process) of `vitcli explain --method
          grad-rollout` on a 1792×1792 image with ViT-B/16 (12,545 tokens); the issue's bound is 6 GiB.
  speed   at 224 px on the same timm ViT-B/16 weights: vitcli's gradcam against pytorch-grad-cam
          (GradCAM on blocks[-1].norm1 with its ViT reshape_transform; target 1.2×), and vitcli's
          grad-rollout against one forward + backward pass of the timm model (target 2.5×).
          Calls alternate and each figure is the median of --repeats, so load hits both sides alike.

Usage: python benchmarks/bench_explain.py [--part memory|speed|both] [--size 1792] [--depth 12] [--repeats 7]
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import SAMPLES, machine, peak_rss_mb, vitcli_command  # noqa: E402


def memory(size: int, depth: int) -> None:
    import numpy as np

    image = str(SAMPLES / "astronaut.jpg")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "map.npy"
        baseline = peak_rss_mb([*vitcli_command(), "info", "--model", "vit-b16", "-q"])
        start = time.perf_counter()
        peak = peak_rss_mb([*vitcli_command(), "explain", image, "--model", "vit-b16", "--depth", str(depth), "--size", str(size),
                            "--method", "grad-rollout", "-o", str(out), "-q"])
        seconds = time.perf_counter() - start
        shape = np.load(out).shape
    tokens = (size // 16) ** 2 + 1
    print(f"[explain memory] vit-b16 ({depth} blocks) grad-rollout at {size}x{size} ({tokens:,} tokens) → map {list(shape)}: "
          f"peak {peak:,.0f} MB = {peak / 1024:.2f} GiB (bound 6 GiB), {seconds:.0f} s; "
          f"(vitcli info alone: {baseline:,.0f} MB)")


def timed(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def speed(repeats: int) -> None:
    import timm
    import torch
    from pytorch_grad_cam import GradCAM
    from safetensors.torch import save_file

    from vitcli.api import load_model
    from vitcli.core.explain import Target, explain

    torch.manual_seed(0)
    peer = timm.create_model("vit_base_patch16_224", pretrained=False).eval()
    with tempfile.TemporaryDirectory() as tmp:
        save_file(peer.state_dict(), Path(tmp) / "vit_base_patch16_224.safetensors")
        ours = load_model(str(Path(tmp) / "vit_base_patch16_224.safetensors")).module
    x = torch.randn(1, 3, 224, 224)

    def reshape_transform(t):  # pytorch-grad-cam's ViT recipe (14×14, one prefix token)
        return t[:, 1:, :].reshape(t.size(0), 14, 14, t.size(2)).permute(0, 3, 1, 2)

    cam = GradCAM(model=peer, target_layers=[peer.blocks[-1].norm1], reshape_transform=reshape_transform)
    frozen = timm.create_model("vit_base_patch16_224", pretrained=False).eval().requires_grad_(False)
    frozen.load_state_dict(peer.state_dict())

    def forward_backward() -> None:
        xi = x.clone().requires_grad_()
        logits = frozen(xi)
        torch.autograd.grad(logits[0].max(), xi)

    runs = {"vitcli gradcam": lambda: explain(ours, x, "gradcam", Target("top")),
            "pytorch-grad-cam": lambda: cam(input_tensor=x, targets=None),
            "vitcli grad-rollout": lambda: explain(ours, x, "grad-rollout", Target("top")),
            "timm forward+backward": forward_backward}
    for fn in runs.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(repeats):  # alternate, so a burst of load hits every side
        for name, fn in runs.items():
            times[name] += timed(fn, 1)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("[explain speed] ViT-B/16 at 224 px, median of "
          f"{repeats}: " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in med.items()))
    print(f"[explain speed] gradcam / pytorch-grad-cam = {med['vitcli gradcam'] / med['pytorch-grad-cam']:.2f}x "
          f"(target ≤ 1.2x); grad-rollout / forward+backward = "
          f"{med['vitcli grad-rollout'] / med['timm forward+backward']:.2f}x (target ≤ 2.5x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["memory", "speed", "both"], default="both")
    parser.add_argument("--size", type=int, default=1792)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--depth", type=int, default=12, help="memory: blocks of ViT-B/16 (fewer for a quick look)")
    args = parser.parse_args()
    print(machine())
    if args.part in ("speed", "both"):
        speed(args.repeats)
    if args.part in ("memory", "both"):
        memory(args.size, args.depth)


if __name__ == "__main__":
    main()

"""Benchmark: `explain` memory at 1792 px and speed at 224 px against peers, ViT-B/16, one run.

  memory  peak resident memory (ru_maxrss of a child process) of `vitcli explain --method
          grad-rollout` on a 1792×1792 image with ViT-B/16 (12,545 tokens); the issue's bound is 6 GiB.
  speed   at 224 px on the same timm ViT-B/16 weights: vitcli's gradcam against pytorch-grad-cam
          (GradCAM on blocks[-1].norm1 with its ViT reshape_transform; target 1.2×), and vitcli's
          grad-rollout against one forward + backward pass of the timm model (target 2.5×).
          Calls alternate and each figure is the median of --repeats, so load hits both sides alike.

  highres grad-rollout, attn-grad and gradcam at --size (1792: 12,545 tokens) on ViT-B/16, each in a
          child process that also times one forward pass of the same model on the same input right
          before it (inference mode, the pooled embedding): the ratio explain ÷ forward (target ≤ 3×)
          and the child's peak resident memory (bound 6 GiB). The peer, `floor`: timm's ViT-B/16 at
          the same size, one forward + backward of the top logit to the input with timm's gradient
          checkpointing (recomputation, as the issue's floor counts it) and SDPA's fused backward,
          no explanation; every method is also printed ÷ this floor.

Usage: python benchmarks/bench_explain.py [--part memory|speed|highres|all] [--size 1792] [--depth 12]
       [--repeats 7] [--quick]   (--quick: 448 px, 3 repeats, 4 blocks for memory)
"""

import argparse
import json
import statistics
import subprocess
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


HIGHRES = r"""
import json, resource, sys, time
import torch
from vitcli.api import load_model
from vitcli.core.capture import Capture
from vitcli.core.explain import Target, explain
size, method = int(sys.argv[1]), sys.argv[2]
model = load_model("vit-b16", seed=0).module.eval()
x = torch.randn(1, 3, size, size, generator=torch.Generator().manual_seed(0))
with torch.inference_mode():
    model(torch.zeros(1, 3, 224, 224), Capture(inputs=False, final="pooled"))  # warm-up: threads, allocator
    start = time.perf_counter()
    model(x, Capture(inputs=False, final="pooled"))
    forward = time.perf_counter() - start
if method == "floor":  # timm, forward + backward to the input, blocks recomputed (gradient checkpointing)
    import timm
    del model
    peer = timm.create_model("vit_base_patch16_224", img_size=size, pretrained=False).eval().requires_grad_(False)
    peer.set_grad_checkpointing(True)
    start = time.perf_counter()
    xi = x.clone().requires_grad_()
    (grad,) = torch.autograd.grad(peer(xi)[0].max(), xi)
    seconds = time.perf_counter() - start
    assert torch.isfinite(grad).all()
else:
    start = time.perf_counter()
    maps = explain(model, x, method, Target("top")).maps
    seconds = time.perf_counter() - start
    assert torch.isfinite(maps).all()
print(json.dumps({"forward": forward, "explain": seconds,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _child(root: Path, size: int, method: str) -> dict[str, float]:
    """One child process with vitcli imported from `root`: its forward, explain and peak memory."""
    import os

    out = subprocess.run([sys.executable, "-c", HIGHRES, str(size), method], capture_output=True, text=True,
                         check=False, env={**os.environ, "PYTHONPATH": str(root)})
    if out.returncode:
        raise SystemExit(f"{method} at {size} ({root}): {out.stderr}")
    return json.loads(out.stdout)


def highres(size: int, repeats: int, methods: list[str], against: Path | None) -> None:
    """Each method in its own child: one forward pass, then the method, same input; ratio and peak memory.
    With `against` (another checkout), its children run interleaved with this one's, for a before/after."""
    roots = {"": Path(__file__).resolve().parent.parent} | ({f" [{against}]": against} if against else {})
    tokens = (size // 16) ** 2 + 1
    floor: float | None = None  # the peer's forward + backward ÷ one forward pass, once measured
    for method in sorted(methods, key=lambda m: m != "floor"):  # the floor first, for the ratios after it
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in roots}
        for _ in range(repeats):
            for name, root in roots.items():
                runs[name].append(_child(root, size, "floor" if method == "floor" else method))
            if method == "floor":
                break  # the peer is the same code in every checkout
        for name, got in runs.items():
            if not got:
                continue
            ratio = statistics.median(r["explain"] / r["forward"] for r in got)
            what = ("timm forward + backward to the input, gradient checkpointing (the floor, no explanation)"
                    if method == "floor" else method)
            over = f", {ratio / floor:.2f}x the floor" if floor and method != "floor" else ""
            print(f"[explain {size} px]{name} {what}, ViT-B/16, {tokens:,} tokens (median of {len(got)}): "
                  f"{statistics.median(r['explain'] for r in got):.1f} s, one forward pass "
                  f"{statistics.median(r['forward'] for r in got):.1f} s, ratio {ratio:.2f}x (target ≤ 3x){over}; "
                  f"peak {max(r['peak_mb'] for r in got) / 1024:.2f} GiB (bound 6 GiB)")
            floor = ratio if method == "floor" else floor
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["memory", "speed", "highres", "both", "all"], default="all",
                        help="both: memory and speed (as before highres existed)")
    parser.add_argument("--size", type=int, default=1792)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--highres-repeats", type=int, default=1, help="runs of each method at --size (minutes each)")
    parser.add_argument("--depth", type=int, default=12, help="memory: blocks of ViT-B/16 (fewer for a quick look)")
    parser.add_argument("--methods", default="floor,grad-rollout,attn-grad,gradcam",
                        help="highres: the methods timed (floor: the timm peer's forward + backward)")
    parser.add_argument("--against", type=Path, help="highres: another checkout's root, timed interleaved (before/after)")
    parser.add_argument("--quick", action="store_true", help="448 px, 3 repeats, 4 blocks for the memory part")
    args = parser.parse_args()
    if args.quick:
        args.size, args.repeats, args.depth = 448, 3, 4
    print(machine())
    if args.part in ("speed", "both", "all"):
        speed(args.repeats)
    if args.part in ("highres", "all"):
        highres(args.size, args.highres_repeats, args.methods.split(","), args.against)
    if args.part in ("memory", "both", "all"):
        memory(args.size, args.depth)


if __name__ == "__main__":
    main()

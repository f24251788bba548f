"""Benchmarks 1 and 2: `vitcli embed --stage pooled` over a folder against timm, same weights.

1. Whole pipeline: `vitcli embed FOLDER --stage pooled --weights W` (threaded decoding, batches)
   against timm's `forward_features` fed by a plain Pillow loop (open, convert, resize the short
   side to 224 bicubic, centre-crop, normalise with the model's timm mean/std, batches of the same
   size), both in subprocesses.
   Two ratios: images/s of the decode+forward loop (vitcli's own timer against timm's), and of
   the whole command including Python/torch start-up and model loading; then the loop ratio with
   --no-draft (every JPEG decoded in full), whose embeddings must equal timm's.
2. Forward pass alone on the same (B, 3, 224, 224) tensor: vitcli's encoder against timm's
   `forward_features`, both under `torch.inference_mode()`, interleaved, best of N.

Ratios are vitcli ÷ timm speed (> 1 means vitcli is faster). Usage:
    python benchmarks/bench_embed.py [--images 200] [--models vit_small_patch16_224,vit_base_patch16_224]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, machine, make_photos, run, timed, vitcli_command  # noqa: E402

TIMM_LOOP = r"""
import json, sys, time
import numpy as np, timm, torch
from PIL import Image
folder, weights, name, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
start = time.perf_counter()
model = timm.create_model(name, pretrained=False)
from safetensors.torch import load_file
model.load_state_dict(load_file(weights)); model.eval()
mean = np.array(model.pretrained_cfg["mean"], np.float32) * 255  # timm's own constants for this model
std = np.array(model.pretrained_cfg["std"], np.float32) * 255
def load(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size; s = 224 / min(w, h)
    img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.Resampling.BICUBIC)
    left, top = (img.width - 224) // 2, (img.height - 224) // 2
    x = (np.asarray(img.crop((left, top, left + 224, top + 224)), np.float32) - mean) / std
    return torch.from_numpy(x.transpose(2, 0, 1).copy())
paths = sorted(str(p) for p in __import__("pathlib").Path(folder).glob("*.jpg"))
loop = time.perf_counter()
rows = []
with torch.inference_mode():
    for i in range(0, len(paths), batch):
        x = torch.stack([load(p) for p in paths[i:i + batch]])
        rows.append(model.forward_features(x)[:, 0].numpy())
end = time.perf_counter()
np.save(sys.argv[5], np.concatenate(rows))
print(json.dumps({"loop": end - loop, "total_in_process": end - start}))
"""


def save_timm_weights(name: str, path: Path) -> None:
    """timm's randomly initialised model, saved as safetensors for both sides."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))


def pipeline(folder: Path, weights: Path, name: str, batch: int, workdir: Path, repeats: int) -> dict:
    """Benchmark 1 for one model: both pipelines `repeats` times, interleaved; the fastest run of each."""
    vit_out, timm_out = workdir / "vitcli.npy", workdir / "timm.npy"
    vit_cmd = [*vitcli_command(), "embed", str(folder), "--weights", str(weights), "--stage", "pooled",
               "--batch-size", str(batch), "--size", "224", "-o", str(vit_out), "--json"]
    timm_cmd = [sys.executable, "-c", TIMM_LOOP, str(folder), str(weights), name, str(batch), str(timm_out)]
    exact_out = workdir / "vitcli_nodraft.npy"
    exact_cmd = [*vit_cmd[:-3], "--no-draft", "-o", str(exact_out), "--json"]
    runs: dict[str, list[tuple[float, float]]] = {"vitcli": [], "exact": [], "timm": []}
    for _ in range(repeats):
        for key, cmd in (("vitcli", vit_cmd), ("exact", exact_cmd)):
            wall, r = run(cmd)
            runs[key].append((json.loads(r.stdout)["seconds"], wall))
        wall, r = run(timm_cmd)
        runs["timm"].append((json.loads(r.stdout)["loop"], wall))
    (v_loop, v_wall), (e_loop, _), (t_loop, t_wall) = min(runs["vitcli"]), min(runs["exact"]), min(runs["timm"])
    import numpy as np

    exact, peer = np.load(exact_out), np.load(timm_out)
    return {"images": len(list(folder.glob("*.jpg"))), "vitcli_loop_s": v_loop, "timm_loop_s": t_loop,
            "loop_ratio": t_loop / v_loop, "exact_ratio": t_loop / e_loop, "vitcli_wall_s": v_wall,
            "timm_wall_s": t_wall, "wall_ratio": t_wall / v_wall,
            "exact_diff": float(np.abs(exact - peer).max()), "draft_diff": float(np.abs(np.load(vit_out) - peer).max())}


def forward_only(weights: Path, name: str, batch: int, repeats: int) -> dict:
    """Benchmark 2: the same tensor through both models, interleaved, best of `repeats`."""
    import timm
    import torch
    from safetensors.torch import load_file

    from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint
    from vitcli.core.capture import Capture

    peer = timm.create_model(name, pretrained=False)
    peer.load_state_dict(load_file(str(weights)))
    peer.eval()
    ours = build_model_from_checkpoint(load_checkpoint(str(weights))).eval()
    x = torch.randn(batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))

    lean = Capture(inputs=False)  # the final tokens, like forward_features
    with torch.inference_mode():  # same numbers first, then warm-up
        diff = (ours(x, lean).output - peer.forward_features(x)).abs().max().item()
    t_ours, t_peer = best_of(repeats, timed(lambda: ours(x, lean)), timed(lambda: peer.forward_features(x)))
    return {"batch": batch, "vitcli_s": t_ours, "timm_s": t_peer, "ratio": t_peer / t_ours, "max_abs_diff": diff}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--models", default="vit_small_patch16_224,vit_base_patch16_224")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7, help="forward-pass repeats (benchmark 2)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each whole pipeline (benchmark 1)")
    args = parser.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "photos"
        make_photos(folder, args.images)
        print(f"{args.images} JPEGs, long side 640-1600 px (resized copies of sample_images/), batch {args.batch}")
        for name in args.models.split(","):
            weights = work / f"{name}.safetensors"
            save_timm_weights(name, weights)
            p = pipeline(folder, weights, name, args.batch, work, args.runs)
            print(f"[1] {name}: embed --stage pooled, decode+forward loop: vitcli {p['images'] / p['vitcli_loop_s']:.2f} "
                  f"images/s, timm+Pillow {p['images'] / p['timm_loop_s']:.2f} images/s → ratio {p['loop_ratio']:.2f} "
                  f"(target ≥ 1.0); whole command incl. start-up: vitcli {p['vitcli_wall_s']:.1f} s, "
                  f"timm {p['timm_wall_s']:.1f} s → ratio {p['wall_ratio']:.2f}; with --no-draft: loop ratio "
                  f"{p['exact_ratio']:.2f}, max |pooled − timm| {p['exact_diff']:.1e} (draft: {p['draft_diff']:.1e})")
            f = forward_only(weights, name, args.batch, args.repeats)
            print(f"[2] {name}: forward pass alone, batch {f['batch']}: vitcli {f['vitcli_s'] * 1000:.0f} ms, "
                  f"timm {f['timm_s'] * 1000:.0f} ms → ratio {f['ratio']:.2f} (target ≥ 0.95); "
                  f"max |difference| {f['max_abs_diff']:.1e}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()

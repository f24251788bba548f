"""Batch embedding against the way people do it: `vitcli embed FOLDER --stage pooled` against timm.

Over N JPEGs (1,000 by default: resized copies of sample_images/, long side 640-1600 px), same
random timm weights saved as .safetensors and loaded by every side, each a fresh process:

  vitcli   `vitcli embed FOLDER --weights W --stage pooled --batch-size B -o out.npy`
  loader   the usual script: timm's `create_transform(**resolve_data_config(model=...))` in a
           torch `Dataset`, `DataLoader(batch_size=B, num_workers=2)`, `forward_features` then
           `forward_head(pre_logits=True)` under `inference_mode`
  pillow   the plain loop of bench_embed.py (open, resize, crop, normalise, one batch at a time)

Runs are interleaved (order reversed every other round); the figure is the best run of each and
the ratios are peer time ÷ vitcli time of the whole command (≥ 1.0: vitcli is faster; target ≥ 1.0
against both). The embeddings are compared with the loader's (max |difference|).
Usage: python benchmarks/bench_batch_embed.py [--n 1000] [--model vit_small_patch16_224] [--quick]
"""

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine, make_photos, run, vitcli_command  # noqa: E402
from bench_embed import TIMM_LOOP, save_timm_weights  # noqa: E402

LOADER = r"""
import sys
import numpy as np, timm, torch
from PIL import Image
from safetensors.torch import load_file
from timm.data import create_transform, resolve_data_config
from torch.utils.data import DataLoader, Dataset

folder, weights, name, batch, out = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
model = timm.create_model(name, pretrained=False)
model.load_state_dict(load_file(weights))
model.eval()
transform = create_transform(**resolve_data_config({}, model=model))


class Photos(Dataset):
    def __init__(self, paths):
        self.paths = paths

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        with Image.open(self.paths[i]) as img:
            return transform(img.convert("RGB"))


if __name__ == "__main__":
    paths = sorted(str(p) for p in __import__("pathlib").Path(folder).glob("*.jpg"))
    rows = []
    with torch.inference_mode():
        for x in DataLoader(Photos(paths), batch_size=batch, num_workers=2):
            rows.append(model.forward_head(model.forward_features(x), pre_logits=True).numpy())
    np.save(out, np.concatenate(rows))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="JPEGs in the folder")
    parser.add_argument("--model", default="vit_small_patch16_224")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--runs", type=int, default=2, help="interleaved runs of each command")
    parser.add_argument("--quick", action="store_true", help="100 JPEGs, one run")
    args = parser.parse_args()
    n, runs = (100, 1) if args.quick else (args.n, args.runs)
    print(machine())
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        folder = work / "photos"
        make_photos(folder, n)
        weights = work / f"{args.model}.safetensors"
        save_timm_weights(args.model, weights)
        outs = {k: work / f"{k}.npy" for k in ("vitcli", "loader", "pillow")}
        commands = {
            "vitcli": [*vitcli_command(), "embed", str(folder), "--weights", str(weights), "--stage", "pooled",
                       "--batch-size", str(args.batch), "-o", str(outs["vitcli"]), "-q"],
            "loader": [sys.executable, "-c", LOADER, str(folder), str(weights), args.model, str(args.batch),
                       str(outs["loader"])],
            "pillow": [sys.executable, "-c", TIMM_LOOP, str(folder), str(weights), args.model, str(args.batch),
                       str(outs["pillow"])],
        }
        times: dict[str, list[float]] = {k: [] for k in commands}
        for i in range(runs):
            for key in list(commands) if i % 2 == 0 else list(commands)[::-1]:
                times[key].append(run(commands[key])[0])
        best = {k: min(t) for k, t in times.items()}
        loader = np.load(outs["loader"])
        diffs = {k: float(np.abs(np.load(outs[k]) - loader).max()) for k in ("vitcli", "pillow")}
    print(f"{n} JPEGs, {args.model}, batch {args.batch}, best of {runs} (whole commands): "
          + ", ".join(f"{k} {t:.1f} s ({n / t:.1f} images/s)" for k, t in best.items()))
    print(f"ratios (peer ÷ vitcli, target ≥ 1.0): DataLoader(num_workers=2) + timm transforms "
          f"{best['loader'] / best['vitcli']:.2f}, Pillow loop {best['pillow'] / best['vitcli']:.2f}; "
          f"max |pooled − loader's|: vitcli {diffs['vitcli']:.1e}, Pillow loop {diffs['pillow']:.1e}")


if __name__ == "__main__":
    main()

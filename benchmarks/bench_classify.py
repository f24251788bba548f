"""`vitcli classify` over a folder × K labels against open_clip's own zero-shot loop, same weights, one run.

open_clip's loop: `create_model` from the same open_clip_config.json and weights, its own eval transform per
image (Pillow), `encode_image` in batches, `encode_text` of the labels once, exp(logit_scale)·cos and softmax.
vitcli: `vitcli classify FOLDER --weights W --labels-file L -o p.npy`. Both in subprocesses (start-up and loading
included), interleaved, best of N; the probabilities must agree (≤ 1e-4). Random weights of open_clip's ViT-B-32.

    python benchmarks/bench_classify.py [--images 200] [--labels 100] [--repeats 2]
"""

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, machine, make_photos, run, vitcli_command

OPEN_CLIP_LOOP = r"""
import json, sys, time
import numpy as np, open_clip, torch
from PIL import Image
folder, weights, labels_file, out, batch = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=weights)
model.eval()
tokenizer = open_clip.get_tokenizer("ViT-B-32")
labels = [line.strip() for line in open(labels_file) if line.strip()]
paths = sorted(str(p) for p in __import__("pathlib").Path(folder).glob("*.jpg"))
rows = []
with torch.inference_mode():
    text = model.encode_text(tokenizer(labels))
    text = text / text.norm(dim=-1, keepdim=True)
    for i in range(0, len(paths), batch):
        x = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i:i + batch]])
        image = model.encode_image(x)
        image = image / image.norm(dim=-1, keepdim=True)
        rows.append((model.logit_scale.exp() * image @ text.T).softmax(-1).numpy())
np.save(out, np.concatenate(rows))
"""


def make_checkpoint(folder: Path) -> Path:
    """open_clip's ViT-B-32 with its own random weights, as an open_clip repository folder (and its BPE file)."""
    import shutil

    import open_clip
    import torch

    torch.manual_seed(0)
    model = open_clip.create_model("ViT-B-32")
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": open_clip.get_model_config("ViT-B-32"),
                                                              "preprocess_cfg": {}}))
    shutil.copy(open_clip.tokenizer.default_bpe(), folder)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    import numpy as np

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        photos = root / "photos"
        make_photos(photos, args.images, (320, 640))
        weights = make_checkpoint(root / "clip")
        labels = root / "labels.txt"
        labels.write_text("\n".join(f"a photo of a thing number {i}" for i in range(args.labels)))
        ours, theirs = root / "ours.npy", root / "theirs.npy"
        vitcli = [*vitcli_command(), "classify", str(photos), "--weights", str(weights), "--labels-file", str(labels),
                  "--batch-size", str(args.batch), "-o", str(ours), "-q", "--device", "cpu"]
        peer = [sys.executable, "-c", OPEN_CLIP_LOOP, str(photos), str(weights / "open_clip_pytorch_model.bin"),
                str(labels), str(theirs), str(args.batch)]
        v, o = best_of(args.repeats, lambda: run(vitcli)[0], lambda: run(peer)[0])
        agree = float(np.abs(np.load(ours) - np.load(theirs)).max())
    print(machine())
    print(f"classify {args.images} images × {args.labels} labels (ViT-B-32, random weights): vitcli {v:.1f} s, "
          f"open_clip's loop {o:.1f} s, speed ratio vitcli ÷ open_clip {o / v:.2f}; probabilities agree to {agree:.1e}")


if __name__ == "__main__":
    main()

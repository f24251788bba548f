"""Shared by the compare and probe tests: 64 small images cut from the samples, two scrambled timm
models saved as timm's hub folders (a ViT-S/16 and a DINOv2-style ViT-S/14 with 4 registers, 2 blocks
each), and their layer features extracted here with timm's own `forward_intermediates(norm=False)`."""

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tests.checkpoints.parity import scramble
from tests.conftest import SAMPLES

SIZE = 112  # 7 × 7 patches of 16, 8 × 8 of 14


def crops(folder: Path, count: int = 64, seed: int = 0, size: int = SIZE) -> list[Path]:
    """`count` PNGs of size × size: random square crops of the sample photos, resized."""
    rng = np.random.default_rng(seed)
    photos = [Image.open(p).convert("RGB") for p in sorted(SAMPLES.glob("*.jpg"))]
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        side = int(rng.integers(min(photo.size) // 4, min(photo.size)))
        x, y = int(rng.integers(0, photo.size[0] - side + 1)), int(rng.integers(0, photo.size[1] - side + 1))
        path = folder / f"img{i:03d}.png"
        photo.crop((x, y, x + side, y + side)).resize((size, size), Image.Resampling.BICUBIC).save(path)
        paths.append(path)
    return paths


def save_timm(name: str, folder: Path, seed: int, **kwargs) -> torch.nn.Module:
    """A scrambled timm model of 2 blocks saved as timm's hub folder (config.json + safetensors)."""
    import timm
    from timm.models._hub import save_for_hf

    model = scramble(timm.create_model(name, pretrained=False, depth=2, img_size=SIZE, **kwargs), seed)
    save_for_hf(model, str(folder), safe_serialization=True)
    return model.double().eval()


def model_input(model: Any, paths: list[Path]) -> torch.Tensor:
    """The images as the model's input (B, 3, H, W): torchvision's ToTensor and Normalize with the model's
    own mean and std (float32, as timm's transform), then float64; the images are already SIZE × SIZE."""
    from torchvision import transforms

    cfg = model.pretrained_cfg
    t = transforms.Compose([transforms.ToTensor(), transforms.Normalize(cfg["mean"], cfg["std"])])
    return torch.stack([t(Image.open(p).convert("RGB")) for p in paths]).double()


@torch.no_grad()
def timm_layers(model: Any, x: torch.Tensor) -> dict[str, list[torch.Tensor]]:
    """Each block's feature by timm for every --tokens: (n, D) per image, or (n·N, D) for patches."""
    feats = model.forward_intermediates(x, indices=list(range(len(model.blocks))), norm=False, output_fmt="NLC",
                                        intermediates_only=True, return_prefix_tokens=True)  # [((n, N, D), (n, p, D))]
    pooled = model.forward_head(model.forward_features(x), pre_logits=True)  # (n, D)
    return {"cls": [prefix[:, 0] for _, prefix in feats],
            "mean": [patches.mean(1) for patches, _ in feats],
            "patches": [patches.reshape(-1, patches.shape[-1]) for patches, _ in feats],
            # at the last block the model's pooled embedding; before it the token a class-token pool reads
            "pooled": [prefix[:, 0] for _, prefix in feats[:-1]] + [pooled]}

"""Named ViT sizes, building a model from a config and a seed, and counting parameters and MACs."""

import torch
from torch import nn

from vitcli.core.config import PosEncKind, ViTConfig
from vitcli.core.encoder import VisionTransformer
from vitcli.core.validate import validate

DEFAULT_PRESET = "vit-b16"

# name: (patch, dim, depth, heads); MLP 4·D, image 224×224 (the native size of each in timm,
# torchvision and CLIP; L/14 as CLIP's ViT-L/14, H/14 as timm's vit_huge_patch14_224).
_SIZES: dict[str, tuple[int, int, int, int]] = {
    "vit-ti16": (16, 192, 12, 3),
    "vit-s16": (16, 384, 12, 6),
    "vit-b16": (16, 768, 12, 12),
    "vit-b32": (32, 768, 12, 12),
    "vit-l16": (16, 1024, 24, 16),
    "vit-s14": (14, 384, 12, 6),
    "vit-b14": (14, 768, 12, 12),
    "vit-l14": (14, 1024, 24, 16),
    "vit-h14": (14, 1280, 32, 16),
}
PRESETS: dict[str, ViTConfig] = {
    name: ViTConfig(name=name, patch_size=p, dim=d, depth=depth, heads=h, mlp_dim=4 * d)
    for name, (p, d, depth, h) in _SIZES.items()
}


def get_preset(name: str) -> ViTConfig:
    """The config of a named preset, or a ValueError listing the names."""
    key = name.strip().lower()
    if key not in PRESETS:
        raise ValueError(f"unknown model '{name}': use one of {', '.join(PRESETS)}")
    return PRESETS[key]


def override(config: ViTConfig, *, patch_size: int | None = None, dim: int | None = None,
             depth: int | None = None, heads: int | None = None, mlp_ratio: float | None = None,
             image_size: tuple[int, int] | None = None, posenc: PosEncKind | None = None,
             class_token: bool | None = None) -> ViTConfig:
    """A validated copy with command-line overrides; the MLP keeps its ratio to D unless given.

    Without a class token, no position row is kept for it and pooling becomes the patch mean.
    """
    changes: dict[str, object] = {}
    for name, value in (("patch_size", patch_size), ("dim", dim), ("depth", depth), ("heads", heads),
                        ("image_size", image_size), ("posenc", posenc), ("class_token", class_token)):
        if value is not None:
            changes[name] = tuple(value) if name == "image_size" else value
    ratio = mlp_ratio if mlp_ratio is not None else config.mlp_dim / config.dim
    if ratio <= 0:
        raise ValueError(f"MLP ratio must be positive, got {ratio}")
    changes["mlp_dim"] = round(ratio * changes.get("dim", config.dim))  # type: ignore[operator]
    if class_token is False:
        changes["distilled"] = False
        changes["pos_prefix_rows"] = 0
        changes["pooling"] = "mean" if config.pooling == "cls" else config.pooling
    return validate(config.with_changes(**changes))


def build_model(config: ViTConfig, seed: int = 0, device: torch.device | str = "cpu",
                dtype: torch.dtype = torch.float32) -> VisionTransformer:
    """A model in eval mode with weights drawn from `seed` on the CPU: bit-identical per seed."""
    model = VisionTransformer(config)  # built on the CPU (the meta device would import ~150 MB of torch)
    model.reset_parameters(torch.Generator().manual_seed(seed))
    return model.to(device=device, dtype=dtype).eval()


def count_params(model: nn.Module) -> int:
    """Number of parameters (fixed sin-cos tables are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters())


def config_params(config: ViTConfig) -> int:
    """Parameters of the model a config builds, counted on the meta device (no memory, no init)."""
    with torch.device("meta"):
        return count_params(VisionTransformer(config))


def count_macs(config: ViTConfig, grid: tuple[int, int] | None = None) -> int:
    """Multiply-accumulates of one image's forward pass at `grid` (default: the native grid).

    Counts the matrix products, as fvcore/timm do for linear layers and attention:
      patch embedding  N·D·C·P²
      per block        T·(3D² + D²) for qkv and proj, 2·T²·D for Q·Kᵀ and A·V, 2·T·D·M for the MLP
      head             D·classes per head (DeiT has two)
    Norms, softmax, GELU and additions are left out (under 0.2% for ViT-B/16).
    """
    rows, cols = grid or config.grid
    n, d, m = rows * cols, config.dim, config.mlp_dim
    t = n + config.num_prefix_tokens
    patch = n * d * config.in_chans * config.patch_size**2
    block = t * 4 * d * d + 2 * t * t * d + (3 if config.mlp != "mlp" else 2) * t * d * m  # SwiGLU: fc1_g, fc1_x
    heads = 0
    if config.num_classes and config.pooling != "none":
        heads = d * config.num_classes * (2 if config.distilled else 1)
    return patch + config.depth * block + heads


__all__ = ["DEFAULT_PRESET", "PRESETS", "build_model", "config_params", "count_macs", "count_params",
           "get_preset", "override", "validate"]

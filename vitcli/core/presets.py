"""Named ViT sizes, building a model from a config and a seed, and counting parameters and MACs.

Importing this module imports no torch: `vitcli info` on a preset answers from formulas.
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal, overload

from vitcli.core.config import PosEncKind, ViTConfig
from vitcli.core.validate import validate

if TYPE_CHECKING:
    import torch
    from torch import nn

    from vitcli.core.encoder import VisionTransformer

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
                        ("image_size", None if image_size is None else tuple(image_size)), ("posenc", posenc),
                        ("class_token", class_token)):
        if value is not None:
            changes[name] = value
    ratio = mlp_ratio if mlp_ratio is not None else config.mlp_dim / config.dim
    if ratio <= 0:
        raise ValueError(f"MLP ratio must be positive, got {ratio}")
    changes["mlp_dim"] = round(ratio * changes.get("dim", config.dim))  # type: ignore[operator]
    if class_token is False:
        changes["distilled"] = False
        changes["pos_prefix_rows"] = 0
        changes["pooling"] = "mean" if config.pooling == "cls" else config.pooling
    return validate(config.with_changes(**changes))


@contextmanager
def _no_default_init() -> Iterator[None]:
    """Skip torch's own initialisation of the layers `reset_parameters` draws again (Linear, Conv2d,
    LayerNorm): the weights are drawn once, from the seeded generator (ViT-B/16: ~1 s less)."""
    from torch import nn

    kinds = (nn.Linear, nn.Conv2d, nn.LayerNorm)
    saved = {kind: kind.reset_parameters for kind in kinds}
    for kind in kinds:
        kind.reset_parameters = lambda self: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        for kind, init in saved.items():
            kind.reset_parameters = init  # type: ignore[method-assign]


def build_model(config: ViTConfig, seed: int = 0, device: "torch.device | str" = "cpu",
                dtype: Any = None) -> "VisionTransformer":
    """A model in eval mode with weights drawn from `seed` on the CPU: bit-identical per seed."""
    import torch

    model = empty_model(config)
    model.reset_parameters(seed)
    return model.to(device=device, dtype=dtype or torch.float32).eval()


def empty_model(config: ViTConfig) -> "VisionTransformer":
    """The model on the CPU with uninitialised weights (allocated, not yet touched: no time, no memory)."""
    from vitcli.core.encoder import VisionTransformer

    with _no_default_init():
        return VisionTransformer(config)  # on the CPU (the meta device would import ~150 MB of torch)


def draw_tensor(config: ViTConfig, seed: int, key: str) -> "torch.Tensor":
    """One tensor of `build_model(config, seed)`, drawn alone (float32, CPU): `figures filters` needs
    the patch embedding, not 86M other weights."""
    from vitcli.core.init import draw_one

    return draw_one(empty_model(config), seed, key)


def learned_table(config: ViTConfig, seed: int = 0) -> "torch.Tensor":
    """The learned position table (rows + N, D) of `build_model(config, seed)`, without building it:
    the model is laid out on the meta device and only the table is drawn (its generator is its own)."""
    import torch

    from vitcli.core.encoder import VisionTransformer
    from vitcli.core.init import draw_one

    with torch.device("meta"):
        meta = VisionTransformer(config)
    return draw_one(meta, seed, "pos_embed")[0]


def count_params(model: "nn.Module") -> int:
    """Number of parameters (fixed sin-cos tables are buffers and do not count)."""
    return sum(p.numel() for p in model.parameters())


def config_params(config: ViTConfig) -> int:
    """Parameters of the model a config builds: by formula for the plain parts, else counted on the
    meta device (no memory, no init)."""
    known = formula_params(config)
    if known is not None:
        return known
    import torch

    from vitcli.core.encoder import VisionTransformer

    with torch.device("meta"):
        return count_params(VisionTransformer(config))


# The fields the formula below counts; any other field away from its default is a part it does not know.
FORMULA_FIELDS = {"name", "image_size", "patch_size", "in_chans", "dim", "depth", "heads", "mlp_dim", "class_token",
                  "distilled", "num_registers", "posenc", "pos_prefix_rows", "patch_bias", "qkv_bias", "layer_scale",
                  "pre_norm", "final_norm", "fc_norm", "pooling", "num_classes", "head_bias", "eps", "activation",
                  "extra",
                  "pos_resample", "patch_remainder"}  # (the last two: behaviour at other sizes, no parameters)


@overload
def formula_params(config: ViTConfig, *, bound: Literal[True]) -> int: ...


@overload
def formula_params(config: ViTConfig, *, bound: bool = False) -> int | None: ...


def formula_params(config: ViTConfig, *, bound: bool = False) -> int | None:
    """Parameters of a ViT by formula: exact for the plain parts (None for any other part), or with
    `bound`, an upper estimate for any config (every bias counted, and SwiGLU's third matrix, the
    attention-pool probe and the bias tables added): what the memory check needs before a build."""
    from dataclasses import fields

    default = ViTConfig()
    plain = config.pooling in ("cls", "mean", "none") and all(
        getattr(config, f.name) == getattr(default, f.name) for f in fields(config) if f.name not in FORMULA_FIELDS)
    if not (plain or bound):
        return None
    c = config.with_changes(patch_bias=True, qkv_bias=True, head_bias=True, layer_scale=True) if bound else config
    ends, block = _plain_ends(c), _plain_block(c, 0)
    total = sum(map(math.prod, ends.values())) + c.depth * sum(map(math.prod, block.values()))  # O(1) in depth
    return total + (0 if plain else _unplain_bound(c))


def plain_layout(c: ViTConfig) -> dict[str, tuple[int, ...]]:
    """The core model's parameters (key → shape, in its state_dict order) for the parts the plain
    formula knows (FORMULA_FIELDS): what a checkpoint described by shapes alone is checked against."""
    ends = _plain_ends(c)
    first = [k for k in ends if not k.startswith(("norm.", "fc_norm.", "head.", "head_dist."))]
    blocks = {k: v for i in range(c.depth) for k, v in _plain_block(c, i).items()}
    return {**{k: ends[k] for k in first}, **blocks, **{k: v for k, v in ends.items() if k not in first}}


def _linear(name: str, n_out: int, n_in: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (n_out, n_in), **({f"{name}.bias": (n_out,)} if bias else {})}


def _norm(name: str, d: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (d,), f"{name}.bias": (d,)}


def _plain_ends(c: ViTConfig) -> dict[str, tuple[int, ...]]:
    """The plain parameters outside the blocks: prefix tokens, table, patch embedding, norms, heads."""
    d, p = c.dim, c.patch_size
    rows, cols = c.grid
    out: dict[str, tuple[int, ...]] = {}
    for key, present, width in (("cls_token", c.class_token, 1), ("dist_token", c.distilled, 1),
                                ("reg_tokens", c.num_registers, c.num_registers)):
        out.update({key: (1, width, d)} if present else {})
    out.update({"pos_embed": (1, c.pos_prefix_rows + rows * cols, d)} if c.posenc == "learned" else {})
    out["patch_embed.proj.weight"] = (d, c.in_chans, p, p)
    out.update({"patch_embed.proj.bias": (d,)} if c.patch_bias else {})
    out.update(_norm("norm_pre", d) if c.pre_norm else {})
    out.update(_norm("norm", d) if c.final_norm else {})
    out.update(_norm("fc_norm", d) if c.fc_norm else {})
    for name in ("head", "head_dist")[: 2 if c.distilled else 1] if c.num_classes else ():
        out.update(_linear(name, c.num_classes, d, c.head_bias))
    return out


def _plain_block(c: ViTConfig, i: int) -> dict[str, tuple[int, ...]]:
    """Block i's plain parameters: two norms, qkv and proj, the MLP, LayerScale."""
    d, m, b = c.dim, c.mlp_dim, f"blocks.{i}."
    gamma = {b + "ls1.gamma": (d,)} if c.layer_scale else {}
    return {**_norm(b + "norm1", d), **_linear(b + "attn.qkv", 3 * d, d, c.qkv_bias), **_linear(b + "attn.proj", d, d),
            **gamma, **_norm(b + "norm2", d), **_linear(b + "mlp.fc1", m, d), **_linear(b + "mlp.fc2", d, m),
            **({b + "ls2.gamma": (d,)} if c.layer_scale else {})}


def _unplain_bound(c: ViTConfig) -> int:
    """What the parts outside the plain formula add at most: SwiGLU's gate, sub-norms, LayerScale,
    per-layer bias tables, the attention-pool probe, and a few norms for what is left."""
    d, m = c.dim, c.mlp_dim
    rows, cols = c.grid
    block = (m * d + m if c.mlp != "mlp" else 0) + 2 * d * (c.qk_norm + c.attn_norm) + 2 * m * c.mlp_norm
    if c.rel_pos_bias != "none":
        block += ((2 * rows - 1) * (2 * cols - 1) + 3) * c.heads
    pool = 4 * d * d + 2 * d * m + 6 * d + m if c.pooling == "map" else 0
    return c.depth * block + pool + 6 * d


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


__all__ = ["DEFAULT_PRESET", "PRESETS", "build_model", "config_params", "count_macs", "count_params", "draw_tensor",
           "formula_params", "plain_layout",
           "empty_model", "get_preset", "learned_table", "override", "validate"]

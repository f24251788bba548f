"""Refusing impossible ViT configurations with one clear sentence each."""

from typing import Literal, get_args, get_origin, get_type_hints

from vitcli.core.config import ViTConfig

# field name → its allowed values, read from the config's Literal annotations
CHOICES: dict[str, tuple[str, ...]] = {name: get_args(hint) for name, hint in get_type_hints(ViTConfig).items()
                                       if get_origin(hint) is Literal}


def _positive(config: ViTConfig) -> None:
    """Sizes that must be at least 1."""
    for name in ("patch_size", "in_chans", "dim", "depth", "heads", "mlp_dim"):
        value = getattr(config, name)
        if value <= 0:
            raise ValueError(f"{name.replace('_', ' ')} must be positive, got {value}")
    h, w = config.image_size
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got {h}x{w}")
    rows, cols = config.grid
    if rows == 0 or cols == 0:
        raise ValueError(f"image size {h}x{w} with patch size {config.patch_size} gives a grid of "
                         f"{rows}x{cols}: the image must hold at least one patch each way")


def _choices(config: ViTConfig) -> None:
    """Every part chosen by a Literal field must be one of its values."""
    for name, allowed in CHOICES.items():
        value = getattr(config, name)
        if value not in allowed:
            raise ValueError(f"unknown {name} '{value}': use one of {', '.join(allowed)}")


def _tokens(config: ViTConfig) -> None:
    """Prefix tokens, their position rows, pooling and heads must fit together."""
    if config.num_registers < 0:
        raise ValueError(f"number of registers must be 0 or more, got {config.num_registers}")
    if not 0 <= config.pos_prefix_rows <= config.num_prefix_tokens:
        raise ValueError(f"{config.pos_prefix_rows} position rows for prefix tokens, but the model has "
                         f"{config.num_prefix_tokens} prefix tokens")
    if config.pooling == "cls" and not config.class_token:
        raise ValueError("class-token pooling needs a class token: use mean pooling without one")
    if config.rel_pos_bias != "none" and (not config.class_token or config.num_prefix_tokens != 1):
        raise ValueError("a relative position bias (BEiT) needs exactly one prefix token, the class token")
    if config.distilled and not config.class_token:
        raise ValueError("a distillation token needs a class token before it")
    if config.num_classes < 0:
        raise ValueError(f"number of classes must be 0 (no head) or more, got {config.num_classes}")
    if config.eps <= 0:
        raise ValueError(f"norm eps must be positive, got {config.eps}")


def validate(config: ViTConfig) -> ViTConfig:
    """Return `config` unchanged if a model can be built from it, else raise a clear ValueError."""
    _positive(config)
    _choices(config)
    if config.dim % config.heads:
        raise ValueError(f"dim {config.dim} is not divisible by {config.heads} heads")
    if config.pool_heads is not None and (config.pool_heads <= 0 or config.dim % config.pool_heads):
        raise ValueError(f"dim {config.dim} is not divisible by the attention pool's {config.pool_heads} heads")
    if config.posenc == "sincos1d" and config.dim % 2:
        raise ValueError(f"1-D sin-cos position encodings need an even dim, got {config.dim}")
    if config.posenc == "sincos2d" and config.dim % 4:
        raise ValueError(f"2-D sin-cos position encodings need a dim divisible by 4, got {config.dim}")
    if config.rope != "none" and config.head_dim % 4:
        raise ValueError(f"2-D rotary position needs a head dim divisible by 4, got {config.head_dim}")
    _tokens(config)
    return config

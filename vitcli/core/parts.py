"""The parts a model is made of, in words: what `info` and every model document list under `parts`."""

from vitcli.core.config import ViTConfig

_POSITION = {"learned": "learned table", "sincos1d": "sin-cos 1-D", "sincos2d": "sin-cos 2-D", "none": "none"}
_POOLING = {"cls": "class token", "mean": "patch mean", "none": "none", "map": "attention-pool probe (MAP)"}
_NORM = {"layernorm": "LayerNorm", "rmsnorm": "RMSNorm"}
_MLP = {"mlp": "MLP", "swiglu": "SwiGLU", "swiglu_packed": "SwiGLU (packed fc1)"}


def model_parts(config: ViTConfig) -> dict[str, str]:
    """position, attention, mlp, norm, pooling and layer scale of a config, as short phrases."""
    position = _POSITION.get(config.posenc, config.posenc)
    if config.rel_pos_bias != "none":
        bias = "relative position bias" + (" (shared)" if config.rel_pos_bias == "shared" else " (per layer)")
        position = bias if config.posenc == "none" else f"{position} + {bias}"
    if config.rope != "none":
        position = f"RoPE ({config.rope})" if config.posenc == "none" else f"{position} + RoPE ({config.rope})"
    attention = ("softmax(QKᵀ/√d)" + (", qk-norm" if config.qk_norm else "")
                 + (", sub-LN before proj" if config.attn_norm else ""))
    if config.qkv_bias is False:
        attention += ", no qkv bias"
    mlp = f"{_MLP.get(config.mlp, config.mlp)} ({'silu' if config.mlp.startswith('swiglu') else config.activation})"
    return {
        "position": position,
        "attention": attention,
        "mlp": mlp + (" + sub-LN" if config.mlp_norm else ""),
        "norm": _NORM.get(config.norm, config.norm) + (", on patches too" if config.patch_norm else ""),
        "pooling": _pool_words(config) + (" + fc_norm" if config.fc_norm else ""),
        "layer_scale": "yes" if config.layer_scale else "no",
    }


def _pool_words(config: ViTConfig) -> str:
    """The pooling's name; an attention pool says how it differs from timm's MAP (AIMv2's head)."""
    words = _POOLING.get(config.pooling, config.pooling)
    if config.pooling != "map":
        return words
    missing = [w for w, on in (("query projection", config.pool_query_proj), ("MLP", config.pool_mlp)) if not on]
    return words + (f", no {' or '.join(missing)}" if missing else "")


__all__ = ["model_parts"]

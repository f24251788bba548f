"""The normalisation part: one constructor for every norm of the model (norm_pre, norm1, norm2,
norm, fc_norm), chosen by `ViTConfig.norm`: LayerNorm, or RMSNorm x/√(mean(x²)+ε)·γ (AIMv2)."""

from torch import nn

from vitcli.core.config import NormKind


def make_norm(kind: NormKind, dim: int, eps: float) -> nn.Module:
    """A norm over the last axis of width `dim`: LayerNorm (weight, bias) or RMSNorm (weight)."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm '{kind}': use layernorm or rmsnorm")


__all__ = ["make_norm"]

"""The MLP part of a block and its activations, chosen by `ViTConfig.mlp` and `.activation`.

  mlp   fc1 (D → M), activation, fc2 (M → D) on every token (timm's `Mlp`, keys mlp.fc1, mlp.fc2)
Activations: exact GELU (erf), its tanh approximation, CLIP's QuickGELU x·σ(1.702x).
  swiglu  fc2(act(fc1_g(x)) · fc1_x(x)) (timm's `SwiGLU`, AIMv2; keys mlp.fc1_g, mlp.fc1_x, mlp.fc2).
Activations: exact GELU (erf), its tanh approximation, CLIP's QuickGELU x·σ(1.702x), SiLU.
"""

import torch
from torch import Tensor, nn

from vitcli.core.config import Activation, ViTConfig


class QuickGELU(nn.Module):
    """CLIP's GELU approximation x·σ(1.702x)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(name: Activation) -> nn.Module:
    """The MLP non-linearity: exact GELU (erf), its tanh approximation, or QuickGELU."""
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if name == "quick_gelu":
        return QuickGELU()
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"unknown activation '{name}': use gelu, gelu_tanh, quick_gelu or silu")


class Mlp(nn.Module):
    """fc1 (D → M), activation, fc2 (M → D), applied to every token."""

    def __init__(self, dim: int, hidden: int, activation: Activation, bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (B, T, D) → (B, T, M) → (B, T, D)


class SwiGLUMap(nn.Module):
    """Gated MLP fc2(act(fc1_g(x)) · fc1_x(x)) with timm's `SwiGLU` key names (mapbias branch's
    minimal version for AIMv2; merge with the rope branch's SwiGLU when both land)."""

    def __init__(self, dim: int, hidden: int, activation: Activation, bias: bool = True) -> None:
        super().__init__()
        self.fc1_g = nn.Linear(dim, hidden, bias=bias)
        self.fc1_x = nn.Linear(dim, hidden, bias=bias)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1_g(x)) * self.fc1_x(x))  # (B, T, D) → (B, T, M) → (B, T, D)


def make_mlp(config: ViTConfig, hidden: int | None = None) -> nn.Module:
    """The block's MLP of the config's kind (`hidden` defaults to mlp_dim)."""
    hidden = hidden or config.mlp_dim
    if config.mlp == "mlp":
        return Mlp(config.dim, hidden, config.activation, config.mlp_bias)
    if config.mlp == "swiglu":
        return SwiGLUMap(config.dim, hidden, config.activation, config.mlp_bias)
    raise ValueError(f"unknown mlp '{config.mlp}': use mlp or swiglu")


__all__ = ["Mlp", "QuickGELU", "SwiGLUMap", "make_activation", "make_mlp"]

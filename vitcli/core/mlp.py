"""The MLP part of a block and its activations, chosen by `ViTConfig.mlp` and `.activation`.

  mlp   fc1 (D → M), activation, fc2 (M → D) on every token (timm's `Mlp`, keys mlp.fc1, mlp.fc2)
Activations: exact GELU (erf), its tanh approximation, CLIP's QuickGELU x·σ(1.702x).
SwiGLU arrives as a new `MlpKind` value and a module here.
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
    raise ValueError(f"unknown activation '{name}': use gelu, gelu_tanh or quick_gelu")


class Mlp(nn.Module):
    """fc1 (D → M), activation, fc2 (M → D), applied to every token."""

    def __init__(self, dim: int, hidden: int, activation: Activation) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (B, T, D) → (B, T, M) → (B, T, D)


def make_mlp(config: ViTConfig) -> nn.Module:
    """The block's MLP of the config's kind."""
    if config.mlp == "mlp":
        return Mlp(config.dim, config.mlp_dim, config.activation)
    raise ValueError(f"unknown mlp '{config.mlp}': use mlp")


__all__ = ["Mlp", "QuickGELU", "make_activation", "make_mlp"]

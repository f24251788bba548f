"""The MLP part of a block and its activations, chosen by `ViTConfig.mlp` and `.activation`.

  mlp   fc1 (D → M), activation, fc2 (M → D) on every token (timm's `Mlp`, keys mlp.fc1, mlp.fc2)
  swiglu_packed  the same with one fc1 (2M rows: gate, then value; timm GluMlp / SwiGLUPacked)
  swiglu  SiLU(fc1_g(x)) · fc1_x(x), [norm], fc2 (timm `SwiGLU`: EVA-02, DINOv3 S+/H+; the optional
          sub-LN `mlp.norm` over the M hidden channels is EVA-02's "scale_mlp"; AIMv2's has no biases)
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

    def __init__(self, dim: int, hidden: int, activation: Activation, norm: bool = False, eps: float = 1e-6,
                 bias: bool = True) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=bias)
        self.act = make_activation(activation)
        self.norm = nn.LayerNorm(hidden, eps=eps) if norm else nn.Identity()  # timm Mlp's optional sub-LN
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.norm(self.act(self.fc1(x))))  # (B, T, D) → (B, T, M) → (B, T, D)


class PackedSwiGLU(nn.Module):
    """SwiGLU with one fc1 (D → 2M: gate rows, then value rows), [norm], fc2 (M → D): timm's GluMlp."""

    def __init__(self, dim: int, hidden: int, norm: bool = False, eps: float = 1e-6) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, 2 * hidden)
        self.act = nn.SiLU()
        self.norm = nn.LayerNorm(hidden, eps=eps) if norm else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        gate, value = self.fc1(x).chunk(2, dim=-1)  # each (B, T, M)
        return self.fc2(self.norm(self.act(gate) * value))


class SwiGLU(nn.Module):
    """SiLU(fc1_g(x)) · fc1_x(x), an optional LayerNorm over the M hidden channels, then fc2 (M → D);
    AIMv2's has no biases."""

    def __init__(self, dim: int, hidden: int, norm: bool = False, eps: float = 1e-6, bias: bool = True) -> None:
        super().__init__()
        self.fc1_g = nn.Linear(dim, hidden, bias=bias)
        self.fc1_x = nn.Linear(dim, hidden, bias=bias)
        self.act = nn.SiLU()
        self.norm = nn.LayerNorm(hidden, eps=eps) if norm else nn.Identity()
        self.fc2 = nn.Linear(hidden, dim, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.norm(self.act(self.fc1_g(x)) * self.fc1_x(x)))  # (B, T, D) → (B, T, M) → (B, T, D)


def make_mlp(config: ViTConfig, hidden: int | None = None) -> nn.Module:
    """The block's MLP of the config's kind (`hidden` defaults to mlp_dim)."""
    hidden = hidden or config.mlp_dim
    if config.mlp == "mlp":
        return Mlp(config.dim, hidden, config.activation, config.mlp_norm, config.eps, config.mlp_bias)
    if config.mlp == "swiglu":
        return SwiGLU(config.dim, hidden, config.mlp_norm, config.eps, config.mlp_bias)
    if config.mlp == "swiglu_packed":
        return PackedSwiGLU(config.dim, hidden, config.mlp_norm, config.eps)
    raise ValueError(f"unknown mlp '{config.mlp}': use mlp, swiglu or swiglu_packed")


__all__ = ["Mlp", "PackedSwiGLU", "QuickGELU", "SwiGLU", "make_activation", "make_mlp"]

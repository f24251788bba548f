"""Patch embedding: one Conv2d weight, usable as the conv or as a linear map on patchify's output.

The ViT paper writes the embedding as x_p·E with x_p a flattened patch (N, P·P·C) and E a
(P·P·C, D) matrix; implementations store it as Conv2d(C, D, kernel P, stride P). Both are the
same map once the conv weight is flattened in the patch order, which `conv_weight_to_linear`
does with `patchify` itself, so the order is defined in one place.
"""

from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from vitcli.core.patches import Order, patchify

Impl = Literal["conv", "linear"]
IMPLS: tuple[str, ...] = ("conv", "linear")


def conv_weight_to_linear(weight: Tensor, order: Order = "chw") -> Tensor:
    """(D, C, P, P) conv weight → (D, P·P·C) linear weight, flattened in the given patch order."""
    d, _, p, q = weight.shape
    if p != q:
        raise ValueError(f"patch kernels must be square, got {p}x{q}")
    return patchify(weight, p, order).reshape(d, -1)  # (D, 1, P·P·C) → (D, P·P·C)


class PatchEmbed(nn.Module):
    """Projects each P×P patch to D values; stored as `proj` = Conv2d(C, D, P, stride=P)."""

    norm: nn.Module  # AIMv2's norm on the projected patches, set by the encoder when the config has one

    def __init__(self, patch_size: int, in_chans: int, dim: int, bias: bool = True) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size, bias=bias)

    def forward(self, images: Tensor, impl: Impl = "conv", order: Order = "chw") -> Tensor:
        """(B, C, H, W) → (B, N, D) tokens, computed as the conv or as linear on patches."""
        if impl == "conv":
            return self.proj(images).flatten(2).transpose(1, 2)  # (B, D, R, Cl) → (B, N, D)
        if impl == "linear":
            return self.embed_patches(patchify(images, self.patch_size, order), order)
        raise ValueError(f"unknown patch embedding '{impl}': use one of {', '.join(IMPLS)}")

    def embed_patches(self, patches: Tensor, order: Order = "chw") -> Tensor:
        """(B, N, P·P·C) patches in `order` → (B, N, D): x_p·E + b with E the reshaped conv weight."""
        weight = conv_weight_to_linear(self.proj.weight, order)  # (D, P·P·C)
        return F.linear(patches, weight, self.proj.bias)


__all__ = ["IMPLS", "Impl", "PatchEmbed", "conv_weight_to_linear"]

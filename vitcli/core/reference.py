"""Plain reference versions of what vitcli computes another way, kept for the tests to check against.

Each one works on whole matrices in memory, the textbook way (papers' formulas, the peers' code
paths); vitcli's own computations (analysis.Rollout on streamed layers, distances in row blocks,
the features a Capture keeps) must give the same numbers. Nothing in vitcli calls these.
"""

import torch
from torch import Tensor

from vitcli.core.analysis import (
    DiscardScope,
    Fusion,
    Rollout,
    fuse_heads,
    mean_distance_of_rows,
    patch_centres,
    rows_of_matrix,
)
from vitcli.core.patches import Order, unpatchify


def attention_rollout(attentions: list[Tensor], fusion: Fusion = "mean", discard_ratio: float = 0.0,
                      discard_scope: DiscardScope = "matrix", start_layer: int = 0) -> Tensor:
    """R = Â_L ⋯ Â_s over `attentions`, one (B, H, T, T) per layer in depth order → (B, T, T).

    Row 0 is the class token's rollout map over all tokens; every row sums to 1.
    """
    layers = attentions[start_layer:]
    if not layers:
        raise ValueError(f"start layer {start_layer} leaves no layer of {len(attentions)} to roll out")
    rollout = Rollout(discard_ratio, discard_scope)
    for attn in layers:
        rollout.add(fuse_heads(attn.double(), fusion))
    return rollout.result  # type: ignore[return-value]


def mean_attention_distance(attn: Tensor, grid: tuple[int, int], patch_size: int, num_prefix: int,
                            renorm: bool = False, chunk: int = 1024) -> Tensor:
    """Mean attention distance of a full (…, H, T, T) matrix → (…, H) pixels (see mean_distance_of_rows)."""
    return mean_distance_of_rows(rows_of_matrix(attn), attn.shape[-1], grid, patch_size, num_prefix, renorm, chunk)


def query_distance(weights: Tensor, query: int, grid: tuple[int, int], patch_size: int, num_prefix: int,
                   renorm: bool = False) -> Tensor:
    """Σ_j A[q, j]·d_qj for one patch query: (…, T) weights of token `query` → (…,) pixels."""
    patch = query - num_prefix
    if not 0 <= patch < grid[0] * grid[1]:
        raise ValueError(f"token {query} is a prefix token: it has no position on the grid")
    centres = patch_centres(grid, patch_size).to(weights.device)
    dist = torch.cdist(centres[patch:patch + 1], centres)[0]  # (N,)
    row = weights[..., num_prefix:].double()
    if renorm:
        row = row / row.sum(dim=-1, keepdim=True)
    return (row * dist).sum(dim=-1)


def filters_as_conv(weight: Tensor, patch_size: int, in_chans: int = 3, order: Order = "chw") -> Tensor:
    """The patch projection as (D, C, P, P) filters, from a conv weight or a (D, P·P·C) linear one."""
    if weight.dim() == 4:
        return weight
    if weight.dim() != 2 or weight.shape[1] != patch_size * patch_size * in_chans:
        raise ValueError(f"weight {tuple(weight.shape)} is neither (D, C, P, P) nor (D, P·P·C) with P={patch_size}")
    return unpatchify(weight[:, None], (1, 1), in_chans, order)  # (D, 1, P·P·C) → (D, C, P, P)


@torch.no_grad()
def layer_features(blocks: dict[int, Tensor], layer: int, norm: torch.nn.Module | None = None) -> Tensor:
    """The output of block `layer` (as ViTOutput.blocks keys it), through `norm` when given: (…, T, D)."""
    if layer not in blocks:
        raise ValueError(f"block {layer} was not captured (captured: {', '.join(map(str, sorted(blocks))) or 'none'})")
    x = blocks[layer]
    return norm(x) if norm is not None else x


__all__ = ["attention_rollout", "filters_as_conv", "layer_features", "mean_attention_distance", "query_distance"]

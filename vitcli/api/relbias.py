"""`posenc --weights` on a BEiT-style checkpoint: the relative position bias of one layer.

The bias B (H, N, N) over the patches is what the layer adds to Q·Kᵀ/√d before the softmax (the
class token's three extra entries are left out); with a patch (r, c), row r·C + c of each head is
that query's bias over every key patch, drawn as one map per head.
"""

from typing import TYPE_CHECKING

import numpy as np

from vitcli.api.documents import RelbiasDoc
from vitcli.errors import VitcliError

if TYPE_CHECKING:
    from vitcli.api.base import ModelBase
    from vitcli.api.results import PosencResult



def layer_bias(model: "ModelBase", layer: int) -> np.ndarray:
    """(H, N, N) float32: the relative position bias of `layer` between the patches, at the native grid."""
    import torch

    from vitcli.core.relpos import RelativePositionBias

    module, c = model.module, model.config
    if not -c.depth <= layer < c.depth:
        raise VitcliError("--layer", f"{layer} is outside 0..{c.depth - 1}")
    layer %= c.depth
    part = module.rel_pos_bias if c.rel_pos_bias == "shared" else module.blocks[layer].rel_pos_bias
    if not isinstance(part, RelativePositionBias):
        raise VitcliError("--layer", f"block {layer} of this model adds no relative position bias")
    with torch.no_grad():
        bias = part(c.grid)[0, :, 1:, 1:]  # (H, N, N) without the class token's entries
    return bias.float().cpu().numpy()


def parse_patch(text: str | tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
    """'R,C' or (r, c) → (r, c) on the grid."""
    try:
        r, c = (int(p) for p in (text if isinstance(text, tuple) else str(text).split(",")))
    except ValueError:
        raise VitcliError("--patch", f"'{text}' is not a patch R,C") from None
    if not (0 <= r < grid[0] and 0 <= c < grid[1]):
        raise VitcliError("--patch", f"({r}, {c}) is outside the {grid[0]}x{grid[1]} grid")
    return r, c


def relbias_result(model: "ModelBase", layer: int, patch: str | tuple[int, int] | None, similarity: str | None,
                   output: str | None) -> "PosencResult":
    """The posenc result of a relative-bias checkpoint: array (H, N, N), document, optional figure."""
    from vitcli.api.results import PosencResult
    from vitcli.stats import tensor_stats

    c = model.config
    bias = layer_bias(model, layer)
    rc = parse_patch(patch, c.grid) if patch else (c.grid[0] // 2, c.grid[1] // 2)
    if output:
        from vitcli.io.arrays import save_npy

        save_npy(output, bias)
    if similarity:
        from vitcli.io.pictures import bias_maps_figure, save_figure

        maps = bias[:, rc[0] * c.grid[1] + rc[1]].reshape(c.heads, *c.grid)  # (H, R, C)
        save_figure(similarity, bias_maps_figure(maps, rc, f"Relative position bias, layer {layer % c.depth}, "
                                                           f"query patch ({rc[0]}, {rc[1]})"))
    doc: RelbiasDoc = {"command": "posenc", "input": None, "kind": "relative-bias", "source": model.source,
           "patch_size": c.patch_size, "grid": list(c.grid), "num_patches": c.grid[0] * c.grid[1],
           "num_prefix_rows": 0, "dim": c.dim, "layer": layer % c.depth, "shared": c.rel_pos_bias == "shared",
           "heads": c.heads, "shape": list(bias.shape), "patch": list(rc),
           "tensors": {"relative_position_bias": tensor_stats(bias)},
           "outputs": {"array": output, "similarity_png": similarity}}
    return PosencResult(bias, doc)


__all__ = ["layer_bias", "parse_patch", "relbias_result"]

"""`vitcli.posenc(kind="rope")`: the rotation angles of 2-D RoPE, its frequencies, its relative-position kernel."""

from typing import TYPE_CHECKING

import numpy as np

from vitcli.api.documents import RopeDoc
from vitcli.api.results import RopeResult
from vitcli.errors import VitcliError

if TYPE_CHECKING:
    import torch

    from vitcli.api.base import ModelBase

VARIANTS = ("dinov3", "eva")


def rope_posenc(model: "ModelBase | None" = None, *, dim: int | None = None,
                grid: str | tuple[int, int] | None = None, variant: str | None = None,
                similarity: str | None = None, output: str | None = None) -> RopeResult:
    """Angles (N, D/2) of a RoPE of `variant` for rotated width `dim` on `grid`, or a checkpoint's own
    (its variant, head width, periods and native grid) when `model` is a loaded model with RoPE."""
    from vitcli.api.ranges import check_ranges
    from vitcli.core.rope import default_periods, kernel, rope_angles
    check_ranges(dim=dim)
    if variant is not None and variant not in VARIANTS:
        raise VitcliError("--rope-variant", f"'{variant}' is not one of {', '.join(VARIANTS)}")
    if model is not None and model.checkpoint is not None:
        c = model.config
        if c.rope == "none":
            raise VitcliError(model.source, "this checkpoint has no rotary position embedding")
        if variant not in (None, c.rope):
            raise VitcliError("--rope-variant", f"the checkpoint's RoPE is {c.rope}")
        kind, d, periods = c.rope, c.head_dim, _periods(model)
        ref, offset, xy, source = c.rope_ref_grid, c.rope_offset, c.rope_xy, model.source
        target = _grid(grid, c.grid)
    else:
        kind, d = ("eva" if variant == "eva" else "dinov3"), dim or 64  # variant: one of VARIANTS or None
        if d <= 0 or d % 4:
            raise VitcliError("--dim",
                              f"2-D RoPE rotates pairs on two axes: D must be a positive multiple of 4, got {d}")
        periods = default_periods(kind, d, 100.0 if kind == "dinov3" else 10000.0)
        ref, offset, xy, source = None, 0.0, False, f"rope {kind} formula"
        target = _grid(grid, (14, 14))
    angles = rope_angles(kind, target, periods, ref, offset, xy).numpy()
    if output:
        from vitcli.io.arrays import save_npy

        save_npy(output, angles)
    if similarity:
        from vitcli.io.pictures import save_figure, similarity_figure

        k = kernel(kind, target, periods, ref, offset, xy).numpy()
        save_figure(similarity, similarity_figure(k, target, f"RoPE relative-position kernel ({kind}, D={d}, "
                                                             f"{target[0]}x{target[1]})"))
    freqs = (2 * np.pi / periods.double().numpy()).tolist()
    doc: RopeDoc = {"command": "posenc", "input": None, "kind": "rope", "rope_variant": kind, "source": source,
           "grid": list(target), "num_patches": target[0] * target[1], "num_prefix_rows": 0, "dim": d,
           "angles_shape": list(angles.shape), "periods": periods.double().numpy().tolist(), "frequencies": freqs,
           "pairing": "rotate-half (j, j + D/2)" if kind == "dinov3" else "interleaved (2j, 2j + 1)",
           "axes": "first D/4 angles: columns, last D/4: rows" if xy else "first D/4 angles: rows, last D/4: columns",
           "outputs": {"array": output, "similarity_png": similarity}}
    return RopeResult(angles, doc)


def _periods(model: "ModelBase") -> "torch.Tensor":
    """(D/4,) float32 on the CPU: the periods of a loaded model's rotary position (its buffer)."""
    from vitcli.core.position import RotaryPosition

    position = model.module.position
    if not isinstance(position, RotaryPosition):
        raise VitcliError(model.source, "this checkpoint has no rotary position embedding")
    return position.rope.periods.detach().float().cpu()


def _grid(grid: str | tuple[int, int] | None, default: tuple[int, int]) -> tuple[int, int]:
    """'RxC' or (rows, cols) → (rows, cols); the default when none is given."""
    from vitcli.io.sizes import parse_hw

    if isinstance(grid, str):
        return parse_hw(grid, "--grid")
    return (int(grid[0]), int(grid[1])) if grid else default


__all__ = ["VARIANTS", "rope_posenc"]

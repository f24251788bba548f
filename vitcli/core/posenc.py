"""Position tables added to the token sequence (Z0 = [x_cls; x_p·E] + E_pos) and their resampling.

A table has one row per positioned prefix token (class, distillation) followed by one row per
patch in row-major grid order: (num_prefix + rows·cols, D).
  learned   D**-0.5 · randn, like the class token (a parameter in the model);
  sincos1d  Vaswani et al.: PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(…), with
            pos = row index (the class token at 0, patches at 1..N);
  sincos2d  MAE: the first D/2 channels encode the column (x), the last D/2 the row (y), each as
            [sin | cos] of D/4 frequencies; prefix rows are zero (MAE names the x half `emb_h`
            because its meshgrid puts w first; the values are what matter);
  none      zeros (the model adds nothing).
"""

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vitcli.core.config import PosEncKind, PosResample

KINDS: tuple[str, ...] = ("learned", "sincos1d", "sincos2d", "none")

# Each library's way of resizing a learned table (config.PosResample), as `resample_pos_table` arguments:
#   bicubic         timm resample_abs_pos_embed; dinov2 `_reg` hub models (interpolate_antialias=True,
#                   offset 0); transformers Dinov2WithRegisters (antialias=True, size)
#   bilinear        NaFlex: timm naflexvit, transformers Siglip2 resize_positional_embeddings
#   bicubic_plain   transformers interpolate_pos_encoding (ViT, DeiT, CLIP, SigLIP, BEiT, Dinov2): size, no antialias
#   bicubic_offset  facebookresearch/dino and dinov2 hub models without registers: scale_factor (n + 0.1) / M
RESAMPLE: dict[PosResample, dict[str, object]] = {
    "bicubic": {"mode": "bicubic", "antialias": True},
    "bilinear": {"mode": "bilinear", "antialias": True},
    "bicubic_plain": {"mode": "bicubic", "antialias": False},
    "bicubic_offset": {"mode": "bicubic", "antialias": False, "offset": 0.1},
}


def _check_grid(grid: tuple[int, int], what: str = "grid") -> tuple[int, int]:
    """A (rows, cols) pair of positive integers, or a ValueError that says which is wrong."""
    rows, cols = (int(g) for g in grid)
    if rows <= 0 or cols <= 0:
        raise ValueError(f"{what} {rows}x{cols} has no patches: rows and cols must be at least 1")
    return rows, cols


def _angles(positions: Tensor, dim: int) -> Tensor:
    """(M,) float64 positions → (M, dim/2) angles pos / 10000^(2i/dim), i = 0..dim/2-1."""
    if dim <= 0 or dim % 2:
        raise ValueError(f"sin-cos position encodings need an even dim, got {dim}")
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)  # (dim/2,)
    return positions[:, None] / torch.pow(10000.0, two_i / dim)[None, :]


def sincos1d_table(grid: tuple[int, int], dim: int, num_prefix: int = 1) -> Tensor:
    """(num_prefix + N, D) float64: sin on even channels, cos on odd ones, position = row index."""
    rows, cols = _check_grid(grid)
    angles = _angles(torch.arange(num_prefix + rows * cols, dtype=torch.float64), dim)  # (T, D/2)
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)  # (T, D/2, 2) → (T, D)


def sincos2d_table(grid: tuple[int, int], dim: int, num_prefix: int = 1) -> Tensor:
    """(num_prefix + N, D) float64: MAE's table, [x: sin|cos, y: sin|cos], zero prefix rows."""
    rows, cols = _check_grid(grid)
    if dim <= 0 or dim % 4:
        raise ValueError(f"2-D sin-cos position encodings need a dim divisible by 4, got {dim}")
    ys, xs = torch.meshgrid(torch.arange(rows, dtype=torch.float64),
                            torch.arange(cols, dtype=torch.float64), indexing="ij")  # (R, Cl) each
    halves = []
    for coord in (xs.flatten(), ys.flatten()):  # (N,) column index, then row index
        angles = _angles(coord, dim // 2)  # (N, D/4)
        halves += [angles.sin(), angles.cos()]
    table = torch.cat(halves, dim=1)  # (N, D)
    return torch.cat([table.new_zeros(num_prefix, dim), table])  # (num_prefix + N, D)


def learned_table(grid: tuple[int, int], dim: int, num_prefix: int = 1,
                  generator: torch.Generator | None = None) -> Tensor:
    """(num_prefix + N, D) float32 initial values of a learned table: D**-0.5 · randn."""
    rows, cols = _check_grid(grid)
    return torch.randn(num_prefix + rows * cols, dim, generator=generator) * dim**-0.5


def position_table(kind: PosEncKind, grid: tuple[int, int], dim: int, num_prefix: int = 1,
                   generator: torch.Generator | None = None, dtype: torch.dtype = torch.float32) -> Tensor:
    """(num_prefix + N, D) table of the given kind; `none` gives zeros."""
    if kind == "learned":
        table = learned_table(grid, dim, num_prefix, generator)
    elif kind == "sincos1d":
        table = sincos1d_table(grid, dim, num_prefix)
    elif kind == "sincos2d":
        table = sincos2d_table(grid, dim, num_prefix)
    elif kind == "none":
        rows, cols = _check_grid(grid)
        table = torch.zeros(num_prefix + rows * cols, dim)
    else:
        raise ValueError(f"unknown position encoding '{kind}': use one of {', '.join(KINDS)}")
    return table.to(dtype)


def resample_pos_table(table: Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int],
                       num_prefix: int = 1, antialias: bool = True, mode: str = "bicubic",
                       offset: float = 0.0) -> Tensor:
    """(…, num_prefix + Ns, D) → (…, num_prefix + Nd, D): interpolated grid rows, prefix rows kept.

    With `offset` 0 the grid is resized to `dst_grid` (timm, transformers); else torch's scale factor
    (dst + offset) / src per axis sets the sampling positions, as DINO / DINOv2 pass it (their
    `interpolate_offset` 0.1), and the output must still have `dst_grid`'s size. Antialiased bicubic is
    PIL's kernel (a = -0.5, low-pass when shrinking); without antialiasing torch's a = -0.75. Half types
    are interpolated in float32 (as timm and transformers' DINOv2 do). The same grid returns `table`.
    """
    src, dst = _check_grid(src_grid, "source grid"), _check_grid(dst_grid, "target grid")
    *lead, length, dim = table.shape
    if length != num_prefix + src[0] * src[1]:
        raise ValueError(f"table has {length} rows, expected {num_prefix} prefix + {src[0]}x{src[1]} grid rows")
    if src == dst:
        return table
    prefix, cells = table[..., :num_prefix, :], table[..., num_prefix:, :]
    work = torch.float32 if table.dtype in (torch.float16, torch.bfloat16) else table.dtype
    image = cells.reshape(-1, *src, dim).permute(0, 3, 1, 2).to(work)  # (B, D, Rs, Cs)
    size = dict(scale_factor=tuple((d + offset) / s for d,
                                   s in zip(dst, src, strict=True))) if offset else dict(size=dst)
    image = F.interpolate(image, mode=mode, align_corners=False, antialias=antialias, **size)  # (B, D, Rd, Cd)
    if tuple(image.shape[-2:]) != dst:
        raise ValueError(f"scale factors with offset {offset} gave a {image.shape[-2]}x{image.shape[-1]} grid, "
                         f"not {dst[0]}x{dst[1]}")
    cells = image.permute(0, 2, 3, 1).reshape(*lead, math.prod(dst), dim).to(table.dtype)  # (…, Nd, D)
    return torch.cat([prefix, cells], dim=-2)


def resample_as(kind: PosResample, table: Tensor, src_grid: tuple[int, int], dst_grid: tuple[int, int],
                num_prefix: int = 1) -> Tensor:
    """`resample_pos_table` the way library `kind` (a config.PosResample) does it."""
    if kind not in RESAMPLE:
        raise ValueError(f"unknown table resampling '{kind}': use one of {', '.join(RESAMPLE)}")
    return resample_pos_table(table, src_grid, dst_grid, num_prefix, **RESAMPLE[kind])  # type: ignore[arg-type]

"""Rotary position embedding (RoPE), 2-D axial: Q and K of the patch tokens turned by their position.

Each head's d channels form d/2 pairs; pair j of patch (r, c) is rotated by the angle θ_j. The
first d/4 angles follow one axis, the last d/4 the other (rows then columns; columns first with
`xy`), with frequencies ω_i = 2π / period_i:

  dinov3  coords centred and normalised per axis to [-1, 1]: u = 2·(r + ½ + offset)/rows − 1;
          period_i = base^(4i/d), base 100; pairs (j, j + d/2) ("rotate half", RopePositionEmbedding
          of facebookresearch/dinov3, timm RotaryEmbeddingDinoV3). Jitter/rescale are training-only.
  eva     integer coords u = r + offset, scaled onto `ref_grid` (u·ref/rows) so a model fine-tuned
          at another size keeps its pretraining frequencies; ω_i = base^(−4i/d), base 10000; pairs
          (2j, 2j + 1) (timm RotaryEmbeddingCat / apply_rot_embed_cat: EVA-02, Perception Encoder).

A rotation is orthogonal, so it keeps each vector's norm, and ⟨R(p)q, R(p')k⟩ depends on p − p'
only (for fixed q, k): what `posenc --kind rope --similarity` draws. Prefix tokens are not turned.
"""

import math

import torch
from torch import Tensor, nn

from vitcli.core.config import RopeKind


def default_periods(kind: RopeKind, head_dim: int, base: float) -> Tensor:
    """(d/4,) periods in float32: base^(4i/d) (DINOv3's exponent 2i/(d/2)); EVA's 1/ω with ω = base^(−4i/d)."""
    if head_dim % 4:
        raise ValueError(f"2-D rotary position needs a head dim divisible by 4, got {head_dim}")
    n = head_dim // 4
    if kind == "dinov3":
        return base ** (2.0 * torch.arange(n, dtype=torch.float32) / (head_dim // 2))
    bands = 1.0 / base ** (torch.arange(n, dtype=torch.float32) / n)  # timm freq_bands(step=1)
    return 2 * math.pi / bands


def axis_coords(kind: RopeKind, size: int, ref: int | None, offset: float) -> Tensor:
    """(size,) coordinates along one axis of `size` patches."""
    if kind == "dinov3":
        return 2.0 * ((torch.arange(0.5, size, dtype=torch.float32) + offset) / size) - 1.0
    u = torch.arange(size, dtype=torch.float32) + offset
    return u / size * ref if ref else u


def rope_angles(kind: RopeKind, grid: tuple[int, int], periods: Tensor, ref_grid: tuple[int, int] | None = None,
                offset: float = 0.0, xy: bool = False) -> Tensor:
    """(N, d/2) rotation angles of the N = rows·cols patches in row-major order."""
    rows, cols = grid
    ref = ref_grid or (None, None)
    ur = axis_coords(kind, rows, ref[0], offset)  # (rows,)
    uc = axis_coords(kind, cols, ref[1], offset)  # (cols,)
    coords = torch.stack(torch.meshgrid(ur, uc, indexing="ij"), dim=-1).reshape(-1, 2)  # (N, 2): row, col
    if xy:
        coords = coords.flip(-1)
    p = periods.to(torch.float32)
    if kind == "dinov3":
        angles = 2 * math.pi * coords[:, :, None] / p  # (N, 2, d/4)
    else:
        angles = coords[:, :, None] * (2 * math.pi / p)  # (N, 2, d/4)
    return angles.flatten(1)  # (N, d/2)


def pairing(kind: RopeKind) -> str:
    """How channels pair up: "half" (j, j + d/2) for DINOv3, "interleaved" (2j, 2j + 1) for EVA."""
    return "half" if kind == "dinov3" else "interleaved"


def rotate_pairs(x: Tensor, cos: Tensor, sin: Tensor, layout: str) -> Tensor:
    """(…, N, d) rotated by per-pair angles given as cos, sin (N, d/2): each pair (a, b) → (a·cos − b·sin, a·sin +
    b·cos)."""
    if layout == "half":
        a, b = x.chunk(2, dim=-1)  # each (…, N, d/2)
        return torch.cat([a * cos - b * sin, a * sin + b * cos], dim=-1)
    a, b = x[..., 0::2], x[..., 1::2]  # each (…, N, d/2)
    return torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1).flatten(-2)


class Rope(nn.Module):
    """The rotation of one model: its periods (a buffer, `position.rope.periods`) and variant settings."""

    periods: Tensor

    def __init__(self, kind: RopeKind, head_dim: int, base: float, num_prefix: int,
                 ref_grid: tuple[int, int] | None = None, offset: float = 0.0, xy: bool = False) -> None:
        super().__init__()
        self.kind, self.head_dim, self.base, self.num_prefix = kind, head_dim, base, num_prefix
        self.ref_grid, self.offset, self.xy = ref_grid, offset, xy
        self.register_buffer("periods", default_periods(kind, head_dim, base))

    def angles(self, grid: tuple[int, int]) -> Tensor:
        """(N, d/2) angles of this model's patches at `grid`."""
        return rope_angles(self.kind, grid, self.periods, self.ref_grid, self.offset, self.xy)

    def rotation(self, grid: tuple[int, int]):
        """rotate(q, k) for every block at `grid`: patch rows of Q and K (B, H, T, d) turned, prefix rows kept."""
        theta = self.angles(grid)  # (N, d/2)
        cos, sin, layout, n = theta.cos(), theta.sin(), pairing(self.kind), self.num_prefix

        def rotate(q: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
            c, s = cos.to(q), sin.to(q)
            turn = (lambda x: torch.cat([x[:, :, :n], rotate_pairs(x[:, :, n:], c, s, layout)], dim=2)) if n else \
                (lambda x: rotate_pairs(x, c, s, layout))
            return turn(q), turn(k)

        return rotate


def kernel(kind: RopeKind, grid: tuple[int, int], periods: Tensor, ref_grid: tuple[int, int] | None = None,
           offset: float = 0.0, xy: bool = False) -> Tensor:
    """(N, N) float64: row i, column j is ⟨R(p_i)·q, R(p_j)·k⟩ for the fixed unit vectors q = k = (1, …, 1)/√d:
    the score a query at patch i gives a key at patch j after rotation, RoPE's "which positions look alike"."""
    theta = rope_angles(kind, grid, periods, ref_grid, offset, xy).double()  # (N, d/2)
    d = 2 * theta.shape[-1]
    u = torch.full((theta.shape[0], d), d ** -0.5, dtype=torch.float64)
    x = rotate_pairs(u, theta.cos(), theta.sin(), pairing(kind))  # (N, d)
    return x @ x.T


__all__ = ["Rope", "axis_coords", "default_periods", "kernel", "pairing", "rope_angles", "rotate_pairs"]

"""BEiT's relative position bias: a learned score per head for each (Δrow, Δcol) between patches.

The table `relative_position_bias_table` ((2R-1)(2C-1) + 3, H) holds one row per relative offset
of two patches on the R×C grid, and three more for class→patch, patch→class and class→class.
An index (T, T) picks each pair's row; the bias (1, H, T, T) is added to Q·Kᵀ/√d before the
softmax (the `bias` input of `Attention`). BEiT has one table per block, or one shared by all
(`use_shared_rel_pos_bias`). The index is rebuilt from the grid at each call (T² integers), so
it is never in the state dict.
"""

import torch
from torch import Tensor, nn


def relative_position_index(grid: tuple[int, int]) -> Tensor:
    """(N+1, N+1) row of the table for each (query, key) pair; token 0 is the class token."""
    rows, cols = grid
    r, c = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    coords = torch.stack([r.flatten(), c.flatten()])  # (2, N)
    rel = coords[:, :, None] - coords[:, None, :]  # (2, N, N) query minus key
    offsets = (rel[0] + rows - 1) * (2 * cols - 1) + (rel[1] + cols - 1)  # (N, N) in 0..(2R-1)(2C-1)-1
    distances = (2 * rows - 1) * (2 * cols - 1)
    n = rows * cols
    index = torch.empty(n + 1, n + 1, dtype=torch.long)
    index[1:, 1:] = offsets
    index[0, :] = distances  # class → patch
    index[:, 0] = distances + 1  # patch → class
    index[0, 0] = distances + 2  # class → class
    return index


def table_rows(grid: tuple[int, int]) -> int:
    """Rows of the bias table for a grid: (2R-1)(2C-1) offsets + 3 class-token entries."""
    return (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3


class RelativePositionBias(nn.Module):
    """A learned relative position bias table for the native grid and its index."""

    def __init__(self, grid: tuple[int, int], heads: int) -> None:
        super().__init__()
        self.grid = (int(grid[0]), int(grid[1]))
        self.relative_position_bias_table = nn.Parameter(torch.zeros(table_rows(self.grid), heads))

    def forward(self, grid: tuple[int, int]) -> Tensor:
        """(1, H, T, T) score bias at `grid`, which must be the native grid (the table is not resampled)."""
        if tuple(grid) != self.grid:
            raise ValueError(f"the relative position bias is defined for the native {self.grid[0]}x{self.grid[1]} "
                             f"grid only, not {grid[0]}x{grid[1]}: use the checkpoint's own image size")
        index = relative_position_index(self.grid).to(self.relative_position_bias_table.device)  # (T, T)
        t = index.shape[0]
        bias = self.relative_position_bias_table[index.reshape(-1)].reshape(t, t, -1)  # (T, T, H)
        return bias.permute(2, 0, 1).unsqueeze(0)  # (1, H, T, T)


def add_bias(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    """The sum of two optional score biases."""
    if a is None:
        return b
    return a if b is None else a + b


__all__ = ["RelativePositionBias", "add_bias", "relative_position_index", "table_rows"]

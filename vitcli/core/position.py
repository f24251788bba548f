"""The position part: how a position table enters the tokens (the formulas are in posenc.py).

  AbsolutePosition  Z0 = [prefix; x_p·E] + E_pos: a learned table (resampled to other grids as
                    the family's library does, `ViTConfig.pos_resample`) or a fixed sin-cos table
                    (recomputed exactly for any grid);
                    prefix tokens beyond `pos_prefix_rows` (registers) get no row;
  NoPosition        nothing is added.

The table itself is the encoder's `pos_embed` (a parameter when learned, a buffer outside the
state dict when fixed), so the state-dict key stays `pos_embed`; the part only builds, adapts and
adds it. A part may also hand the attention a rotation of Q, K or a score bias for a grid
(`attention_terms`); the encoder's `attention_terms` adds the relative biases to it, and every
block's caller takes its terms from there, never from this part alone.
"""

import torch
from torch import Tensor, nn

from vitcli.core.attention import Rotate
from vitcli.core.config import PosEncKind, PosResample, ViTConfig
from vitcli.core.posenc import position_table, resample_as
from vitcli.core.rope import Rope


class NoPosition(nn.Module):
    """No position at all: no table, nothing added, nothing for the attention."""

    learned = False

    def initial_table(self, generator: torch.Generator | None = None) -> Tensor | None:
        return None

    def table_at(self, table: Tensor | None, grid: tuple[int, int]) -> Tensor | None:
        return None

    def attention_terms(self, grid: tuple[int, int]) -> tuple[Rotate | None, Tensor | None]:
        """(rotate, bias) for every block's attention at this grid: none here."""
        return None, None

    def forward(self, x: Tensor, table: Tensor | None) -> Tensor:
        return x


class AbsolutePosition(NoPosition):
    """A table of `rows` prefix rows + one row per patch, added to the tokens."""

    def __init__(self, kind: PosEncKind, grid: tuple[int, int], dim: int, rows: int, num_prefix: int,
                 resample: PosResample = "bicubic") -> None:
        super().__init__()
        self.kind, self.grid, self.dim, self.rows, self.num_prefix = kind, grid, dim, rows, num_prefix
        self.resample = resample  # as the family's library resizes a table (posenc.RESAMPLE)
        self.learned = kind == "learned"

    def initial_table(self, generator: torch.Generator | None = None) -> Tensor:
        """(1, rows + N, D) at the native grid: D**-0.5·randn when learned, else the fixed table."""
        return position_table(self.kind, self.grid, self.dim, self.rows, generator)[None]

    def table_at(self, table: Tensor | None, grid: tuple[int, int]) -> Tensor:
        """(1, rows + N', D) for another grid: the own table, resampled (learned) or recomputed (fixed)."""
        if table is None:
            raise ValueError("an absolute position part needs its table")
        if grid == self.grid:
            return table
        if self.learned:
            return resample_as(self.resample, table, self.grid, grid, self.rows)
        return position_table(self.kind, grid, self.dim, self.rows)[None].to(table)

    def forward(self, x: Tensor, table: Tensor | None) -> Tensor:
        """(B, T, D) + table; prefix tokens beyond the table's prefix rows (registers) get nothing."""
        if table is None:
            raise ValueError("an absolute position part needs its table")
        if self.rows == self.num_prefix:
            return x + table  # every prefix token has a row
        zeros = table.new_zeros(1, self.num_prefix - self.rows, table.shape[-1])  # (1, unpositioned prefix, D)
        return x + torch.cat([table[:, :self.rows], zeros, table[:, self.rows:]], dim=1)  # (B, T, D)


class RotaryPosition(NoPosition):
    """A table part (or none) and a rotation of Q, K (RoPE, rope.py) for every block: EVA-02 has both."""

    def __init__(self, table: NoPosition, rope: Rope) -> None:
        super().__init__()
        self.table, self.rope = table, rope
        self.learned = table.learned

    def initial_table(self, generator: torch.Generator | None = None) -> Tensor | None:
        return self.table.initial_table(generator)

    def table_at(self, table: Tensor | None, grid: tuple[int, int]) -> Tensor | None:
        return self.table.table_at(table, grid)

    def attention_terms(self, grid: tuple[int, int]) -> tuple[Rotate | None, Tensor | None]:
        """The rotation of the patch rows of Q and K at this grid; no score bias."""
        return self.rope.rotation(grid), None

    def forward(self, x: Tensor, table: Tensor | None) -> Tensor:
        return self.table(x, table)


def _table_part(config: ViTConfig) -> NoPosition:
    """The additive part of the config's `posenc`."""
    if config.posenc == "none":
        return NoPosition()
    if config.posenc in ("learned", "sincos1d", "sincos2d"):
        return AbsolutePosition(config.posenc, config.grid, config.dim, config.pos_prefix_rows,
                                config.num_prefix_tokens, config.pos_resample)
    raise ValueError(f"unknown position encoding '{config.posenc}'")


def make_position(config: ViTConfig) -> NoPosition:
    """The position part of the config's `posenc`, with the rotation of its `rope` when there is one."""
    table = _table_part(config)
    if config.rope == "none":
        return table
    rope = Rope(config.rope, config.head_dim, config.rope_base, config.num_prefix_tokens, config.rope_ref_grid,
                config.rope_offset, config.rope_xy)
    return RotaryPosition(table, rope)


__all__ = ["AbsolutePosition", "NoPosition", "RotaryPosition", "make_position"]

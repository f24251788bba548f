"""Position tables against their formulas and MAE's layout; resampling against timm."""

import math

import numpy as np
import pytest
import torch
from timm.layers import resample_abs_pos_embed

from vitcli.core.posenc import position_table, resample_pos_table, sincos1d_table, sincos2d_table


def _pe(pos: float, channel: int, dim: int) -> float:
    """Vaswani et al.: PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(…)."""
    two_i = channel - channel % 2
    angle = pos / 10000 ** (two_i / dim)
    return math.sin(angle) if channel % 2 == 0 else math.cos(angle)


def _mae_2d(rows: int, cols: int, dim: int) -> np.ndarray:
    """MAE's 2-D table written out independently: [x sin | x cos | y sin | y cos], D/4 frequencies each."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)  # (D/4,)
    out = np.zeros((rows * cols, dim))
    for r in range(rows):
        for c in range(cols):
            out[r * cols + c] = np.concatenate([np.sin(c * omega), np.cos(c * omega),
                                                np.sin(r * omega), np.cos(r * omega)])
    return out


@pytest.mark.parametrize("grid, dim, prefix", [((4, 4), 4, 1), ((3, 5), 16, 1), ((2, 7), 10, 0), ((14, 14), 768, 1)])
def test_sincos1d_matches_formula(grid: tuple[int, int], dim: int, prefix: int) -> None:
    table = sincos1d_table(grid, dim, prefix)
    n = prefix + grid[0] * grid[1]
    expected = np.array([[_pe(pos, ch, dim) for ch in range(dim)] for pos in range(n)])
    assert table.shape == (n, dim)
    np.testing.assert_allclose(table.numpy(), expected, rtol=0, atol=1e-12)
    float32 = position_table("sincos1d", grid, dim, prefix)
    assert float32.dtype == torch.float32
    np.testing.assert_allclose(float32.numpy(), expected, rtol=0, atol=1e-6)


def test_sincos1d_worked_example() -> None:
    expected = [[0, 1, 0, 1], [0.8415, 0.5403, 0.0100, 1.0000], [0.9093, -0.4161, 0.0200, 0.9998]]
    rows = position_table("sincos1d", (4, 4), 4, dtype=torch.float64)[:3].numpy()
    np.testing.assert_array_equal(np.round(rows, 4) + 0.0, expected)  # as printed to 4 decimals
    # float32 holds cos(0.01) = 0.99995000 as 0.99994999, which prints as 0.9999: display from float64
    rows32 = position_table("sincos1d", (4, 4), 4)[:3].numpy()
    np.testing.assert_allclose(rows32, expected, rtol=0, atol=5e-5 + 1e-7)


@pytest.mark.parametrize("grid, dim, prefix", [((4, 4), 8, 1), ((3, 5), 16, 1), ((6, 2), 32, 2), ((2, 2), 4, 0)])
def test_sincos2d_matches_independent_numpy(grid: tuple[int, int], dim: int, prefix: int) -> None:
    table = sincos2d_table(grid, dim, prefix).numpy()
    assert table.shape == (prefix + grid[0] * grid[1], dim)
    np.testing.assert_array_equal(table[:prefix], 0.0)
    np.testing.assert_allclose(table[prefix:], _mae_2d(*grid, dim), rtol=0, atol=1e-12)


def test_learned_and_none_tables() -> None:
    a = position_table("learned", (14, 14), 768, generator=torch.Generator().manual_seed(3))
    b = position_table("learned", (14, 14), 768, generator=torch.Generator().manual_seed(3))
    assert a.shape == (197, 768) and torch.equal(a, b)
    assert abs(a.std().item() - 768**-0.5) < 0.002
    assert torch.equal(position_table("none", (2, 3), 8), torch.zeros(7, 8))


@pytest.mark.parametrize("kind, dim, message", [("sincos1d", 5, "even dim"), ("sincos2d", 6, "divisible by 4"),
                                                ("sincos2d", 7, "divisible by 4"), ("wavelet", 8, "unknown position")])
def test_bad_dims_and_kinds(kind: str, dim: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        position_table(kind, (4, 4), dim)  # type: ignore[arg-type]


@pytest.mark.parametrize("grid", [(0, 4), (3, 0), (-1, 2)])
def test_empty_grid_is_a_clear_error(grid: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="no patches"):
        position_table("sincos1d", grid, 8)
    with pytest.raises(ValueError, match="no patches"):
        resample_pos_table(torch.zeros(17, 8), (4, 4), grid)


def test_resample_same_grid_returns_the_table() -> None:
    """The one shortcut: the same grid hands back the table itself (as timm's early-out does)."""
    table = torch.randn(1, 1 + 2 * 8, 16)
    assert resample_pos_table(table, (2, 8), (2, 8), 1) is table


# Square and non-square, up and down (and up one way, down the other), against timm's own
# resample_abs_pos_embed (bicubic, align_corners=False), with and without antialias.
GRIDS = [((4, 4), (7, 7)), ((7, 7), (4, 4)), ((14, 14), (24, 24)), ((24, 24), (14, 14)),
         ((2, 8), (4, 4)), ((4, 4), (2, 8)), ((3, 5), (6, 4)), ((5, 3), (2, 7)),
         ((14, 14), (7, 9)), ((7, 7), (14, 20)), ((6, 10), (3, 5)), ((3, 5), (12, 20)), ((1, 6), (3, 2))]


@pytest.mark.parametrize("src, dst", GRIDS)
@pytest.mark.parametrize("prefix", [0, 1, 5])
@pytest.mark.parametrize("antialias", [True, False])
def test_resample_matches_timm(src: tuple[int, int], dst: tuple[int, int], prefix: int, antialias: bool) -> None:
    seed = hash((src, dst, prefix)) % 2**31
    table = torch.randn(1, prefix + src[0] * src[1], 12, generator=torch.Generator().manual_seed(seed))
    ours = resample_pos_table(table, src, dst, prefix, antialias=antialias)
    assert ours.shape == (1, prefix + dst[0] * dst[1], 12)
    assert torch.equal(ours[:, :prefix], table[:, :prefix])
    theirs = resample_abs_pos_embed(table, new_size=list(dst), old_size=list(src), num_prefix_tokens=prefix,
                                    interpolation="bicubic", antialias=antialias)
    assert theirs.shape == ours.shape
    assert (ours - theirs).abs().max().item() <= 1e-6
    flat = resample_pos_table(table[0], src, dst, prefix, antialias=antialias)  # (T, D) works too
    assert torch.equal(flat, ours[0])


def test_resample_a_batch_of_tables_row_by_row_as_timm() -> None:
    """A leading batch axis resamples each table on its own (timm takes one table at a time)."""
    tables = torch.randn(3, 1 + 4 * 6, 8, generator=torch.Generator().manual_seed(5))
    ours = resample_pos_table(tables, (4, 6), (8, 3), 1)
    for i in range(3):
        theirs = resample_abs_pos_embed(tables[i : i + 1], new_size=[8, 3], old_size=[4, 6], num_prefix_tokens=1)
        assert (ours[i : i + 1] - theirs).abs().max().item() <= 1e-6


def test_resample_keeps_a_constant_and_a_dtype() -> None:
    table = torch.full((1 + 12, 4), 0.25, dtype=torch.float16)
    out = resample_pos_table(table, (3, 4), (5, 2), 1)
    assert out.dtype == torch.float16 and out.shape == (11, 4)
    assert torch.equal(out, torch.full((11, 4), 0.25, dtype=torch.float16))


def test_resample_checks_the_row_count() -> None:
    with pytest.raises(ValueError, match="table has 17 rows"):
        resample_pos_table(torch.zeros(17, 8), (4, 5), (2, 2), 1)


@pytest.mark.parametrize("kind, kwargs", [
    ("bicubic", dict(size=(5, 9), antialias=True)),
    ("bicubic_plain", dict(size=(5, 9), antialias=False)),
    ("bicubic_offset", dict(scale_factor=(5.1 / 7, 9.1 / 6), antialias=False)),  # DINO's (n + 0.1) / M
    ("bilinear", dict(size=(5, 9), antialias=True, mode="bilinear")),
])
def test_each_library_resampling_is_its_interpolate_call(kind, kwargs) -> None:
    from vitcli.core.posenc import resample_as

    table = torch.randn(1, 2 + 7 * 6, 8, generator=torch.Generator().manual_seed(0))
    cells = table[:, 2:].reshape(1, 7, 6, 8).permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(cells, **{"mode": "bicubic", "align_corners": False, **kwargs})
    ours = resample_as(kind, table, (7, 6), (5, 9), 2)
    assert torch.equal(ours[:, :2], table[:, :2])
    assert torch.allclose(ours[:, 2:], expected.permute(0, 2, 3, 1).reshape(1, 45, 8), atol=1e-6)
    with pytest.raises(ValueError, match="unknown table resampling"):
        resample_as("nearest", table, (7, 6), (5, 9), 2)  # type: ignore[arg-type]

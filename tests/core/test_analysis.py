"""Analyses against hand computations and numpy."""

import itertools
import math

import numpy as np
import pytest
import torch

from vitcli.core.analysis import (
    attention_entropy,
    cosine_similarity_matrix,
    discard_lowest,
    fuse_heads,
    mass_threshold_mask,
    pca,
    prefix_row_to_grid,
)
from vitcli.core.reference import attention_rollout, mean_attention_distance, query_distance


def random_attention(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g, dtype=torch.float64) * 2, dim=-1)


def test_fusions():
    a = torch.tensor([[[0.2, 0.8]], [[0.6, 0.4]]])  # (H=2, Q=1, T=2)
    assert torch.allclose(fuse_heads(a, "mean"), torch.tensor([[0.4, 0.6]]))
    assert torch.allclose(fuse_heads(a, "max"), torch.tensor([[0.6, 0.8]]))
    assert torch.allclose(fuse_heads(a, "min"), torch.tensor([[0.2, 0.4]]))


def test_rollout_three_tokens_by_hand():
    a1 = np.array([[0.5, 0.3, 0.2], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5]])
    a2 = np.array([[0.6, 0.2, 0.2], [0.3, 0.3, 0.4], [0.1, 0.1, 0.8]])
    # one head each; by hand: Â = (0.5 A + 0.5 I) / row sums (rows of A sum to 1, so /1), R = Â2 Â1
    h1 = np.array([[0.75, 0.15, 0.10], [0.05, 0.90, 0.05], [0.125, 0.125, 0.75]])
    h2 = np.array([[0.80, 0.10, 0.10], [0.15, 0.65, 0.20], [0.05, 0.05, 0.90]])
    expected = h2 @ h1
    got = attention_rollout([torch.tensor(a1)[None, None], torch.tensor(a2)[None, None]])
    assert np.allclose(got[0].numpy(), expected, atol=1e-12)
    assert np.allclose(got[0].sum(-1).numpy(), 1.0)
    assert np.allclose(expected[0], [0.80 * 0.75 + 0.1 * 0.05 + 0.1 * 0.125,
                                     0.80 * 0.15 + 0.1 * 0.9 + 0.1 * 0.125,
                                     0.80 * 0.10 + 0.1 * 0.05 + 0.1 * 0.75])


def test_rollout_renormalises_rows_after_discard_and_start_layer():
    layers = [random_attention(2, 3, 7, 7, seed=s) for s in range(4)]
    for fusion, scope in itertools.product(["mean", "max", "min"], ["row", "matrix"]):
        r = attention_rollout(layers, fusion, discard_ratio=0.5, discard_scope=scope, start_layer=1)
        assert r.shape == (2, 7, 7)
        assert torch.allclose(r.sum(-1), torch.ones(2, 7, dtype=torch.float64))
        assert (r >= 0).all()
    only_last = attention_rollout(layers, start_layer=3)
    fused = layers[3].mean(1)
    hat = 0.5 * fused + 0.5 * torch.eye(7, dtype=torch.float64)
    assert torch.allclose(only_last, hat / hat.sum(-1, keepdim=True))
    with pytest.raises(ValueError):
        attention_rollout(layers, start_layer=4)


def test_discard_every_image_and_row():
    a = random_attention(3, 5, 5, seed=1)
    kept = discard_lowest(a, 0.4, "row")
    assert ((kept == 0).sum(-1) == 2).all()  # int(5·0.4) per row, for every image
    assert (torch.diagonal(kept, dim1=-2, dim2=-1) > 0).all()
    kept = discard_lowest(a, 0.4, "matrix")
    assert ((kept == 0).flatten(1).sum(-1) == 10).all()  # int(25·0.4) per image
    for b in range(3):  # the zeros are the smallest off-diagonal values of that image
        off = a[b][~torch.eye(5, dtype=torch.bool)]
        threshold = off.sort().values[9]
        assert (a[b][kept[b] == 0] <= threshold).all()


def test_mean_distance_2x2_by_hand():
    p = 16
    # tokens: cls, then patches (0,0) (0,1) (1,0) (1,1); centres 16 px apart
    attn = torch.tensor([
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.5, 0.5, 0.0, 0.0, 0.0],  # patch 0 attends only to cls and itself: distance 0
        [0.0, 0.5, 0.5, 0.0, 0.0],  # patch 1: half on patch 0 at 16 px
        [0.0, 0.0, 0.0, 0.0, 1.0],  # patch 2: all on patch 3, 16 px
        [0.0, 0.25, 0.25, 0.25, 0.25],  # patch 3: 0.25·(16√2 + 16 + 16 + 0)
    ], dtype=torch.float64)[None]  # (H=1, T, T)
    rows = [0.0, 0.5 * 16, 16.0, 0.25 * (16 * math.sqrt(2) + 32)]
    got = mean_attention_distance(attn, (2, 2), p, num_prefix=1)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(sum(rows) / 4)
    renormed = [0.0, 0.5 * 16, 16.0, 0.25 * (16 * math.sqrt(2) + 32)]  # row 0 → 1.0 on itself; others sum to 1 already
    assert mean_attention_distance(attn, (2, 2), p, 1, renorm=True).item() == pytest.approx(sum(renormed) / 4)
    assert query_distance(attn[0, 4], 4, (2, 2), p, 1).item() == pytest.approx(rows[3])
    assert mean_attention_distance(attn, (2, 2), p, 1, chunk=1).item() == pytest.approx(sum(rows) / 4)
    # renorm matters when a patch row puts weight on the class token: patch 1 half on cls, half on patch 0
    half = attn.clone()
    half[0, 2] = torch.tensor([0.5, 0.5, 0.0, 0.0, 0.0], dtype=torch.float64)
    plain = [0.0, 0.5 * 16, 16.0, rows[3]]  # 0.5 · 16 px; the cls half counts for nothing
    whole = [0.0, 1.0 * 16, 16.0, rows[3]]  # renormalised: all of it on patch 0, 16 px away
    assert mean_attention_distance(half, (2, 2), p, 1).item() == pytest.approx(sum(plain) / 4)
    assert mean_attention_distance(half, (2, 2), p, 1, renorm=True).item() == pytest.approx(sum(whole) / 4)


def test_mean_distance_non_square_against_loop():
    grid, p, prefix = (2, 3), 8, 2
    attn = random_attention(4, prefix + 6, prefix + 6, seed=3)  # (H, T, T)
    centres = [((r + 0.5) * p, (c + 0.5) * p) for r in range(2) for c in range(3)]
    for renorm in (False, True):
        expected = []
        for h in range(4):
            total = 0.0
            for i in range(6):
                row = attn[h, prefix + i, prefix:].numpy()
                if renorm:
                    row = row / row.sum()
                total += sum(row[j] * math.dist(centres[i], centres[j]) for j in range(6))
            expected.append(total / 6)
        got = mean_attention_distance(attn, grid, p, prefix, renorm=renorm)
        assert np.allclose(got.numpy(), expected)


def test_prefix_row_to_grid_slices_then_uses_true_grid():
    row = torch.arange(5 + 12)
    grid = prefix_row_to_grid(row, 5, (3, 4))
    assert grid.tolist() == [[5, 6, 7, 8], [9, 10, 11, 12], [13, 14, 15, 16]]
    with pytest.raises(ValueError):
        prefix_row_to_grid(row, 1, (3, 4))


def test_entropy():
    assert attention_entropy(torch.full((8,), 1 / 8)).item() == pytest.approx(math.log(8))
    assert attention_entropy(torch.tensor([1.0, 0.0, 0.0])).item() == 0.0


def test_mass_threshold_smallest_set():
    values = torch.tensor([[0.05, 0.30, 0.10], [0.25, 0.20, 0.10]])
    mask = mass_threshold_mask(values, 0.6)
    # sorted 0.30, 0.25, 0.20 → 0.75 ≥ 0.6 with three entries; two (0.55) are not enough
    assert mask.tolist() == [[False, True, False], [True, True, False]]
    maps = torch.rand(3, 4, 5, generator=torch.Generator().manual_seed(0))
    for t in (0.1, 0.6, 0.9, 1.0):
        mask = mass_threshold_mask(maps, t)
        for m, k in zip(maps, mask):
            share = (m[k].sum() / m.sum()).item()
            assert share >= t - 1e-12
            fewest = int(np.searchsorted(np.cumsum(np.sort(m.flatten().numpy())[::-1]) / m.sum().item(), t - 1e-12) + 1)
            assert int(k.sum()) == fewest


def test_cosine_against_numpy():
    g = np.random.default_rng(0)
    a, b = g.normal(size=(5, 7)), g.normal(size=(3, 7))
    expected = np.array([[x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in b] for x in a])
    assert np.allclose(cosine_similarity_matrix(torch.tensor(a), torch.tensor(b)).numpy(), expected)
    zero = cosine_similarity_matrix(torch.zeros(1, 7, dtype=torch.float64), torch.tensor(b))
    assert torch.isfinite(zero).all()


def test_pca_against_numpy_svd():
    g = np.random.default_rng(1)
    x = g.normal(size=(40, 6)) @ g.normal(size=(6, 6))
    comps, proj, ratio = pca(torch.tensor(x), 3)
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    for i in range(3):
        assert abs(abs(comps[i].numpy() @ vt[i]) - 1) < 1e-9  # same axis, sign fixed our way
        assert comps[i].numpy()[np.abs(comps[i].numpy()).argmax()] > 0
    assert np.allclose(np.abs(proj.numpy()), np.abs(centred @ vt[:3].T))
    assert np.allclose(ratio.numpy(), s[:3] ** 2 / (s**2).sum())

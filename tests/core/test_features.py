"""core.features against numpy: filter PCA, feature PCA to RGB with a foreground, similarity, norms."""

import numpy as np
import pytest
import torch

from vitcli.core.features import (class_attention_share, feature_pca_rgb, filter_components, high_norm_tokens,
                                  mad_thresholds, patch_index, patch_similarity, tiles_for_display, token_norms)
from vitcli.core.reference import filters_as_conv, layer_features


def numpy_pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centred PCA by numpy's SVD: components (k, D), projections (M, k), explained ratio (k,)."""
    centred = x - x.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[:k], centred @ vt[:k].T, (s**2 / (s**2).sum())[:k]


def same_up_to_sign(a: np.ndarray, b: np.ndarray, tol: float = 1e-8) -> bool:
    """Each row of a equals the row of b or its negative."""
    return all(min(np.abs(x - y).max(), np.abs(x + y).max()) < tol for x, y in zip(a, b))


def test_filter_components_match_numpy_svd_for_conv_and_linear_weights():
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(12, 3, 4, 4))  # (D, C, P, P)
    comps, ratio = filter_components(torch.from_numpy(conv), k=5)
    want, _, want_ratio = numpy_pca(conv.reshape(12, -1), 5)
    assert comps.shape == (5, 3, 4, 4)
    assert same_up_to_sign(comps.reshape(5, -1).numpy(), want)
    assert np.allclose(ratio.numpy(), want_ratio)
    # The same projection stored as a linear weight over hwc-ordered patches (vit-pytorch's layout).
    linear_hwc = conv.transpose(0, 2, 3, 1).reshape(12, -1)  # (D, P·P·C), pixel-major then channel
    linear_chw = conv.reshape(12, -1)
    assert np.array_equal(filters_as_conv(torch.from_numpy(linear_hwc), 4, 3, "hwc").numpy(), conv)
    assert np.array_equal(filters_as_conv(torch.from_numpy(linear_chw), 4, 3, "chw").numpy(), conv)
    with pytest.raises(ValueError, match="neither"):
        filters_as_conv(torch.zeros(12, 47), 4, 3)


def test_display_tiles_are_each_scaled_to_unit_range():
    tiles = tiles_for_display(torch.randn(4, 3, 5, 5, dtype=torch.float64)).numpy()
    assert tiles.shape == (4, 5, 5, 3)
    assert np.allclose(tiles.reshape(4, -1).min(1), 0) and np.allclose(tiles.reshape(4, -1).max(1), 1)


def _scene(rows: int = 5, cols: int = 6, d: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two images' features (2, N, D): interior patches lie far along one direction (foreground)."""
    rng = np.random.default_rng(seed)
    fg = np.zeros((rows, cols), dtype=bool)
    fg[1:-1, 1:-1] = True
    feats = rng.normal(scale=0.1, size=(2, rows * cols, d))
    feats[:, fg.ravel(), 0] += 5.0  # foreground
    feats[..., 1] += rng.normal(scale=2.0, size=(2, rows * cols))  # a second strong direction everywhere
    return feats, np.broadcast_to(fg, (2, rows, cols))


def test_feature_pca_rgb_is_numpy_pca_scaled_per_component_over_all_images():
    feats, _ = _scene()
    got = feature_pca_rgb(torch.from_numpy(feats), (5, 6))
    _, proj, ratio = numpy_pca(feats.reshape(-1, 16), 3)
    scaled = (proj - proj.min(0)) / (proj.max(0) - proj.min(0))  # (M, 3)
    rgb = got.rgb.numpy().reshape(-1, 3)
    for c in range(3):  # a component's sign is arbitrary: the channel is x or 1 - x
        assert min(np.abs(rgb[:, c] - scaled[:, c]).max(), np.abs(rgb[:, c] - (1 - scaled[:, c])).max()) < 1e-9
    assert np.allclose(got.explained.numpy(), ratio)
    assert got.rgb.shape == (2, 5, 6, 3) and got.foreground is None


def test_foreground_sign_threshold_and_second_pca():
    feats, fg = _scene()
    flipped = feats.copy()
    flipped[..., 0] *= -1  # same scene, foreground now negative along the direction: the sign rule must undo it
    for f in (feats, flipped):
        got = feature_pca_rgb(torch.from_numpy(f), (5, 6), threshold=0.5)
        assert np.array_equal(got.foreground.numpy(), fg)
        assert got.first.numpy()[fg].min() > got.first.numpy()[~fg].max()
        assert np.all(got.rgb.numpy()[~fg] == 0)
        inside = f.reshape(-1, 16)[fg.ravel()]  # the second PCA sees the foreground patches only
        _, proj, ratio = numpy_pca(inside, 3)
        assert np.allclose(got.explained.numpy(), ratio)
        scaled = (proj - proj.min(0)) / (proj.max(0) - proj.min(0))
        rgb = got.rgb.numpy()[fg]
        for c in range(3):
            assert min(np.abs(rgb[:, c] - scaled[:, c]).max(), np.abs(rgb[:, c] - (1 - scaled[:, c])).max()) < 1e-9
    with pytest.raises(ValueError, match="lower it"):
        feature_pca_rgb(torch.from_numpy(feats), (5, 6), threshold=0.9999999)


def test_patch_similarity_is_numpy_cosine_with_prefix_removed():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2 + 12, 8)), rng.normal(size=(2 + 6, 8))  # 2 prefix tokens each
    q = patch_index(1, 2, (3, 4))
    assert q == 6 and patch_index(-1, -1, (3, 4)) == 11
    got = patch_similarity(torch.from_numpy(a), torch.from_numpy(b), q, 2, (2, 3)).numpy()
    want = b[2:] @ a[2 + q] / (np.linalg.norm(b[2:], axis=1) * np.linalg.norm(a[2 + q]))
    assert got.shape == (2, 3) and np.allclose(got.ravel(), want)
    with pytest.raises(ValueError, match="outside"):
        patch_index(3, 0, (3, 4))


def test_norms_mad_thresholds_and_outliers_against_numpy():
    rng = np.random.default_rng(2)
    blocks = [torch.from_numpy(rng.normal(size=(1 + 20, 4))) for _ in range(3)]  # 1 prefix + 20 patches
    blocks[2][7] *= 40.0  # patch 6 of the last layer
    norms = token_norms(blocks)
    want = np.stack([np.linalg.norm(b.numpy(), axis=1) for b in blocks])
    assert np.allclose(norms.numpy(), want)
    patches = want[:, 1:]
    med = np.median(patches, axis=1)
    mad = np.median(np.abs(patches - med[:, None]), axis=1)
    thr = mad_thresholds(norms[:, 1:], 3.0).numpy()
    assert np.allclose(thr, med + 3.0 * mad)
    expected = [(l, p) for l in range(3) for p in range(20) if patches[l, p] > thr[l]]
    assert high_norm_tokens(norms, 1, torch.from_numpy(thr)) == expected and (2, 6) in expected


def test_class_attention_share_and_layer_features():
    w = torch.softmax(torch.randn(2, 3, 1, 5), dim=-1)  # 2 layers of (H, 1, T)
    share = class_attention_share(list(w))
    assert torch.allclose(share, w[:, :, 0].mean(1).double()) and torch.allclose(share.sum(1), torch.ones(2, dtype=torch.float64))
    blocks = {i: torch.randn(4, 6) for i in (1, 2)}  # ViTOutput.blocks: layer → output
    norm = torch.nn.LayerNorm(6)
    assert torch.equal(layer_features(blocks, 2), blocks[2])
    assert torch.allclose(layer_features(blocks, 1, norm), torch.nn.functional.layer_norm(blocks[1], (6,)))
    with pytest.raises(ValueError, match="block 0 was not captured \\(captured: 1, 2\\)"):
        layer_features(blocks, 0)

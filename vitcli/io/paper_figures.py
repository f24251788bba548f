"""Matplotlib figures for `vitcli figures`, drawn after the papers they reproduce.

Arrays in, a matplotlib Figure out (write it with `vitcli.io.pictures.save_figure`); matplotlib is
imported only when a figure is drawn.
"""

import math

import numpy as np

from vitcli.io.pictures import _pyplot, colour_bar, mark_patch


def upsample(grid_values: np.ndarray, patch_size: int) -> np.ndarray:
    """(rows, cols, …) → (rows·P, cols·P, …) by repeating each cell (nearest)."""
    return np.repeat(np.repeat(grid_values, patch_size, axis=0), patch_size, axis=1)


def filters_figure(tiles: np.ndarray, explained: np.ndarray, title: str, cols: int = 7):
    """ViT paper fig. 7 (left): (k, P, P, C) tiles in [0, 1], one per principal component, in rows
    of `cols`; each labelled with its number and share of the variance."""
    plt = _pyplot()
    k = tiles.shape[0]
    rows = math.ceil(k / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.05, rows * 1.2 + 0.5), dpi=110, squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= k:
            continue
        tile = tiles[i] if tiles.shape[-1] == 3 else tiles[i].mean(-1)
        ax.imshow(tile, cmap=None if tiles.shape[-1] == 3 else "gray", interpolation="nearest", vmin=0, vmax=1)
        ax.set_title(f"{i + 1} · {100 * explained[i]:.1f}%", fontsize=7, pad=2)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97), h_pad=0.4, w_pad=0.2)
    return fig


def pca_figure(pictures: list[np.ndarray], maps: np.ndarray, patch_size: int, names: list[str], title: str):
    """DINOv2 fig. 1: each image (H, W, 3) uint8 above its PCA map (rows, cols, 3) in [0, 1],
    upsampled nearest to the image size."""
    plt = _pyplot()
    b = len(pictures)
    h, w = pictures[0].shape[:2]
    side = 2.6
    fig, axes = plt.subplots(2, b, figsize=(side * w / max(h, w) * b + 0.3, 2 * side * h / max(h, w) + 0.6), dpi=100,
                             squeeze=False)
    for i in range(b):
        axes[0, i].imshow(pictures[i])
        axes[0, i].set_title(names[i], fontsize=8)
        axes[1, i].imshow(upsample(maps[i], patch_size), interpolation="nearest")
        for ax in axes[:, i]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=9)
    axes[1, 0].set_ylabel("PCA 1-3 → R, G, B", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return fig


def similarity_overlay_figure(query_picture: np.ndarray, target_picture: np.ndarray, sim: np.ndarray,
                              query_rc: tuple[int, int], patch_size: int, same_image: bool, title: str):
    """The query image with its patch marked, and the cosine-similarity map (rows, cols) of that
    patch blended over the target image, with a colour bar."""
    plt = _pyplot()
    h, w = query_picture.shape[:2]
    th, tw = target_picture.shape[:2]
    fig, axes = plt.subplots(1, 2, figsize=(3.4 * w / max(h, w) + 3.4 * tw / max(th, tw) + 1.2, 3.8), dpi=100,
                             gridspec_kw={"width_ratios": [w / h, tw / th]})
    axes[0].imshow(query_picture)
    mark_patch(axes[0], query_rc, patch_size)
    axes[0].set_title(f"query patch (row {query_rc[0]}, col {query_rc[1]})", fontsize=9)
    axes[1].imshow(target_picture)
    heat = axes[1].imshow(upsample(sim, patch_size), cmap="inferno", alpha=0.7, vmin=float(sim.min()),
                          vmax=float(sim.max()), interpolation="nearest")
    if same_image:
        mark_patch(axes[1], query_rc, patch_size)
    axes[1].set_title("similarity on the same image" if same_image else "similarity on the second image", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    colour_bar(fig, axes[1], heat, "Cosine similarity")
    fig.suptitle(title, fontsize=10)
    return fig


def norms_figure(norms: np.ndarray, num_prefix: int, has_class: bool, registers: range, thresholds: np.ndarray,
                 outliers: list[tuple[int, int]], title: str):
    """Darcet et al. (2023) fig. 3: token norms against depth (patch tokens grey, outliers red,
    class and register tokens marked, threshold per layer), and the last layer's histogram."""
    plt = _pyplot()
    layers, _ = norms.shape
    fig, (left, right) = plt.subplots(1, 2, figsize=(10.5, 3.8), dpi=110, gridspec_kw={"width_ratios": [1.6, 1]})
    rng = np.random.default_rng(0)
    patches = norms[:, num_prefix:]  # (L, N)
    x = np.arange(layers)[:, None] + rng.uniform(-0.25, 0.25, patches.shape)
    left.scatter(x.ravel(), patches.ravel(), s=3, c="0.6", alpha=0.5, label="patch tokens", rasterized=True)
    if outliers:
        ol = np.array(outliers)
        left.scatter(x[ol[:, 0], ol[:, 1]], patches[ol[:, 0], ol[:, 1]], s=12, c="tab:red", label="high-norm patches")
    if has_class:
        left.scatter(np.arange(layers), norms[:, 0], s=22, marker="*", c="tab:green", label="class token")
    for j, reg in enumerate(registers):
        left.scatter(np.arange(layers) + 0.3, norms[:, reg], s=14, marker="^", c="tab:blue",
                     label="registers" if j == 0 else None)
    left.hlines(thresholds, np.arange(layers) - 0.4, np.arange(layers) + 0.4, colors="k", linewidth=1,
                label="threshold")
    left.set_xlabel("layer (block output)")
    left.set_ylabel("token L2 norm")
    left.set_xticks(range(layers))
    left.legend(fontsize=7, loc="best", framealpha=0.85)
    _, edges, _ = right.hist(patches[-1], bins=40, color="0.5", log=True, label="patch tokens")
    high = patches[-1][patches[-1] > thresholds[-1]]
    if high.size:
        right.hist(high, bins=edges, color="tab:red", log=True, label="high-norm patches")
    right.axvline(thresholds[-1], color="k", linewidth=1, linestyle="--", label="threshold")
    for j, reg in enumerate(registers):
        right.axvline(norms[-1, reg], color="tab:blue", linewidth=1, label="registers" if j == 0 else None)
    right.set_xlabel(f"token norm at layer {layers - 1}")
    right.set_ylabel("patch tokens (log)")
    right.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig

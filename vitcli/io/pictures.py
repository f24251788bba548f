"""PNG pictures: plain images, and the image with its patch grid and patch indices drawn on it."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vitcli.io.arrays import write_bytes


def save_png(path: str, image: Image.Image | np.ndarray) -> None:
    """Write a PNG atomically (or to standard output for '-')."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    write_bytes(path, lambda f: image.save(f, format="PNG"))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled scalable font at `size` pixels."""
    return ImageFont.load_default(size=size)


def grid_picture(pixels: np.ndarray, patch_size: int, min_cell: int = 40) -> Image.Image:
    """The image as fed in, scaled up (nearest) so every patch cell is ≥ `min_cell` pixels, with
    the patch grid drawn and each patch's row index (row-major, the row of the patch array)."""
    h, w = pixels.shape[:2]
    rows, cols = h // patch_size, w // patch_size
    scale = max(1, -(-min_cell // patch_size))
    cell = patch_size * scale
    img = Image.fromarray(pixels).resize((w * scale, h * scale), Image.Resampling.NEAREST).convert("RGBA")
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for r in range(rows + 1):
        draw.line([(0, r * cell), (w * scale, r * cell)], fill=(255, 255, 255, 200), width=1)
    for c in range(cols + 1):
        draw.line([(c * cell, 0), (c * cell, h * scale)], fill=(255, 255, 255, 200), width=1)
    digits = len(str(rows * cols - 1))
    font = _font(max(8, min(cell // 3, int(cell * 1.6 / max(digits, 1)))))
    for index in range(rows * cols):
        r, c = divmod(index, cols)
        x, y = c * cell + cell / 2, r * cell + cell / 2
        text = str(index)
        box = draw.textbbox((x, y), text, font=font, anchor="mm")
        draw.rectangle(box, fill=(0, 0, 0, 140))
        draw.text((x, y), text, fill=(255, 255, 255, 255), font=font, anchor="mm")
    return Image.alpha_composite(img, overlay).convert("RGB")


# --- figures with matplotlib (imported only when a figure is asked for) ---------------------------


def _pyplot():
    """matplotlib's pyplot on the Agg backend: no display needed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(path: str, fig) -> None:
    """Write a matplotlib figure as PNG atomically, then free it."""
    plt = _pyplot()
    try:
        write_bytes(path, lambda f: fig.savefig(f, format="png", dpi=fig.dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def tile_mosaic(tiles: np.ndarray, gap: int = 1) -> np.ndarray:
    """(R, C, h, w) tiles → one (R·(h+gap)−gap, C·(w+gap)−gap) array, NaN in the gaps."""
    rows, cols, h, w = tiles.shape
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for r in range(rows):
        for c in range(cols):
            out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tiles[r, c]
    return out


def similarity_figure(similarity: np.ndarray, grid: tuple[int, int], title: str):
    """ViT paper figure 7 (centre): one tile per grid position, the cosine similarity of its
    position embedding with every other position's, tiles laid out on the grid, colour bar over the
    similarities' own range (as the paper's figure)."""
    plt = _pyplot()
    rows, cols = grid
    tiles = similarity.reshape(rows, cols, rows, cols)  # (r, c, r', c')
    mosaic = tile_mosaic(tiles, gap=1)
    scale = 7.0 / max(rows, cols)
    fig, ax = plt.subplots(figsize=(max(3.0, cols * scale) + 1.2, max(3.0, rows * scale)), dpi=110)
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    # the data's own range: a fixed [-1, 1] hides a sin-cos table's pattern (all of it within 0.6-1)
    im = ax.imshow(mosaic, cmap=cmap, vmin=float(np.nanmin(similarity)), vmax=float(np.nanmax(similarity)),
                   interpolation="nearest")
    step = max(1, max(rows, cols) // 14)
    ax.set_xticks([c * (cols + 1) + (cols - 1) / 2 for c in range(0, cols, step)],
                  [str(c) for c in range(0, cols, step)])
    ax.set_yticks([r * (rows + 1) + (rows - 1) / 2 for r in range(0, rows, step)],
                  [str(r) for r in range(0, rows, step)])
    ax.set_xlabel("Input patch column")
    ax.set_ylabel("Input patch row")
    ax.set_title(title)
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    colour_bar(fig, ax, im, "Cosine similarity")
    return fig


def colour_bar(fig, ax, image, label: str):
    """A colour bar exactly as tall as the plot beside it (rows and columns number from 0 elsewhere)."""
    from mpl_toolkits.axes_grid1 import make_axes_locatable

    cax = make_axes_locatable(ax).append_axes("right", size="4%", pad=0.08)
    return fig.colorbar(image, cax=cax, label=label)


def mark_patch(ax, rc: tuple[int, int], patch_size: int, colour: str = "cyan") -> None:
    """Outline patch (row, col) of an image drawn by imshow (pixel centres at integers)."""
    from matplotlib.patches import Rectangle

    r, c = rc
    ax.add_patch(Rectangle((c * patch_size - 0.5, r * patch_size - 0.5), patch_size, patch_size,
                           fill=False, edgecolor=colour, linewidth=2))


def overlay_figure(pixels: np.ndarray, maps: np.ndarray, titles: list[str], suptitle: str,
                   mark: tuple[int, int] | None = None, patch_size: int = 16, label: str = "Attention weight"):
    """Maps (K, rows, cols) on the patch grid, each upsampled (nearest: one cell per patch) and
    blended over the image (H, W, 3), K panels on one shared colour scale with one colour bar;
    `mark` outlines the query patch (row, col)."""
    plt = _pyplot()

    k = len(maps)
    cols = min(k, 4 if k <= 8 else 6)
    rows = -(-k // cols)
    h, w = pixels.shape[:2]
    panel = 3.2 if k > 1 else 5.0
    fig, axes = plt.subplots(rows, cols, figsize=(cols * panel * max(w / h, 0.5) + 1.0, rows * panel + 0.6),
                             dpi=110, squeeze=False)
    vmin, vmax = float(np.nanmin(maps)), float(np.nanmax(maps))
    image = None
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= k:
            continue
        ax.imshow(pixels)
        image = ax.imshow(maps[i], cmap="inferno", alpha=0.6, extent=(-0.5, w - 0.5, h - 0.5, -0.5),
                          interpolation="nearest",
                          vmin=vmin, vmax=vmax)
        if mark is not None:
            mark_patch(ax, mark, patch_size)
        ax.set_title(titles[i], fontsize=9 if k > 1 else 11)
    fig.suptitle(suptitle, fontsize=11)
    if k == 1:
        colour_bar(fig, axes.flat[0], image, label)
    else:
        fig.colorbar(image, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02, label=label)
    return fig


def distance_figure(distance: np.ndarray, patch_size: int, title: str, spread: np.ndarray | None = None):
    """ViT paper figure 7 (right): mean attention distance (pixels) of every head against depth,
    one dot per head per layer; `spread` (layers, heads) draws ± error bars (over images)."""
    plt = _pyplot()
    layers, heads = distance.shape
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    colours = plt.get_cmap("tab20" if heads > 10 else "tab10")
    for h in range(heads):
        x = np.arange(layers) + (h - (heads - 1) / 2) * 0.02
        if spread is not None:
            ax.errorbar(x, distance[:, h], yerr=spread[:, h], fmt="none", ecolor=colours(h % 20), alpha=0.35, lw=1)
        ax.scatter(x, distance[:, h], s=14, color=colours(h % 20), label=f"head {h}" if heads <= 16 else None)
    ax.set_xlabel("Network depth (layer index, 0 = first block)")
    ax.set_ylabel("Mean attention distance (pixels)")
    ax.set_xticks(range(0, layers, max(1, layers // 16)))
    top = float(np.nanmax(distance + (spread if spread is not None else 0)))
    ax.set_ylim(0, max(top * 1.05, 1.0))  # from 0, as the paper: distances compare with the image size
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if heads <= 16:
        ax.legend(fontsize=7, ncol=2 if heads > 6 else 1, loc="lower right", frameon=False)
    return fig


def bias_maps_figure(maps: np.ndarray, patch: tuple[int, int], title: str):
    """One panel per head: the relative position bias a query at `patch` gives every key patch (H, R, C)."""
    plt = _pyplot()
    heads, rows, cols = maps.shape
    per_row = min(heads, 4)
    lines = (heads + per_row - 1) // per_row
    fig, axes = plt.subplots(lines, per_row, figsize=(2.6 * per_row, 2.6 * lines * rows / max(cols, 1) + 0.6),
                             dpi=110, squeeze=False)
    for h, ax in enumerate(axes.flat):
        ax.axis("off")
        if h >= heads:
            continue
        im = ax.imshow(maps[h], cmap="viridis", interpolation="nearest")
        ax.scatter([patch[1]], [patch[0]], marker="x", c="red", s=30)
        ax.set_title(f"head {h}", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title)
    return fig


def _layer_ticks(layers: list[int]) -> tuple[list[int], list[str]]:
    """Positions and labels of layer numbers on an axis (every one up to 16, else a spread)."""
    step = max(1, len(layers) // 16)
    at = list(range(0, len(layers), step))
    return at, [str(layers[i]) for i in at]


def layer_similarity_figure(matrix: np.ndarray, layers_a: list[int], layers_b: list[int], title: str,
                            label: str = "similarity"):
    """Kornblith et al. / Raghu et al.'s layer × layer heatmap: A's layers down, B's across, 0 at the top left."""
    plt = _pyplot()
    rows, cols = matrix.shape
    side = 0.32
    fig, ax = plt.subplots(figsize=(max(3.6, cols * side + 1.6), max(3.0, rows * side + 0.9)), dpi=110)
    im = ax.imshow(matrix, cmap="magma", interpolation="nearest", aspect="auto")
    ax.set_yticks(*_layer_ticks(layers_a))
    ax.set_xticks(*_layer_ticks(layers_b))
    ax.set_ylabel("Layer of A (block index)")
    ax.set_xlabel("Layer of B (block index)")
    ax.set_title(title, fontsize=9)
    colour_bar(fig, ax, im, label)
    return fig


def accuracy_figure(layers: list[int], accuracy: np.ndarray, names: list[str], title: str):
    """Accuracy against depth, one line per probe (accuracy (layers, probes) as fractions), best layers marked."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=110)
    for j, name in enumerate(names):
        line, = ax.plot(layers, 100 * accuracy[:, j], marker="o", ms=4, label=name)
        best = int(np.nanargmax(accuracy[:, j]))
        ax.scatter([layers[best]], [100 * accuracy[best, j]], s=90, facecolors="none", edgecolors=line.get_color())
    ax.set_xlabel("Layer (block index)")
    ax.set_ylabel("Test accuracy (%)")
    ax.set_xticks(layers[::max(1, len(layers) // 16)])
    ax.set_ylim(0, 102)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, loc="lower right")
    return fig

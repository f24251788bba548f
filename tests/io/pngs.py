"""Reading figures back: PNG pixels, where a colour is, and whether a colour bar is drawn.

Expected colours come from matplotlib's own colormaps and the alpha-blend formula, not from the
code under test.
"""

from pathlib import Path

import numpy as np
from PIL import Image


def read_rgb(path: Path) -> np.ndarray:
    """A PNG as (H, W, 3) int (alpha dropped: the figures are opaque)."""
    with Image.open(path) as img:
        assert img.format == "PNG"
        rgba = np.asarray(img.convert("RGBA")).astype(int)
    assert (rgba[..., 3] == 255).all(), "figure has transparent pixels"
    return rgba[..., :3]


def cmap_rgb(name: str, value: float) -> np.ndarray:
    """matplotlib's colour for `value` in [0, 1], as 0..255 floats."""
    import matplotlib

    return np.asarray(matplotlib.colormaps[name](value)[:3]) * 255


def blend(top: np.ndarray, alpha: float, under) -> np.ndarray:
    """`top` drawn with `alpha` over `under` (source-over)."""
    return alpha * np.asarray(top, float) + (1 - alpha) * np.asarray(under, float)


def near(rgb: np.ndarray, colour, tol: float = 4.0) -> np.ndarray:
    """Mask of the pixels within `tol` (per channel) of `colour`."""
    return (np.abs(rgb - np.asarray(colour, float)) <= tol).all(-1)


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the True pixels, bottom and right exclusive."""
    ys, xs = np.nonzero(mask)
    assert ys.size, "no pixel of that colour"
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def solid_bbox(mask: np.ndarray, fraction: float = 0.3) -> tuple[int, int, int, int]:
    """`bbox` of a solid block: only rows and columns holding at least `fraction` of the fullest
    row's (column's) count, so that stray anti-aliased text pixels of a similar colour are ignored."""
    rows, cols = mask.sum(1), mask.sum(0)
    ys, xs = np.nonzero(rows >= fraction * rows.max())[0], np.nonzero(cols >= fraction * cols.max())[0]
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1


def colour_bar_columns(rgb: np.ndarray, cmap: str, alpha: float = 1.0, min_fraction: float = 0.3,
                       tol: float = 6.0) -> list[int]:
    """Columns holding a colour bar of `cmap` (drawn with `alpha` over white): a vertical run of at
    least `min_fraction` of the height whose pixels are the colormap's colours, going monotonically
    from its top end (at the top) down to its bottom end, covering at least 90% of the colormap."""
    lut = np.stack([blend(cmap_rgb(cmap, v), alpha, (255, 255, 255)) for v in np.linspace(0, 1, 256)])  # (256, 3)
    colours, inverse = np.unique(rgb.reshape(-1, 3), axis=0, return_inverse=True)  # figures have few colours
    dist = np.abs(colours[:, None, :] - lut[None]).max(-1)  # (U, 256)
    height, width = rgb.shape[:2]
    idx = dist.argmin(1)[inverse.ravel()].reshape(height, width)
    ok = (dist.min(1) <= tol)[inverse.ravel()].reshape(height, width)
    found = []
    for x in range(width):
        # a run breaks where a pixel is not of the colormap or the index rises going down
        breaks = np.nonzero(~ok[1:, x] | ~ok[:-1, x] | (idx[1:, x] > idx[:-1, x] + 2))[0] + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, height]):
            run = idx[start:stop, x]
            if ok[start, x] and stop - start >= min_fraction * height and run[0] - run[-1] >= 230:
                found.append(x)
                break
    return found

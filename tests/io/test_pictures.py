"""vitcli/io/pictures.py: PNGs written atomically and read back with Pillow; the grid picture's
lines and cells, the overlay's hot patch, colour bars, the similarity mosaic, the distance plot."""

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLES
from tests.io.pngs import blend, bbox, cmap_rgb, colour_bar_columns, near, read_rgb, solid_bbox
from vitcli.errors import VitcliError
from vitcli.io.pictures import (
    distance_figure, grid_picture, overlay_figure, save_figure, save_png, similarity_figure, tile_mosaic,
)

GREY, BLUE, WHITE = (128, 128, 128), (0, 0, 255), (255, 255, 255)


def test_save_png_writes_the_pixels_and_replaces_whole(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    path = tmp_path / "a.png"
    path.write_bytes(b"old")
    save_png(str(path), pixels)
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (11, 7) and np.array_equal(np.asarray(img), pixels)
    save_png(str(path), Image.fromarray(pixels[:3]))
    with Image.open(path) as img:
        assert img.size == (11, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_a_failed_png_write_leaves_the_earlier_file(tmp_path):
    path = tmp_path / "a.png"
    path.write_bytes(b"earlier")
    with pytest.raises((VitcliError, OSError)):
        save_png(str(path), Image.new("CMYK", (4, 4)))  # Pillow cannot write CMYK as PNG
    assert path.read_bytes() == b"earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["a.png"]


def test_save_figure_is_atomic_and_closes_the_figure(tmp_path):
    import matplotlib.pyplot as plt

    path = tmp_path / "f.png"
    path.write_bytes(b"earlier")
    fig = distance_figure(np.ones((2, 2)), 16, "t")

    def half_then_fail(f, **kw):
        f.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    fig.savefig = half_then_fail
    with pytest.raises(VitcliError, match="No space left"):
        save_figure(str(path), fig)
    assert path.read_bytes() == b"earlier" and sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]
    assert not plt.fignum_exists(fig.number)
    fig = distance_figure(np.ones((2, 2)), 16, "t")
    save_figure(str(path), fig)
    assert read_rgb(path).shape[2] == 3 and not plt.fignum_exists(fig.number)


# ---- grid_picture --------------------------------------------------------------------------------

def bright_lines(rgb: np.ndarray, axis: int) -> list[int]:
    """Rows (axis 1) or columns (axis 0) whose every pixel is bright: the grid lines on a black image."""
    return np.nonzero((rgb.min(-1) >= 150).all(axis=axis))[0].tolist()


@pytest.mark.parametrize("hw, patch, min_cell, scale", [
    ((32, 48), 16, 40, 3),  # ceil(40/16) = 3: cells 48 px
    ((32, 48), 16, 8, 1),  # cells already ≥ 8 px: not scaled
    ((28, 42), 14, 40, 3),  # ceil(40/14) = 3: cells 42 px
])
def test_grid_picture_lines_at_multiples_of_p(tmp_path, hw, patch, min_cell, scale):
    h, w = hw
    picture = grid_picture(np.zeros((h, w, 3), np.uint8), patch, min_cell)
    save_png(str(tmp_path / "g.png"), picture)
    rgb = read_rgb(tmp_path / "g.png")
    assert rgb.shape == (h * scale, w * scale, 3)
    cell = patch * scale
    # lines at every multiple of P (scaled) inside the picture: y = 0, P, …; x = 0, P, 2P, …
    assert bright_lines(rgb, 1) == list(range(0, h * scale, cell))
    assert bright_lines(rgb, 0) == list(range(0, w * scale, cell))


def test_grid_picture_keeps_the_pixels_and_labels_every_cell():
    pixels = np.random.default_rng(3).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    rgb = np.asarray(grid_picture(pixels, 16, 40)).astype(int)  # scale 3, cells of 48 px
    for r in range(2):
        for c in range(3):
            for dy, dx in ((2, 2), (2, 45), (45, 2), (45, 45)):  # near each cell's corners: the picture itself
                y, x = r * 48 + dy, c * 48 + dx
                assert rgb[y, x].tolist() == pixels[y // 3, x // 3].tolist()
    grey = grid_picture(np.full((32, 48, 3), 128, np.uint8), 16, 40)
    g = np.asarray(grey).astype(int)
    for r in range(2):
        for c in range(3):  # the index label at each cell's centre: white text on a darkened box
            centre = g[r * 48 + 14 : r * 48 + 34, c * 48 + 14 : c * 48 + 34]
            assert (centre.min(-1) >= 240).sum() >= 5 and (centre.max(-1) <= 60).sum() >= 5


# ---- overlay_figure ------------------------------------------------------------------------------

def overlay_png(tmp_path, pixels, maps, titles=None, **kw):
    path = tmp_path / "overlay.png"
    titles = [f"panel {i}" for i in range(len(maps))] if titles is None else titles
    save_figure(str(path), overlay_figure(pixels, maps, titles, "overlay", **kw))
    return read_rgb(path)


def test_overlay_puts_a_hot_patch_on_that_patch(tmp_path):
    """A 48x64 picture (P = 16: a 3x4 grid), grey except patch (1, 2) in blue; the map is 0
    everywhere and 1 at (1, 2). By hand, patch (1, 2) is rows 16..32 of 48 and columns 32..48 of
    64: from 1/3 to 2/3 of the picture's height and from 1/2 to 3/4 of its width."""
    pixels = np.full((48, 64, 3), GREY, np.uint8)
    pixels[16:32, 32:48] = BLUE
    maps = np.zeros((1, 3, 4))
    maps[0, 1, 2] = 1.0
    rgb = overlay_png(tmp_path, pixels, maps, titles=[""])  # no panel title: only white round the picture
    hot, cold = cmap_rgb("inferno", 1.0), cmap_rgb("inferno", 0.0)  # the map is drawn at alpha 0.6
    hot_blue, hot_grey = near(rgb, blend(hot, 0.6, BLUE)), near(rgb, blend(hot, 0.6, GREY))
    cold_blue, cold_grey = near(rgb, blend(cold, 0.6, BLUE)), near(rgb, blend(cold, 0.6, GREY))
    assert hot_blue.sum() > 1000 and cold_grey.sum() > 10 * hot_blue.sum()
    # the map lies exactly on the picture: hot over the blue patch, cold over the grey
    misplaced = hot_grey.sum() + cold_blue.sum()
    assert misplaced <= 0.02 * hot_blue.sum(), f"{misplaced} pixels of the map off its patch"
    top, left, bottom, right = solid_bbox(hot_blue | hot_grey | cold_blue | cold_grey)  # the picture on screen
    ring = rgb[top - 6 : bottom + 6, left - 6 : right + 6].copy()  # 2 to 6 px round the picture's edge
    ring[4:-4, 4:-4] = 255
    assert ring.min() >= 250, "the map overhangs the picture onto the white page"
    ph, pw = bottom - top, right - left
    assert abs(pw / ph - 64 / 48) < 0.02
    expected = (top + ph / 3, left + pw / 2, top + 2 * ph / 3, left + 3 * pw / 4)
    assert np.allclose(bbox(hot_blue | hot_grey), expected, atol=2), (bbox(hot_blue | hot_grey), expected)
    bar = colour_bar_columns(rgb, "inferno", alpha=0.6)
    assert len(bar) >= 5 and min(bar) > right, "no colour bar right of the picture"


def test_overlay_marks_the_query_patch(tmp_path):
    pixels = np.full((48, 64, 3), GREY, np.uint8)
    maps = np.zeros((1, 3, 4))
    maps[0, 1, 2] = 1.0
    rgb = overlay_png(tmp_path, pixels, maps, mark=(1, 2), patch_size=16)
    hot = bbox(near(rgb, blend(cmap_rgb("inferno", 1.0), 0.6, GREY)))
    cyan = bbox(near(rgb, (0, 255, 255), tol=40))  # the outline, a 2-point line round the patch
    assert all(abs(a - b) <= 4 for a, b in zip(cyan, hot)), (cyan, hot)


def test_overlay_panels_share_one_colour_scale(tmp_path):
    """Two panels: 1.0 at (0, 0) in the first, 0.5 at (2, 3) in the second. On one shared scale the
    second panel's peak is inferno(0.5), not the top colour."""
    pixels = np.full((48, 64, 3), GREY, np.uint8)
    maps = np.zeros((2, 3, 4))
    maps[0, 0, 0], maps[1, 2, 3] = 1.0, 0.5
    rgb = overlay_png(tmp_path, pixels, maps)
    top_colour = near(rgb, blend(cmap_rgb("inferno", 1.0), 0.6, GREY))
    middle = near(rgb, blend(cmap_rgb("inferno", 0.5), 0.6, GREY))
    assert top_colour.sum() > 500 and middle.sum() > 500
    assert bbox(top_colour)[3] < bbox(middle)[1]  # all of the top colour in the left panel
    assert len(colour_bar_columns(rgb, "inferno", alpha=0.6)) >= 3


def test_long_titles_do_not_break_the_figures(tmp_path):
    name = "a-very-long-image-name-" * 15 + ".jpg"
    pixels = np.full((32, 32, 3), GREY, np.uint8)
    save_figure(str(tmp_path / "o.png"), overlay_figure(pixels, np.random.rand(5, 2, 2), [name] * 5, name * 2))
    save_figure(str(tmp_path / "s.png"), similarity_figure(np.eye(4), (2, 2), name))
    save_figure(str(tmp_path / "d.png"), distance_figure(np.random.rand(3, 2) * 50, 16, name))
    for f in ("o.png", "s.png", "d.png"):
        assert read_rgb(tmp_path / f).shape[0] > 100


# ---- similarity_figure, tile_mosaic, distance_figure ---------------------------------------------

def test_tile_mosaic_lays_tiles_out_with_nan_gaps():
    tiles = np.arange(2 * 3 * 2 * 2, dtype=float).reshape(2, 3, 2, 2)
    out = tile_mosaic(tiles, gap=1)
    assert out.shape == (2 * 3 - 1, 3 * 3 - 1)  # R·(h+1)−1, C·(w+1)−1
    assert np.isnan(out[2]).all() and np.isnan(out[:, 2]).all() and np.isnan(out[:, 5]).all()
    assert np.array_equal(out[3:5, 6:8], tiles[1, 2]) and np.array_equal(out[0:2, 3:5], tiles[0, 1])


def test_similarity_figure_draws_each_tile_and_a_colour_bar(tmp_path):
    """Similarity 1 with itself and −1 with every other position, on a 3x5 grid: every tile has
    one yellow cell (viridis top) and 14 purple ones (viridis bottom)."""
    n = 15
    sim = np.where(np.eye(n, dtype=bool), 1.0, -1.0)
    path = tmp_path / "s.png"
    save_figure(str(path), similarity_figure(sim, (3, 5), "similarity"))
    rgb = read_rgb(path)
    yellow, purple = near(rgb, cmap_rgb("viridis", 1.0)), near(rgb, cmap_rgb("viridis", 0.0))
    bar = colour_bar_columns(rgb, "viridis")
    assert len(bar) >= 5
    inside = np.zeros(rgb.shape[:2], bool)
    inside[:, : min(bar) - 5] = True  # the mosaic, left of the bar
    ratio = (purple & inside).sum() / (yellow & inside).sum()
    assert abs(ratio - (n - 1)) < 0.1 * (n - 1), ratio
    t, l, b, r = bbox(yellow & inside)  # the yellow cells run from tile (0, 0)'s first cell to the last tile's last
    assert (b - t) / (r - l) == pytest.approx((3 * 4 - 1) / (5 * 6 - 1), rel=0.05)


def test_distance_figure_has_one_colour_per_head(tmp_path):
    distance = np.linspace(10, 100, 12 * 4).reshape(12, 4)
    path = tmp_path / "d.png"
    save_figure(str(path), distance_figure(distance, 16, "distance", spread=np.full((12, 4), 3.0)))
    rgb = read_rgb(path)
    # figsize 6.4 x 4.4 inches at 110 dpi = 704 x 484 before the tight crop
    assert 0.8 * 484 <= rgb.shape[0] <= 1.1 * 484 and 0.8 * 704 <= rgb.shape[1] <= 1.1 * 704
    import matplotlib

    for h in range(4):
        colour = np.asarray(matplotlib.colormaps["tab10"](h)[:3]) * 255
        assert near(rgb, colour, tol=3).sum() >= 12 * 5, f"head {h}'s dots are missing"


def test_similarity_colour_scale_is_the_datas_range_and_raises_no_warning():
    """A sin-cos table's similarities lie within 0.6-1: a fixed [-1, 1] scale showed one flat colour."""
    import warnings

    from vitcli.io.pictures import similarity_figure

    sim = np.full((4, 4), 0.6)  # a 2x2 grid against itself
    np.fill_diagonal(sim, 1.0)
    sim[0, 1] = sim[1, 0] = 0.8
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's PendingDeprecationWarning of Colormap.set_bad among them
        fig = similarity_figure(sim, (2, 2), "t")
    assert fig.axes[0].images[0].get_clim() == (sim.min(), sim.max())
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_figure_titles_say_random_weights(tmp_path, monkeypatch):
    """filters.png, pca.png, similar.png and norms.png of a preset say the weights are random (and the seed)."""
    import matplotlib.pyplot as plt

    import vitcli
    from vitcli.io import pictures

    titles = []

    def keep_title(path, fig):
        titles.append(" ".join([fig._suptitle.get_text() if fig._suptitle else ""] + [a.get_title() for a in fig.axes]))
        plt.close(fig)

    monkeypatch.setattr(pictures, "save_figure", keep_title)
    model = vitcli.load_model("vit-ti16", depth=2, seed=4)
    cat = str(SAMPLES / "chelsea.jpg")
    model.filters(png=tmp_path / "f.png", count=4)
    model.pca([cat], png=tmp_path / "p.png")
    model.similar(cat, png=tmp_path / "s.png")
    model.norms(cat, png=tmp_path / "n.png")
    assert len(titles) == 4 and all("random weights (seed 4)" in t for t in titles), titles

"""vitcli/io/paper_figures.py: each figure written as a real PNG (save_figure, atomic) and read
back with Pillow: tiles, PCA cells and similarity maps where they belong, colour bars, outliers."""

import numpy as np
import pytest

from tests.io.pngs import bbox, blend, cmap_rgb, colour_bar_columns, near, read_rgb, solid_bbox
from vitcli.io.paper_figures import filters_figure, norms_figure, pca_figure, similarity_overlay_figure, upsample
from vitcli.io.pictures import save_figure

GREY = (128, 128, 128)
LONG = "an-image-with-a-very-long-file-name-" * 12 + ".jpg"


def test_upsample_repeats_each_cell():
    grid = np.array([[1, 2, 3], [4, 5, 6]])
    out = upsample(grid, 2)
    assert out.tolist() == [[1, 1, 2, 2, 3, 3], [1, 1, 2, 2, 3, 3], [4, 4, 5, 5, 6, 6], [4, 4, 5, 5, 6, 6]]
    assert upsample(np.zeros((2, 3, 3)), 16).shape == (32, 48, 3)


def test_filters_figure_shows_each_tile(tmp_path):
    """10 tiles in rows of 7: tile 0 pure red (row 0, col 0), tile 1 pure blue (row 0, col 1),
    tile 9 pure green (9 = 7 + 2: row 1, col 2), the rest mid grey."""
    tiles = np.full((10, 4, 4, 3), 0.5)
    tiles[0], tiles[1], tiles[9] = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0)
    path = tmp_path / "filters.png"
    save_figure(str(path), filters_figure(tiles, np.linspace(0.3, 0.01, 10), LONG))
    rgb = read_rgb(path)
    red, blue, green = (bbox(near(rgb, c, 2)) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0)))
    side = red[3] - red[1]
    assert side > 20 and all(abs((b - t) - side) <= 2 and abs((r - l) - side) <= 2 for t, l, b, r in (red, blue, green))
    pitch = blue[1] - red[1]  # one column to the right, same row
    assert abs(blue[0] - red[0]) <= 1 and pitch > side
    assert abs((green[1] - red[1]) - 2 * pitch) <= 2  # two columns right of tile 0
    assert green[0] > red[2]  # on the second row
    assert near(rgb, (128, 128, 128), 2).sum() >= 7 * side * side * 0.9  # the 7 grey tiles


def test_filters_figure_grey_tiles(tmp_path):
    tiles = np.full((3, 5, 5, 1), 0.25)  # one channel: drawn in grey, 0.25 → level 64
    path = tmp_path / "g.png"
    save_figure(str(path), filters_figure(tiles, np.array([0.5, 0.3, 0.2]), "grey", cols=3))
    assert near(read_rgb(path), (64, 64, 64), 2).sum() > 3 * 100


def test_pca_figure_puts_each_cell_under_its_image(tmp_path):
    """Two 64x64 images (P = 16: 4x4 maps), map 1 blue with cell (2, 1) green: by hand the green
    block is rows 32..48 and columns 16..32 of the 64x64 map panel, under the second image."""
    pictures = [np.full((64, 64, 3), 200, np.uint8), np.full((64, 64, 3), 100, np.uint8)]
    maps = np.zeros((2, 4, 4, 3))
    maps[:, :, :, 2] = 1.0
    maps[1, 2, 1] = (0.0, 1.0, 0.0)
    path = tmp_path / "pca.png"
    save_figure(str(path), pca_figure(pictures, maps, 16, ["a.jpg", LONG], "PCA"))
    rgb = read_rgb(path)
    blue, green = near(rgb, (0, 0, 255), 2), near(rgb, (0, 255, 0), 2)
    second = solid_bbox(near(rgb, (100, 100, 100), 2))  # the second image, in the top row
    right_half = np.zeros(rgb.shape[:2], bool)
    right_half[:, second[1] - 2 :] = True
    t, l, b, r = solid_bbox(blue & right_half | green)  # the second map panel
    assert t > second[2] and abs((r - l) - (second[3] - second[1])) <= 2  # below its image, as wide
    side = r - l
    expected = (t + side / 2, l + side / 4, t + 3 * side / 4, l + side / 2)
    assert np.allclose(bbox(green), expected, atol=2), (bbox(green), expected)


def test_similarity_overlay_puts_the_hot_patch_and_the_mark(tmp_path):
    """A 48x64 target (3x4 grid), similarity 1 at (2, 3) and 0 elsewhere: by hand that patch is
    the bottom-right corner, rows 32..48 and columns 48..64."""
    query = np.full((48, 64, 3), GREY, np.uint8)
    target = np.full((48, 64, 3), GREY, np.uint8)
    sim = np.zeros((3, 4))
    sim[2, 3] = 1.0
    path = tmp_path / "sim.png"
    save_figure(str(path), similarity_overlay_figure(query, target, sim, (0, 1), 16, False, "similarity"))
    rgb = read_rgb(path)
    hot = near(rgb, blend(cmap_rgb("inferno", 1.0), 0.7, GREY))
    cold = near(rgb, blend(cmap_rgb("inferno", 0.0), 0.7, GREY))
    t, l, b, r = solid_bbox(hot | cold)  # the target panel
    ph, pw = b - t, r - l
    assert abs(pw / ph - 64 / 48) < 0.03
    expected = (t + 2 * ph / 3, l + 3 * pw / 4, b, r)
    assert np.allclose(bbox(hot), expected, atol=2), (bbox(hot), expected)
    bar = colour_bar_columns(rgb, "inferno", alpha=0.7)
    assert len(bar) >= 5 and min(bar) > r
    mark = bbox(near(rgb, (0, 255, 255), 40))  # the query patch (0, 1) outlined on the query image
    assert mark[3] < l  # on the left panel only (different images)
    qt, ql, qb, qr = solid_bbox(near(rgb, GREY, 1))  # the query image
    qw = qr - ql
    assert np.allclose(mark, (qt, ql + qw / 4, qt + qw / 4, ql + qw / 2), atol=4), mark


def test_similarity_overlay_on_the_same_image_marks_both(tmp_path):
    picture = np.full((32, 32, 3), GREY, np.uint8)
    path = tmp_path / "same.png"
    save_figure(str(path), similarity_overlay_figure(picture, picture, np.eye(2), (1, 0), 16, True, "same"))
    rgb = read_rgb(path)
    cyan = near(rgb, (0, 255, 255), 40)
    middle = rgb.shape[1] // 2
    assert cyan[:, :middle].sum() > 50 and cyan[:, middle:].sum() > 50


@pytest.mark.parametrize("with_outliers", [True, False])
def test_norms_figure_shows_outliers_in_red(tmp_path, with_outliers):
    rng = np.random.default_rng(0)
    layers, prefix = 6, 5  # class token + 4 registers, then 16 patches
    norms = rng.uniform(10, 20, (layers, prefix + 16))
    outliers = [(5, 3), (5, 7), (4, 3)] if with_outliers else []
    for layer, patch in outliers:
        norms[layer, prefix + patch] = 150.0
    path = tmp_path / "norms.png"
    fig = norms_figure(norms, prefix, True, range(1, 5), np.full(layers, 60.0), outliers, "norms")
    save_figure(str(path), fig)
    rgb = read_rgb(path)
    import matplotlib

    red = near(rgb, np.asarray(matplotlib.colors.to_rgb("tab:red")) * 255, 3)
    green = near(rgb, np.asarray(matplotlib.colors.to_rgb("tab:green")) * 255, 3)
    assert green.sum() > 20  # the class token's stars
    if with_outliers:
        assert red.sum() > 40
    else:
        assert red.sum() == 0
    assert 300 <= rgb.shape[0] <= 600 and 900 <= rgb.shape[1] <= 1400  # 10.5 x 3.8 in at 110 dpi, cropped tight


def test_long_names_and_titles_do_not_break_the_figures(tmp_path):
    """Titles longer than the figure: drawn (the tight crop widens the PNG), never an error."""
    picture = np.full((32, 32, 3), GREY, np.uint8)
    figures = {
        "filters": filters_figure(np.full((3, 4, 4, 3), 0.5), np.array([0.5, 0.3, 0.2]), LONG),
        "pca": pca_figure([picture, picture], np.zeros((2, 2, 2, 3)), 16, [LONG, LONG], LONG),
        "sim": similarity_overlay_figure(picture, picture, np.eye(2), (0, 0), 16, True, LONG),
        "norms": norms_figure(np.ones((2, 5)), 1, True, range(0), np.ones(2), [], LONG),
    }
    for name, fig in figures.items():
        save_figure(str(tmp_path / f"{name}.png"), fig)
        assert read_rgb(tmp_path / f"{name}.png").shape[1] > 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["filters.png", "norms.png", "pca.png", "sim.png"]

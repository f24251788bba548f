"""Image loading: every Pillow mode to RGB, EXIF orientation, 16-bit scaling, size policy."""

import io

import numpy as np
import pytest
from PIL import Image

from vitcli.errors import VitcliError
from vitcli.io.images import fit_image, load_image, normalize, parse_size, target_size


def save(img: Image.Image, path, **kw) -> str:
    img.save(path, **kw)
    return str(path)


def test_grey_modes_become_three_equal_channels(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8) * 3
    out = load_image(save(Image.fromarray(grey, "L"), tmp_path / "g.png")).pixels
    assert out.shape == (8, 8, 3) and (out == grey[:, :, None]).all()


def test_16_bit_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    path = save(Image.fromarray(values), tmp_path / "a.png")  # a 16-bit greyscale PNG
    assert Image.open(path).mode in ("I;16", "I")
    out = load_image(path).pixels[0, :, 0]
    # v·255/65535: 0, 1, 127.5 (rounds to even 128), 255
    assert out.tolist() == [0, 1, 128, 255]


def test_float_image_in_unit_range_is_scaled(tmp_path):
    values = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    path = save(Image.fromarray(values, "F"), tmp_path / "f.tiff")
    assert load_image(path).pixels[0, :, 0].tolist() == [0, 128, 255]


def test_rgba_is_composited_on_background(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (200, 100, 0, 255)  # opaque
    rgba[0, 1] = (200, 100, 0, 0)  # fully transparent
    rgba[1, 0] = (0, 0, 0, 128)  # half black over white
    path = save(Image.fromarray(rgba, "RGBA"), tmp_path / "a.png")
    out = load_image(path).pixels
    assert out[0, 0].tolist() == [200, 100, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert abs(int(out[1, 0, 0]) - round(255 * 127 / 255)) <= 1
    assert load_image(path, background=(0, 0, 0)).pixels[0, 1].tolist() == [0, 0, 0]


def test_palette_with_transparency_and_la(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    pal.putdata([0, 1])
    path = save(pal, tmp_path / "p.png", transparency=1)
    out = load_image(path, background=(0, 0, 255)).pixels
    assert out[0, 0].tolist() == [255, 0, 0] and out[0, 1].tolist() == [0, 0, 255]
    la = Image.fromarray(np.array([[[10, 255], [10, 0]]], np.uint8), "LA")
    out = load_image(save(la, tmp_path / "la.png")).pixels
    assert out[0, 0].tolist() == [10, 10, 10] and out[0, 1].tolist() == [255, 255, 255]


def test_cmyk_jpeg(tmp_path):
    cmyk = Image.new("CMYK", (16, 16), (0, 255, 255, 0))  # pure red in CMYK
    out = load_image(save(cmyk, tmp_path / "c.jpg", quality=95)).pixels
    assert out.shape == (16, 16, 3)
    assert out[..., 0].mean() > 240 and out[..., 1].mean() < 15 and out[..., 2].mean() < 15


def test_exif_orientation_is_applied(tmp_path):
    upright = np.zeros((20, 40, 3), np.uint8)
    upright[:, :20] = 255  # white left half, black right half
    stored = np.rot90(upright, k=1)  # what a camera held sideways stores: (40, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF: row 0 is the visual right side, so the viewer turns it 90° clockwise
    path = save(Image.fromarray(np.ascontiguousarray(stored)), tmp_path / "e.png", exif=exif)
    loaded = load_image(path)
    assert loaded.original_size == (20, 40)
    assert (loaded.pixels == upright).all()
    assert any("EXIF orientation 6" in n for n in loaded.notes)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 255, 0), (0, 0, 255))]
    path = tmp_path / "a.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    loaded = load_image(str(path))
    assert loaded.frames == 3 and loaded.pixels[0, 0].tolist() == [255, 0, 0]
    assert any("first of 3 frames" in n for n in loaded.notes)


def test_decompression_bomb_guard(tmp_path):
    path = save(Image.new("RGB", (100, 100)), tmp_path / "big.png")
    with pytest.raises(VitcliError, match="decompression bomb"):
        load_image(path, max_pixels=1000)
    assert load_image(path, max_pixels=20_000).size == (100, 100)


def test_parse_size():
    assert parse_size("224") == (224, 224)
    assert parse_size("224x160") == (224, 160)
    assert parse_size("native") is None
    for bad in ("abc", "0", "12x", "-3"):
        with pytest.raises(VitcliError):
            parse_size(bad)


def loaded_of(h: int, w: int):
    from vitcli.io.images import LoadedImage

    return LoadedImage("x", Image.new("RGB", (w, h)), (h, w), "RGB", "PNG")


# Expected final sizes, worked out by hand from the documented policy with P = 16 (README, "Images
# and sizes"): a requested size is used as given; with --size native the image's own [H, W] is
# brought to a multiple of P — crop floors, pad ceils, resize takes the nearest multiple, strict
# keeps it only when it already is one.
#   200x300:  200/16 = 12.5, 300/16 = 18.75 → crop 12·16 = 192, 18·16 = 288; pad 13·16 = 208, 19·16 = 304;
#             resize: 18.75 → 19 → 304, and 12.5 is a tie: Python's round (to even) gives 12 → 192.
#   224x320:  exactly 14 and 20 patches: every policy keeps 224x320 (and the pixels untouched).
#   223x319:  one pixel under 14 and 20 patches (13.94, 19.94): crop 13·16 = 208, 19·16 = 304;
#             pad 224, 320; resize to the nearest, 224, 320.
#   225x321:  one pixel over (14.06, 20.06): crop 224, 320; pad 15·16 = 240, 21·16 = 336; resize 224, 320.
#   10x20:    smaller than a patch across (0.625, 1.25 patches): pad 16, 32; resize 1 → 16, 1 → 16.
@pytest.mark.parametrize(
    "hw, requested, fit, expected",
    [
        ((200, 300), None, "crop", (192, 288)),
        ((200, 300), None, "pad", (208, 304)),
        ((200, 300), None, "resize", (192, 304)),
        ((224, 320), None, "crop", (224, 320)),
        ((224, 320), None, "pad", (224, 320)),
        ((224, 320), None, "resize", (224, 320)),
        ((224, 320), None, "strict", (224, 320)),
        ((223, 319), None, "crop", (208, 304)),
        ((223, 319), None, "pad", (224, 320)),
        ((223, 319), None, "resize", (224, 320)),
        ((225, 321), None, "crop", (224, 320)),
        ((225, 321), None, "pad", (240, 336)),
        ((225, 321), None, "resize", (224, 320)),
        ((10, 20), None, "pad", (16, 32)),
        ((10, 20), None, "resize", (16, 16)),
        ((200, 300), (224, 224), "crop", (224, 224)),  # requested sizes are used as given
        ((200, 300), (224, 160), "pad", (224, 160)),
        ((200, 300), (64, 480), "resize", (64, 480)),
        ((10, 20), (32, 32), "crop", (32, 32)),
    ],
)
def test_final_sizes(hw, requested, fit, expected):
    assert target_size(hw, requested, fit, 16) == expected
    img = loaded_of(*hw)
    img.image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (*hw, 3), dtype=np.uint8))
    pixels, how = fit_image(img, requested, fit, 16)
    assert pixels.shape == (*expected, 3)
    if expected == hw:  # already the final size: the pixels are the image's own
        assert how.startswith("none") and np.array_equal(pixels, np.asarray(img.image))


def test_native_pad_and_crop_only_pad_or_crop():
    """With --size native the image differs from the final size by less than a patch, so it is
    centre-cropped or centre-padded, never scaled: the kept pixels are the image's own."""
    pixels = np.random.default_rng(1).integers(0, 256, (225, 321, 3), dtype=np.uint8)
    img = loaded_of(225, 321)
    img.image = Image.fromarray(pixels)
    out, _ = fit_image(img, None, "crop", 16)  # 225x321 → 224x320: top (225-224)//2 = 0, left (321-320)//2 = 0
    assert np.array_equal(out, pixels[0:224, 0:320])
    out, _ = fit_image(img, None, "pad", 16, background=(1, 2, 3))  # → 240x336: top (240-225)//2 = 7, left 7
    assert np.array_equal(out[7 : 7 + 225, 7 : 7 + 321], pixels)
    assert (out[:7] == (1, 2, 3)).all() and (out[7 + 225 :] == (1, 2, 3)).all()
    assert (out[:, :7] == (1, 2, 3)).all() and (out[:, 7 + 321 :] == (1, 2, 3)).all()


def test_strict_refuses_one_pixel_off_and_the_cli_refuses_less_than_a_patch(tmp_path):
    for hw in ((223, 320), (224, 321)):
        with pytest.raises(VitcliError, match="strict"):
            fit_image(loaded_of(*hw), None, "strict", 16)
    from vitcli.api.images import ImageSpec, fit_one

    path = save(Image.new("RGB", (20, 10)), tmp_path / "small.png")  # 10 high, 20 wide
    for fit in ("crop", "pad", "resize"):
        with pytest.raises(VitcliError, match="smaller than one 16x16 patch"):
            fit_one(str(path), ImageSpec(size="native", fit=fit), 16)


def test_crop_keeps_the_centre_and_pad_keeps_the_image():
    band = np.zeros((20, 40, 3), np.uint8)
    band[:, 10:30] = 255  # white centre band 20 wide
    img = loaded_of(20, 40)
    img.image = Image.fromarray(band)
    out, how = fit_image(img, (16, 16), "crop", 16, "nearest")
    assert "centre-cropped" in how and out.min() == 255  # 20x40 → 16x32 → centre 16x16 is all white
    out, how = fit_image(img, (32, 32), "pad", 16, "nearest", background=(7, 7, 7))
    # 20x40 scaled by 32/40 → 16x32, padded 8 rows top and bottom
    assert out[:8].max() == 7 and out[-8:].max() == 7 and out[8:24, 8:24].min() == 255


def test_strict_fit_refuses_to_change_the_image():
    with pytest.raises(VitcliError, match="strict"):
        fit_image(loaded_of(200, 300), None, "strict", 16)
    out, _ = fit_image(loaded_of(32, 48), None, "strict", 16)
    assert out.shape == (32, 48, 3)


def test_normalize_presets_match_the_formula():
    pixels = np.array([[[0, 128, 255]]], np.uint8)
    out = normalize(pixels, "imagenet")[:, 0, 0]
    expected = [(0 / 255 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224, (255 / 255 - 0.406) / 0.225]
    assert out.dtype == np.float32 and np.allclose(out, expected, atol=1e-6)
    assert normalize(pixels, "inception")[:, 0, 0].tolist() == pytest.approx([-1.0, 128 / 127.5 - 1, 1.0], abs=1e-6)
    assert normalize(pixels, "raw").dtype == np.uint8


def test_reads_standard_input(monkeypatch, tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (5, 3), (1, 2, 3)).save(buf, format="PNG")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(buf.getvalue())))
    loaded = load_image("-")
    assert loaded.size == (3, 5) and loaded.pixels[0, 0].tolist() == [1, 2, 3]

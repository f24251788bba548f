"""Input expansion, the JPEG draft rule and ordered threaded decoding."""

import io
import json
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from vitcli.errors import VitcliError
from vitcli.io.images import fit_image, load_image
from vitcli.io.inputs import decode_all, draft_size, expand_inputs


@pytest.fixture
def tree(tmp_path):
    """b.png, a.jpg, notes.txt, .hidden.png, sub/c.png, sub/deeper/d.jpeg."""
    for rel in ("b.png", "a.jpg", "notes.txt", ".hidden.png", "sub/c.png", "sub/deeper/d.jpeg"):
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    return tmp_path


def rel(paths, root):
    return [str(p).removeprefix(str(root) + "/") for p in paths]


def test_folder_flat_and_recursive_sorted(tree):
    flat = expand_inputs([str(tree)])
    assert rel(flat.paths, tree) == ["a.jpg", "b.png"] and flat.many
    deep = expand_inputs([str(tree)], recursive=True)
    assert rel(deep.paths, tree) == ["a.jpg", "b.png", "sub/c.png", "sub/deeper/d.jpeg"]


def test_quoted_glob_paths_and_duplicates(tree):
    found = expand_inputs([str(tree / "sub/*.png"), str(tree / "b.png"), str(tree / "*.png"), str(tree / "a.jpg")])
    assert rel(found.paths, tree) == ["a.jpg", "b.png", "sub/c.png"]  # sorted, b.png once
    assert rel(expand_inputs([str(tree / "**/*.jp*g")]).paths, tree) == ["a.jpg", "sub/deeper/d.jpeg"]
    with pytest.raises(VitcliError, match="no file matches"):
        expand_inputs([str(tree / "*.gif")])


def test_single_file_is_not_many_but_two_files_are(tree):
    assert not expand_inputs([str(tree / "a.jpg")]).many
    assert expand_inputs([str(tree / "a.jpg"), str(tree / "b.png")]).many
    assert expand_inputs([str(tree / "missing.png")]).paths == [str(tree / "missing.png")]  # fails when decoded


def test_from_list_file_and_stdin(tree, monkeypatch):
    listing = tree / "list.txt"
    listing.write_text(f"# photos\n{tree / 'sub/c.png'}\n\n  {tree / 'a.jpg'}  \n")
    found = expand_inputs([], from_list=str(listing))
    assert rel(found.paths, tree) == ["a.jpg", "sub/c.png"] and found.many
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{tree / 'b.png'}\n"))
    assert rel(expand_inputs([str(tree / "a.jpg")], from_list="-").paths, tree) == ["a.jpg", "b.png"]
    with pytest.raises(VitcliError, match="no such file"):
        expand_inputs([], from_list=str(tree / "nope.txt"))


def test_stdin_image_only_alone(tree):
    assert expand_inputs(["-"]).paths == ["-"]
    with pytest.raises(VitcliError, match="standard input"):
        expand_inputs(["-", str(tree / "a.jpg")])


def test_empty_folder_is_an_error(tmp_path):
    with pytest.raises(VitcliError, match="no image files"):
        expand_inputs([str(tmp_path)])


def jpeg(path, w, h, seed=0):
    """A smooth random JPEG (w wide, h high)."""
    small = np.random.default_rng(seed).integers(0, 256, (h // 16, w // 16, 3), dtype=np.uint8)
    Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC).save(path, quality=92)
    return str(path)


def test_draft_rule_in_numbers():
    # twice the longer side of the final size, by hand: 2·224, 2·320, 2·224, 2·384
    assert draft_size((224, 224), "crop") == 448
    assert draft_size((224, 320), "pad") == 640
    assert draft_size((224, 160), "resize") == 448
    assert draft_size((384, 384), "crop") == 768
    assert draft_size(None, "crop") is None and draft_size((224, 224), "strict") is None


def prepared(path, **options):
    from vitcli.api.images import ImageSpec, fit_one

    return fit_one(str(path), ImageSpec(**options), 16)


# A 2000-wide, 1600-high JPEG through the path every command takes (fit_one). Pillow's draft
# picks the largest 1/2, 1/4, 1/8 scale that keeps both sides ≥ the draft size, ceil-dividing:
#   --size 224 → draft 448: 2000/448 = 4.5, 1600/448 = 3.6 → scale 2 → 1000 x 800 ([H, W] 800x1000);
#                1/4 would give 400 high < 448.
#   --size 112 → draft 224: 1600/224 = 7.1 → scale 4 → 500 x 400 ([H, W] 400x500).
#   --no-draft, --size native, --fit strict → the full 1600x2000.
@pytest.mark.parametrize("options, decoded", [
    ({"size": "224"}, (800, 1000)),
    ({"size": "112"}, (400, 500)),
    ({"size": "224", "fit": "pad"}, (800, 1000)),
    ({"size": "224", "draft": False}, (1600, 2000)),
    ({"size": "native"}, (1600, 2000)),
    ({"size": "1600x2000", "fit": "strict"}, (1600, 2000)),
])
def test_a_large_jpeg_is_decoded_at_the_documented_size(tmp_path, options, decoded):
    path = jpeg(tmp_path / "big.jpg", 2000, 1600)
    prep = prepared(path, **options)
    assert prep.loaded.original_size == (1600, 2000)  # the file's own size, drafted or not
    assert prep.loaded.size == decoded and prep.loaded.image.size == (decoded[1], decoded[0])
    drafted = [n for n in prep.loaded.notes if "draft" in n]
    if decoded == (1600, 2000):
        assert drafted == []
    else:
        assert drafted == [f"JPEG decoded at {decoded[0]}x{decoded[1]} of 1600x2000 (draft)"]
    final = {"224": (224, 224), "112": (112, 112), "native": (1600, 2000), "1600x2000": (1600, 2000)}[options["size"]]
    assert prep.pixels.shape == (*final, 3)
    assert prep.input_document()["original_size"] == [1600, 2000]


@pytest.mark.parametrize("w, h, decoded", [
    (1000, 896, (448, 500)),  # shorter side 896 = 4·224: 896/448 = 2 → 1/2 scale
    (1000, 895, (895, 1000)),  # one pixel under: 895/448 < 2 → full decode
    (640, 480, (480, 640)),  # an ordinary photo
])
def test_only_a_jpeg_four_times_the_size_is_drafted(tmp_path, w, h, decoded):
    path = jpeg(tmp_path / "p.jpg", w, h)
    prep = prepared(path, size="224")
    assert prep.loaded.size == decoded
    if decoded == (h, w):  # not drafted: byte for byte Pillow's own full decode
        assert not any("draft" in n for n in prep.loaded.notes)
        assert np.array_equal(prep.loaded.pixels, np.asarray(Image.open(path).convert("RGB")))


def test_other_formats_are_never_drafted(tmp_path):
    path = tmp_path / "big.png"
    Image.open(jpeg(tmp_path / "big.jpg", 2000, 1600)).save(path)
    prep = prepared(path, size="224")
    assert prep.loaded.size == (1600, 2000) and not any("draft" in n for n in prep.loaded.notes)


def test_the_cli_reports_the_draft_in_its_notes(tmp_path):
    from typer.testing import CliRunner

    from vitcli.cli import app

    path = jpeg(tmp_path / "big.jpg", 2000, 1600)
    for flag, notes in (("--draft", ["JPEG decoded at 800x1000 of 1600x2000 (draft)"]), ("--no-draft", [])):
        result = CliRunner().invoke(app, ["patchify", path, "--json", flag], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        doc = json.loads(result.stdout)["input"]
        assert doc["original_size"] == [1600, 2000] and doc["size"] == [224, 224]
        assert [n for n in doc["notes"] if "draft" in n] == notes


def test_draft_reduces_only_a_much_larger_jpeg(tmp_path):
    big = jpeg(tmp_path / "big.jpg", 2000, 1800)  # shorter side 1800 ≥ 4·448: 1/4 scale
    loaded = load_image(big, draft=448)
    assert loaded.original_size == (1800, 2000) and loaded.size == (450, 500)
    assert any("draft" in n for n in loaded.notes)
    near = jpeg(tmp_path / "near.jpg", 1200, 880)  # shorter side 880 < 4·224 = 896: full decode
    assert np.array_equal(load_image(near, draft=448).pixels, np.asarray(Image.open(near).convert("RGB")))


def test_drafted_fit_close_to_full_decode(tmp_path):
    big = jpeg(tmp_path / "big.jpg", 2400, 1800)
    full, _ = fit_image(load_image(big), (224, 224), "crop", 16)
    drafted, _ = fit_image(load_image(big, draft=448), (224, 224), "crop", 16)
    diff = np.abs(full.astype(int) - drafted.astype(int))
    assert drafted.shape == full.shape == (224, 224, 3)
    assert diff.mean() < 1.0 and diff.max() <= 8  # same crop window, a few levels of DCT-scaling error


def test_draft_keeps_the_upright_original_size(tmp_path):
    path = tmp_path / "turned.jpg"
    small = np.random.default_rng(1).integers(0, 256, (10, 20, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: stored 2000 wide × 1000 high, upright 1000 wide × 2000 high
    Image.fromarray(small).resize((2000, 1000)).save(path, exif=exif)
    loaded = load_image(str(path), draft=224)
    assert loaded.original_size == (2000, 1000) and loaded.size == (500, 250)  # 1/4: 250 ≥ 224 > 125


def test_decode_all_keeps_order_and_returns_errors():
    def decode(path: str) -> str:
        time.sleep(0.01 * (5 - int(path)))  # later paths finish first
        if path == "3":
            raise VitcliError(path, "broken")
        return path + "!"

    got = list(decode_all([str(i) for i in range(6)], decode, workers=3, ahead=4))
    assert [d.index for d in got] == list(range(6))
    assert [d.value for d in got] == ["0!", "1!", "2!", None, "4!", "5!"]
    assert got[3].error.problem == "broken"


def test_decode_all_stays_bounded_ahead():
    started: list[int] = []
    lock = threading.Lock()

    def decode(path: str) -> int:
        with lock:
            started.append(int(path))
        return int(path)

    stream = decode_all([str(i) for i in range(50)], decode, workers=2, ahead=5)
    next(stream)
    time.sleep(0.05)
    assert len(started) <= 6  # never the whole list at once
    stream.close()

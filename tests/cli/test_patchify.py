"""`vitcli patchify` end to end, as a user runs it: shapes, values, pipes, JSON, errors."""

import io
import json

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLES, assert_clean_error, run_cli, sampled


def npy_from(stdout: bytes) -> np.ndarray:
    return np.load(io.BytesIO(stdout))


@pytest.mark.parametrize(
    "hw, patch, grid, length",
    [((224, 224), 16, (14, 14), 768), ((512, 512), 16, (32, 32), 768), ((224, 224), 14, (16, 16), 588)],
)
def test_size_table(random_rgb, hw, patch, grid, length):
    path, _ = random_rgb(*hw)
    r = run_cli("patchify", path, "--size", hw[0], "-p", patch, "--json")
    doc = json.loads(r.stdout)
    assert doc["grid"] == list(grid) and doc["num_patches"] == grid[0] * grid[1]
    assert doc["tensors"]["patches"]["shape"] == [grid[0] * grid[1], length]


def test_native_crop_of_a_300_by_200_photo(random_rgb, tmp_path):
    path, pixels = random_rgb(200, 300)  # 300 wide, 200 high
    out = tmp_path / "p.npy"
    r = run_cli("patchify", path, "--size", "native", "--fit", "crop", "-o", out, "--json")
    doc = json.loads(r.stdout)
    assert doc["grid"] == [12, 18] and doc["num_patches"] == 216
    assert doc["input"]["original_size"] == [200, 300] and doc["input"]["size"] == [192, 288]
    patches = np.load(out)
    assert patches.shape == (216, 768)
    # centre crop: rows 4..196, cols 6..294; patch (0, 0) is the crop's top-left 16x16 block, channel-major
    block = pixels[4:20, 6:22]  # (16, 16, 3)
    assert (patches[0] == block.transpose(2, 0, 1).reshape(-1)).all()


def test_hwc_of_one_patch_is_the_raster_bytes(random_rgb):
    path, pixels = random_rgb(16, 16)
    r = run_cli("patchify", path, "--size", "native", "--order", "hwc", "-o", "-", "-q")
    patches = npy_from(r.stdout)
    assert patches.shape == (1, 768) and patches.dtype == np.uint8
    assert patches[0].tobytes() == pixels.tobytes()


def test_hand_built_2x2_grid_chw(tmp_path):
    # a 4x4 image, P=2: patch k of the row-major grid must hold its own 2x2 block, R then G then B
    pixels = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    Image.fromarray(pixels).save(tmp_path / "t.png")
    r = run_cli("patchify", tmp_path / "t.png", "-p", "2", "--size", "native", "-o", "-", "-q")
    patches = npy_from(r.stdout)
    assert patches.shape == (4, 12)
    top_right = pixels[0:2, 2:4]  # patch index 1
    expected = [top_right[y, x, c] for c in range(3) for y in range(2) for x in range(2)]
    assert patches[1].tolist() == [int(v) for v in expected]


def test_normalize_gives_float32_formula(random_rgb):
    path, pixels = random_rgb(16, 16)
    r = run_cli("patchify", path, "--size", "native", "--normalize", "clip", "--order", "hwc", "-o", "-", "-q")
    patches = npy_from(r.stdout)
    mean = np.array([0.48145466, 0.4578275, 0.40821073])
    std = np.array([0.26862954, 0.26130258, 0.27577711])
    expected = ((pixels / 255.0 - mean) / std).reshape(-1)
    assert patches.dtype == np.float32 and np.abs(patches[0] - expected).max() < 1e-5


@sampled("order", ["chw", "hwc"])
def test_unpatchify_round_trip_is_exact(tmp_path, order):
    src = SAMPLES / "chelsea.jpg"
    arr, back, back_npy = tmp_path / "p.npy", tmp_path / "back.png", tmp_path / "back.npy"
    assert run_cli("patchify", src, "--size", "native", "--order", order, "-o", arr, "-q").returncode == 0
    patches = np.load(arr)
    doc = json.loads(run_cli("patchify", src, "--size", "native", "--json").stdout)
    rows, cols = doc["grid"]
    r = run_cli("patchify", "--unpatchify", arr, "--grid-size", f"{rows}x{cols}", "--order", order, "-o", back, "-q")
    assert r.returncode == 0, r.stderr
    image = np.asarray(Image.open(back))
    assert image.shape == (rows * 16, cols * 16, 3)
    run_cli("patchify", back, "--size", "native", "--fit", "strict", "--order", order, "-o", back_npy, "-q")
    assert (np.load(back_npy) == patches).all()


def test_stdin_and_stdout_pipe(random_rgb):
    path, _ = random_rgb(300, 400)
    r = run_cli("patchify", "-", "-o", "-", stdin=path.read_bytes())
    assert r.returncode == 0
    assert npy_from(r.stdout).shape == (196, 768)
    assert b"patches" in r.stderr  # the table went to standard error


def test_json_document_keys(random_rgb):
    path, _ = random_rgb(224, 224)
    r = run_cli("patchify", path, "--json")
    doc = json.loads(r.stdout)  # exactly one JSON object
    assert {"command", "input", "patch_size", "grid", "num_patches", "tensors"} <= set(doc)
    assert {"path", "original_size", "size", "fit"} <= set(doc["input"])
    stats = doc["tensors"]["patches"]
    assert set(stats) >= {"shape", "dtype", "min", "max", "mean", "std"}
    assert doc["command"] == "patchify" and stats["dtype"] == "uint8"


def test_json_stats_match_numpy_on_the_written_array(random_rgb, tmp_path):
    path, _ = random_rgb(100, 130)
    out = tmp_path / "p.npy"
    doc = json.loads(run_cli("patchify", path, "--normalize", "imagenet", "-o", out, "--json").stdout)
    a = np.load(out).astype(np.float64)
    s = doc["tensors"]["patches"]
    assert s["min"] == pytest.approx(a.min()) and s["max"] == pytest.approx(a.max())
    assert s["mean"] == pytest.approx(a.mean(), rel=1e-9) and s["std"] == pytest.approx(a.std(), rel=1e-9)


def test_grid_png_is_written_and_not_blank(random_rgb, tmp_path):
    path, _ = random_rgb(224, 224)
    png = tmp_path / "grid.png"
    assert run_cli("patchify", path, "--grid-png", png, "-q").returncode == 0
    img = np.asarray(Image.open(png))
    assert img.shape[0] == img.shape[1] and img.shape[0] % 224 == 0 and img.std() > 10


def test_quiet_prints_nothing(random_rgb, tmp_path):
    path, _ = random_rgb(32, 32)
    r = run_cli("patchify", path, "-q", "-o", tmp_path / "x.npy")
    assert r.returncode == 0 and r.stdout == b"" and r.stderr == b""


# --- errors: exit 1, one line naming the file and the problem, no file left behind ---------------


def test_missing_file(tmp_path):
    assert_clean_error(run_cli("patchify", tmp_path / "nope.jpg"), "nope.jpg", "no such file")


def test_directory(tmp_path):
    d = tmp_path / "x.jpg"
    d.mkdir()
    assert_clean_error(run_cli("patchify", d), "x.jpg", "directory")


def test_not_an_image(tmp_path):
    f = tmp_path / "noise.jpg"
    f.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    assert_clean_error(run_cli("patchify", f), "noise.jpg", "not an image")


def test_truncated_image(tmp_path):
    data = (SAMPLES / "chelsea.jpg").read_bytes()
    f = tmp_path / "cut.jpg"
    f.write_bytes(data[: len(data) // 2])
    assert_clean_error(run_cli("patchify", f), "cut.jpg", "truncated")


@pytest.mark.parametrize("patch", ["0", "-3"])
def test_bad_patch_size(random_rgb, patch):
    path, _ = random_rgb(32, 32)
    assert_clean_error(run_cli("patchify", path, "-p", patch), "patch")


def test_patch_larger_than_image(random_rgb):
    path, _ = random_rgb(20, 20)
    assert_clean_error(run_cli("patchify", path, "--size", "native", "-p", "32"), "img.png", "smaller than one")


def test_size_not_multiple_of_patch(random_rgb):
    path, _ = random_rgb(32, 32)
    assert_clean_error(run_cli("patchify", path, "--size", "225"), "225", "multiple")


def test_odd_size_with_strict_fit(random_rgb):
    path, _ = random_rgb(33, 32)
    assert_clean_error(run_cli("patchify", path, "--size", "native", "--fit", "strict"), "img.png", "strict")


def test_unwritable_output_leaves_nothing(random_rgb, tmp_path):
    path, _ = random_rgb(32, 32)
    target = tmp_path / "missing" / "out.npy"
    assert_clean_error(run_cli("patchify", path, "-o", target), "out.npy", "does not exist")
    assert not target.parent.exists()
    assert_clean_error(run_cli("patchify", path, "-o", "/dev/full"), "/dev/full")


def test_failed_run_keeps_the_previous_output(random_rgb, tmp_path):
    path, _ = random_rgb(32, 32)
    out = tmp_path / "out.npy"
    assert run_cli("patchify", path, "--size", "native", "-o", out, "-q").returncode == 0
    before = out.read_bytes()
    assert_clean_error(run_cli("patchify", tmp_path / "gone.png", "-o", out), "gone.png")
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.png", "out.npy"]  # no temp files


def test_wrong_usage_exits_2(random_rgb):
    path, _ = random_rgb(32, 32)
    assert run_cli("patchify", path, "--order", "xyz").returncode == 2
    assert run_cli("patchify", path, "--no-such-option").returncode == 2


def test_debug_shows_the_traceback(tmp_path):
    r = run_cli("patchify", tmp_path / "nope.jpg", "--debug")
    assert r.returncode == 1 and b"Traceback" in r.stderr


def test_version_and_help():
    from vitcli import __version__

    assert run_cli("--version").stdout.decode().strip() == f"vitcli {__version__}"
    r = run_cli("patchify", "--help")
    assert r.returncode == 0 and "Example" in r.stdout.decode()


def test_help_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys; sys.argv=['vitcli','--help']\nfrom vitcli.cli import main\ntry: main()\nexcept SystemExit: pass\nprint('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "False False"


def test_patchify_does_not_import_torch(random_rgb):
    import subprocess
    import sys

    path, _ = random_rgb(32, 32)
    code = f"import sys; sys.argv=['vitcli','patchify',{str(path)!r},'-q']\nfrom vitcli.cli import main\ntry: main()\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.strip().splitlines()[-1] == "False"


def test_help_texts_are_paragraphs_that_fit_80_columns():
    """Help paragraphs have no hard line breaks (rich wraps them); pre-formatted lines fit 80 columns."""
    from vitcli.cli import attend, embed, figures, info, patchify, posenc

    texts = [attend.HELP, embed.HELP, info.HELP, patchify.HELP, posenc.HELP, figures.FILTERS_HELP,
             figures.PCA_HELP, figures.SIMILAR_HELP, figures.NORMS_HELP]
    for text in texts:
        for paragraph in text.strip().split("\n\n"):
            lines = paragraph.splitlines()
            preformatted = [l for l in lines[1:] if l.startswith("  ")]
            assert len(lines) == 1 or preformatted, paragraph  # one line, or an indented block
            assert all(len(l) <= 76 for l in preformatted), preformatted
    r = run_cli("attend", "--help", env={"COLUMNS": "80"})
    assert r.returncode == 0 and all(len(l) <= 80 for l in r.stdout.decode().splitlines())

"""A generated corpus of bad and awkward inputs, run through the real CLI.

Every bad case: exit 1, one line on standard error naming the file (or option) and the problem,
no traceback, nothing on standard output, no output file left behind, and an earlier output at
the same path unchanged. Key cases each run in their own subprocess (`run_cli`); the rest are
batched through `tests/reliability/driver.py`, which calls `vitcli.cli.main()` once per command
line with real file descriptors redirected, in one subprocess per batch.
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import assert_clean_error, run_cli
from tests.reliability import corpus
from tests.reliability.helpers import assert_untouched, in_private_mount, output_slot, run_batch

# ---- key cases, each in a real subprocess ------------------------------------------------------

@pytest.mark.parametrize("name", ["empty", "truncated jpeg", "decompression bomb", "directory"])
def test_key_bad_images_in_a_subprocess(tmp_path: Path, name: str) -> None:
    path, pattern = corpus.bad_images(tmp_path / "in")[name]
    out = output_slot(tmp_path / "out")
    result = run_cli("patchify", path, "-o", out, "--grid-png", out.parent / "grid.png")
    assert re.search(pattern, assert_clean_error(result, str(path)))
    assert_untouched(out)


def test_full_device_in_a_subprocess(tmp_path: Path) -> None:
    image = corpus.SAMPLES / "chelsea.jpg"
    assert_clean_error(run_cli("patchify", image, "-o", "/dev/full"), "/dev/full", "No space left on device")


def test_missing_output_folder(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "out.npy"
    assert_clean_error(run_cli("patchify", corpus.SAMPLES / "chelsea.jpg", "-o", target), str(target), "does not exist")
    assert not (tmp_path / "missing").exists()


def _without_root_powers() -> list[str] | None:
    """A setpriv prefix that drops the capabilities letting root read any file, if it works here."""
    if os.geteuid() != 0:
        return []
    if not shutil.which("setpriv"):
        return None
    prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-dac_override,-dac_read_search"]
    probe = subprocess.run([*prefix, "true"], capture_output=True)
    return prefix if probe.returncode == 0 else None


def test_files_without_read_permission(tmp_path: Path) -> None:
    prefix = _without_root_powers()
    if prefix is None:
        pytest.skip("cannot drop CAP_DAC_OVERRIDE here")
    image, weights = tmp_path / "secret.jpg", tmp_path / "secret.safetensors"
    shutil.copy(corpus.SAMPLES / "chelsea.jpg", image)
    weights.write_bytes(b"\x10" + b"\x00" * 7 + b"{}" + b" " * 14)  # an empty safetensors file
    image.chmod(0), weights.chmod(0)
    out = output_slot(tmp_path / "out")
    picture, checkpoint = run_batch([["patchify", image, "-o", out], ["info", "--weights", weights]], tmp_path, prefix)
    assert_clean_error(picture, str(image), "permission denied")
    assert_untouched(out)
    assert_clean_error(checkpoint, str(weights), "permission denied")


def test_read_only_output_folder(tmp_path: Path) -> None:
    out = output_slot(tmp_path / "ro")
    image = corpus.SAMPLES / "chelsea.jpg"
    script = (f"mount --bind {out.parent} {out.parent} && mount -o remount,bind,ro {out.parent} && "
              f'"$PY" -m vitcli patchify {image} -o {out}')
    result = in_private_mount(script, tmp_path)
    assert_clean_error(result, str(out), "Read-only file system")
    assert_untouched(out)


# ---- the rest of the corpus, batched -----------------------------------------------------------

# ---- the rest, batched: every command line of this part runs in one subprocess -----------------

Cases = dict[str, tuple[list, object]]  # name → (argument list, what the test needs to check it)


def _corpus_cases(folder: Path) -> Cases:
    files = corpus.bad_images(folder / "in")
    cases = {}
    for name, (path, pattern) in files.items():
        slot = output_slot(folder / "out" / name.replace(" ", "_"))
        cases[name] = (["patchify", path, "-o", slot, "--grid-png", slot.parent / "grid.png"], (path, pattern, slot))
    return cases


def _option_cases(folder: Path) -> Cases:
    image = str(corpus.SAMPLES / "chelsea.jpg")
    cases = {
        "-p 0": (["patchify", image, "-p", "0"], ["--patch-size", "positive"]),
        "-p -3": (["patchify", image, "-p", "-3"], ["--patch-size", "-3"]),
        "embed -p 0": (["embed", image, "-p", "0", "--depth", "1"], ["patch"]),
        "non-numeric --size": (["patchify", image, "--size", "big"], ["--size", "'big'"]),
        "--size 0": (["patchify", image, "--size", "0x224"], ["--size", "positive"]),
        "dim not divisible by heads": (["embed", image, "--dim", "100", "--heads", "3", "--depth", "1"],
                                       ["dim 100", "not divisible by 3 heads"]),
        "odd dim for sin-cos": (["posenc", "--kind", "sincos1d", "--dim", "7", "--heads", "1"], ["even dim", "7"]),
        "2-D sin-cos dim": (["posenc", "--kind", "sincos2d", "--dim", "6", "--heads", "1"], ["divisible by 4"]),
        "--grid 0x5": (["posenc", "--grid", "0x5"], ["--grid", "0x5"]),
        "--grid text": (["posenc", "--grid", "ax5"], ["--grid", "ax5"]),
    }
    slots = {name: output_slot(folder / str(i)) for i, name in enumerate(cases)}
    return {name: ([*args, "-o", slots[name]], (words, slots[name])) for name, (args, words) in cases.items()}


def _device_cases(folder: Path) -> Cases:
    fifo = folder / "weights.pth"
    os.mkfifo(fifo)
    slot = output_slot(folder / "out")
    return {"image /dev/zero": (["patchify", "/dev/zero", "-o", slot], ("/dev/zero", "is a device", slot)),
            "weights /dev/zero": (["info", "--weights", "/dev/zero"], ("/dev/zero", "not a regular file", None)),
            "weights fifo": (["info", "--weights", fifo], (str(fifo), "not a regular file", None))}


NATIVE = ["-p", "16", "--order", "hwc", "--size", "native", "--fit", "strict"]


def _awkward_cases(folder: Path) -> Cases:
    made = {"anim.gif": corpus.animated_gif(folder / "anim.gif"), "cmyk.jpg": corpus.cmyk_jpeg(folder / "cmyk.jpg"),
            "grey16.png": corpus.png16(folder / "grey16.png"),
            "palette.png": corpus.palette_with_transparency(folder / "palette.png"),
            "turned.jpg": corpus.exif_rotated(folder / "turned.jpg")}
    cases: Cases = {n: (["patchify", folder / n, *NATIVE, "--json", "-o", folder / f"{n}.npy"], (folder / f"{n}.npy", v))
                    for n, v in made.items()}
    cases["anim.gif table"] = (["patchify", folder / "anim.gif", *NATIVE], None)
    for n in ("chelsea.jpg", "chelsea_exif_rotated.jpg", "coffee.jpg"):
        cases[n] = (["patchify", corpus.SAMPLES / n, "-o", folder / f"{n}.npy"], folder / f"{n}.npy")
    return cases


BUILDERS = {"corpus": _corpus_cases, "options": _option_cases, "devices": _device_cases, "awkward": _awkward_cases}


@pytest.fixture(scope="module")
def batched(tmp_path_factory) -> dict[str, dict[str, tuple[subprocess.CompletedProcess, object]]]:
    """group → name → (result, context), all groups' command lines run in one subprocess."""
    root = tmp_path_factory.mktemp("batched")
    for group in BUILDERS:
        (root / group).mkdir()
    groups = {group: build(root / group) for group, build in BUILDERS.items()}
    flat = [(group, name, args, ctx) for group, cases in groups.items() for name, (args, ctx) in cases.items()]
    results = run_batch([args for _, _, args, _ in flat], root)
    out: dict = {group: {} for group in groups}
    for (group, name, _, ctx), result in zip(flat, results):
        out[group][name] = (result, ctx)
    return out


def test_bad_image_corpus(batched) -> None:
    for name, (result, (path, pattern, slot)) in batched["corpus"].items():
        assert re.search(pattern, assert_clean_error(result, str(path))), name
        assert_untouched(slot)


def test_bad_options(batched) -> None:
    for name, (result, (words, slot)) in batched["options"].items():
        assert_clean_error(result, *words)
        assert_untouched(slot)


def test_devices_and_pipes_are_refused_not_read_forever(batched) -> None:
    """/dev/zero never ends: reading it whole used to fill the memory (image and checkpoint alike)."""
    for name, (result, (source, words, slot)) in batched["devices"].items():
        assert_clean_error(result, source, words)
        if slot:
            assert_untouched(slot)


# ---- awkward but valid images: success, and the right pixels -----------------------------------

def _pixels(npy: Path, grid: tuple[int, int], p: int = 16) -> np.ndarray:
    """(H, W, 3) from a raw `--order hwc` patch array, by index arithmetic alone."""
    patches = np.load(npy).reshape(grid[0], grid[1], p, p, 3)  # (R, Cl, y, x, C)
    return patches.transpose(0, 2, 1, 3, 4).reshape(grid[0] * p, grid[1] * p, 3)


def test_awkward_images_load_correctly(batched) -> None:
    runs = batched["awkward"]
    assert all(r.returncode == 0 for r, _ in runs.values()), [r.stderr for r, _ in runs.values()]
    doc = {n: json.loads(runs[n][0].stdout) for n in ("anim.gif", "turned.jpg")}
    npy = {n: ctx[0] for n, (_, ctx) in runs.items() if isinstance(ctx, tuple)}
    colours, grey16, upright = runs["anim.gif"][1][1], runs["grey16.png"][1][1], runs["turned.jpg"][1][1]

    gif = _pixels(npy["anim.gif"], (2, 2))
    assert doc["anim.gif"]["input"]["frames"] == 3 and (gif == colours[0]).all()
    assert "first of 3 frames" in " ".join(doc["anim.gif"]["input"]["notes"])
    assert "first of 3 frames" in runs["anim.gif table"][0].stdout.decode()

    red = _pixels(npy["cmyk.jpg"], (2, 2)).astype(int)
    assert red[..., 0].min() > 230 and red[..., 1:].max() < 25

    grey = _pixels(npy["grey16.png"], (2, 2))
    expected = np.rint(grey16.astype(np.float64) * 255 / 65535).astype(np.uint8)  # 65535→255, 32768→128
    assert (grey == expected[..., None]).all()

    palette = _pixels(npy["palette.png"], (2, 2))
    assert (palette[:16] == 255).all() and (palette[16:] == (0, 0, 255)).all()  # transparent → white

    turned = _pixels(npy["turned.jpg"], (2, 4)).astype(int)
    assert doc["turned.jpg"]["input"]["original_size"] == [32, 64]
    assert np.abs(turned - upright).mean() < 4 and np.abs(turned - upright).max() < 80  # JPEG noise only

    cat, cat_turned, other = (np.load(runs[n][1]).astype(int) for n in
                              ("chelsea.jpg", "chelsea_exif_rotated.jpg", "coffee.jpg"))
    assert np.abs(cat - cat_turned).mean() < 3 < np.abs(cat - other).mean()

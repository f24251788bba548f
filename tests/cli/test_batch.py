"""Many images through patchify and embed: rows equal single-image runs, index, errors, signals."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from typer.testing import CliRunner

from tests.conftest import ROOT, SAMPLES, assert_clean_error, run_cli
from vitcli.cli import app

TINY = ("--model", "vit-ti16", "--dim", "64", "--depth", "2", "--heads", "2")


def invoke(*args: str) -> str:
    """Run the CLI in this process (no torch import per call); return its standard output."""
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """The shipped JPEGs plus a PNG of odd size, in a folder (names sort as listed below)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in sorted(SAMPLES.glob("*.jpg")):
        shutil.copy(p, folder / p.name)
    pixels = np.random.default_rng(3).integers(0, 256, (150, 333, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / "zz_noise.png")
    return folder


def upright_size(path: Path) -> list[int]:
    """[H, W] after EXIF orientation, straight from Pillow."""
    w, h = ImageOps.exif_transpose(Image.open(path)).size
    return [h, w]


def test_patchify_folder_rows_equal_single_runs_and_index(photos, tmp_path):
    out = tmp_path / "patches.npy"
    invoke("patchify", str(photos), "-o", out, "--batch-size", "2", "--workers", "2", "-q")
    names = sorted(p.name for p in photos.iterdir())
    batch = np.load(out)
    assert batch.shape == (len(names), 196, 768) and batch.dtype == np.uint8
    for i, name in enumerate(names):
        single = tmp_path / f"single{i}.npy"
        invoke("patchify", photos / name, "-o", single, "-q")
        assert np.array_equal(batch[i], np.load(single)), name
    index = lines(tmp_path / "patches.index.jsonl")
    assert [Path(e["path"]).name for e in index] == names  # sorted path order
    assert [e["row"] for e in index] == list(range(len(names)))
    assert [e["original_size"] for e in index] == [upright_size(photos / n) for n in names]
    assert all(e["size"] == [224, 224] and e["grid"] == [14, 14] for e in index)


def test_embed_batches_equal_single_images(photos, tmp_path):
    files = sorted(photos.iterdir())[:3]
    for stage in ("pooled", "input", "output"):
        out = tmp_path / f"{stage}.npy"
        invoke("embed", *files, *TINY, "--stage", stage, "--batch-size", "2", "-o", out, "-q")
        batch = np.load(out)
        for i, f in enumerate(files):
            invoke("embed", f, *TINY, "--stage", stage, "-o", tmp_path / "one.npy", "-q")
            single = np.load(tmp_path / "one.npy")
            assert batch.shape == (3, *single.shape)
            if stage == "pooled":  # many images: the last block runs for the class token alone
                assert np.abs(batch[i] - single).max() <= 1e-6 * np.abs(single).max(), f.name
            else:
                assert np.array_equal(batch[i], single), (stage, f.name)  # bit for bit, batch of 2 then 1


def test_embed_json_summary_and_output_dir(photos, tmp_path):
    files = sorted(photos.iterdir())[:2]
    doc = json.loads(invoke("embed", *files, *TINY, "--stage", "pooled", "--output-dir", tmp_path / "out", "--json"))
    assert doc["images"] == doc["processed"] == 2 and doc["skipped"] == []
    assert doc["tensors"]["pooled"]["shape"] == [2, 64]
    for f in files:
        invoke("embed", f, *TINY, "--stage", "pooled", "-o", tmp_path / "one.npy", "-q")
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{f.stem}.npy"), np.load(tmp_path / "one.npy"), rtol=0, atol=1e-5)
    assert [e["file"] for e in lines(tmp_path / "out" / "index.jsonl")] == [f"{f.stem}.npy" for f in files]


def test_globs_lists_and_native_sizes(photos, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text(f"{photos / 'zz_noise.png'}\n{photos / 'chelsea.jpg'}\n")
    doc = json.loads(invoke("patchify", "--from-list", listing, "--json"))
    assert doc["processed"] == 2 and doc["tensors"]["patches"]["shape"] == [2, 196, 768]
    doc = json.loads(invoke("patchify", str(photos / "c*.jpg"), "--json"))  # quoted glob
    assert doc["processed"] == 3
    invoke("patchify", photos / "chelsea.jpg", photos / "zz_noise.png", "--size", "native",
           "--output-dir", tmp_path / "native", "-q")  # different grids: one file each is fine
    assert np.load(tmp_path / "native" / "zz_noise.npy").shape == (9 * 20, 768)
    assert np.load(tmp_path / "native" / "chelsea.npy").shape == (18 * 28, 768)


def test_bad_image_stops_the_run_or_is_skipped(photos, tmp_path):
    (photos / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "p.npy"
    np.save(out, np.array([1, 2, 3]))
    r = run_cli("patchify", photos, "-o", out)
    assert_clean_error(r, "broken.jpg")
    assert np.load(out).tolist() == [1, 2, 3] and not (tmp_path / "p.index.jsonl").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.npy", "photos"]  # no temporary left

    r = run_cli("patchify", photos, "-o", out, "--skip-errors", "-q")
    assert r.returncode == 0, r.stderr
    err = [line for line in r.stderr.decode().splitlines() if line.strip()]
    assert len(err) == 1 and "skipped" in err[0] and "broken.jpg" in err[0]
    index = lines(tmp_path / "p.index.jsonl")
    broken = [e for e in index if e["path"].endswith("broken.jpg")]
    assert broken[0]["row"] is None and broken[0]["error"]
    good = sorted(p.name for p in photos.iterdir() if p.name != "broken.jpg")
    assert np.load(out).shape == (len(good), 196, 768)
    assert [Path(e["path"]).name for e in index if e["row"] is not None] == good

    r = run_cli("patchify", photos, "-o", "-")
    assert_clean_error(r, "-o -")


# What standard error may say, per the README ("Exit codes", "Interruption"): Ctrl-C exits 130 —
# typer turns KeyboardInterrupt into a silent exit 130, vitcli's own handler says
# `vitcli: interrupted`; either is allowed, nothing else — and SIGTERM exits 143 with exactly
# `vitcli: terminated`.
ALLOWED_STDERR = {
    signal.SIGINT: ([], ["vitcli: interrupted"]),
    signal.SIGTERM: (["vitcli: terminated"],),
}


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), pytest.param(signal.SIGTERM, 143, marks=pytest.mark.slow)])
def test_signal_mid_batch_leaves_the_previous_output(tmp_path, sig, code):
    """A signal while rows are being written: the documented exit code and line, the earlier
    `-o` file and its index untouched, and no temporary file left in the folder."""
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(120):
        pixels = np.random.default_rng(i).integers(0, 256, (224, 224, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")
    out = tmp_path / "emb.npy"
    np.save(out, np.arange(5))
    (tmp_path / "emb.index.jsonl").write_text("old\n")
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vitcli", "embed", folder, "--model", "vit-s16",
                             "--batch-size", "2", "--stage", "pooled", "-o", out, "-q"],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        mid_write = False
        while time.monotonic() < deadline and proc.poll() is None:  # wait for the first rows on disk
            parts = list(tmp_path.glob(".emb.npy.*.part"))
            if parts and parts[0].stat().st_size > 128:  # past the .npy header: rows are being written
                mid_write = True
                break
            time.sleep(0.005)
        assert proc.poll() is None, proc.stderr.read()
        assert mid_write, "the run never started writing rows: the signal would not test an interrupted write"
        proc.send_signal(sig)
        stdout, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a failed wait must not leave a ViT-S run behind
            proc.kill()
            proc.communicate()
    text = err.decode()
    assert proc.returncode == code, text
    said = [line.rstrip() for line in text.splitlines() if line.strip()]
    assert said in ALLOWED_STDERR[sig], text
    assert stdout == b""  # -q and -o FILE: nothing on standard output
    assert np.load(out).tolist() == [0, 1, 2, 3, 4]
    assert (tmp_path / "emb.index.jsonl").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.index.jsonl", "emb.npy", "many"]  # no .part left

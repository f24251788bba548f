"""Dataset outputs of embed: Parquet (read by pyarrow, pandas, DuckDB), npy-shards, manifest, resume after SIGKILL."""

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT, SAMPLES, assert_clean_error, run_cli

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

TINY = ("--model", "vit-ti16", "--dim", "64", "--depth", "2", "--heads", "2", "--seed", "3")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """12 JPEGs of several sizes made from the shipped samples (names sort in this order)."""
    folder = tmp_path_factory.mktemp("photos")
    samples = sorted(SAMPLES.glob("*.jpg"))
    for i in range(12):
        img = Image.open(samples[i % len(samples)]).convert("RGB")
        side = 96 + 24 * i
        img.resize((side, side * 3 // 4)).save(folder / f"img{i:02d}.jpg", quality=90)
    return folder


def embed(*args) -> dict:
    r = run_cli("embed", *map(str, args), *TINY, "--json")
    assert r.returncode == 0, r.stderr.decode()
    return json.loads(r.stdout)


def npy_rows(photos: Path, tmp: Path, stage: str = "pooled", batch: int = 16) -> np.ndarray:
    out = tmp / f"ref-{stage}-{batch}.npy"
    embed(photos, "--stage", stage, "--batch-size", batch, "-o", out)
    return np.load(out)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_parquet_file_read_by_pyarrow_pandas_duckdb_equals_npy(photos, tmp_path):
    out = tmp_path / "emb.parquet"
    doc = embed(photos, "--stage", "pooled", "-o", out)
    assert doc["outputs"] == {"table": str(out), "format": "parquet"}
    ref = npy_rows(photos, tmp_path)  # (12, 64), same batches
    table = pq.read_table(out)
    assert table.schema.field("embedding").type == pa.list_(pa.float32(), 64)
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert emb.dtype == np.float32 and np.array_equal(emb, ref)  # bit for bit
    names = sorted(photos.iterdir())
    assert table.column("path").to_pylist() == [str(p) for p in names]
    assert table.column("row").to_pylist() == list(range(12))
    assert table.column("sha256").to_pylist() == [sha(p) for p in names]
    assert table.column("error").null_count == 12
    first = Image.open(names[0])
    assert table.column("original_size")[0].as_py() == [first.height, first.width]
    assert table.column("size")[0].as_py() == [224, 224] and table.column("grid")[0].as_py() == [14, 14]
    meta = json.loads(table.schema.metadata[b"vitcli"])
    assert meta["stage"] == "pooled" and meta["embedding_shape"] == [64] and meta["vitcli_version"]
    assert meta["model"]["name"] == "vit-ti16" and meta["model"]["seed"] == 3 and meta["model"]["dim"] == 64
    assert meta["preprocessing"]["normalize"] == "imagenet" and meta["preprocessing"]["size"] == "224x224"
    frame = pd().read_parquet(out)
    assert np.array_equal(np.stack(frame["embedding"].to_numpy()), ref)
    duckdb = pytest.importorskip("duckdb")
    got = duckdb.sql(f"SELECT row, path, embedding[1] AS e0 FROM '{out}' ORDER BY row").fetchall()
    assert [g[0] for g in got] == list(range(12)) and np.allclose([g[2] for g in got], ref[:, 0], rtol=0, atol=0)


def pd():
    return pytest.importorskip("pandas")


@pytest.mark.slow  # about 8 s
def test_token_stage_is_a_list_of_vectors_with_its_shape_in_the_metadata(photos, tmp_path):
    out = tmp_path / "tokens.parquet"
    embed(photos, "--stage", "output", "-o", out)
    table = pq.read_table(out)
    assert table.schema.field("embedding").type == pa.list_(pa.list_(pa.float32(), 64))
    assert json.loads(table.schema.metadata[b"vitcli"])["embedding_shape"] == [197, 64]
    emb = np.stack([np.stack(r) for r in table.column("embedding").to_numpy(zero_copy_only=False)])
    assert np.array_equal(emb, npy_rows(photos, tmp_path, "output"))


def test_skip_errors_gives_rows_with_an_error_and_no_embedding(photos, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for p in sorted(photos.iterdir())[:3]:
        (folder / p.name).write_bytes(p.read_bytes())
    (folder / "img01b.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "mixed.parquet"
    r = run_cli("embed", folder, "--stage", "pooled", *TINY, "-o", out, "--skip-errors", "-q")
    assert r.returncode == 0, r.stderr.decode()
    rows = pq.read_table(out).to_pylist()
    assert [Path(x["path"]).name for x in rows] == ["img00.jpg", "img01.jpg", "img01b.jpg", "img02.jpg"]
    bad = rows[2]
    assert bad["embedding"] is None and bad["error"] and bad["sha256"] == hashlib.sha256(b"not a jpeg").hexdigest()
    assert all(x["error"] is None and len(x["embedding"]) == 64 for x in rows[:2] + rows[3:])


def read_shards(folder: Path) -> "pa.Table":
    return pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob("part-*.parquet"))])


@pytest.mark.slow  # about 20 s; the resume test's sharded run stays quick
def test_shards_and_manifest_equal_one_file_and_npy_shards_follow_clip_retrieval(photos, tmp_path):
    out = tmp_path / "run"
    doc = embed(photos, "--stage", "pooled", "--output-dir", out, "--format", "parquet", "--shard-size", 5)
    assert doc["outputs"]["shards"] == 3 and sorted(p.name for p in out.glob("part-*")) == [
        "part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] and set(manifest["shards"]) == {"0", "1", "2"}
    assert manifest["inputs"]["count"] == 12 and manifest["options"]["--stage"] == "pooled"
    table = read_shards(out)
    assert table.column("row").to_pylist() == list(range(12))
    emb = np.stack(table.column("embedding").to_numpy(zero_copy_only=False))
    assert np.allclose(emb, npy_rows(photos, tmp_path), rtol=0, atol=1e-6)
    assert np.array_equal(emb[:5], npy_rows(photos, tmp_path, batch=5)[:5])  # same batches: same bits
    clip = tmp_path / "clip"
    embed(photos, "--stage", "pooled", "--output-dir", clip, "--format", "npy-shards", "--shard-size", 5)
    arrays = [np.load(clip / "img_emb" / f"img_emb_{k}.npy") for k in range(3)]
    metas = [pq.read_table(clip / "metadata" / f"metadata_{k}.parquet").to_pylist() for k in range(3)]
    assert [a.shape for a in arrays] == [(5, 64), (5, 64), (2, 64)]
    assert np.array_equal(np.concatenate(arrays), emb)
    assert [m["image_path"] for part in metas for m in part] == table.column("path").to_pylist()
    assert [m["row"] for m in metas[1]] == list(range(5))  # the row of img_emb_1.npy


# --- resume: kills at random moments ------------------------------------------------------------

def sharded_cmd(photos: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "vitcli", "embed", str(photos), *TINY, "--stage", "pooled", "--output-dir",
            str(out), "--format", "parquet", "--shard-size", "2", "--batch-size", "2", "--workers", "1", "-q", *extra]


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("part-*.parquet"))}


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory) -> tuple[dict[str, bytes], float]:
    """An uninterrupted sharded run: its shard files' bytes, and its wall time."""
    out = tmp_path_factory.mktemp("ref") / "run"
    start = time.perf_counter()
    subprocess.run(sharded_cmd(photos, out), check=True, env={**os.environ, "NO_COLOR": "1"}, timeout=300)
    return files_of(out), time.perf_counter() - start


@pytest.mark.parametrize("seed", [0, *(pytest.param(s, marks=pytest.mark.slow) for s in (1, 2))])  # about 12 s each
def test_resume_after_sigkill_at_random_moments_is_bit_identical(photos, reference, tmp_path, seed):
    ref, seconds = reference
    rng = random.Random(seed)
    out = tmp_path / "run"
    for _ in range(2):  # killed twice (the second time while resuming), then finished
        proc = subprocess.Popen(sharded_cmd(photos, out, "--resume"), env={**os.environ, "NO_COLOR": "1"},
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.3, seconds))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        if (out / "manifest.json").exists():
            manifest = json.loads((out / "manifest.json").read_text())  # always whole JSON
            for k, shard in manifest["shards"].items():  # every listed shard is whole
                for name, digest in shard["files"].items():
                    assert sha(out / name) == digest
    r = subprocess.run(sharded_cmd(photos, out, "--resume"), capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert files_of(out) == ref  # same files, byte for byte: no duplicates, no gaps
    assert not list(out.glob(".*.part"))
    assert read_shards(out).column("row").to_pylist() == list(range(12))


# --- bad input: one line each, nothing written lost ---------------------------------------------

@pytest.fixture
def done_run(photos, tmp_path) -> tuple[Path, Path, dict[str, bytes]]:
    """A finished 3-shard run over a copy of the photos: (inputs, folder, its files' bytes)."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for p in sorted(photos.iterdir())[:6]:
        (inputs / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "run"
    embed(inputs, "--stage", "pooled", "--output-dir", out, "--format", "parquet", "--shard-size", 2)
    return inputs, out, {p.name: p.read_bytes() for p in out.iterdir()}


def resume(inputs: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_cli("embed", inputs, *TINY, "--stage", "pooled", "--output-dir", out, "--format", "parquet",
                   "--shard-size", "2", "--resume", *extra)


def unchanged(out: Path, before: dict[str, bytes]) -> None:
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


@pytest.mark.slow  # about 20 s of CLI runs; test_resume_with_a_contradicting_model_names_both_models stays quick
def test_changed_inputs_other_options_version_or_damage_are_one_line_and_lose_nothing(done_run):
    inputs, out, before = done_run
    assert_clean_error(run_cli("embed", inputs, *TINY, "--stage", "pooled", "--output-dir", out, "--format",
                               "parquet", "--shard-size", "2"), "holds a run already", "--resume")
    assert_clean_error(resume(inputs, out, "--batch-size", "4"), "--batch-size", "16")
    assert_clean_error(resume(inputs, out, "--size", "160"), "--size", "begun without it")
    assert_clean_error(resume(inputs, out, "--shard-size", "3"), "--shard-size")
    unchanged(out, before)
    (inputs / "new.jpg").write_bytes((inputs / "img00.jpg").read_bytes())
    assert_clean_error(resume(inputs, out), "inputs changed", "1 added, 0 removed")
    (inputs / "new.jpg").unlink()
    unchanged(out, before)
    manifest = json.loads(before["manifest.json"])
    (out / "manifest.json").write_text(json.dumps({**manifest, "vitcli": "0.0.1"}))
    assert_clean_error(resume(inputs, out), "manifest.json", "vitcli 0.0.1")
    (out / "manifest.json").write_bytes(before["manifest.json"])
    damaged = bytearray(before["part-00001.parquet"])
    damaged[len(damaged) // 2] ^= 0xFF
    (out / "part-00001.parquet").write_bytes(bytes(damaged))
    assert_clean_error(resume(inputs, out), "part-00001.parquet", "differs from the manifest")
    assert (out / "part-00001.parquet").read_bytes() == bytes(damaged) and (out / "part-00000.parquet").read_bytes() == before["part-00000.parquet"]
    (out / "part-00001.parquet").write_bytes(before["part-00001.parquet"])
    r = resume(inputs, out, "-q")
    assert r.returncode == 0 and not r.stderr
    unchanged(out, before)


@pytest.mark.slow  # about 18 s of CLI runs
def test_option_combinations_and_missing_pyarrow_are_one_line(photos, tmp_path):
    assert_clean_error(run_cli("embed", photos, *TINY, "--format", "npy-shards", "-o", tmp_path / "x.npy"), "--output-dir")
    assert_clean_error(run_cli("embed", photos, *TINY, "--resume", "-o", tmp_path / "x.npy"), "--resume")
    assert_clean_error(run_cli("embed", photos, *TINY, "--format", "parquet"), "--format", "--output-dir")
    assert_clean_error(run_cli("embed", photos, *TINY, "--format", "parquet", "--output-dir", tmp_path / "d",
                               "--shard-size", "0"), "--shard-size")
    code = ("import sys; sys.modules['pyarrow'] = None; sys.argv = ['vitcli'] + sys.argv[1:]; "
            "from vitcli.cli import main; main()")
    r = subprocess.run([sys.executable, "-c", code, "embed", str(photos), *TINY, "-o", str(tmp_path / "e.parquet")],
                       capture_output=True, cwd=ROOT, env={**os.environ, "NO_COLOR": "1"}, timeout=300)
    assert_clean_error(r, "pyarrow", "pip install")
    assert not list(tmp_path.glob("*parquet*"))


@pytest.mark.slow  # about 11 s of CLI runs
def test_shard_and_ray_options_that_would_be_ignored_are_one_line(photos, tmp_path):
    cases = [(("-o", tmp_path / "a.npy", "--shard-size", "5"), "--shard-size"),  # the plain .npy pipeline
             (("--output-dir", tmp_path / "b", "--shard-size", "5"), "--shard-size"),  # a file per image
             (("-o", tmp_path / "c.parquet", "--shard-size", "5"), "--shard-size"),  # one Parquet file
             (("--output-dir", tmp_path / "d", "--format", "parquet", "--actors", "2"), "--actors"),
             (("-o", tmp_path / "e.npy", "--ray-address", "127.0.0.1:1"), "--ray-address"),
             (("-o", tmp_path / "f.npy", "--num-gpus", "1"), "--num-gpus")]
    for args, option in cases:  # a usage error: exit 2
        assert_clean_error(run_cli("embed", photos, *TINY, *map(str, args)), option, code=2)
    assert not list(tmp_path.iterdir())


# --- resume reads the run's options (issue 27) -------------------------------------------------------

def test_resume_reads_the_options_from_the_manifest(done_run):
    """`--output-dir DIR --resume` alone: the inputs and options come from the run's manifest."""
    inputs, out, before = done_run
    manifest = json.loads(before["manifest.json"])
    assert manifest["command"]["shard_size"] == 2 and manifest["command"]["images"] == [str(inputs)]
    (out / "part-00002.parquet").unlink()  # as if killed before the last shard was listed
    manifest["shards"].pop("2")
    (out / "manifest.json").write_text(json.dumps({**manifest, "complete": False}))
    r = run_cli("embed", "--output-dir", out, "--resume", "-q")
    assert r.returncode == 0 and not r.stderr, r.stderr.decode()
    assert files_of(out) == {k: v for k, v in before.items() if k.startswith("part-")}
    assert json.loads((out / "manifest.json").read_text())["complete"] is True


def test_resume_with_a_contradicting_model_names_both_models(done_run):
    _, out, before = done_run
    line = assert_clean_error(run_cli("embed", "--output-dir", out, "--resume", "--model", "vit-s16"),
                              "--model", "vit-s16", "vit-ti16")
    assert "sha256" not in line
    assert_clean_error(run_cli("embed", "--output-dir", out, "--resume", "--weights", out / "w.safetensors"),
                       "--weights", "--model vit-ti16")
    assert_clean_error(run_cli("embed", "--output-dir", out, "--resume", "--depth", "3"), "--depth", "3", "used 2")
    unchanged(out, before)


@pytest.mark.slow  # about 10 s
def test_ctrl_c_of_a_sharded_run_hints_resume(photos, tmp_path):
    """SIGINT mid-run: exit 130 and one line saying how many shards are kept and that --resume goes on."""
    out = tmp_path / "run"
    cmd = [*sharded_cmd(photos, out)[:-1]]  # without -q: the line is printed in any case
    cmd[cmd.index("--shard-size") + 1] = "1"
    proc = subprocess.Popen(cmd, env={**os.environ, "NO_COLOR": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        manifest = out / "manifest.json"
        if manifest.exists() and json.loads(manifest.read_text())["shards"]:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 130, err
    assert err.count("\n") == 1 and "interrupted" in err and "of 12 shards are done" in err and "--resume" in err, err
    r = subprocess.run([sys.executable, "-m", "vitcli", "embed", "--output-dir", str(out), "--resume", "-q"],
                       capture_output=True, timeout=300, check=False)
    assert r.returncode == 0, r.stderr.decode()
    assert read_shards(out).column("row").to_pylist() == list(range(12))


@pytest.mark.slow  # about 10 s; the Parquet file read by pyarrow, pandas and DuckDB stays quick
def test_parquet_metadata_stores_the_values_used(photos, tmp_path):
    """The fit, filter and patch size the run used (crop, bicubic and the model's P by default), not null."""
    for extra, fit, resample in (((), "crop", "bicubic"), (("--fit", "pad", "--resample", "bilinear"), "pad", "bilinear")):
        out = tmp_path / f"{fit}.parquet"
        embed(photos, "--stage", "pooled", "-o", out, *extra)
        meta = json.loads(pq.read_schema(out).metadata[b"vitcli"])["preprocessing"]
        assert (meta["fit"], meta["resample"], meta["patch_size"]) == (fit, resample, 16)

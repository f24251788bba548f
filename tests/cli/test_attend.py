"""`vitcli attend` end to end: weights against timm's own attention, every number of the table
recomputed with numpy from the written arrays, rollout / distance / masks by hand, prefix tokens,
non-square grids, clean errors, and the memory of the single-query path."""

import json
import math
import subprocess
from pathlib import Path
import sys

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.checkpoints.parity import TimmAttention, scramble
from tests.conftest import ROOT, assert_clean_error, run_cli, sampled

MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def timm_checkpoint(tmp_path, name: str, h: int, w: int, seed: int, **kw):
    """A scrambled timm model at (h, w), saved as safetensors; the model and its attention recorder."""
    model = scramble(timm.create_model(name, pretrained=False, img_size=(h, w), **kw), seed)
    recorder = TimmAttention(model)
    path = tmp_path / f"{name}.safetensors"
    save_file(model.state_dict(), path)
    return model, recorder, path


def image_file(tmp_path, h: int, w: int, seed: int = 0):
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    path = tmp_path / "img.png"
    Image.fromarray(pixels).save(path)
    x = torch.from_numpy(((pixels / 255.0 - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32))
    return path, x


def numpy_rollout(layers: np.ndarray) -> np.ndarray:
    """Abnar & Zuidema by hand: mean of heads, 0.5 A + 0.5 I, rows renormalised, product over layers."""
    result = np.eye(layers.shape[-1])
    for a in layers:  # (H, T, T)
        hat = 0.5 * a.mean(0) + 0.5 * np.eye(a.shape[-1])
        result = (hat / hat.sum(-1, keepdims=True)) @ result
    return result


def numpy_mean_distance(a: np.ndarray, grid: tuple[int, int], p: int, prefix: int) -> float:
    """ViT D.7 by loops: mean over patch queries of Σ_j A[i, j]·|c_i − c_j|, prefix removed."""
    rows, cols = grid
    centres = [((r + 0.5) * p, (c + 0.5) * p) for r in range(rows) for c in range(cols)]
    patch = a[prefix:, prefix:]
    return float(np.mean([sum(patch[i, j] * math.dist(centres[i], centres[j]) for j in range(len(centres)))
                          for i in range(len(centres))]))


@pytest.fixture(scope="module")
def vit_run(tmp_path_factory):
    """One timm ViT (2 blocks, 3 heads) at a non-square 48×80 (3×5 grid), attend with everything on."""
    tmp = tmp_path_factory.mktemp("attend")
    model, recorder, weights = timm_checkpoint(tmp, "vit_tiny_patch16_224", 48, 80, seed=3, depth=2)
    img, x = image_file(tmp, 48, 80)
    with torch.no_grad():
        model.forward_features(x)
    peer = np.stack([w[0].numpy() for w in recorder.weights])  # (L, H, T, T)
    files = {k: tmp / f"{k}.npy" for k in ("all", "cls", "patch", "rollout", "distance", "masks", "cosine")}
    base = ["attend", img, "--weights", weights, "--native-size", "48x80", "--fit", "strict", "--normalize", "imagenet",
            "--layer", "all"]
    full = run_cli(*base, "--query", "all", "-o", files["all"], "--distance", files["distance"], "--json",
                   "--save-qkv", tmp / "qkv.npz", "--cosine", files["cosine"])
    cls = run_cli(*base, "--query", "cls", "-o", files["cls"], "--rollout", files["rollout"], "--masks", files["masks"],
                  "--plot-distance", tmp / "dist.png", "--overlay", tmp / "overlay.png", "--per-head", "--json")
    patch = run_cli(*base, "--query", "2,3", "--head", "1", "-o", files["patch"], "--json")
    for r in (full, cls, patch):
        assert r.returncode == 0, r.stderr.decode()
    arrays = {k: np.load(v) for k, v in files.items()}
    return {"peer": peer, "arrays": arrays, "docs": [json.loads(r.stdout) for r in (full, cls, patch)], "tmp": tmp}


def test_full_attention_matches_timm_and_rows_sum_to_one(vit_run):
    a, peer = vit_run["arrays"]["all"], vit_run["peer"]
    assert a.shape == (2, 3, 16, 16) == peer.shape  # (layers, heads, queries, tokens), T = 1 + 3·5
    assert np.abs(a - peer).max() <= 1e-5
    assert np.allclose(a.sum(-1), 1.0, atol=1e-5)


def test_single_queries_are_rows_of_the_full_matrix(vit_run):
    a = vit_run["arrays"]
    assert a["cls"].shape == (2, 3, 1, 16)
    assert np.abs(a["cls"][:, :, 0] - a["all"][:, :, 0]).max() <= 1e-6
    token = 1 + 2 * 5 + 3  # prefix + r·cols + c on the true 3×5 grid
    assert a["patch"].shape == (2, 1, 1, 16)
    assert np.abs(a["patch"][:, 0, 0] - a["all"][:, 1, token]).max() <= 1e-6
    doc = vit_run["docs"][2]
    assert doc["queries"] == [token] and doc["query_names"] == "patch (2, 3)" and doc["head_selection"] == ["1"]


def test_table_numbers_recomputed_with_numpy(vit_run):
    a, doc = vit_run["arrays"]["all"].astype(np.float64), vit_run["docs"][1]
    cls = vit_run["arrays"]["cls"].astype(np.float64)
    assert [(h["layer"], h["head"]) for h in doc["heads"]] == [(l, h) for l in range(2) for h in range(3)]
    for row in doc["heads"]:
        w = cls[row["layer"], row["head"], 0]  # (T,)
        assert row["entropy"] == pytest.approx(-(w * np.log(w)).sum(), rel=1e-5)
        j = int(w[1:].argmax())
        assert row["max_patch"] == [j // 5, j % 5] and row["max_weight"] == pytest.approx(w[1 + j], rel=1e-5)
        assert row["cls_weight"] == pytest.approx(w[0], rel=1e-5)
        expected = numpy_mean_distance(a[row["layer"], row["head"]], (3, 5), 16, 1)
        assert row["mean_distance"] == pytest.approx(expected, rel=1e-5)


def test_distance_rollout_masks_cosine_by_hand(vit_run):
    arrays, a = vit_run["arrays"], vit_run["arrays"]["all"].astype(np.float64)
    expected = [[numpy_mean_distance(a[l, h], (3, 5), 16, 1) for h in range(3)] for l in range(2)]
    assert np.allclose(arrays["distance"], expected, rtol=1e-5)
    rollout = arrays["rollout"]
    assert rollout.shape == (16, 16) and np.allclose(rollout.sum(-1), 1.0)
    assert np.allclose(rollout, numpy_rollout(a), atol=1e-6)
    masks, last_cls = arrays["masks"], a[-1, :, 0, 1:].reshape(3, 3, 5)
    assert masks.shape == (3, 3, 5) and masks.dtype == bool
    for m, w in zip(masks, last_cls):
        share = w[m].sum() / w.sum()
        fewest = int(np.searchsorted(np.cumsum(np.sort(w.ravel())[::-1]) / w.sum(), 0.6) + 1)
        assert share >= 0.6 - 1e-9 and m.sum() == fewest
    qkv = np.load(vit_run["tmp"] / "qkv.npz")
    q, k = qkv["q"].astype(np.float64), qkv["k"].astype(np.float64)  # (L, H, T, d)
    assert q.shape == (2, 3, 16, 64) and list(qkv["layers"]) == [0, 1]
    logits = q @ k.transpose(0, 1, 3, 2) / 8.0
    soft = np.exp(logits - logits.max(-1, keepdims=True))
    assert np.allclose(soft / soft.sum(-1, keepdims=True), a, atol=1e-5)  # A = softmax(QKᵀ/√d_k)
    cos = (q / np.linalg.norm(q, axis=-1, keepdims=True)) @ (k / np.linalg.norm(k, axis=-1, keepdims=True)).transpose(0, 1, 3, 2)
    assert np.allclose(arrays["cosine"], cos, atol=1e-5)


def test_pictures_are_written_and_not_blank(vit_run):
    for name in ("dist.png", "overlay.png", "rollout.png"):
        img = np.asarray(Image.open(vit_run["tmp"] / name).convert("RGB"))
        assert img.shape[0] > 200 and img.shape[1] > 200, name
        assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50, name
    doc = vit_run["docs"][1]
    assert doc["outputs"]["rollout_png"].endswith("rollout.png") and doc["masks"]["threshold"] == 0.6


def test_registers_and_distillation_tokens_are_sliced_off(tmp_path):
    model, recorder, weights = timm_checkpoint(tmp_path, "vit_small_patch14_reg4_dinov2", 42, 70, seed=5, depth=1)
    img, x = image_file(tmp_path, 42, 70)
    with torch.no_grad():
        model.forward_features(x)
    peer = recorder.weights[-1][0].numpy().mean(0)  # (T, T): timm's heads, averaged
    out = tmp_path / "a.npy"
    r = run_cli("attend", img, "--weights", weights, "--native-size", "42x70", "--fit", "strict", "--normalize", "imagenet",
                "--query", "0,0", "--head", "mean", "-o", out, "--json")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    assert doc["grid"] == [3, 5] and doc["model"]["num_prefix_tokens"] == 5 and doc["queries"] == [5]
    a = np.load(out)
    assert a.shape == (1, 1, 1, 5 + 15)
    assert doc["heads"][0]["cls_weight"] == pytest.approx(float(a[0, 0, 0, 0]), rel=1e-5)
    assert np.abs(a[0, 0, 0] - peer[5]).max() <= 1e-5  # patch (0, 0) is token 5, after cls and 4 registers


@sampled("args, words", keep=2, cases=[
    (["--layer", "12"], ["--layer", "out of range"]),
    (["--head", "7"], ["--head", "out of range"]),
    (["--query", "14,0"], ["--query", "patch row"]),
    (["--query", "all", "--overlay", "x.png"], ["--query", "one query"]),
    (["--no-cls", "--masks", "m.npy"], ["--masks", "no class token"]),
])
def test_bad_selections_are_one_line(tmp_path, args, words):
    args = [str(tmp_path / a) if a in ("x.png", "m.npy") else a for a in args]
    r = run_cli("attend", ROOT / "sample_images" / "chelsea.jpg", "--dim", "64", "--depth", "2", "--heads", "2", *args)
    assert_clean_error(r, *words)
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "m.npy").exists()


@pytest.mark.slow  # a 1792-px ViT in a child process (about 30 s)
def test_single_query_path_stays_far_below_the_full_matrix(tmp_path):
    """12,545 tokens (1792² at P = 16): one layer's full weights would be 6·T² floats = 3.8 GB;
    --query cls over every layer (with the mean distance recomputed in blocks) stays under 2 GiB,
    which the full matrix alone (3.8 GB, plus ~0.8 GiB of torch itself) exceeds twice over (about
    0.95 GiB measured alone; up to 1.6 GiB inside a loaded full test run, from the allocator's
    per-thread arenas). The peak is the child's own VmHWM: ru_maxrss would carry the test process's
    high-water mark across the vfork and exec of the child."""
    img = tmp_path / "big.png"
    Image.open(ROOT / "sample_images" / "astronaut.jpg").resize((1792, 1792)).save(img)
    script = (
        "import sys\nfrom vitcli.cli import main\nsys.argv = ['vitcli'] + sys.argv[1:]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        "print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')), file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    out = tmp_path / "cls.npy"
    r = subprocess.run([sys.executable, "-c", script, "attend", str(img), "--size", "native", "--dim", "192",
                        "--depth", "2", "--heads", "6", "--layer", "all", "--query", "cls", "-o", str(out), "-q"],
                       capture_output=True, timeout=600)
    assert r.returncode == 0, r.stderr.decode()
    peak_kib = int(r.stderr.decode().split()[-1])
    a = np.load(out)
    assert a.shape == (2, 6, 1, 12545) and np.allclose(a.sum(-1), 1.0, atol=1e-4)
    full_matrix_bytes = 6 * 12545**2 * 4
    assert peak_kib * 1024 < 2 * 1024**3 < full_matrix_bytes / 1.5, f"peak RSS {peak_kib / 1024:.0f} MiB"


@pytest.mark.slow  # about 15 s; test_batch.py's many-image runs stay quick
def test_many_images_rows_and_mean_distance_equal_single_runs(tmp_path):
    paths = [ROOT / "sample_images" / n for n in ("coffee.jpg", "astronaut.jpg")]  # given unsorted
    model = ["--dim", "64", "--depth", "2", "--heads", "2", "--size", "64x96", "--layer", "all", "--batch-size", "1"]
    many = run_cli("attend", *map(str, paths), *model, "-o", tmp_path / "b.npy", "--distance", tmp_path / "d.npy",
                   "--plot-distance", tmp_path / "d.png", "--json")
    assert many.returncode == 0, many.stderr.decode()
    rows, doc = np.load(tmp_path / "b.npy"), json.loads(many.stdout)
    index = [json.loads(line) for line in (tmp_path / "b.index.jsonl").read_text().splitlines()]
    assert [Path(e["path"]).name for e in index] == ["astronaut.jpg", "coffee.jpg"] and [e["row"] for e in index] == [0, 1]
    singles, distances = [], []
    for i, e in enumerate(index):
        one = run_cli("attend", e["path"], *model, "-o", tmp_path / f"s{i}.npy", "--distance", tmp_path / f"d{i}.npy")
        assert one.returncode == 0, one.stderr.decode()
        singles.append(np.load(tmp_path / f"s{i}.npy"))
        distances.append(np.load(tmp_path / f"d{i}.npy"))
    assert rows.shape == (2, 2, 2, 1, 1 + 4 * 6)
    assert np.array_equal(rows, np.stack(singles))  # same model, same pixels: bit-identical rows
    assert np.allclose(np.load(tmp_path / "d.npy"), np.mean(distances, axis=0))
    assert np.allclose(doc["mean_distance_std"], np.std(distances, axis=0))
    img = np.asarray(Image.open(tmp_path / "d.png").convert("RGB"))
    assert img.std() > 10
    bad = run_cli("attend", *map(str, paths), *model, "--overlay", tmp_path / "o.png")
    assert_clean_error(bad, "--overlay", "one image")


@sampled("fusion", ["max", "min"])
def test_fused_head_entropy_is_that_of_the_row_over_its_sum(tmp_path, fusion):
    """`--head max|min`: the fused row is no distribution; the table's entropy is -Σ p ln p of p = row / sum,
    computed here from the written rows, and so at most ln T (it was 7.19 nats for T = 197 before)."""
    out = tmp_path / "a.npy"
    r = run_cli("attend", ROOT / "sample_images" / "chelsea.jpg", "--model", "vit-ti16", "--depth", "2", "--layer", "all",
        "--head", fusion, "-o", out, "--json")
    assert r.returncode == 0, r.stderr.decode()
    rows = np.load(out).astype(np.float64)[:, 0, 0]  # (layers, T)
    p = rows / rows.sum(-1, keepdims=True)
    expected = -(p * np.log(p)).sum(-1)
    got = [h["entropy"] for h in json.loads(r.stdout)["heads"]]
    assert np.allclose(got, expected, rtol=1e-5), (got, expected)
    assert max(got) <= math.log(rows.shape[-1])

"""`compare`: every metric against its formula on features timm extracts itself, the minibatch identity,
the CLI's outputs and its one-line errors.

Models: a scrambled ViT-S/16 (class token) and a DINOv2-style ViT-S/14 with 4 registers, 2 blocks each,
saved as timm's hub folders and run by vitcli in float64 on 64 images of 112 × 112 (--size 112 --fit
strict: no resize, so the test feeds timm the same pixels with ImageNet mean/std).
"""

import json

import numpy as np
import pytest
import torch

from tests.compare import formulas
from tests.compare.peers import SIZE, crops, model_input, save_timm, timm_layers
from tests.conftest import assert_clean_error, run_cli
from vitcli.api import BatchSpec, load_model
from vitcli.errors import VitcliError

TOL = 1e-6


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("compare")
    paths = crops(d / "images", 64)
    vit = save_timm("vit_small_patch16_224", d / "vit_s16", seed=0)
    reg = save_timm("vit_small_patch14_reg4_dinov2", d / "dinov2_reg4", seed=1)
    fa, fb = timm_layers(vit, model_input(vit, paths)), timm_layers(reg, model_input(reg, paths))
    return {"dir": d, "paths": paths, "fa": fa, "fb": fb, "a": str(d / "vit_s16"), "b": str(d / "dinov2_reg4")}


def vitcli_compare(setup, images, **kw):
    model = load_model(setup["a"], dtype="float64")
    return model.compare(images, size=SIZE, fit="strict", **kw)


def reference(metric: str, x: torch.Tensor, y: torch.Tensor, topk: int = 10, cca_dim: int = 10) -> float:
    if metric == "cka":
        return formulas.cka(x, y)
    if metric == "unbiased-cka":
        return formulas.cka(x, y, formulas.hsic_unbiased)
    if metric == "mutual-knn":
        return formulas.mutual_knn(x, y, topk)
    if metric == "cknna":
        return formulas.cknna(x, y, topk)
    return formulas.svcca(x, y, cca_dim)


METRICS = ["cka", "unbiased-cka", "mutual-knn", "cknna", "svcca"]


@pytest.mark.parametrize("tokens", ["cls", pytest.param("mean", marks=pytest.mark.slow), "pooled"])  # about 7 s each
def test_two_models_every_metric_equals_its_formula(setup, tokens) -> None:
    """A = ViT-S/16, B = DINOv2-style with registers; (metrics, LA, LB) in the order given, --exact."""
    result = vitcli_compare(setup, setup["paths"], with_model=setup["b"], metric=METRICS, tokens=tokens, exact=True,
                            batch=BatchSpec(batch_size=16))
    assert result.similarity.shape == (5, 2, 2)
    xs, ys = setup["fa"][tokens], setup["fb"][tokens]
    for m, metric in enumerate(METRICS):
        for i in range(2):
            for j in range(2):
                want = reference(metric, xs[i], ys[j])
                assert abs(result.similarity[m, i, j] - want) <= TOL, (metric, tokens, i, j, result.similarity[m, i, j], want)


def test_patches_one_model_layer_by_layer(setup) -> None:
    """--tokens patches: every patch of 8 images a sample (392 rows), A with itself."""
    paths = setup["paths"][:8]
    result = vitcli_compare(setup, paths, metric=METRICS, tokens="patches", exact=True, topk=5, cca_dim=4)
    xs = [x[:8 * 49] for x in setup["fa"]["patches"]]  # the first 8 images' 7 × 7 patches
    for m, metric in enumerate(METRICS):
        for i in range(2):
            for j in range(2):
                want = reference(metric, xs[i], xs[j], topk=5, cca_dim=4)
                assert abs(result.similarity[m, i, j] - want) <= TOL, (metric, i, j, result.similarity[m, i, j], want)


@pytest.mark.slow  # about 10 s
def test_minibatch_cka_over_8_batches(setup) -> None:
    """Streaming (no --exact) over 8 batches of 8 is Nguyen et al.'s estimator: Σᵢ HSIC₁(Kᵢ, Lᵢ) /
    √(Σᵢ HSIC₁(Kᵢ, Kᵢ) Σᵢ HSIC₁(Lᵢ, Lᵢ)), each term the full-batch unbiased HSIC of batch i's Gram
    matrices (batches in sorted path order). One batch of all 64 is the full-batch unbiased CKA."""
    streamed = vitcli_compare(setup, setup["paths"], with_model=setup["b"], metric="cka", tokens="cls",
                              batch=BatchSpec(batch_size=8))
    xs, ys = setup["fa"]["cls"], setup["fb"]["cls"]
    h = formulas.hsic_unbiased
    for i in range(2):
        for j in range(2):
            batches = [(xs[i][s:s + 8], ys[j][s:s + 8]) for s in range(0, 64, 8)]
            kl = sum(h(a @ a.T, b @ b.T) for a, b in batches)
            kk = sum(h(a @ a.T, a @ a.T) for a, _ in batches)
            ll = sum(h(b @ b.T, b @ b.T) for _, b in batches)
            assert abs(streamed.similarity[i, j] - float(kl / (kk * ll) ** 0.5)) <= TOL
    one = vitcli_compare(setup, setup["paths"], with_model=setup["b"], metric="cka", tokens="cls",
                         batch=BatchSpec(batch_size=64))
    full = np.array([[reference("unbiased-cka", xs[i], ys[j]) for j in range(2)] for i in range(2)])
    assert np.abs(one.similarity - full).max() <= TOL
    assert streamed.document["cka_estimator"].startswith("minibatch")


@pytest.mark.slow
def test_cli_writes_matrix_plot_and_table(setup) -> None:
    d = setup["dir"]
    images = [str(p) for p in setup["paths"][:12]]
    r = run_cli("compare", *images, "--weights", setup["a"], "--with", setup["b"], "--metric", "cka,mutual-knn",
                "--topk", "3", "-o", d / "sim.npy", "--plot", d / "sim.png", "--size", str(SIZE), "--fit", "strict",
                env={"COLUMNS": "80"})
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout.decode()
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "best layer of B" in out
    sim = np.load(d / "sim.npy")
    assert sim.shape == (2, 2, 2)
    assert (d / "sim.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = run_cli("compare", *images, "--weights", setup["a"], "--layers", "-1", "--json", "--size", str(SIZE))
    doc = json.loads(r.stdout)
    assert doc["layers_a"] == [1] and doc["layers_b"] == [0, 1] and doc["self"] and doc["shape"] == [1, 2]
    assert abs(doc["similarity"]["cka"][0][1] - 1) < 1e-5  # the same layer with itself


@pytest.mark.slow
def test_bad_inputs_one_line_nothing_written(setup) -> None:
    d = setup["dir"]
    out = d / "never.npy"
    tiny = d / "tiny.png"
    from PIL import Image

    Image.fromarray(np.full((15, 15, 3), 128, np.uint8)).save(tiny)
    # B (patch 16) cannot take a 15 × 15 image that A (patch 14) can
    r = run_cli("compare", tiny, *setup["paths"][:4], "--weights", setup["b"], "--with", setup["a"], "-o", out)
    assert_clean_error(r, "tiny.png", "16x16 patch")
    r = run_cli("compare", *setup["paths"][:4], "--weights", setup["a"], "--with", setup["b"], "--tokens", "patches",
                "-o", out)
    assert_clean_error(r, "--tokens", "7×7", "8×8")
    r = run_cli("compare", *setup["paths"][:5], "--weights", setup["a"], "--metric", "mutual-knn", "-o", out)
    assert_clean_error(r, "--topk", "11 images", code=2)
    assert not out.exists()


@pytest.mark.slow
def test_features_from_embed_stage_layers(setup, tmp_path) -> None:
    """embed --stage layers into Parquet shards (one column per layer, equal to the .npy of the same images,
    through --resume), then compare --features: the numbers of compare on the images."""
    import pyarrow.parquet as pq

    from vitcli.api.compare import compare_features
    from vitcli.api.dataset import DatasetSpec

    paths = [str(p) for p in setup["paths"][:24]]
    opts = ("--stage", "layers", "--tokens", "mean", "--size", str(SIZE), "--fit", "strict", "--format", "parquet",
            "--shard-size", "10")
    bad = tmp_path / "broken.png"  # a failed image: a row with an error and null layer columns, not compared
    bad.write_bytes(b"not an image")
    opts += (str(bad), "--skip-errors")
    r = run_cli("embed", *paths, "--weights", setup["a"], "--output-dir", tmp_path / "a", *opts)
    assert r.returncode == 0, r.stderr.decode()
    load_model(setup["b"]).embed(paths, stage="layers", tokens="mean", size=SIZE, fit="strict",
                                 output_dir=str(tmp_path / "b"), dataset=DatasetSpec(format="parquet", shard_size=10))
    shards = sorted((tmp_path / "a").glob("part-*.parquet"))
    assert len(shards) == 3
    load_model(setup["a"]).embed(paths, stage="layers", tokens="mean", size=SIZE, fit="strict",
                                 output=str(tmp_path / "a.npy"))
    npy = np.load(tmp_path / "a.npy")  # (24, 2, 384): images, layers, D
    table = pq.read_table(shards)
    assert table.column_names == ["path", "row", "layer_0", "layer_1", "original_size", "size", "grid", "sha256",
                                  "error"]
    assert str(table.schema.field("layer_1").type) == "fixed_size_list<element: float>[384]"
    meta = json.loads(table.schema.metadata[b"vitcli"])
    assert meta["layers"] == [0, 1] and meta["layer_columns"] == ["layer_0", "layer_1"] and meta["tokens"] == "mean"
    frame = table.to_pandas()
    assert frame["path"].tolist() == sorted(paths + [str(bad)])
    failed = frame[frame["path"] == str(bad)].iloc[0]
    assert failed["error"] and failed["layer_0"] is None and failed["layer_1"] is None
    frame = frame[frame["path"] != str(bad)]
    order = [paths.index(p) for p in frame["path"]]
    for j in range(2):
        assert np.array_equal(np.stack(frame[f"layer_{j}"].to_numpy()), npy[order, j])
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())  # lose shard 1, then --resume it
    del manifest["shards"]["1"]
    (tmp_path / "a" / "manifest.json").write_text(json.dumps(manifest))
    shards[1].unlink()
    r = run_cli("embed", *paths, "--weights", setup["a"], "--output-dir", tmp_path / "a", *opts, "--resume")
    assert r.returncode == 0, r.stderr.decode()
    assert pq.read_table(shards).equals(table)
    metrics = ["cka", "mutual-knn"]
    stored = compare_features(str(tmp_path / "a"), str(tmp_path / "b"), metric=metrics, topk=5, exact=True)
    direct = load_model(setup["a"]).compare(paths, with_model=setup["b"], metric=metrics, tokens="mean", topk=5,
                                            exact=True, size=SIZE, fit="strict")
    assert np.abs(stored.similarity - direct.similarity).max() <= 1e-9
    streamed = compare_features(str(tmp_path / "a"), layers="-1", batch_size=8)  # A with itself, minibatch CKA
    assert streamed.similarity.shape == (1, 2) and abs(streamed.similarity[0, 1] - 1) < 1e-9
    old = pq.read_table(shards[0])  # the earlier layout: every layer in one `embedding` column
    doc = {k: v for k, v in meta.items() if k != "layer_columns"}
    pq.write_table(old.replace_schema_metadata({b"vitcli": json.dumps(doc).encode()}), tmp_path / "old.parquet")
    with pytest.raises(VitcliError, match="one column per layer"):
        compare_features(str(tmp_path / "old.parquet"))

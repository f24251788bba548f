"""`probe`: the k-NN probe against a brute-force DINO vote written here, the linear probe against
scikit-learn's LogisticRegression, both on features timm extracts itself (a scrambled ViT-S/16 of 2
blocks in float64); a two-cluster folder reaches 100%; bad labels are one line and nothing written."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.compare.peers import SIZE, crops, model_input, save_timm, timm_layers
from tests.conftest import assert_clean_error, run_cli
from vitcli.api import load_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """64 crops filed by the photo they were cut from (5 classes: ROOT/CLASS/imgNNN.png)."""
    d = tmp_path_factory.mktemp("probe")
    paths = crops(d / "flat", 64, seed=3)
    root = d / "root"
    for i, p in enumerate(paths):
        (root / f"photo{i % 5}").mkdir(parents=True, exist_ok=True)
        p.rename(root / f"photo{i % 5}" / p.name)
    files = sorted(root.glob("*/*.png"))  # vitcli's order: sorted paths
    vit = save_timm("vit_small_patch16_224", d / "vit_s16", seed=4)
    feats = timm_layers(vit, model_input(vit, files))["cls"]
    labels = torch.tensor([int(f.parent.name[-1]) for f in files])
    return {"dir": d, "root": root, "model": str(d / "vit_s16"), "feats": feats, "labels": labels}


def brute_knn(train: torch.Tensor, ytrain: torch.Tensor, test: torch.Tensor, k: int, t: float = 0.07) -> list[int]:
    """DINO's weighted k-NN one test image at a time: cosine, the k most similar, weights exp(s / T)."""
    out = []
    for q in test:
        sims = [float(q @ x / (q.norm() * x.norm())) for x in train]
        top = sorted(range(len(sims)), key=lambda i: -sims[i])[:k]
        votes: dict[int, float] = {}
        for i in top:
            votes[int(ytrain[i])] = votes.get(int(ytrain[i]), 0.0) + float(np.exp(sims[i] / t))
        out.append(max(votes, key=lambda c: votes[c]))
    return out


def test_knn_and_linear_probe_against_references(setup) -> None:
    from sklearn.linear_model import LogisticRegression

    l2, k = 1e-4, 5  # the default --l2
    result = load_model(setup["model"], dtype="float64").probe(setup["root"], size=SIZE, fit="strict", k=k, l2=l2,
                                                                seed=1)
    assert result.accuracy.shape == (2, 2) and result.classes == [f"photo{i}" for i in range(5)]
    assert torch.equal(torch.from_numpy(result.labels), setup["labels"])
    (train, test), = result.splits
    assert len(test) == 4 * 3 + 2 and not set(train) & set(test)  # 13 images: round(2.6) = 3; 12: round(2.4) = 2
    y = setup["labels"]
    for layer, x in enumerate(setup["feats"]):
        knn = brute_knn(x[train], y[train], x[test], k)
        assert result.accuracy[layer, 0] == np.mean(np.array(knn) == y[test].numpy())
        mean, std = x[train].mean(0), x[train].std(0, correction=0)
        clf = LogisticRegression(C=1 / (l2 * len(train)), max_iter=20000, tol=1e-10)
        clf.fit(((x[train] - mean) / std).numpy(), y[train].numpy())
        sk = np.mean(clf.predict(((x[test] - mean) / std).numpy()) == y[test].numpy())
        assert abs(result.accuracy[layer, 1] - sk) <= 1 / len(test) + 1e-12, (layer, result.accuracy[layer], sk)


@pytest.mark.slow  # about 9 s; the k-NN and linear probe against references stay quick
def test_folds_test_every_image_once(setup) -> None:
    result = load_model(setup["model"], dtype="float64").probe(setup["root"], size=SIZE, fit="strict", k=3, folds=4,
                                                                layers=-1)
    tested = np.sort(np.concatenate([t for _, t in result.splits]))
    assert np.array_equal(tested, np.arange(64)) and result.accuracy.shape == (1, 2)
    assert result.document["split"] == {"folds": 4}


def two_clusters(root, per_class: int = 10) -> None:
    rng = np.random.default_rng(0)
    for name, colour in [("red", (210, 40, 40)), ("blue", (40, 60, 210))]:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")


def test_two_clusters_reach_100_percent(setup, tmp_path) -> None:
    two_clusters(tmp_path / "two")
    result = load_model(setup["model"]).probe(tmp_path / "two", size=SIZE, k=5)
    assert (result.accuracy == 1).all(), result.accuracy


@pytest.mark.slow
def test_bad_labels_one_line_nothing_written(setup, tmp_path) -> None:
    out, png = tmp_path / "acc.npy", tmp_path / "acc.png"
    one = tmp_path / "one" / "cats"
    one.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((32, 32, 3), 60 * i, np.uint8)).save(one / f"{i}.png")
    r = run_cli("probe", tmp_path / "one", "--weights", setup["model"], "-o", out, "--plot", png)
    assert_clean_error(r, "one class", "'cats'")
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\nphoto0/img000.png,a\nphoto1/missing.png,b\n")
    r = run_cli("probe", setup["root"], "--labels", csv, "--weights", setup["model"], "-o", out)
    assert_clean_error(r, "labels.csv", "line 3", "missing.png", "does not exist")
    assert not out.exists() and not png.exists()

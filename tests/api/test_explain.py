"""Model.explain: shapes and documents, the rollout method is attend's rollout row, and the
sanity checks of Adebayo et al. 2018 (a map must depend on the weights and on the class)."""

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.checkpoints.parity import scramble
from vitcli.api import load_model
from vitcli.errors import VitcliError


def spearmanr(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (no ties in float maps): Pearson of the ranks."""
    ra, rb = (np.argsort(np.argsort(x)).astype(np.float64) for x in (a, b))
    return float(np.corrcoef(ra, rb)[0, 1])


@pytest.fixture(scope="module")
def pixels():
    return np.random.default_rng(3).integers(0, 256, (128, 128, 3), dtype=np.uint8)


def timm_model(tmp_path, seed_top: int | None = None):
    """A scrambled timm ViT (4 blocks, 128 px: 64 patches); with `seed_top`, the cascade of Adebayo et al.
    from the top: the head, the final norm and blocks 2-3 re-drawn."""
    model = scramble(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=128, depth=4), 0)
    if seed_top is not None:
        for part in (model.head, model.norm, *model.blocks[2:]):
            scramble(part, seed_top)
    path = tmp_path / f"m{seed_top}.safetensors"
    save_file(model.state_dict(), path)
    return load_model(str(path))


@pytest.mark.parametrize("method", ["grad-rollout", "attn-grad", "gradcam", "legrad"])
def test_randomised_top_blocks_change_the_map(tmp_path, pixels, method) -> None:
    layer = {"layer": -1} if method == "gradcam" else {}  # the other methods refuse a layer they ignore
    base = timm_model(tmp_path).explain(pixels, method=method, target="class:7", **layer).maps
    rand = timm_model(tmp_path, seed_top=11).explain(pixels, method=method, target="class:7", **layer).maps
    rho = spearmanr(base.ravel(), rand.ravel())
    print(f"\n{method}: Spearman with top blocks randomised {rho:.3f}")
    assert rho < 0.5


@pytest.mark.parametrize("method", ["grad-rollout", "attn-grad", "gradcam", "legrad"])
def test_two_classes_give_different_maps(tmp_path, pixels, method) -> None:
    model = timm_model(tmp_path)
    a = model.explain(pixels, method=method, target="class:1").maps
    b = model.explain(pixels, method=method, target="class:2").maps
    assert not np.allclose(a, b, rtol=1e-3, atol=0)
    assert spearmanr(a.ravel(), b.ravel()) < 0.99


def test_rollout_is_attends_rollout_row(pixels) -> None:
    model = load_model("vit-ti16", depth=3)
    ours = \
        model.explain(pixels, method="rollout", discard_ratio=0.2, start_layer=1)
    att = model.attend(pixels, rollout=True, discard_ratio=0.2, start_layer=1)
    np.testing.assert_allclose(ours.maps, att.rollout[0, 1:].reshape(ours.maps.shape), rtol=1e-5, atol=1e-9)


def test_result_shapes_and_document(pixels) -> None:
    model = load_model("vit-ti16", depth=2)
    res = model.explain([pixels, pixels], method="all", target="top")
    assert res.maps.shape == (2, 4, 14, 14)
    assert [r["class"] for r in res.document["explain"]["images"]] == [res.document["explain"]["images"][0]["class"]] * 2
    one = model.explain(pixels, method="gradcam", target="patch:3,4")
    assert one.maps.shape == (14, 14) and one.maps.dtype == np.float32 and (one.maps >= 0).all()
    assert set(one.document["explain"]) == {"method", "target", "score", "top_patches"}
    assert one.document["explain"]["target"] == "patch:3,4"
    with pytest.raises(VitcliError, match="^method: 'x' is not one of"):
        model.explain(pixels, method="x")
    headless = load_model("vit-ti16", depth=2, class_token=False)
    m = headless.explain(pixels, target="class:5")  # mean pooling, no class token: the patch rows' mean
    assert m.maps.shape == (14, 14) and np.isfinite(m.maps).all()


def test_legrad_maps_are_scaled_and_all_keeps_four(pixels) -> None:
    """legrad: (rows, cols) in [0, 1]; `all` still stacks the four other methods; options legrad ignores are refused."""
    model = load_model("vit-ti16", depth=2)
    one = model.explain(pixels, method="legrad", target="class:3", start_layer=1)
    assert one.maps.shape == (14, 14) and one.maps.min() == 0 and one.maps.max() == 1
    assert one.document["explain"]["method"] == "legrad" and one.document["explain"]["class"] == 3
    every = model.explain(pixels, method="all", target="class:3")
    assert every.maps.shape == (4, 14, 14) and every.document["methods"] == ["grad-rollout", "attn-grad", "gradcam", "rollout"]
    with pytest.raises(VitcliError, match="discard_ratio"):
        model.explain(pixels, method="legrad", discard_ratio=0.5)

"""`vitcli figures` and `posenc --similarity --weights` end to end, against numpy computations on
features from the peer library (timm, transformers) run with the same random weights."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.checkpoints.parity import scramble
from tests.conftest import assert_clean_error, run_cli

timm = pytest.importorskip("timm")
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def timm_model(tmp_path, name: str, seed: int, **kwargs) -> tuple[torch.nn.Module, str]:
    """A scrambled random timm model and the safetensors file holding its weights."""
    model = scramble(timm.create_model(name, pretrained=False, **kwargs), seed)
    path = tmp_path / f"{name}_{seed}.safetensors"
    save_file(model.state_dict(), path)
    return model, str(path)


def images_for(model_pixels: list[np.ndarray]) -> torch.Tensor:
    """(B, 3, H, W) float32 normalised with ImageNet's constants, as `--normalize imagenet`."""
    x = (np.stack(model_pixels).astype(np.float64) / 255 - MEAN) / STD
    return torch.from_numpy(x.transpose(0, 3, 1, 2)).float()


def assert_picture(path, width: tuple[int, int], height: tuple[int, int]) -> np.ndarray:
    """A PNG of a plausible size that is not blank: pixel variance and many colours."""
    img = np.asarray(Image.open(path).convert("RGB"))
    h, w = img.shape[:2]
    assert width[0] <= w <= width[1] and height[0] <= h <= height[1], (w, h)
    assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    return img


def up_to_sign(got: np.ndarray, want: np.ndarray, tol: float) -> bool:
    """Each [0, 1]-scaled channel equals the expected one or its mirror 1 − x (PCA signs are free)."""
    return all(min(np.abs(got[..., c] - want[..., c]).max(), np.abs(got[..., c] - 1 + want[..., c]).max()) < tol
               for c in range(got.shape[-1]))


def numpy_pca(x: np.ndarray, k: int) -> np.ndarray:
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:k].T


def minmax(x: np.ndarray) -> np.ndarray:
    return (x - x.min(0)) / (x.max(0) - x.min(0))


def test_filters_are_numpy_pca_of_the_checkpoints_patch_projection(tmp_path):
    model, weights = timm_model(tmp_path, "vit_tiny_patch16_224", 1, img_size=64, depth=1)
    r = run_cli("figures", "filters", "--weights", weights, "-o", tmp_path / "f.npy", "--png", tmp_path / "f.png", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    w = model.patch_embed.proj.weight.detach().double().numpy().reshape(192, -1)  # (D, C·P·P)
    centred = w - w.mean(0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    got = np.load(tmp_path / "f.npy")
    assert got.shape == (28, 3, 16, 16) and doc["weight_shape"] == [192, 3, 16, 16]
    for g, v in zip(got.reshape(28, -1), vt[:28]):
        assert min(np.abs(g - v).max(), np.abs(g + v).max()) < 1e-6
    assert np.allclose(doc["explained_variance_ratio"], (s**2 / (s**2).sum())[:28], atol=1e-9)
    assert_picture(tmp_path / "f.png", (600, 1000), (400, 800))


@pytest.mark.slow  # about 20 s; the other figures stay quick
def test_posenc_similarity_from_weights_drops_prefix_rows(tmp_path):
    """timm DINOv2-reg (no class row, 4 registers, non-square grid) and HF DINOv2 (class row)."""
    from transformers import Dinov2Config, Dinov2Model

    dino, dino_w = timm_model(tmp_path, "vit_small_patch14_reg4_dinov2", 2, img_size=(42, 70), depth=1)
    hf = Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                                  patch_size=14, image_size=56))
    hf.save_pretrained(tmp_path / "hf", safe_serialization=True)
    cases = [(dino_w, ["--native-size", "42x70"], [3, 5], 0, dino.pos_embed),
             (tmp_path / "hf" / "model.safetensors", [], [4, 4], 1, hf.embeddings.position_embeddings)]
    for i, (weights, extra, grid, prefix_rows, table) in enumerate(cases):
        png, out = tmp_path / f"sim{i}.png", tmp_path / f"t{i}.npy"
        r = run_cli("posenc", "--weights", weights, *extra, "--similarity", png, "-o", out, "--json")
        assert r.returncode == 0, r.stderr
        doc = json.loads(r.stdout)
        assert (doc["grid"], doc["num_prefix_rows"]) == (grid, prefix_rows), weights
        assert np.allclose(np.load(out), table.detach().numpy()[0])
        assert_picture(png, (300, 1200), (200, 900))
    assert_clean_error(run_cli("posenc", "--weights", dino_w, "--similarity", tmp_path / "x.png"), "15 rows", "--native-size HxW")


@pytest.fixture
def tiny_vit(tmp_path):
    """A scrambled timm ViT-Ti (2 blocks, 64 px, 4x4 grid) and two 64x64 images."""
    model, weights = timm_model(tmp_path, "vit_tiny_patch16_224", 4, img_size=64, depth=2)
    rng = np.random.default_rng(4)
    paths, pixels = [], []
    for i in range(2):
        yy, xx = np.mgrid[:64, :64]
        p = ((np.stack([xx * 3, yy * 4, (xx + yy) * 2], -1) + rng.integers(0, 60, (64, 64, 3))) % 256).astype(np.uint8)
        Image.fromarray(p).save(tmp_path / f"im{i}.png")
        paths.append(str(tmp_path / f"im{i}.png"))
        pixels.append(p)
    return model.eval(), weights, paths, pixels


COMMON = ("--fit", "strict", "--normalize", "imagenet")


def test_pca_is_numpy_pca_of_timm_last_layer_patch_tokens(tmp_path, tiny_vit):
    model, weights, paths, pixels = tiny_vit
    with torch.no_grad():
        feats = model.forward_features(images_for(pixels))[:, 1:].double().numpy()  # (2, 16, D) after the norm
    flat = feats.reshape(32, -1)
    r = run_cli("figures", "pca", *paths, "--weights", weights, *COMMON, "-o", tmp_path / "p.npy", "--png", tmp_path / "p.png", "-q")
    assert r.returncode == 0, r.stderr
    got = np.load(tmp_path / "p.npy")
    assert got.shape == (2, 4, 4, 3)
    assert up_to_sign(got.reshape(32, 3), minmax(numpy_pca(flat, 3)), 1e-3)
    img = assert_picture(tmp_path / "p.png", (300, 900), (400, 1000))
    assert img.shape[0] > img.shape[1]  # images above their maps, two columns

    r = run_cli("figures", "pca", *paths, "--weights", weights, *COMMON, "--foreground-threshold", "0.4", "-o", tmp_path / "q.npy", "--json")
    assert r.returncode == 0, r.stderr
    first = numpy_pca(flat, 1)[:, 0].reshape(2, 4, 4)
    border = np.ones((4, 4), bool)
    border[1:3, 1:3] = False
    if first[:, border].mean() > first.mean():  # the documented rule: border patches are background
        first = -first
    fg = minmax(first.reshape(-1)) > 0.4
    got = np.load(tmp_path / "q.npy").reshape(32, 3)
    assert json.loads(r.stdout)["foreground_patches"] == [int(fg[:16].sum()), int(fg[16:].sum())]
    assert np.all(got[~fg] == 0)
    assert up_to_sign(got[fg], minmax(numpy_pca(flat[fg], 3)), 1e-3)


@pytest.mark.slow  # about 15 s; filters, pca and the seeded tables stay quick
def test_similar_is_numpy_cosine_of_timm_intermediate_tokens(tmp_path, tiny_vit):
    model, weights, paths, pixels = tiny_vit
    with torch.no_grad():
        inter = model.forward_intermediates(images_for(pixels), indices=[0], norm=True, output_fmt="NLC",
                                            intermediates_only=True)[0].double().numpy()  # (2, 16, D), block 0 + norm
    cos = lambda q, cells: cells @ q / (np.linalg.norm(cells, axis=1) * np.linalg.norm(q))  # noqa: E731
    # --pixel 40,20 is x = 40, y = 20: patch (row 1, col 2) = index 6.
    r = run_cli("figures", "similar", paths[0], "--weights", weights, *COMMON, "--layer", "0", "--pixel", "40,20",
                "-o", tmp_path / "s.npy", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["query"] == {"row": 1, "col": 2, "index": 6} and doc["layer"] == 0
    got = np.load(tmp_path / "s.npy")
    assert got.shape == (4, 4) and np.abs(got.ravel() - cos(inter[0, 6], inter[0])).max() < 1e-4
    r = run_cli("figures", "similar", paths[0], "--to", paths[1], "--weights", weights, *COMMON, "--layer", "-2",
                "--patch", "3,0", "-o", tmp_path / "t.npy", "--png", tmp_path / "t.png", "-q")
    assert r.returncode == 0, r.stderr
    assert np.abs(np.load(tmp_path / "t.npy").ravel() - cos(inter[0, 12], inter[1])).max() < 1e-4
    img = assert_picture(tmp_path / "t.png", (500, 1200), (250, 600))
    assert img.shape[1] > img.shape[0]  # query image beside the overlay


def _timm_block_io(model, x: torch.Tensor) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each block's output (T, D) and the class token's attention row (T,) in it, mean over heads,
    from timm's own modules (hooks), with the softmax written out here."""
    outputs, rows = [], []

    def on_attn(module, args, _):
        x = args[0][0]  # (T, D) the normed block input
        t, d = x.shape
        h = module.num_heads
        q, k, _v = module.qkv(x).reshape(t, 3, h, d // h).permute(1, 2, 0, 3)  # each (H, T, d)
        w = torch.softmax(q[:, :1] @ k.transpose(-1, -2) * (d // h) ** -0.5, dim=-1)  # (H, 1, T)
        rows.append(w[:, 0].mean(0).double().numpy())

    hooks = [b.attn.register_forward_hook(on_attn) for b in model.blocks]
    hooks += [b.register_forward_hook(lambda m, a, out: outputs.append(out[0].double().numpy())) for b in model.blocks]
    with torch.no_grad():
        model.forward_features(x)
    for hk in hooks:
        hk.remove()
    return outputs, rows


@pytest.mark.slow  # about 10 s
def test_norms_with_registers_against_timm_blocks(tmp_path):
    model, weights = timm_model(tmp_path, "vit_small_patch14_reg4_dinov2", 5, img_size=56, depth=3)
    pixels = np.random.default_rng(5).integers(0, 256, (56, 56, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "im.png")
    outputs, shares = _timm_block_io(model, images_for([pixels]))
    norms = np.stack([np.linalg.norm(o, axis=1) for o in outputs])  # (3, 5 + 16)
    threshold = float(np.quantile(norms[:, 5:], 0.9))
    r = run_cli("figures", "norms", tmp_path / "im.png", "--weights", weights, *COMMON, "--norm-threshold", str(threshold),
                "-o", tmp_path / "n.npy", "--png", tmp_path / "n.png", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert np.allclose(np.load(tmp_path / "n.npy"), norms, rtol=1e-4)
    want = {(l, p // 4, p % 4) for l in range(3) for p in range(16) if norms[l, 5 + p] > threshold}
    assert {(o["layer"], o["row"], o["col"]) for o in doc["outliers"]} == want and want
    for o in doc["outliers"]:
        assert abs(o["class_attention"] - shares[o["layer"]][o["token"]]) < 1e-4
    assert [(g["layer"], g["token"]) for g in doc["registers"]] == [(l, t) for l in range(3) for t in range(1, 5)]
    for g in doc["registers"]:
        assert abs(g["norm"] - norms[g["layer"], g["token"]]) < 1e-3 * norms[g["layer"], g["token"]]
        assert abs(g["class_attention"] - shares[g["layer"]][g["token"]]) < 1e-4
    assert doc["thresholds"] == [threshold] * 3
    assert_picture(tmp_path / "n.png", (800, 1400), (300, 600))


def test_seeded_model_tables_and_errors(tmp_path):
    small = ("--model", "vit-ti16", "--dim", "64", "--depth", "2", "--heads", "4", "--size", "64")
    r = run_cli("figures", "norms", "sample_images/chelsea.jpg", *small)
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    assert "high-norm patch tokens" in text and "vitcli figures norms" in text and "register" not in text
    assert_clean_error(run_cli("figures", "similar", "sample_images/chelsea.jpg", *small, "--patch", "4,0"), "--patch", "outside the 4x4 grid")
    assert_clean_error(run_cli("figures", "pca", "sample_images/chelsea.jpg", *small, "--foreground-threshold", "1.5"), "--foreground-threshold")
    r = run_cli("figures", "filters", "--help")
    text = r.stdout.decode()
    assert r.returncode == 0 and "Examples:" in text
    assert text.strip().splitlines()[-1].strip() == "vitcli figures filters --weights vit.safetensors --png filters.png -o filters.npy"

"""Models without a class token in every command, prefix-token names in --query, and classifier labels.

Checkpoints as their hubs lay them out, scrambled and cut to two blocks: timm's
vit_base_patch16_siglip_224 (no class token, attention-pool probe, no head) and
vit_small_patch14_reg4_dinov2 (class token + 4 registers) written by `save_for_hf` with the model
arguments dropped from config.json (as the hub holds them); a timm ViT with `label_names` and
`label_descriptions`; a transformers ViTForImageClassification with `id2label`. The defaults vitcli
picks without a class token (the probe's row, the patch rows' mean) are checked against the probe's
weights computed here from timm's AttentionPoolLatent q / kv weights and a rollout done by hand on
timm's own attention.
"""

import json

import numpy as np
import pytest
import timm
import torch

from tests.checkpoints.parity import TimmAttention, scramble
from tests.conftest import SAMPLES, assert_clean_error, run_cli
from vitcli.api import load_model
from vitcli.api.images import load_images

IMG = SAMPLES / "chelsea.jpg"
NAMES = ["n01440764", "n01443537", "n01484850", "n02123045", "n02085620"]
WORDS = {"n01440764": "tench, Tinca tinca", "n01443537": "goldfish, Carassius auratus",
         "n01484850": "great white shark", "n02123045": "tabby, tabby cat", "n02085620": "Chihuahua"}


def save_hub_style(model: torch.nn.Module, folder, **config) -> None:
    """timm's save_for_hf, then config.json without model_args (as hub repositories hold it)."""
    from timm.models._hub import save_for_hf

    save_for_hf(model, str(folder), model_config=config or None, safe_serialization=True)
    path = folder / "config.json"
    data = json.loads(path.read_text())
    data.pop("model_args", None)
    path.write_text(json.dumps(data))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    d = tmp_path_factory.mktemp("headless")
    siglip = scramble(timm.create_model("vit_base_patch16_siglip_224", depth=2))
    save_hub_style(siglip, d / "siglip")
    return d, siglip


def pixels224() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (224, 224, 3), dtype=np.uint8)


def hand_rollout(attentions: list[torch.Tensor]) -> torch.Tensor:
    """Abnar & Zuidema by hand: R = Â_L ⋯ Â_1, Â = rownorm(0.5·mean_h A + 0.5·I); (B, H, T, T) each → (B, T, T)."""
    r = None
    for a in attentions:
        a = a.double().mean(1)  # (B, T, T)
        hat = 0.5 * a + 0.5 * torch.eye(a.shape[-1], dtype=a.dtype)
        hat = hat / hat.sum(-1, keepdim=True)
        r = hat if r is None else hat @ r
    return r


@torch.no_grad()
def timm_probe(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The probe's weights (B, H, 1, T) from timm's AttentionPoolLatent q / kv weights on timm's final tokens,
    and every block's attention (timm's own softmax output)."""
    hooks = TimmAttention(model)
    tokens = model.forward_features(x)  # (B, T, D) after the final norm
    pool = model.attn_pool
    b, t, d = tokens.shape
    h = pool.num_heads
    q = pool.q(pool.latent).reshape(1, 1, h, d // h).transpose(1, 2)  # (1, H, 1, d)
    k = pool.kv(tokens).reshape(b, t, 2, h, d // h).permute(2, 0, 3, 1, 4)[0]  # (B, H, T, d)
    probe = torch.softmax((q @ k.transpose(-2, -1)) * (d // h) ** -0.5, dim=-1)  # (B, H, 1, T)
    return probe, hooks.weights


def test_probe_is_the_default_query_and_its_rollout_row(hub) -> None:
    d, siglip = hub
    model = load_model(str(d / "siglip"))
    images = load_images(pixels224(), size="224x224")
    res = model.attend(images, normalize="none", rollout=True)
    x = model.input_tensor(pixels224(), "none")
    probe, attentions = timm_probe(siglip.eval(), x)
    assert res.document["queries"] == "probe" and res.weights.shape == (1, 12, 1, 196)
    assert np.abs(res.weights[0, :, 0] - probe[0, :, 0].numpy()).max() < 1e-4
    expected = (probe[0, :, 0].double().mean(0) @ hand_rollout(attentions)[0]).numpy()  # p̄ · R
    print(f"\nprobe row {np.abs(res.weights[0, :, 0] - probe[0, :, 0].numpy()).max():.2e}, "
          f"probe rollout row {np.abs(res.rollout_row - expected).max():.2e}")
    assert np.abs(res.rollout_row - expected).max() < 1e-6 and abs(res.rollout_row.sum() - 1) < 1e-9
    j = int(expected.argmax())
    assert res.document["rollout"]["max_patch"] == [j // 14, j % 14]
    explained = model.explain(images, method="rollout", normalize="none")  # the same row, no head: score n/a
    assert np.abs(explained.maps.ravel() - expected).max() < 1e-6 and explained.document["explain"]["score"] is None


def test_mean_pooled_default_is_the_patch_mean(tmp_path) -> None:
    """A preset without a class token pools the patch mean: attend's default row is the mean of the patch
    rows, of each layer's weights and of the rollout (by hand from attend's full matrices)."""
    model = load_model("vit-ti16", depth=2, class_token=False)
    images = load_images(pixels224(), size="64x96")
    full = model.attend(images, layer="all", query="all")  # (L, H, T, T)
    res = model.attend(images, layer="all", rollout=True)
    assert res.document["queries"] == "mean" and res.document["query_names"] == "mean of the patch rows"
    np.testing.assert_allclose(res.weights[:, :, 0], full.weights.mean(-2), atol=1e-6)
    expected = hand_rollout([torch.from_numpy(full.weights[i])[None] for i in range(2)])[0].mean(0).numpy()
    np.testing.assert_allclose(res.rollout_row, expected, atol=1e-9)
    explained = model.explain(images, method="rollout")
    np.testing.assert_allclose(explained.maps.ravel(), expected, atol=1e-6)


@pytest.mark.slow  # every command on a ViT-B SigLIP, about 20 CLI runs (50 s); the probe rows stay quick in-process
def test_siglip_commands_exit_0_with_the_defaults(hub, tmp_path) -> None:
    d, _ = hub
    w = ("--weights", d / "siglip")
    page = tmp_path / "page.html"
    r = run_cli("view", IMG, *w, "-o", page, "--layers", "-1", "-q")
    assert r.returncode == 0, r.stderr.decode()
    assert page.read_text().startswith("<!DOCTYPE html>") and page.stat().st_size > 10_000
    r = run_cli("view", IMG, *w, "-o", page, "--layers", "-1", "--explain", "--target", "patch:3,5", "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert "patch:3,5" in page.read_text()
    assert_clean_error(run_cli("view", IMG, *w, "-o", tmp_path / "x.html", "--explain"), "--target", "image:OTHER",
                       "patch:R,C")  # no head: the error names options view has
    r = run_cli("attend", IMG, *w, "--rollout", tmp_path / "r.npy", "--json")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    assert doc["queries"] == "probe" and np.load(tmp_path / "r.npy").shape == (196, 196)
    assert (tmp_path / "r.png").stat().st_size > 0
    for target in ("image:" + str(SAMPLES / "coffee.jpg"), "patch:3,5"):
        r = run_cli("explain", IMG, *w, "--method", "all", "--target", target, "--json")
        assert r.returncode == 0, r.stderr.decode()
        assert json.loads(r.stdout)["shape"] == [4, 14, 14]
    r = run_cli("explain", IMG, *w, "--method", "rollout", "-q")
    assert r.returncode == 0, r.stderr.decode()
    for sub in (["filters"], ["pca", IMG], ["similar", IMG], ["norms", IMG, "--json"]):
        r = run_cli("figures", *sub, *w, "-q" if sub[0] != "norms" else "--json")
        assert r.returncode == 0, (sub, r.stderr.decode())
    assert json.loads(r.stdout)["attention_row"] == "probe"


@pytest.mark.slow  # every method × target through the CLI (45 s); the mean-pooled default stays quick
def test_preset_without_class_token_every_method_and_target(tmp_path) -> None:
    m = ("--model", "vit-ti16", "--depth", "2", "--no-cls", "--size", "64x96")
    for target in ("top", "class:5", "5", "image:" + str(SAMPLES / "coffee.jpg"), "patch:1,2"):
        r = run_cli("explain", IMG, *m, "--method", "all", "--target", target, "--json")
        assert r.returncode == 0, (target, r.stderr.decode())
        ex = json.loads(r.stdout)["explain"]
        assert ex["target"] == ("class:5" if target == "5" else target)
    r = run_cli("view", IMG, *m, "-o", tmp_path / "p.html", "--explain", "--target", "patch:1,2", "-q")
    assert r.returncode == 0, r.stderr.decode()
    r = run_cli("attend", IMG, *m, "--rollout", tmp_path / "r.npy", "--overlay", tmp_path / "o.png", "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["query_names"] == "mean of the patch rows"
    assert_clean_error(run_cli("attend", IMG, *m, "--query", "cls"), "--query", "no class token", "mean")
    assert_clean_error(run_cli("attend", IMG, *m, "--query", "probe"), "--query", "without one")
    assert_clean_error(run_cli("attend", IMG, *m, "--cosine", tmp_path / "c.npy"), "--cosine", "no token")


@pytest.mark.slow  # eight CLI runs on a DINOv2 (about 20 s)
def test_query_takes_the_register_names(tmp_path) -> None:
    d = tmp_path / "reg4"
    save_hub_style(scramble(timm.create_model("vit_small_patch14_reg4_dinov2", depth=2)), d)
    base = ("attend", IMG, "--weights", d, "--size", "70x98", "--layer", "all")
    arrays = {}
    for query in ("reg0", "1", "reg3", "4", "cls", "0"):
        r = run_cli(*base, "--query", query, "-o", tmp_path / f"{query}.npy", "--json")
        assert r.returncode == 0, r.stderr.decode()
        arrays[query] = np.load(tmp_path / f"{query}.npy")
        if query.startswith("reg"):
            assert json.loads(r.stdout)["query_names"] == query
    for name, index in (("reg0", "1"), ("reg3", "4"), ("cls", "0")):
        np.testing.assert_array_equal(arrays[name], arrays[index])
    assert not np.array_equal(arrays["reg0"], arrays["reg3"])
    model = load_model(str(d))
    assert model.attend(load_images(str(IMG), size="70x98"), query="reg2").document["queries"] == [3]
    assert_clean_error(run_cli(*base, "--query", "reg4"), "--query", "'reg4' is not a", "reg0", "reg3")


@pytest.mark.slow  # six CLI runs (about 25 s); transformers' id2label stays quick
def test_timm_label_names_in_explain(tmp_path) -> None:
    d = tmp_path / "tiny"
    timm_model = scramble(timm.create_model("vit_tiny_patch16_224", depth=2, num_classes=5))
    save_hub_style(timm_model, d, label_names=NAMES, label_descriptions=WORDS)
    r = run_cli("explain", IMG, "--weights", d, "--json")
    assert r.returncode == 0, r.stderr.decode()
    ex = json.loads(r.stdout)["explain"]
    assert ex["label"] == WORDS[NAMES[ex["class"]]]
    r = run_cli("explain", IMG, "--weights", d, "--target", "class:tabby cat")
    assert r.returncode == 0, r.stderr.decode()
    assert "3 (tabby, tabby cat)" in r.stdout.decode()  # a word of the description names class 3
    r = run_cli("explain", IMG, "--weights", d, "--target", "class:n01443537", "--json")
    assert json.loads(r.stdout)["explain"]["target"] == "class:1"
    assert_clean_error(run_cli("explain", IMG, "--weights", d, "--target", "class:zebra"), "--target",
                       "no class is labelled 'zebra'")
    info = json.loads(run_cli("info", "--weights", d, "--json").stdout)["class_labels"]
    assert (info["count"], info["from"], info["first"][0]) == (5, "config.json label_names", WORDS[NAMES[0]])


@pytest.mark.slow  # about 15 s of CLI runs
def test_transformers_id2label_in_explain(tmp_path) -> None:
    from transformers import ViTConfig, ViTForImageClassification

    labels = {0: "tabby cat", 1: "tiger cat", 2: "lynx"}
    config = ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                       image_size=32, patch_size=16, id2label=labels, label2id={v: k for k, v in labels.items()})
    model = scramble(ViTForImageClassification(config))
    model.save_pretrained(tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["id2label"]["2"] == "lynx"
    r = run_cli("explain", IMG, "--weights", tmp_path / "hf", "--target", "class:lynx", "--json")
    assert r.returncode == 0, r.stderr.decode()
    ex = json.loads(r.stdout)["explain"]
    assert (ex["target"], ex["class"], ex["label"]) == ("class:2", 2, "lynx")
    r = run_cli("explain", IMG, "--weights", tmp_path / "hf")
    assert r.returncode == 0, r.stderr.decode()
    top = load_model(str(tmp_path / "hf")).explain(str(IMG)).document["explain"]
    assert f"{top['class']} ({labels[top['class']]})" in r.stdout.decode()

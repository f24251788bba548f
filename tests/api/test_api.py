"""The public Python API: the numbers the CLI writes, one path for one or many images, errors in Python spelling."""

import io
import json

import numpy as np
import pytest
from PIL import Image

import vitcli
from tests.conftest import SAMPLES, run_cli, sampled
from vitcli.errors import VitcliError

CAT, COFFEE, ROCKET = (SAMPLES / n for n in ("chelsea.jpg", "coffee.jpg", "rocket.jpg"))
SMALL = dict(dim=64, depth=2, heads=2)  # a tiny ViT-Ti/16 with 2 blocks
CLI_SMALL = ("--model", "vit-ti16", "--dim", "64", "--depth", "2", "--heads", "2")


@pytest.fixture(scope="module")
def model():
    return vitcli.load_model("vit-ti16", seed=3, **SMALL)


def npy(stdout: bytes) -> np.ndarray:
    return np.load(io.BytesIO(stdout))


@sampled("stage", ["patches", "output", "tokens", "input", "pooled"], keep=2)  # a CLI run each
def test_embed_equals_the_cli_bit_for_bit(model, stage):
    result = model.embed(str(CAT), stage=stage)
    r = run_cli("embed", CAT, *CLI_SMALL, "--seed", "3", "--stage", stage, "-o", "-", "-q")
    assert r.returncode == 0, r.stderr
    assert np.array_equal(result.array, npy(r.stdout))


def test_embed_json_is_the_commands_document(model):
    doc = model.embed(str(CAT), stage="pooled").to_json()
    r = run_cli("embed", CAT, *CLI_SMALL, "--seed", "3", "--stage", "pooled", "--json")
    printed = json.loads(r.stdout)
    printed.pop("version")
    assert printed == json.loads(json.dumps(doc))


def test_attend_equals_the_cli(model, tmp_path):
    result = model.attend(str(CAT), layer="all", head="mean", distance=True, rollout=True)
    out, roll, dist = tmp_path / "a.npy", tmp_path / "r.npy", tmp_path / "d.npy"
    r = run_cli("attend", CAT, *CLI_SMALL, "--seed", "3", "--layer", "all", "--head", "mean", "-o", out,
                "--rollout", roll, "--distance", dist, "-q")
    assert r.returncode == 0, r.stderr
    assert result.weights.shape == (2, 1, 1, 197)
    assert np.array_equal(result.weights, np.load(out))
    assert np.array_equal(result.rollout, np.load(roll))
    assert np.array_equal(result.distance, np.load(dist))
    assert np.allclose(result.weights.sum(-1), 1.0, atol=1e-5)  # rows of a softmax


def test_patchify_and_posenc_equal_the_cli(tmp_path):
    patches = vitcli.patchify(vitcli.load_images(str(CAT), size=64, patch_size=8), order="hwc")
    r = run_cli("patchify", CAT, "--size", "64", "-p", "8", "--order", "hwc", "-o", "-", "-q")
    assert patches.array.shape == (64, 192) and np.array_equal(patches.array, npy(r.stdout))
    table = vitcli.posenc("vit-ti16", kind="sincos1d", grid=(2, 3))
    r = run_cli("posenc", "--model", "vit-ti16", "--kind", "sincos1d", "--grid", "2x3", "-o", "-", "-q")
    assert np.array_equal(table.array, npy(r.stdout))
    d = 192  # sin-cos 1-D by hand: row 2 (patch 1), channel 2i = 2 → sin(2 / 10000^(2/192))
    assert table.array[2, 2] == pytest.approx(np.sin(2 / 10000 ** (2 / d)), abs=1e-12)


@pytest.mark.parametrize("stage", ["patches", "tokens", "input", "output", "pooled"])
def test_batch_rows_equal_single_runs_bit_for_bit(model, stage):
    paths = [str(p) for p in (CAT, COFFEE, ROCKET)]
    many = model.embed(paths, stage=stage, batch=vitcli.BatchSpec(batch_size=3))
    assert many.array.shape[0] == 3
    for i, path in enumerate(sorted(paths)):
        assert np.array_equal(many.array[i], model.embed(path, stage=stage).array), (stage, path)


def test_in_memory_images_equal_files(model, tmp_path):
    pixels = np.asarray(Image.open(CAT).convert("RGB"))
    from_array = model.embed(pixels, stage="pooled").array
    from_pil = model.embed(Image.open(CAT), stage="pooled").array
    from_file = model.embed(str(CAT), stage="pooled").array
    assert np.array_equal(from_array, from_file) and np.array_equal(from_pil, from_file)
    both = model.embed([pixels, pixels[:, ::-1].copy()], stage="pooled")
    assert both.array.shape == (2, 64) and np.array_equal(both.array[0], from_file)
    assert not np.array_equal(both.array[1], from_file)  # the mirrored photo is another image


def test_streamed_output_and_index(model, tmp_path):
    out = tmp_path / "emb.npy"
    result = model.embed(vitcli.load_images([str(CAT), str(COFFEE)]), stage="pooled", output=str(out))
    assert np.load(out).shape == (2, 64)
    lines = [json.loads(l) for l in (tmp_path / "emb.index.jsonl").read_text().splitlines()]
    assert [l["row"] for l in lines] == [0, 1] and lines[0]["path"] == str(CAT)
    assert result.to_json()["outputs"] == {"array": str(out), "index": str(tmp_path / "emb.index.jsonl")}


def test_figures_from_the_api(model, tmp_path):
    sim = model.similar(str(CAT), patch=(3, 4), layer=0)
    assert sim.array.shape == (14, 14) and sim.array[3, 4] == pytest.approx(1.0, abs=1e-6)  # a patch is itself
    norms = model.norms(str(CAT))
    assert norms.array.shape == (2, 197)
    filters = model.filters(count=5)
    assert filters.array.shape == (5, 3, 16, 16)
    ratios = filters.to_json()["explained_variance_ratio"]
    assert ratios == sorted(ratios, reverse=True) and sum(ratios) <= 1 + 1e-9


def test_info_counts_parameters_by_formula():
    doc = vitcli.load_model("vit-b16").info()
    assert doc["model"]["params"] == 86_567_656  # timm's vit_base_patch16_224
    assert doc["grid"] == [14, 14]


def test_errors_speak_python():
    model = vitcli.load_model("vit-ti16", device="cuda:7", **SMALL)  # checked when the model is first built
    assert model.info()["model"]["params"] > 0  # describing it needs no device
    with pytest.raises(VitcliError) as e:
        model.embed(str(CAT))
    assert str(e.value).startswith("device: ")
    with pytest.raises(VitcliError, match="^device: 'gpu' is not a device"):
        vitcli.load_model("vit-b16", device="gpu")
    with pytest.raises(VitcliError, match="stage"):
        vitcli.load_model("vit-ti16", **SMALL).embed(str(CAT), stage="nope")
    err = VitcliError("w.safetensors", "cannot tell the heads: pass {needs}", needs="heads")
    assert str(err).endswith("pass heads=N") and err.render(cli=True).endswith("pass --heads N")


def test_contradicting_sizes_with_weights_are_refused(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    peer = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0, depth=1)
    path = tmp_path / "vit.safetensors"
    save_file({k: v.contiguous() for k, v in peer.state_dict().items()}, str(path))
    assert vitcli.load_model(str(path), dim=192, depth=1).config.dim == 192  # as the weights are: fine
    with pytest.raises(VitcliError, match="512.*192"):
        vitcli.load_model(str(path), dim=512)
    r = run_cli("embed", CAT, "--weights", path, "--dim", "512")
    assert r.returncode == 1 and b"--dim" in r.stderr


@pytest.mark.slow  # about 15 s
def test_non_square_table_is_read_from_the_images_own_grid(tmp_path, random_rgb):
    """A timm ViT trained at 32×80 (a 2×5 grid, 11 rows with the class token) saved without a config:
    an image whose own grid is 2×5 uses the table as it is, and matches timm; another grid is the
    one-line error naming --native-size."""
    timm = pytest.importorskip("timm")
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    peer = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=(32, 80), depth=2, num_classes=0).eval()
    with torch.no_grad():
        for p in peer.parameters():
            p.add_(0.1 * torch.randn_like(p))  # no bias at zero, no norm at one
    for block in peer.blocks:
        block.attn.fused_attn = False
    weights = tmp_path / "wide.safetensors"
    save_file({k: v.contiguous() for k, v in peer.state_dict().items()}, str(weights))
    path, pixels = random_rgb(32, 80)
    r = run_cli("embed", path, "--weights", weights, "--size", "native", "--fit", "strict", "--normalize", "imagenet",
                "--stage", "output", "-o", tmp_path / "z.npy", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["model"]["native_grid"] == [2, 5] and "image's own grid" in doc["model"]["native_grid_from"]
    x = (torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255 - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) \
        / torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        expected = peer.forward_features(x)[0].numpy()
    assert np.abs(np.load(tmp_path / "z.npy") - expected).max() < 1e-4
    other, _ = random_rgb(48, 48, name="square.png")
    r = run_cli("embed", other, "--weights", weights, "--size", "native")
    assert r.returncode == 1 and b"--native-size HxW" in r.stderr and b"11 rows" in r.stderr
    with pytest.raises(VitcliError, match=r"native_size=\(H, W\)"):
        vitcli.load_model(str(weights)).info()

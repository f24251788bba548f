"""The table and JSON say what was done: table resampling, dtype, formula tables, snapshot names, usage."""

import json

import pytest

from tests.conftest import SAMPLES, run_cli

CAT = SAMPLES / "chelsea.jpg"


def test_resampled_table_and_dtype_are_reported():
    r = run_cli("embed", CAT, "--model", "vit-ti16", "--depth", "1", "--size", "384", "--dtype", "bfloat16", "--json")
    model = json.loads(r.stdout)["model"]
    assert model["position_table"] == "learned 14×14 resampled to 24×24 (bicubic, antialiased, as timm)"
    assert model["dtype"] == "bfloat16"
    r = run_cli("embed", CAT, "--model", "vit-ti16", "--depth", "1", "--size", "384", "--dtype", "bfloat16")
    text = r.stdout.decode()
    assert "resampled to 24×24" in text and "bfloat16" in text


@pytest.mark.slow  # about 10 s
def test_fixed_tables_come_from_the_formula():
    doc = json.loads(run_cli("posenc", "--kind", "sincos1d", "--json").stdout)
    assert doc["source"] == "the formula (sincos1d)"
    doc = json.loads(run_cli("posenc", "--json").stdout)  # learned: the seeded table
    assert doc["source"] == "random weights (seed 0)"


def test_a_cache_snapshot_is_named_after_its_repository(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    snapshot = tmp_path / "hub" / "models--someorg--tiny-vit" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "model.safetensors"))
    doc = json.loads(run_cli("info", "--weights", snapshot, "--json").stdout)
    assert doc["model"]["name"] == "someorg/tiny-vit"


def test_patchify_with_an_image_and_unpatchify_is_a_usage_error(tmp_path):
    r = run_cli("patchify", CAT, "--unpatchify", tmp_path / "p.npy", "-o", tmp_path / "x.png")
    assert r.returncode == 2 and b"ignored" in r.stderr and not (tmp_path / "x.png").exists()


@pytest.mark.slow  # about 11 s
def test_clip_projected_stage_and_a_one_line_text_tower(tmp_path):
    """open_clip ViT-B-32 (2 vision blocks): --stage projected equals open_clip's encode_image; pooled is
    before the projection; info sums the text tower up in one line unless --list-ignored."""
    open_clip = pytest.importorskip("open_clip")
    import io

    import numpy as np
    import torch
    from PIL import Image

    from tests.checkpoints.parity import scramble

    cfg = open_clip.get_model_config("ViT-B-32")
    cfg["vision_cfg"] = {**cfg["vision_cfg"], "layers": 2}
    cfg["text_cfg"] = {**cfg["text_cfg"], "layers": 1}
    model = scramble(open_clip.CLIP(**cfg), 5).eval()
    path = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(model.state_dict(), path)
    pixels = np.random.default_rng(0).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    r = run_cli("embed", tmp_path / "x.png", "--weights", path, "--fit", "strict", "--size", "224",
                "--normalize", "clip", "--stage", "projected", "-o", "-", "-q")
    assert r.returncode == 0, r.stderr
    ours = np.load(io.BytesIO(r.stdout))
    mean, std = torch.tensor(open_clip.OPENAI_DATASET_MEAN), torch.tensor(open_clip.OPENAI_DATASET_STD)
    x = (torch.from_numpy(pixels).permute(2, 0, 1).float()[None] / 255 - mean[:, None, None]) / std[:, None, None]
    with torch.no_grad():
        expected = model.encode_image(x)[0].numpy()
    assert ours.shape == (512,) and np.abs(ours - expected).max() < 1e-4
    table = run_cli("embed", tmp_path / "x.png", "--weights", path, "--stage", "projected").stdout.decode()
    assert "before the projection" in table and "image-text space" in table
    info = run_cli("info", "--weights", path).stdout.decode()
    assert "text tower" in info and "not used" in info and "token_embedding.weight" not in info
    assert "token_embedding.weight" in run_cli("info", "--weights", path, "--list-ignored").stdout.decode()
    r = run_cli("embed", tmp_path / "x.png", "--model", "vit-ti16", "--depth", "1", "--stage", "projected")
    assert r.returncode == 1 and b"no such projection" in r.stderr

"""`--weights` through the real CLI: the family's own preprocessing is the default, the table says
so, the numbers equal the peer library's run from the same image file, and options override it."""

import json

import numpy as np
import open_clip
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config

from tests.checkpoints.parity import scramble
from tests.conftest import SAMPLES, run_cli

PHOTO = SAMPLES / "chelsea.jpg"  # 300×451: short-side resize and crop both matter


@pytest.mark.slow  # about 14 s; open_clip's file through the CLI stays quick
def test_timm_deit_embedding_equals_timm_from_the_file(tmp_path):
    model = scramble(timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, depth=2), seed=4)
    weights = tmp_path / "deit.safetensors"
    save_file(model.state_dict(), weights)
    x = create_transform(**resolve_data_config({}, model=model))(Image.open(PHOTO).convert("RGB"))[None]
    with torch.no_grad():
        features = model.forward_features(x)  # (1, 2 + 196, 192)
    out = tmp_path / "z.npy"
    r = run_cli("embed", PHOTO, "--weights", weights, "--stage", "output", "-o", out, "--json")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    assert doc["input"]["fit"] == "family" and "centre-crop 224×224" in doc["input"]["resize"]
    assert "248" in doc["input"]["resize"]  # timm: 224 / crop_pct 0.9
    assert np.abs(np.load(out) - features[0].numpy()).max() <= 1e-4
    # --size / --fit switch to vitcli's own policy: plain crop at 224 is a different tensor
    r = run_cli("embed", PHOTO, "--weights", weights, "--stage", "output", "--fit", "crop", "-o", out, "--json")
    assert json.loads(r.stdout)["input"]["fit"] == "crop"
    assert np.abs(np.load(out) - features[0].numpy()).max() > 1e-3


@pytest.mark.slow  # about 14 s; open_clip stays quick in the zoo
def test_open_clip_attention_uses_clip_preprocessing(tmp_path):
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    visual = scramble(model.visual, seed=5)
    weights = tmp_path / "clip_visual.safetensors"
    save_file({f"visual.{k}": v for k, v in visual.state_dict().items()}, weights)
    x = preprocess(Image.open(PHOTO).convert("RGB"))[None]
    recorded = []
    block = visual.transformer.resblocks[-1]
    block.attn.register_forward_pre_hook(lambda mod, args, kwargs: recorded.append(args[0] if args else kwargs["query"]),
                                         with_kwargs=True)
    with torch.no_grad():
        visual(x)
        q_in = recorded[0] if visual.transformer.batch_first else recorded[0].transpose(0, 1)
        _, weights_peer = block.attn(q_in, q_in, q_in, need_weights=True, average_attn_weights=False)  # (1, H, T, T)
    out = tmp_path / "a.npy"
    r = run_cli("attend", PHOTO, "--weights", weights, "--query", "cls", "-o", out, "--json")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    assert doc["normalize"] == "clip" and doc["input"]["fit"] == "family"
    assert np.abs(np.load(out)[0, :, 0] - weights_peer[0, :, 0].numpy()).max() <= 1e-4


def test_heads_the_weights_cannot_show_are_asked_for_and_taken_from_the_cli(tmp_path):
    from timm.models.vision_transformer import VisionTransformer

    from tests.conftest import assert_clean_error

    model = scramble(VisionTransformer(img_size=32, patch_size=8, embed_dim=96, depth=2, num_heads=4, num_classes=0), 7)
    weights = tmp_path / "w96.safetensors"
    save_file(model.state_dict(), weights)
    assert_clean_error(run_cli("info", "--weights", weights), "96-wide", "pass --heads N")
    r = run_cli("info", "--weights", weights, "--heads", "4", "--json")
    assert r.returncode == 0, r.stderr.decode()
    assert json.loads(r.stdout)["model"]["heads"] == 4
    assert_clean_error(run_cli("info", "--weights", weights, "--heads", "4", "--dim", "512"),
                       "--dim: 512 contradicts the checkpoint's weights, which are 96 wide")

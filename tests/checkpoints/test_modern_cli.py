"""SigLIP / BEiT checkpoints through the API and CLI: the probe as the class-token map, the relative
bias in posenc, the parts in info, and the one-line errors for unknown families and unbuilt parts."""

import json

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.checkpoints.parity import scramble
from vitcli.api import load_model
from vitcli.errors import VitcliError


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("modern")
    small = dict(embed_dim=64, depth=2, num_heads=4, num_classes=0)
    siglip = scramble(timm.create_model("vit_base_patch16_siglip_224", img_size=(32, 48), **small))
    save_file(siglip.state_dict(), d / "vit_base_patch16_siglip_224.safetensors")
    beit = scramble(timm.create_model("beit_base_patch16_224", img_size=(48, 48), **small))
    save_file(beit.state_dict(), d / "beit_base_patch16_224.safetensors")
    qk = scramble(timm.create_model("vit_base_patch16_224", img_size=32, qk_norm=True, **small))
    save_file(qk.state_dict(), d / "qk.safetensors")
    Image.fromarray((np.random.default_rng(0).random((40, 60, 3)) * 255).astype("uint8")).save(d / "img.png")
    return d, siglip, beit


def test_attend_cls_on_a_probe_model_is_the_probe(files) -> None:
    d, siglip, _ = files
    model = load_model(str(d / "vit_base_patch16_siglip_224.safetensors"), heads=4, native_size=(32, 48))
    from vitcli.api.images import load_images

    img = load_images(str(d / "img.png"), size="32x48")
    res = model.attend(img, masks=True)
    assert res.document["queries"] == "probe" and res.document["query_names"] == "attention-pool probe"
    assert res.weights.shape == (1, 4, 1, 6) and np.allclose(res.weights.sum(-1), 1, atol=1e-5)
    assert res.masks.shape == (4, 2, 3)
    assert res.document["model"]["parts"]["pooling"].startswith("attention-pool")
    patch = model.attend(img, query="1,1")
    assert patch.document["queries"] == [4]


def test_posenc_relative_bias_of_a_layer(files, tmp_path) -> None:
    d, _, beit = files
    from vitcli.api.posenc import posenc

    res = posenc(str(d / "beit_base_patch16_224.safetensors"), heads=4, layer=1, patch="0,2",
                 similarity=str(tmp_path / "bias.png"))
    table = beit.blocks[1].attn.relative_position_bias_table.detach()
    index = beit.blocks[1].attn.relative_position_index
    expected = table[index.reshape(-1)].reshape(10, 10, 4).permute(2, 0, 1)[:, 1:, 1:]  # timm's own lookup
    assert res.array.shape == (4, 9, 9) and np.allclose(res.array, expected.numpy())
    assert res.document["kind"] == "relative-bias" and (tmp_path / "bias.png").stat().st_size > 0


@pytest.mark.slow  # about 18 s of CLI runs
def test_cli_info_lists_parts_and_errors_are_one_line(files) -> None:
    from tests.conftest import assert_clean_error, run_cli

    d, _, _ = files
    ok = run_cli("info", "--weights", str(d / "beit_base_patch16_224.safetensors"), "--heads", "4", "--json")
    assert ok.returncode == 0, ok.stderr
    parts = json.loads(ok.stdout)["model"]["parts"]
    assert parts["position"] == "relative position bias (per layer)" and parts["layer_scale"] == "yes"
    qk = run_cli("info", "--weights", str(d / "qk.safetensors"), "--json")  # qk-norm is a part vitcli builds
    assert qk.returncode == 0, qk.stderr
    assert "qk-norm" in json.loads(qk.stdout)["model"]["parts"]["attention"]
    from safetensors.torch import load_file

    packed = {**load_file(str(d / "qk.safetensors")), "blocks.0.mlp.w12.weight": torch.zeros(2, 2)}
    save_file(packed, d / "w12.safetensors")
    assert_clean_error(run_cli("info", "--weights", str(d / "w12.safetensors")), "part vitcli cannot build",
                       "packed SwiGLU")
    from vitcli.checkpoints.load import load_checkpoint

    loose = load_checkpoint(str(d / "w12.safetensors"), strict=False)
    assert any(n.startswith("ignored a part vitcli cannot build") and "packed SwiGLU" in n for n in loose.notes)


def test_unknown_family_lists_the_families_known(tmp_path) -> None:
    save_file({"foo.weight": torch.zeros(2, 2)}, tmp_path / "odd.safetensors")
    with pytest.raises(VitcliError, match=r"not a ViT checkpoint vitcli knows \(.*hf-siglip.*timm-beit.*\)"):
        load_model(str(tmp_path / "odd.safetensors"))

"""timm checkpoints: the peer's own model with random weights, saved, loaded by vitcli, same numbers."""

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.checkpoints.parity import TimmAttention, check, core_run, images, scramble
from vitcli.errors import VitcliError


def _timm(name: str, seed: int = 0, **kwargs):
    model = scramble(timm.create_model(name, pretrained=False, **kwargs), seed)
    attn = TimmAttention(model)
    return model, attn


@torch.no_grad()
def _timm_outputs(model, attn: TimmAttention, x):
    attn.weights.clear()
    feats = model.forward_features(x)  # (B, T, D) after the final norm
    pooled = model.forward_head(feats, pre_logits=True)
    logits = model.forward_head(feats) if model.num_classes else None
    return feats, pooled, logits, list(attn.weights)


def _compare(label, loaded, out, model, attn, x):
    feats, pooled, logits, weights = _timm_outputs(model, attn, x)
    pairs = {"features": (out.output, feats), "pooled": (out.pooled, pooled)}
    if logits is not None:
        pairs["logits"] = (out.logits, logits)
    assert len(weights) == loaded.config.depth
    return check(label, pairs, out.attentions, weights)


def test_vit_tiny_patch16_224_from_safetensors(tmp_path) -> None:
    model, attn = _timm("vit_tiny_patch16_224")
    save_file(model.state_dict(), tmp_path / "vit_tiny_patch16_224.safetensors")
    x = images(1, 224, 224)
    loaded, out = core_run(tmp_path / "vit_tiny_patch16_224.safetensors", x)
    c = loaded.config
    assert loaded.family == "timm-vit" and loaded.format == "safetensors"
    assert (c.patch_size, c.dim, c.depth, c.heads, c.mlp_dim, c.image_size) == (16, 192, 12, 3, 768, (224, 224))
    assert (c.eps, c.activation, c.num_classes, c.pooling, c.pos_prefix_rows) == (1e-6, "gelu", 1000, "cls", 1)
    assert loaded.ignored_keys == []
    _compare("timm vit_tiny_patch16_224", loaded, out, model, attn, x)


def test_deit_tiny_distilled_from_pth(tmp_path) -> None:
    model, attn = _timm("deit_tiny_distilled_patch16_224", seed=1)
    torch.save({"model": model.state_dict()}, tmp_path / "deit.pth")  # DeiT's own checkpoints nest under 'model'
    x = images(1, 224, 224, seed=1)
    loaded, out = core_run(tmp_path / "deit.pth", x)
    c = loaded.config
    assert loaded.family == "deit" and c.distilled and c.pos_prefix_rows == 2 and c.num_prefix_tokens == 2
    assert any("nested under 'model'" in n for n in loaded.notes)
    _compare("timm deit_tiny_distilled_patch16_224", loaded, out, model, attn, x)


def test_dinov2_with_registers_small(tmp_path) -> None:
    model, attn = _timm("vit_small_patch14_reg4_dinov2", seed=2, img_size=56, depth=3)
    save_file(model.state_dict(), tmp_path / "dinov2_reg.safetensors")
    x = images(1, 56, 56, seed=2)
    loaded, out = core_run(tmp_path / "dinov2_reg.safetensors", x)
    c = loaded.config
    assert loaded.family == "timm-dinov2-reg"
    assert (c.num_registers, c.pos_prefix_rows, c.layer_scale, c.grid, c.patch_size, c.heads) == (4, 0, True, (4, 4), 14, 6)
    assert c.num_classes == 0 and out.logits is None
    _compare("timm vit_small_patch14_reg4_dinov2 (56 px, 3 blocks)", loaded, out, model, attn, x)


def test_clip_style_timm_tower_shrunk(tmp_path) -> None:
    model, attn = _timm("vit_base_patch16_clip_224", seed=3, img_size=64, depth=2, num_classes=512)
    torch.save(model.state_dict(), tmp_path / "clip_tower.pth")
    x = images(1, 64, 64, seed=3)
    loaded, out = core_run(tmp_path / "clip_tower.pth", x)
    c = loaded.config
    assert loaded.family == "timm-clip"
    assert (c.pre_norm, c.eps, c.activation, c.heads, c.num_classes) == (True, 1e-5, "gelu", 12, 512)
    _compare("timm vit_base_patch16_clip_224 (64 px, 2 blocks)", loaded, out, model, attn, x)


def test_quickgelu_from_the_model_name(tmp_path) -> None:
    name = "vit_base_patch16_clip_quickgelu_224"
    model, attn = _timm(name, seed=4, img_size=32, depth=1, num_classes=0)
    save_file(model.state_dict(), tmp_path / f"{name}.safetensors")
    x = images(1, 32, 32, seed=4)
    loaded, out = core_run(tmp_path / f"{name}.safetensors", x)
    assert loaded.config.activation == "quick_gelu"
    _compare("timm vit_base_patch16_clip_quickgelu_224 (32 px, 1 block)", loaded, out, model, attn, x)
    # The same weights under another name: the rule says gelu, and the override says quick_gelu.
    save_file(model.state_dict(), tmp_path / "tower.safetensors")
    assert core_run(tmp_path / "tower.safetensors", x)[0].config.activation == "gelu"
    loaded, out = core_run(tmp_path / "tower.safetensors", x, activation="quick_gelu")
    _compare("timm quickgelu tower with activation override", loaded, out, model, attn, x)
    # Negative control: the comparison notices a wrong activation.
    _, wrong = core_run(tmp_path / "tower.safetensors", x)
    feats, _, _, _ = _timm_outputs(model, attn, x)
    assert (wrong.output - feats).abs().max().item() > 1e-3


def test_non_square_native_size(tmp_path) -> None:
    model, attn = _timm("vit_tiny_patch16_224", seed=5, img_size=(64, 112), depth=2)
    save_file(model.state_dict(), tmp_path / "wide.safetensors")
    # Without a size the table alone does not say its grid: loading works, building asks for it.
    with pytest.raises(VitcliError, match=r"29 rows: not 0 or 1 prefix rows plus a square grid; pass native_size"):
        core_run(tmp_path / "wide.safetensors", images(1, 64, 112))
    x = images(2, 64, 112, seed=5)
    loaded, out = core_run(tmp_path / "wide.safetensors", x, image_size=(64, 112))
    assert loaded.config.grid == (4, 7) and out.grid == (4, 7)
    _compare("timm vit_tiny at 64x112 (non-square, 2 blocks)", loaded, out, model, attn, x)


def test_non_square_size_from_timm_config_json(tmp_path) -> None:
    from timm.models._hub import save_for_hf

    model, attn = _timm("vit_tiny_patch16_224", seed=6, img_size=(96, 48), depth=1)
    save_for_hf(model, tmp_path / "snapshot")  # config.json (pretrained_cfg, input_size) + model.safetensors
    x = images(1, 96, 48, seed=6)
    loaded, out = core_run(tmp_path / "snapshot", x)
    assert loaded.config.image_size == (96, 48)
    assert loaded.preprocess.source.startswith("timm pretrained_cfg")
    _compare("timm vit_tiny at 96x48 via config.json", loaded, out, model, attn, x)


@pytest.mark.parametrize("name, kwargs, size", [
    ("vit_tiny_patch16_224", {"img_size": 64}, (96, 48)),
    ("vit_small_patch14_reg4_dinov2", {"img_size": 56}, (42, 84)),
])
def test_position_table_resampled_like_timm_on_another_grid(tmp_path, name, kwargs, size) -> None:
    """Input grid ≠ native grid: vitcli resamples the table; timm with dynamic_img_size does the same."""
    model, attn = _timm(name, seed=7, depth=2, dynamic_img_size=True, **kwargs)
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    x = images(1, *size, seed=7)
    loaded, out = core_run(tmp_path / "m.safetensors", x)
    assert out.grid != loaded.config.grid
    _compare(f"timm {name} resampled {loaded.config.grid} → {out.grid}", loaded, out, model, attn, x)

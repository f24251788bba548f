"""The encoder: stage shapes on non-square inputs, seeds, prefix tokens, and parity with timm."""

import math

import numpy as np
import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer as TimmViT

from tests.core.test_posenc import _mae_2d
from vitcli.core.config import ViTConfig
from vitcli.core.encoder import make_activation
from vitcli.core.presets import build_model, get_preset

SMALL = ViTConfig(name="small", image_size=(32, 48), patch_size=8, dim=32, depth=3, heads=4, mlp_dim=64,
                  num_classes=10)


def _images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Normalised-looking (B, 3, H, W) pixels."""
    return (torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) - 0.45) / 0.225


@torch.no_grad()
def test_stage_shapes_on_a_non_square_image_with_prefix_tokens() -> None:
    config = SMALL.with_changes(distilled=True, num_registers=2, pos_prefix_rows=2)
    out = build_model(config)(_images(2, 40, 24), keep_blocks=True, attn_layers=[0, -1], attn_queries=[0, -1],
                              keep_qkv=True)
    n, t = 5 * 3, 4 + 5 * 3
    assert out.grid == (5, 3) and out.num_prefix == 4
    assert out.patches.shape == (2, n, 8 * 8 * 3)
    assert out.tokens.shape == (2, n, 32)
    assert out.with_prefix.shape == out.z0.shape == out.output.shape == (2, t, 32)
    assert out.pos_table.shape == (1, 2 + n, 32)
    assert len(out.blocks) == 3 and all(b.shape == (2, t, 32) for b in out.blocks)
    assert out.attn_layers == [0, 2]
    assert [a.shape for a in out.attentions] == [(2, 4, 2, t)] * 2
    assert [tuple(x.shape for x in qkv) for qkv in out.qkv] == [((2, 4, t, 8),) * 3] * 2
    assert out.pooled.shape == (2, 32) and out.logits.shape == (2, 10)


@torch.no_grad()
def test_full_attention_and_defaults() -> None:
    model = build_model(SMALL)
    out = model(_images(1, 16, 56), attn_layers=range(3))
    assert [a.shape for a in out.attentions] == [(1, 4, 15, 15)] * 3 and out.qkv == [] and out.blocks == []
    torch.testing.assert_close(out.attentions[1].sum(-1), torch.ones(1, 4, 15))
    plain = model(_images(1, 16, 56))
    assert plain.attentions == []
    assert (plain.output - out.output).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="layer 3 is out of range"):
        model(_images(1, 16, 16), attn_layers=[3])
    with pytest.raises(ValueError, match="not a multiple of patch size"):
        model(_images(1, 20, 16))


@torch.no_grad()
@pytest.mark.parametrize("impl", ["conv", "linear"])
def test_keep_inputs_false_frees_the_stages_only(impl: str) -> None:
    model, x = build_model(SMALL), _images(1, 24, 40)
    full, lean = model(x, impl=impl), model(x, impl=impl, keep_inputs=False, attn_layers=[-1], attn_queries=[0])
    assert lean.patches is lean.tokens is lean.with_prefix is lean.pos_table is lean.z0 is None
    assert (lean.output - full.output).abs().max().item() <= 1e-5 and lean.attentions[0].shape == (1, 4, 1, 16)


@torch.no_grad()
def test_positions_go_to_cls_and_patches_not_to_registers() -> None:
    config = SMALL.with_changes(num_registers=2, pos_prefix_rows=1)
    out = build_model(config)(_images(1, 32, 48))
    added = out.z0 - out.with_prefix  # (1, 1 + 2 + 24, D)
    table = build_model(config).pos_embed  # the native grid: no resampling
    assert (added[:, 0] - table[:, 0]).abs().max().item() <= 1e-6
    assert torch.equal(out.z0[:, 1:3], out.with_prefix[:, 1:3])  # registers: nothing added
    assert (added[:, 3:] - table[:, 1:]).abs().max().item() <= 1e-6


@torch.no_grad()
def test_learned_table_is_resampled_like_timm_on_other_grids() -> None:
    model = build_model(SMALL)  # native grid 4x6
    out = model(_images(1, 56, 24))  # grid 7x3
    expected = resample_abs_pos_embed(model.pos_embed, new_size=[7, 3], old_size=[4, 6], num_prefix_tokens=1)
    assert (out.pos_table - expected).abs().max().item() <= 1e-6


@torch.no_grad()
def test_sincos_tables_are_recomputed_on_other_grids() -> None:
    model = build_model(SMALL.with_changes(posenc="sincos2d"))
    out = model(_images(1, 24, 40))  # grid 3x5
    added = (out.z0 - out.with_prefix)[0].numpy()
    np.testing.assert_allclose(added[1:], _mae_2d(3, 5, 32), rtol=0, atol=1e-6)
    assert not added[0].any()
    assert "pos_embed" not in model.state_dict()
    none = build_model(SMALL.with_changes(posenc="none"))(_images(1, 24, 40))
    assert none.pos_table is None and torch.equal(none.z0, none.with_prefix)


@torch.no_grad()
def test_same_seed_same_bits_other_seed_other_values() -> None:
    x = _images(2, 32, 48)
    a, b, c = build_model(SMALL, seed=7), build_model(SMALL, seed=7), build_model(SMALL, seed=8)
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.isfinite(p).all() and torch.equal(p, q), name
    ya, yb = a(x, attn_layers=[1]), b(x, attn_layers=[1])
    assert torch.equal(ya.output, yb.output) and torch.equal(ya.attentions[0], yb.attentions[0])
    assert not torch.equal(a.cls_token, c.cls_token)
    assert abs(a.patch_embed.proj.weight.std().item() - 192**-0.5) < 0.01  # N(0, 1/fan_in)


@torch.no_grad()
@pytest.mark.parametrize("order", ["chw", "hwc"])
def test_linear_and_conv_embedding_give_the_same_tokens(order: str) -> None:
    model, x = build_model(SMALL), _images(2, 24, 40)
    conv, linear = model(x), model(x, impl="linear", order=order)
    assert (conv.tokens - linear.tokens).abs().max().item() <= 1e-5
    assert (conv.output - linear.output).abs().max().item() <= 1e-4


def test_activations_match_their_formulas() -> None:
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    erf = 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    tanh = 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    quick = x / (1 + torch.exp(-1.702 * x))
    for name, expected in (("gelu", erf), ("gelu_tanh", tanh), ("quick_gelu", quick)):
        torch.testing.assert_close(make_activation(name)(x), expected, rtol=0, atol=1e-12)


def _parity(timm_model: torch.nn.Module, config: ViTConfig, x: torch.Tensor, rename: dict | None = None) -> None:
    """Load timm's state dict strictly; forward_features and logits agree within 1e-4."""
    timm_model.eval()
    ours = build_model(config, seed=1)
    state = {(rename or {}).get(k, k): v for k, v in timm_model.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    with torch.no_grad():
        out = ours(x)
        assert (out.output - timm_model.forward_features(x)).abs().max().item() <= 1e-4
        assert (out.logits - timm_model(x)).abs().max().item() <= 1e-4
        lean = ours(x, keep_inputs=False, pooled_only=True)  # the last block for the prefix tokens only
        assert (lean.logits - timm_model(x)).abs().max().item() <= 1e-4


@torch.no_grad()
def test_pooled_only_runs_the_last_block_for_the_prefix_tokens_alone() -> None:
    config = SMALL.with_changes(distilled=True, num_registers=2, pos_prefix_rows=2)
    model, x = build_model(config), _images(3, 40, 24)
    full, lean = model(x), model(x, pooled_only=True)
    assert lean.output.shape == (3, 4, 32)  # cls, dist, 2 registers
    assert (lean.output - full.output[:, :4]).abs().max().item() <= 1e-5
    assert (lean.pooled - full.pooled).abs().max().item() <= 1e-5 and lean.logits.shape == (3, 10)
    kept = model(x, pooled_only=True, attn_layers=[-1])  # the last layer's weights need every row
    assert kept.output.shape == (3, 4 + 15, 32) and kept.attentions[0].shape == (3, 4, 19, 19)
    mean = build_model(SMALL.with_changes(pooling="mean", fc_norm=True))
    assert torch.equal(mean(x, pooled_only=True).pooled, mean(x).pooled)  # mean pooling reads every token


def test_parity_with_timm_vit_tiny() -> None:
    _parity(timm.create_model("vit_tiny_patch16_224", pretrained=False), get_preset("vit-ti16"), _images(1, 224, 224))


def test_parity_with_timm_vit_tiny_at_a_non_square_size() -> None:
    peer = timm.create_model("vit_tiny_patch16_224", pretrained=False, dynamic_img_size=True)
    _parity(peer, get_preset("vit-ti16"), _images(1, 160, 272))  # grid 10x17, table resampled from 14x14


def test_parity_with_timm_deit_distilled() -> None:
    peer = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False)
    config = get_preset("vit-ti16").with_changes(distilled=True, pos_prefix_rows=2)
    _parity(peer, config, _images(1, 224, 224))


def test_parity_with_timm_mean_pooling_and_fc_norm() -> None:
    peer = TimmViT(img_size=(32, 48), patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, num_classes=10,
                   global_pool="avg")
    config = SMALL.with_changes(depth=2, pooling="mean", fc_norm=True, final_norm=False)
    _parity(peer, config, _images(2, 32, 48))


def test_parity_with_timm_registers_without_prefix_positions() -> None:
    peer = TimmViT(img_size=(32, 48), patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0, num_classes=10,
                   reg_tokens=2, no_embed_class=True, init_values=0.1, act_layer="gelu_tanh")
    config = SMALL.with_changes(depth=2, num_registers=2, pos_prefix_rows=0, layer_scale=True,
                                activation="gelu_tanh")
    _parity(peer, config, _images(2, 32, 48), rename={"reg_token": "reg_tokens"})

"""The encoder: stage shapes on non-square inputs, seeds, prefix tokens, the capture spec, pooled
bits independent of the batch, and parity with timm on scrambled weights."""

import math

import numpy as np
import pytest
import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import VisionTransformer as TimmViT

from tests.checkpoints.parity import scramble
from tests.core.test_posenc import _mae_2d
from vitcli.core.capture import Capture
from vitcli.core.config import ViTConfig
from vitcli.core.mlp import make_activation
from vitcli.core.presets import build_model, get_preset

SMALL = ViTConfig(name="small", image_size=(32, 48), patch_size=8, dim=32, depth=3, heads=4, mlp_dim=64,
                  num_classes=10)


def _images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """Normalised-looking (B, 3, H, W) pixels."""
    return (torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed)) - 0.45) / 0.225


@torch.no_grad()
def test_stage_shapes_on_a_non_square_image_with_prefix_tokens() -> None:
    config = SMALL.with_changes(distilled=True, num_registers=2, pos_prefix_rows=2)
    out = build_model(config)(_images(2, 40, 24), Capture(blocks=range(3), attention=[0, -1], queries=[0, -1],
                                                          qkv=True))
    n, t = 5 * 3, 4 + 5 * 3
    assert out.grid == (5, 3) and out.num_prefix == 4
    assert out.patches.shape == (2, n, 8 * 8 * 3)
    assert out.tokens.shape == (2, n, 32)
    assert out.with_prefix.shape == out.z0.shape == out.output.shape == (2, t, 32)
    assert out.pos_table.shape == (1, 2 + n, 32)
    assert list(out.blocks) == [0, 1, 2] and all(b.shape == (2, t, 32) for b in out.blocks.values())
    assert list(out.attentions) == list(out.qkv) == [0, 2]  # keyed by layer, -1 resolved
    assert [a.shape for a in out.attentions.values()] == [(2, 4, 2, t)] * 2
    assert [tuple(x.shape for x in qkv) for qkv in out.qkv.values()] == [((2, 4, t, 8),) * 3] * 2
    torch.testing.assert_close(out.output, build_model(config).norm(out.blocks[2]), rtol=0, atol=0)
    assert out.pooled.shape == (2, 32) and out.logits.shape == (2, 10)


@torch.no_grad()
def test_full_attention_and_defaults() -> None:
    model = build_model(SMALL)
    out = model(_images(1, 16, 56), Capture(attention=range(3)))
    assert [a.shape for a in out.attentions.values()] == [(1, 4, 15, 15)] * 3 and out.qkv == {} and out.blocks == {}
    torch.testing.assert_close(out.attentions[1].sum(-1), torch.ones(1, 4, 15))
    plain = model(_images(1, 16, 56))
    assert plain.attentions == {}
    assert (plain.output - out.output).abs().max().item() <= 1e-5
    with pytest.raises(ValueError, match="layer 3 is out of range"):
        model(_images(1, 16, 16), Capture(attention=[3]))
    with pytest.raises(ValueError, match="layer -4 is out of range"):
        model(_images(1, 16, 16), Capture(blocks=[-4], final="none"))
    with pytest.raises(ValueError, match="no reducer"):
        model(_images(1, 16, 16), Capture(reduce=[0]))
    with pytest.raises(ValueError, match="unknown final 'all'"):
        model(_images(1, 16, 16), Capture(final="all"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a multiple of patch size"):
        model(_images(1, 20, 16))


@torch.no_grad()
@pytest.mark.parametrize("impl", ["conv", "linear"])
def test_inputs_false_frees_the_stages_only(impl: str) -> None:
    model, x = build_model(SMALL), _images(1, 24, 40)
    full, lean = model(x, impl=impl), model(x, Capture(inputs=False, attention=[-1], queries=[0]), impl=impl)
    assert lean.patches is lean.tokens is lean.with_prefix is lean.pos_table is lean.z0 is None
    assert (lean.output - full.output).abs().max().item() <= 1e-5 and lean.attentions[2].shape == (1, 4, 1, 16)


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
@pytest.mark.parametrize("impl", ["conv", "linear"])
def test_a_flooring_model_sees_the_whole_patches_a_stride_p_conv_sees(impl: str) -> None:
    """patch_remainder floor: a 45x53 image is the 5x6 grid of its top-left 40x48 pixels, as nn.Conv2d(stride=P)
    gives it; the default refuses it."""
    model = build_model(SMALL.with_changes(patch_remainder="floor"))
    x = _images(1, 45, 53, seed=3)
    out = model(x, impl=impl)
    conv = torch.nn.functional.conv2d(x, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=8)
    assert out.grid == (5, 6) and tuple(conv.shape[-2:]) == (5, 6)
    assert (out.tokens[0] - conv[0].flatten(1).t()).abs().max().item() <= 1e-5
    assert torch.equal(out.output, model(x[..., :40, :48], impl=impl).output)
    with pytest.raises(ValueError, match="not a multiple of patch size 8"):
        build_model(SMALL)(x)
    with pytest.raises(ValueError, match="holds no whole 8x8 patch"):
        model(_images(1, 7, 53))


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
    ya, yb = a(x, Capture(attention=[1])), b(x, Capture(attention=[1]))
    assert torch.equal(ya.output, yb.output) and torch.equal(ya.attentions[1], yb.attentions[1])
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


def _parity(timm_model: torch.nn.Module, config: ViTConfig, x: torch.Tensor, rename: dict | None = None,
            seed: int = 0) -> None:
    """Scramble every timm parameter (biases, norms, LayerScale, tokens, tables: timm's init would
    hide a missing or swapped one), load strictly; features, pooled and logits agree within 1e-4."""
    timm_model = scramble(timm_model, seed)
    ours = build_model(config, seed=1)
    state = {(rename or {}).get(k, k): v for k, v in timm_model.state_dict().items()}
    ours.load_state_dict(state, strict=True)
    with torch.no_grad():
        feats = timm_model.forward_features(x)
        pooled, logits = timm_model.forward_head(feats, pre_logits=True), timm_model.forward_head(feats)
        out = ours(x)
        assert (out.output - feats).abs().max().item() <= 1e-4
        assert (out.pooled - pooled).abs().max().item() <= 1e-4
        assert (out.logits - logits).abs().max().item() <= 1e-4
        lean = ours(x, Capture(inputs=False, final="pooled"))  # the last block for the pooled tokens only
        assert torch.equal(lean.pooled, out.pooled) and torch.equal(lean.logits, out.logits)


@torch.no_grad()
def test_scrambled_weights_expose_a_dropped_bias() -> None:
    """Why _parity scrambles: a bias lost on our side shows only when the peer's biases are not zero."""
    def gap(peer: torch.nn.Module) -> float:
        ours = build_model(SMALL.with_changes(depth=2), seed=1)
        state = dict(peer.state_dict())
        state["blocks.1.attn.proj.bias"] = torch.zeros_like(state["blocks.1.attn.proj.bias"])
        ours.load_state_dict(state, strict=True)
        x = _images(1, 32, 48)
        return (ours(x).output - peer.forward_features(x)).abs().max().item()

    make = lambda: TimmViT(img_size=(32, 48), patch_size=8, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0,  # noqa: E731
                           num_classes=10).eval()
    assert gap(make()) <= 1e-6  # timm's init: zero biases, so the loss is invisible
    assert gap(scramble(make(), 0)) > 1e-2


# --- the capture spec and one way to compute pooled ----------------------------------------------

# 64 patches: enough rows that batched Linear and SDPA give each image the bits it gets alone
BIG = ViTConfig(name="big", image_size=(64, 64), patch_size=8, dim=64, depth=3, heads=4, mlp_dim=128,
                num_classes=10)
VARIANTS = {"cls": BIG, "registers": BIG.with_changes(num_registers=4),
            "deit": BIG.with_changes(distilled=True, pos_prefix_rows=2)}


def _scrambled(config: ViTConfig, seed: int = 0) -> torch.nn.Module:
    """A model with every parameter random, biases and norms included."""
    return scramble(build_model(config), seed)


@torch.no_grad()
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("capture", [Capture(final="pooled", inputs=False), Capture()], ids=["pooled", "default"])
def test_each_row_of_a_batch_has_the_bits_of_its_image_alone(variant: str, capture: Capture) -> None:
    model, x = _scrambled(VARIANTS[variant]), _images(3, 64, 64)
    batch = model(x, capture)
    singles = [model(x[i:i + 1], capture) for i in range(3)]
    for name in ("pooled", "logits", "output", "patches", "tokens", "with_prefix", "z0"):
        whole = getattr(batch, name)
        if whole is None:
            assert all(getattr(s, name) is None for s in singles), name
            continue
        for i, single in enumerate(singles):
            assert torch.equal(whole[i:i + 1], getattr(single, name)), (name, i)


@torch.no_grad()
@pytest.mark.parametrize("variant", VARIANTS)
def test_pooled_has_the_same_bits_whatever_else_is_captured(variant: str) -> None:
    model, x = _scrambled(VARIANTS[variant], 1), _images(2, 64, 64)
    reference = model(x, Capture(inputs=False, final="pooled"))
    for capture in (Capture(), Capture(attention=[-1]), Capture(attention=[-1], queries=[0], qkv=True),
                    Capture(blocks=[-1], final="pooled"), Capture(attention=[0, 2], inputs=False)):
        out = model(x, capture)
        assert torch.equal(out.pooled, reference.pooled) and torch.equal(out.logits, reference.logits), capture
    full = model(x)  # the prefix-only evaluation agrees with the full pass's class token
    token = model.fc_norm(full.output[:, :2]).mean(1) if variant == "deit" else model.fc_norm(full.output[:, 0])
    assert (token - full.pooled).abs().max().item() <= 1e-5


@torch.no_grad()
def test_mean_pooling_is_the_mean_of_the_full_output() -> None:
    model, x = _scrambled(BIG.with_changes(pooling="mean", fc_norm=True, final_norm=False)), _images(3, 64, 64)
    out = model(x)
    assert torch.equal(out.pooled, model.fc_norm(out.output[:, 1:].mean(1)))
    lean = model(x, Capture(final="pooled"))
    assert torch.equal(lean.pooled, out.pooled) and lean.output is None


class _Calls:
    """Input shapes each block's MLP saw, by forward hooks: which blocks ran, and on how many rows."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.shapes: dict[int, list[tuple[int, ...]]] = {i: [] for i in range(len(model.blocks))}
        for i, block in enumerate(model.blocks):
            block.mlp.register_forward_hook(lambda m, inp, out, i=i: self.shapes[i].append(tuple(inp[0].shape)))

    def ran(self) -> list[int]:
        ran = [i for i, s in self.shapes.items() if s]
        for s in self.shapes.values():
            s.clear()
        return ran


@torch.no_grad()
def test_final_none_stops_after_the_last_layer_asked_for() -> None:
    model, x = build_model(BIG), _images(2, 64, 64)
    calls = _Calls(model)
    out = model(x, Capture(inputs=False, blocks=[0], final="none"))  # figures similar --layer 0
    assert calls.ran() == [0] and list(out.blocks) == [0]
    assert out.output is out.pooled is out.logits is None
    assert torch.equal(out.blocks[0], model(x, Capture(blocks=[0])).blocks[0])
    calls.ran()
    out = model(x, Capture(attention=[1], queries=[0], final="none"))
    assert calls.ran() == [0, 1] and list(out.attentions) == [1] and out.blocks == {}
    out = model(x, Capture(final="none"))  # the inputs alone: no block runs
    assert calls.ran() == [] and out.z0 is not None


@torch.no_grad()
def test_final_pooled_runs_the_last_block_for_the_pooled_tokens_alone() -> None:
    model, x = build_model(VARIANTS["deit"]), _images(3, 64, 64)
    calls = _Calls(model)
    lean = model(x, Capture(inputs=False, final="pooled"))
    assert lean.output is None and lean.pooled.shape == (3, 64) and lean.logits.shape == (3, 10)
    assert calls.shapes[0] == [(3, 66, 64)] and calls.shapes[2] == [(1, 2, 64)] * 3  # cls + dist, image by image
    calls.ran()
    kept = model(x, Capture(final="pooled", attention=[-1]))  # the last layer's weights need every row
    assert kept.attentions[2].shape == (3, 4, 66, 66) and calls.shapes[2] == [(1, 2, 64)] * 3 + [(3, 66, 64)]


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

"""Presets: parameter counts equal timm's and torchvision's, MACs equal torch's flop counter, clear errors."""

import pytest
import timm
import torch
import torchvision
from timm.models.vision_transformer import VisionTransformer as TimmViT
from torch.utils.flop_counter import FlopCounterMode

from vitcli.core.capture import Capture
from vitcli.core.config import ViTConfig
from vitcli.core.encoder import VisionTransformer
from vitcli.core.presets import (DEFAULT_PRESET, PRESETS, build_model, config_params, count_macs, count_params,
                                 get_preset, override, validate)

# Published counts with a 1000-class head (timm model cards, torchvision docs).
PUBLISHED = {"vit-ti16": 5_717_416, "vit-s16": 22_050_664, "vit-b16": 86_567_656, "vit-b32": 88_224_232,
             "vit-l16": 304_326_632}
TIMM = {"vit-ti16": "vit_tiny_patch16_224", "vit-s16": "vit_small_patch16_224", "vit-b16": "vit_base_patch16_224",
        "vit-b32": "vit_base_patch32_224", "vit-l16": "vit_large_patch16_224", "vit-h14": "vit_huge_patch14_224"}
TORCHVISION = {"vit-b16": "vit_b_16", "vit-b32": "vit_b_32", "vit-l16": "vit_l_16", "vit-h14": "vit_h_14"}


def _on_meta(make) -> int:
    """Parameters of a peer model built on the meta device (no memory, no init cost)."""
    with torch.device("meta"):
        return sum(p.numel() for p in make().parameters())


@pytest.mark.parametrize("name", PUBLISHED)
def test_published_counts(name: str) -> None:
    assert config_params(get_preset(name)) == PUBLISHED[name]


@pytest.mark.parametrize("name", TIMM)
def test_counts_equal_timm(name: str) -> None:
    peer = lambda: timm.create_model(TIMM[name], pretrained=False, num_classes=1000)  # noqa: E731
    assert config_params(get_preset(name)) == _on_meta(peer)


@pytest.mark.parametrize("name", TORCHVISION)
def test_counts_equal_torchvision(name: str) -> None:
    assert config_params(get_preset(name)) == _on_meta(getattr(torchvision.models, TORCHVISION[name]))


@pytest.mark.parametrize("name", ["vit-s14", "vit-b14", "vit-l14"])
def test_patch14_counts_equal_timm_at_224(name: str) -> None:
    c = get_preset(name)
    assert c.patch_size == 14 and c.image_size == (224, 224) and c.grid == (16, 16)
    peer = lambda: TimmViT(img_size=224, patch_size=14, embed_dim=c.dim, depth=c.depth, num_heads=c.heads)  # noqa: E731
    assert config_params(c) == _on_meta(peer)


def test_count_params_on_a_real_model_skips_fixed_tables() -> None:
    config = get_preset("vit-ti16")
    assert count_params(build_model(config)) == 5_717_416
    assert count_params(build_model(config.with_changes(posenc="sincos2d"))) == 5_717_416 - 197 * 192


def _flop_counter_macs(config: ViTConfig, grid: tuple[int, int], capture: Capture = Capture()) -> int:
    """Half of the FLOPs torch's FlopCounterMode counts for one image, run on the meta device."""
    with torch.device("meta"):
        model = VisionTransformer(config)
        images = torch.empty(1, config.in_chans, grid[0] * config.patch_size, grid[1] * config.patch_size)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(images, capture)
    return counter.get_total_flops() // 2


def _rows_macs(config: ViTConfig, tokens: int, rows: int) -> int:
    """MACs of `rows` query rows of a block past its QKV projection: Q·Kᵀ and A·V, proj, MLP."""
    d, m = config.dim, config.mlp_dim
    return rows * (2 * tokens * d + d * d + 2 * d * m)


@pytest.mark.parametrize("name, grid", [("vit-b16", (14, 14)), ("vit-ti16", (10, 17)), ("vit-b32", (5, 9))])
def test_macs_equal_torch_flop_counter(name: str, grid: tuple[int, int]) -> None:
    """count_macs is the model's count; the forward pass adds the pooled class-token row of the last
    block evaluated again on its own (one home for pooled), and Q·Kᵀ again for kept weights."""
    config = get_preset(name)
    macs, t = count_macs(config, grid), grid[0] * grid[1] + 1
    assert _flop_counter_macs(config, grid) == macs + _rows_macs(config, t, 1)
    weights_again = 2 * t * t * config.dim  # Q·Kᵀ of two layers whose weights are kept
    assert _flop_counter_macs(config, grid, Capture(attention=[0, -1])) == macs + _rows_macs(config, t, 1) + weights_again
    pooled_only = macs - _rows_macs(config, t, t) + _rows_macs(config, t, 1)  # the last block for one row
    assert _flop_counter_macs(config, grid, Capture(final="pooled")) == pooled_only


def test_vit_b16_is_17_6_gmacs() -> None:
    assert round(count_macs(get_preset("vit-b16")) / 1e9, 1) == 17.6  # fvcore/timm report 17.6
    distilled = get_preset("vit-ti16").with_changes(distilled=True, pos_prefix_rows=2)
    assert count_macs(distilled) + _rows_macs(distilled, 198, 2) == _flop_counter_macs(distilled, (14, 14))


def test_presets_and_default() -> None:
    assert DEFAULT_PRESET == "vit-b16" and get_preset("ViT-B16") == ViTConfig()
    assert {"vit-ti16", "vit-s16", "vit-b16", "vit-b32", "vit-l16", "vit-h14", "vit-s14", "vit-b14",
            "vit-l14"} <= set(PRESETS)
    for name, config in PRESETS.items():
        assert config.name == name and validate(config) is config
    with pytest.raises(ValueError, match="unknown model 'vit-x9'.*vit-b16"):
        get_preset("vit-x9")


@pytest.mark.parametrize("changes, message", [
    (dict(dim=100, heads=12), "not divisible by 12 heads"),
    (dict(dim=766, heads=2, posenc="sincos2d"), "divisible by 4"),
    (dict(dim=33, heads=3, posenc="sincos1d"), "even dim"),
    (dict(image_size=(224, 8)), "grid of 14x0"),
    (dict(patch_size=0), "patch size must be positive"),
    (dict(depth=0), "depth must be positive"),
    (dict(heads=-2), "heads must be positive"),
    (dict(image_size=(0, 224)), "image size must be positive"),
    (dict(class_token=False), "position rows"),
    (dict(class_token=False, pos_prefix_rows=0), "class-token pooling"),
    (dict(posenc="rope"), "unknown posenc 'rope': use one of learned, sincos1d, sincos2d, none"),
    (dict(norm="batchnorm"), "unknown norm 'batchnorm': use one of layernorm, rmsnorm"),
    (dict(mlp="moe"), "unknown mlp 'moe': use one of mlp, swiglu, swiglu_packed"),
    (dict(rope="alibi"), "unknown rope 'alibi': use one of none, dinov3, eva"),
    (dict(attention="qknorm"), "unknown attention 'qknorm': use one of plain"),
    (dict(pooling="gem"), "unknown pooling 'gem'"),
    (dict(activation="relu"), "unknown activation 'relu'"),
    (dict(num_registers=-1), "registers"),
])
def test_validate_refuses_impossible_configs(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate(ViTConfig().with_changes(**changes))
    with pytest.raises(ValueError, match=message):
        VisionTransformer(ViTConfig().with_changes(**changes))


def test_validate_reads_the_choices_from_the_config_literals() -> None:
    from vitcli.core.validate import CHOICES

    assert set(CHOICES) == {"posenc", "attention", "mlp", "activation", "norm", "pooling", "rope", "rel_pos_bias",
                            "pos_resample", "patch_remainder"}
    assert CHOICES["pos_resample"] == ("bicubic", "bilinear", "bicubic_plain", "bicubic_offset")
    assert CHOICES["norm"] == ("layernorm", "rmsnorm")
    assert CHOICES["activation"] == ("gelu", "gelu_tanh", "quick_gelu", "silu")


def test_override() -> None:
    base = get_preset("vit-b16")
    small = override(base, dim=384, heads=6, depth=2, patch_size=8)
    assert (small.dim, small.heads, small.depth, small.patch_size, small.mlp_dim) == (384, 6, 2, 8, 1536)
    assert override(base, mlp_ratio=2).mlp_dim == 1536
    no_cls = override(base, class_token=False)
    assert (no_cls.num_prefix_tokens, no_cls.pos_prefix_rows, no_cls.pooling) == (0, 0, "mean")
    with pytest.raises(ValueError, match="not divisible by 12 heads"):
        override(base, dim=500)
    with pytest.raises(ValueError, match="MLP ratio"):
        override(base, mlp_ratio=0)


@torch.no_grad()
def test_build_model_dtype_and_no_class_token_forward() -> None:
    config = override(get_preset("vit-ti16"), depth=1, class_token=False, image_size=(32, 48))
    model = build_model(config, dtype=torch.float64)
    assert not model.training and model.cls_token is None
    out = model(torch.zeros(1, 3, 32, 64, dtype=torch.float64))
    assert out.z0.shape == (1, 8, 192) and out.pooled.dtype == torch.float64 and out.pos_table.shape == (1, 8, 192)


# sha256 (first 16 hex digits) of every state-dict key and tensor, as drawn since random weights
# have one generator per tensor (issue 16): `--seed` must keep giving the same weights. (The digests
# before, from one generator in module order, were 0118c3d47b03810e, cac187ad6e1b0003, 7a5fd614ae50f530.)
SEED_DIGESTS = {
    "ti16": "2a3eee293e26462a",
    "ti16_deit_reg_ls": "bd1f8b6884c6ba28",
    "ti16_sincos_mean": "f72c1a9e1c66a945",
}


def _seed_configs() -> dict[str, ViTConfig]:
    ti = get_preset("vit-ti16")
    return {"ti16": ti,
            "ti16_deit_reg_ls": ti.with_changes(distilled=True, pos_prefix_rows=2, num_registers=4, layer_scale=True,
                                                fc_norm=True, pre_norm=True, depth=2),
            "ti16_sincos_mean": ti.with_changes(posenc="sincos2d", pooling="mean", fc_norm=True, final_norm=False,
                                                depth=2, qkv_bias=False, patch_bias=False, head_bias=False)}


@pytest.mark.parametrize("name", SEED_DIGESTS)
def test_seed_gives_the_weights_it_always_gave(name: str) -> None:
    import hashlib

    h = hashlib.sha256()
    for key, value in build_model(_seed_configs()[name], seed=0).state_dict().items():
        h.update(key.encode())
        h.update(value.detach().contiguous().numpy().tobytes())
    assert h.hexdigest()[:16] == SEED_DIGESTS[name]


def _by_hand(key: str, shape: tuple[int, ...], seed: int, dim: int) -> torch.Tensor:
    """The documented rule, written out: generator seeded by sha256("vitcli/SEED/KEY") (8 bytes, little
    endian, >> 1); weights of 2+ dims N(0, 1/fan_in), tokens and the learned table D**-0.5·N(0, 1),
    norms and LayerScale 1, biases 0."""
    import hashlib

    g = torch.Generator().manual_seed(int.from_bytes(hashlib.sha256(f"vitcli/{seed}/{key}".encode()).digest()[:8],
                                                     "little") >> 1)
    if key in ("cls_token", "dist_token", "reg_tokens"):
        return torch.empty(shape).normal_(0.0, dim**-0.5, generator=g)
    if key == "pos_embed":
        return (torch.randn(shape[1:], generator=g) * dim**-0.5)[None]
    if key.endswith("bias"):
        return torch.zeros(shape)
    if len(shape) == 1:  # every norm's weight, LayerScale's gamma
        return torch.ones(shape)
    fan_in = torch.Size(shape[1:]).numel()
    return torch.empty(shape).normal_(0.0, fan_in**-0.5, generator=g)


@pytest.mark.parametrize("name", SEED_DIGESTS)
def test_random_weights_follow_the_documented_rule(name: str) -> None:
    config = _seed_configs()[name]
    for key, value in build_model(config, seed=3).state_dict().items():
        assert torch.equal(value, _by_hand(key, tuple(value.shape), 3, config.dim)), key


def test_one_tensor_drawn_alone_is_the_models() -> None:
    from vitcli.core.presets import draw_tensor

    config = _seed_configs()["ti16_deit_reg_ls"]
    model = build_model(config, seed=4)
    for key in ("patch_embed.proj.weight", "pos_embed", "reg_tokens", "blocks.1.mlp.fc2.weight"):
        assert torch.equal(draw_tensor(config, 4, key), model.state_dict()[key]), key


def test_parameter_formula_equals_the_built_model_and_stands_aside_for_other_parts():
    from vitcli.core.encoder import VisionTransformer

    from vitcli.core.presets import formula_params, plain_layout

    base = PRESETS["vit-ti16"]
    variants = [*PRESETS.values(), base.with_changes(distilled=True), base.with_changes(num_registers=4),
                base.with_changes(layer_scale=True, qkv_bias=False, patch_bias=False),
                base.with_changes(pre_norm=True, final_norm=False, fc_norm=True, num_classes=0),
                base.with_changes(posenc="sincos2d"), base.with_changes(head_bias=False, num_classes=512)]
    for config in variants:
        with torch.device("meta"):
            counted = count_params(VisionTransformer(config))
        assert formula_params(config) == counted, config
        with torch.device("meta"):
            shapes = [(k, tuple(v.shape)) for k, v in VisionTransformer(config).state_dict().items()]
        assert list(plain_layout(config).items()) == shapes, config  # what info checks a header against
    assert formula_params(base.with_changes(qk_norm=True)) is None  # a part the formula does not count


def test_a_preset_built_under_inference_mode_draws_the_same_weights() -> None:
    """The weights are drawn on worker threads, which do not inherit inference mode: a model built
    inside `torch.inference_mode()` (as `figures pca` builds it) must not fail, and has the same weights."""
    config = override(get_preset("vit-ti16"), depth=2)  # fc1 (768, 192): large enough for the threads
    plain = build_model(config, seed=3)
    with torch.inference_mode():
        inside = build_model(config, seed=3)
    for (key, a), (_, b) in zip(plain.state_dict().items(), inside.state_dict().items()):
        assert torch.equal(a, b), key

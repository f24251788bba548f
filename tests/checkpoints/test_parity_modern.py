"""SigLIP, BEiT / BEiT v2 / data2vec, DeiT III, MAE, AIMv2 and TimmWrapper: the peer's own model with
scrambled weights, saved in its format, loaded by vitcli; non-square images; tokens, pooled output
(the attention-pool probe's), every layer's attention and the probe's weights ≤ 1e-4."""

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch.overrides import TorchFunctionMode

from tests.checkpoints.parity import TimmAttention, check, diff, images, scramble
from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint
from vitcli.core.capture import Capture

H, W = 32, 48  # a 2×3 grid of 16-pixel patches: non-square


class SoftmaxRecorder(TorchFunctionMode):
    """Records every softmax the peer computes inside the block (its own eager attention maths)."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (torch.Tensor.softmax, torch.softmax, torch.nn.functional.softmax):
            self.outputs.append(out.detach())
        return out


def core(path, x, **kw):
    loaded = load_checkpoint(path, **{"heads": 4, **kw})
    model = build_model_from_checkpoint(loaded)
    with torch.no_grad():
        out = model(x, Capture(attention=range(loaded.config.depth), pool_attention=True))
    return loaded, out


def _timm(name: str, seed: int = 0, **kw):
    model = scramble(timm.create_model(name, pretrained=False, **kw), seed)
    return model, TimmAttention(model)


@torch.no_grad()
def _timm_check(label, path, model, attn, x, **load_kw):
    loaded, out = core(path, x, **load_kw)
    attn.weights.clear()
    feats = model.forward_features(x)
    probe = None
    if getattr(model, "attn_pool", None) is not None:
        model.attn_pool.fused_attn = False
        with SoftmaxRecorder() as rec:
            pooled = model.forward_head(feats, pre_logits=True)
        probe = rec.outputs[0]
    else:
        pooled = model.forward_head(feats, pre_logits=True)
    pairs = {"features": (out.output, feats), "pooled": (out.pooled, pooled)}
    if model.num_classes:
        pairs["logits"] = (out.logits, model.forward_head(feats))
    if probe is not None:
        pairs["probe"] = (out.pool_attention, probe)
    check(label, pairs, out.attentions, attn.weights[:loaded.config.depth])
    return loaded


def test_timm_siglip_attention_pool(tmp_path) -> None:
    name = "vit_base_patch16_siglip_224"
    model, attn = _timm(name, img_size=(H, W), embed_dim=64, depth=2, num_heads=4, num_classes=0)
    save_file(model.state_dict(), tmp_path / f"{name}.safetensors")
    loaded = _timm_check("timm siglip", tmp_path / f"{name}.safetensors", model, attn, images(2, H, W),
                         image_size=(H, W))
    c = loaded.config
    assert (loaded.family, c.pooling, c.class_token, c.activation, c.pos_prefix_rows) == \
        ("timm-siglip", "map", False, "gelu", 0)


def test_timm_deit3_layer_scale_no_embed_class(tmp_path) -> None:
    name = "deit3_small_patch16_224"
    model, attn = _timm(name, img_size=(H, W), embed_dim=64, depth=2, num_heads=4, num_classes=5)
    save_file(model.state_dict(), tmp_path / f"{name}.safetensors")
    loaded = _timm_check("timm deit3", tmp_path / f"{name}.safetensors", model, attn, images(1, H, W, 1),
                         image_size=(H, W))
    assert loaded.family == "deit3" and loaded.config.layer_scale and loaded.config.pos_prefix_rows == 0


def test_timm_mae_plain(tmp_path) -> None:
    model, attn = _timm("vit_base_patch16_224.mae", img_size=(H, W), embed_dim=64, depth=2, num_heads=4)
    save_file(model.state_dict(), tmp_path / "vit_base_patch16_224.mae.safetensors")
    _timm_check("timm mae", tmp_path / "vit_base_patch16_224.mae.safetensors", model, attn, images(1, H, W, 2),
                image_size=(H, W))


@pytest.mark.parametrize("name", ["beit_base_patch16_224", "beitv2_base_patch16_224"])
def test_timm_beit_relative_bias(tmp_path, name) -> None:
    model, attn = _timm(name, img_size=(H, W), embed_dim=64, depth=2, num_heads=4, num_classes=7)
    save_file(model.state_dict(), tmp_path / f"{name}.safetensors")
    loaded = _timm_check(f"timm {name}", tmp_path / f"{name}.safetensors", model, attn, images(2, H, W, 3),
                         image_size=(H, W))
    c = loaded.config
    assert (c.rel_pos_bias, c.pooling, c.fc_norm, c.layer_scale, c.posenc) == ("layer", "mean", True, True, "none")


def test_timm_beit_shared_bias_with_abs_pos(tmp_path) -> None:
    name = "beit_base_patch16_224"
    model, attn = _timm(name, img_size=(H, W), embed_dim=64, depth=2, num_heads=4, num_classes=0,
                        use_shared_rel_pos_bias=True, use_rel_pos_bias=False, use_abs_pos_emb=True,
                        global_pool="token")
    save_file(model.state_dict(), tmp_path / f"{name}.safetensors")
    loaded = _timm_check("timm beit shared", tmp_path / f"{name}.safetensors", model, attn, images(1, H, W, 4),
                         image_size=(H, W))
    assert loaded.config.rel_pos_bias == "shared" and loaded.config.pooling == "cls"


def test_timm_aimv2_rmsnorm_swiglu(tmp_path) -> None:
    name = "aimv2_large_patch14_224"
    model, attn = _timm(name, img_size=(28, 42), embed_dim=64, depth=2, num_heads=4, num_classes=0)
    save_file(model.state_dict(), tmp_path / f"{name}.safetensors")
    loaded = _timm_check("timm aimv2", tmp_path / f"{name}.safetensors", model, attn, images(1, 28, 42, 5),
                         image_size=(28, 42))
    c = loaded.config
    assert (c.norm, c.mlp, c.activation, c.patch_norm, c.qkv_bias, c.proj_bias, c.eps) == \
        ("rmsnorm", "swiglu", "silu", True, False, False, 1e-5)


# ---- transformers: eager attention, save_pretrained folders (config.json beside the weights) ----

import transformers as hf  # noqa: E402

SMALL = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, patch_size=16)


def _eager(config):
    config._attn_implementation = "eager"
    return config


def _hf_probe(head, hidden):
    """The SigLIP head's probe weights from torch's own nn.MultiheadAttention maths."""
    probe = head.probe.expand(hidden.shape[0], -1, -1)
    return head.attention(probe, hidden, hidden, need_weights=True, average_attn_weights=False)[1]


@torch.no_grad()
def test_hf_siglip_vision_model(tmp_path) -> None:
    model = scramble(hf.SiglipVisionModel(_eager(hf.SiglipVisionConfig(**SMALL, image_size=32))), seed=20)
    model.save_pretrained(tmp_path / "siglip")
    x = images(2, 32, 32, seed=20)  # SiglipVisionModel's table is square; non-square is the SiglipModel test below
    loaded, out = core(tmp_path / "siglip", x)
    ref = model(pixel_values=x, output_attentions=True)
    assert (loaded.family, loaded.config.pooling, loaded.config.activation) == ("hf-siglip", "map", "gelu_tanh")
    check("transformers SiglipVisionModel", {
        "features": (out.output, ref.last_hidden_state), "pooled": (out.pooled, ref.pooler_output),
        "probe": (out.pool_attention, _hf_probe(model.head, ref.last_hidden_state))},
        out.attentions, list(ref.attentions))


@torch.no_grad()
def test_hf_siglip_model_vision_tower_non_square(tmp_path) -> None:
    """SiglipModel's tower (text tower ignored) on a 2×3 grid: the table's grid is read from the image."""
    config = hf.SiglipConfig(text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                              intermediate_size=64, vocab_size=50),
                             vision_config=dict(**SMALL, image_size=32))
    model = hf.SiglipModel(_eager(config))
    model.vision_model.config._attn_implementation = "eager"
    emb = model.vision_model.embeddings
    emb.position_embedding = torch.nn.Embedding(6, 64)  # a 2×3 grid's table
    emb.num_patches = emb.num_positions = 6
    emb.register_buffer("position_ids", torch.arange(6)[None], persistent=False)
    scramble(model, seed=21)
    save_file(model.state_dict(), tmp_path / "siglip_full.safetensors")
    x = images(1, H, W, seed=21)
    loaded, out = core(tmp_path / "siglip_full.safetensors", x, image_size=(H, W))
    ref = model.vision_model(pixel_values=x, output_attentions=True)
    assert any(k.startswith("text_model.") for k in loaded.ignored_keys)
    head = model.vision_model.head
    check("transformers SiglipModel vision tower", {
        "features": (out.output, ref.last_hidden_state), "pooled": (out.pooled, ref.pooler_output),
        "probe": (out.pool_attention, _hf_probe(head, ref.last_hidden_state))}, out.attentions, list(ref.attentions))


@pytest.mark.parametrize("cls,shared,mean", [(hf.BeitModel, False, True), (hf.BeitModel, True, False),
                                             (hf.Data2VecVisionModel, True, True)])
@torch.no_grad()
def test_hf_beit_data2vec(tmp_path, cls, shared, mean) -> None:
    """Square: transformers re-samples a non-square table through a (W', H') reshape, so its own numbers
    on a non-square grid are not BEiT's (timm's); the non-square case is timm's test above."""
    conf = (hf.BeitConfig if cls is hf.BeitModel else hf.Data2VecVisionConfig)(
        **SMALL, image_size=48, use_relative_position_bias=not shared, use_shared_relative_position_bias=shared,
        use_mean_pooling=mean, layer_scale_init_value=0.1)
    model = scramble(cls(_eager(conf), add_pooling_layer=True), seed=22)
    model.save_pretrained(tmp_path / "beit")
    x = images(2, 48, 48, seed=22)
    loaded, out = core(tmp_path / "beit", x)
    ref = model(pixel_values=x, output_attentions=True)
    c = loaded.config
    assert (c.rel_pos_bias, c.pooling) == ("shared" if shared else "layer", "mean" if mean else "cls")
    check(f"transformers {cls.__name__} shared={shared} mean={mean}", {
        "features": (out.output if not mean else out.output, ref.last_hidden_state),
        "pooled": (out.pooled, ref.pooler_output)}, out.attentions, list(ref.attentions))


@torch.no_grad()
def test_hf_vit_mae_natural_order(tmp_path) -> None:
    """ViTMAEModel with mask_ratio 0 and noise = arange: all tokens kept in their natural order."""
    model = scramble(hf.ViTMAEModel(_eager(hf.ViTMAEConfig(**SMALL, image_size=32, mask_ratio=0.0))), seed=23)
    model.save_pretrained(tmp_path / "mae")
    x = images(2, 32, 32, seed=23)
    loaded, out = core(tmp_path / "mae", x)
    noise = torch.arange(4, dtype=torch.float32).expand(2, -1)  # ascending noise: ids_restore is the identity
    ref = model(pixel_values=x, noise=noise, output_attentions=True)
    assert ref.ids_restore.tolist() == [[0, 1, 2, 3]] * 2 and ref.mask.sum() == 0
    check("transformers ViTMAEModel", {"features": (out.output, ref.last_hidden_state)},
          out.attentions, list(ref.attentions))


@pytest.mark.parametrize("arch", ["vit_base_patch16_siglip_224", "beit_base_patch16_224"])
@torch.no_grad()
def test_timm_wrapper_model(tmp_path, arch) -> None:
    """transformers' TimmWrapperModel: timm's keys under `timm_model.`, config.json with model_args."""
    args = dict(img_size=[H, W], embed_dim=64, depth=2, num_heads=4)
    model = hf.TimmWrapperModel(hf.TimmWrapperConfig(architecture=arch, model_args=args, num_classes=0))
    scramble(model, seed=24)
    model.save_pretrained(tmp_path / "wrapped")
    attn = TimmAttention(model.timm_model)
    x = images(1, H, W, seed=24)
    loaded = _timm_check(f"TimmWrapperModel({arch})", tmp_path / "wrapped", model.timm_model, attn, x)
    assert any("timm_model." in n for n in loaded.notes)
    ref = model(pixel_values=x)
    loaded2, out = core(tmp_path / "wrapped", x)
    assert diff(out.output, ref.last_hidden_state) <= 1e-4 and diff(out.pooled, ref.pooler_output) <= 1e-4


class SdpaRecorder(TorchFunctionMode):
    """The weights of every scaled_dot_product_attention the peer calls, from its own q and k:
    softmax(q·kᵀ/√d) (the head's call has no mask and the default scale)."""

    def __init__(self) -> None:
        super().__init__()
        self.weights: list[torch.Tensor] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention:
            q, k = args[0], args[1]
            assert len(args) == 3 and not kwargs, "recorder expects a plain call"
            self.weights.append(((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5).softmax(-1).detach())
        return func(*args, **kwargs)


def _aimv2_check(label, path, model, x, **kw):
    """vitcli against Aimv2VisionModel: tokens, every layer, and the head: pooler_output and its probe."""
    loaded, out = core(path, x, **kw)
    with SdpaRecorder() as rec:
        ref = model(pixel_values=x, output_attentions=True)
    pairs = {"features": (out.output, ref.last_hidden_state)}
    if ref.pooler_output is not None:
        pairs.update(pooled=(out.pooled, ref.pooler_output), probe=(out.pool_attention, rec.weights[-1]))
    check(label, pairs, out.attentions, list(ref.attentions))
    return loaded, out


@pytest.mark.parametrize("qkv_bias", [False, True])
@torch.no_grad()
def test_hf_aimv2_vision_model_with_head(tmp_path, qkv_bias) -> None:
    """save_pretrained folder (config.json); square, as Aimv2VisionModel's table is: the head's probe, the
    pooled output = pooler_output; qkv_bias gives the head's k / v projections biases too."""
    conf = hf.Aimv2VisionConfig(**SMALL, image_size=32, qkv_bias=qkv_bias, mlp_bias=False, use_head=True)
    model = scramble(hf.Aimv2VisionModel(_eager(conf)), seed=25)
    model.save_pretrained(tmp_path / "aimv2")
    loaded, _ = _aimv2_check("transformers Aimv2VisionModel (head)", tmp_path / "aimv2", model,
                             images(2, 32, 32, seed=25))
    c = loaded.config
    assert (loaded.family, c.norm, c.mlp, c.activation, c.pooling) == ("hf-aimv2", "rmsnorm", "swiglu", "silu", "map")
    assert (c.pool_query_proj, c.pool_mlp, c.pool_qkv_bias, c.qkv_bias) == (False, False, qkv_bias, qkv_bias)
    assert not loaded.ignored_keys


@torch.no_grad()
def test_hf_aimv2_vision_tower_non_square_and_without_head(tmp_path) -> None:
    """A 2×3 table (bare state dict, native size given) with the head; and use_head=False: the patch mean,
    as timm's aimv2_* pool (transformers gives no pooler_output then)."""
    model = hf.Aimv2VisionModel(_eager(hf.Aimv2VisionConfig(**SMALL, image_size=32, use_head=True)))
    emb = model.embeddings
    emb.position_embedding = torch.nn.Embedding(6, 64)  # a 2×3 grid's table
    emb.register_buffer("position_ids", torch.arange(6)[None], persistent=False)
    scramble(model, seed=26)
    save_file(model.state_dict(), tmp_path / "aimv2.safetensors")
    _aimv2_check("transformers Aimv2VisionModel (head, 2x3)", tmp_path / "aimv2.safetensors", model,
                 images(1, H, W, seed=26), image_size=(H, W))
    bare = scramble(hf.Aimv2VisionModel(_eager(hf.Aimv2VisionConfig(**SMALL, image_size=32, use_head=False))), 27)
    bare.save_pretrained(tmp_path / "nohead")
    x = images(2, 32, 32, seed=27)
    loaded, out = _aimv2_check("transformers Aimv2VisionModel (no head)", tmp_path / "nohead", bare, x)
    ref = bare(pixel_values=x).last_hidden_state.mean(dim=1)
    assert loaded.config.pooling == "mean" and diff(out.pooled, ref) <= 1e-4


# ---- NaFlex (SigLIP 2): Linear patch embedding, table resized bilinearly to the image's own grid ----


@torch.no_grad()
def test_timm_naflexvit_siglip_on_its_own_grid(tmp_path) -> None:
    name = "naflexvit_base_patch16_siglip"
    model, attn = _timm(name, pos_embed_grid_size=(4, 4), embed_dim=64, depth=2, num_heads=4, num_classes=0)
    save_file(model.state_dict(), tmp_path / f"{name}.safetensors")
    x = images(1, H, W, seed=30)  # 2×3 grid: the table is resized (bilinear, antialiased)
    loaded, out = core(tmp_path / f"{name}.safetensors", x)
    attn.weights.clear()
    feats = model.forward_features(x)
    model.attn_pool.fused_attn = False
    with SoftmaxRecorder() as rec:
        pooled = model.forward_head(feats, pre_logits=True)
    c = loaded.config
    assert (loaded.family, c.grid, c.pos_resample, c.pooling) == ("timm-naflex-siglip2", (4, 4), "bilinear", "map")
    check("timm naflexvit siglip", {"features": (out.output, feats), "pooled": (out.pooled, pooled),
                                    "probe": (out.pool_attention, rec.outputs[0])}, out.attentions, attn.weights)


def _hf_patches(x, p):
    """Siglip2ImageProcessor's patch order: (B, C, H, W) → (B, N, P·P·C), rows of (row, col, channel)."""
    b, c, h, w = x.shape
    return x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (h // p) * (w // p), -1)


@torch.no_grad()
def test_hf_siglip2_vision_model_naflex(tmp_path) -> None:
    conf = hf.Siglip2VisionConfig(**SMALL, num_patches=16)  # a 4×4 table
    model = scramble(hf.Siglip2VisionModel(_eager(conf)), seed=31)
    model.save_pretrained(tmp_path / "siglip2")
    x = images(1, H, W, seed=31)
    loaded, out = core(tmp_path / "siglip2", x)
    mask = torch.ones(1, 6, dtype=torch.long)
    ref = model(pixel_values=_hf_patches(x, 16), pixel_attention_mask=mask,
                spatial_shapes=torch.tensor([[2, 3]]), output_attentions=True)
    assert (loaded.family, loaded.config.pos_resample) == ("hf-siglip2", "bilinear")
    check("transformers Siglip2VisionModel", {
        "features": (out.output, ref.last_hidden_state), "pooled": (out.pooled, ref.pooler_output),
        "probe": (out.pool_attention, _hf_probe(model.head, ref.last_hidden_state))},
        out.attentions, list(ref.attentions))


def test_native_size_within_max_patches_equals_siglip2_processor() -> None:
    """--size native --max-patches: the size transformers' Siglip2ImageProcessor picks."""
    from transformers.models.siglip2.image_processing_siglip2 import get_image_size_for_max_num_patches

    from vitcli.io.images import size_for_max_patches

    for hw, budget in [((480, 640), 256), ((100, 1000), 64), ((37, 53), 16), ((1024, 768), 1024), ((20, 20), 4)]:
        assert size_for_max_patches(hw, 16, budget) == tuple(get_image_size_for_max_num_patches(*hw, 16, budget))


def test_attend_native_siglip2_keeps_the_aspect(tmp_path) -> None:
    import numpy as np
    from PIL import Image

    from vitcli.api import load_model
    from vitcli.api.images import load_images

    model = scramble(hf.Siglip2VisionModel(hf.Siglip2VisionConfig(**SMALL, num_patches=16)), seed=32)
    model.save_pretrained(tmp_path / "s2")
    Image.fromarray((np.random.default_rng(1).random((80, 120, 3)) * 255).astype("uint8")).save(tmp_path / "i.png")
    ours = load_model(str(tmp_path / "s2"))
    res = ours.attend(load_images(str(tmp_path / "i.png"), size="native"))  # budget: the 16-row table
    assert res.document["grid"] == [3, 5] and res.document["queries"] == "probe"
    wide = ours.embed(load_images(str(tmp_path / "i.png"), size="native", max_patches=40))
    assert wide.document["grid"] == [5, 8]


def test_attend_cls_on_aimv2_shows_the_head_probe(tmp_path) -> None:
    """AIMv2's pooling head stands in for the class token: attend's default query is its probe, info says so."""
    import numpy as np
    from PIL import Image

    from vitcli.api import load_model
    from vitcli.api.images import load_images

    conf = hf.Aimv2VisionConfig(**SMALL, image_size=32, use_head=True)
    scramble(hf.Aimv2VisionModel(conf), seed=28).save_pretrained(tmp_path / "aimv2")
    Image.fromarray((np.random.default_rng(2).random((40, 40, 3)) * 255).astype("uint8")).save(tmp_path / "i.png")
    ours = load_model(str(tmp_path / "aimv2"))
    res = ours.attend(load_images(str(tmp_path / "i.png")), query="cls")
    assert res.document["queries"] == "probe" and res.weights.shape[-1] == 4  # 2×2 patches, no prefix
    assert np.allclose(res.weights.sum(-1), 1, atol=1e-5)
    assert ours.document((2, 2))["parts"]["pooling"] == "attention-pool probe (MAP), no query projection or MLP"

"""SigLIP, BEiT / BEiT v2 / data2vec, DeiT III, MAE, AIMv2 and TimmWrapper: the peer's own model with
scrambled weights, saved in its format, loaded by vitcli; non-square images; tokens, pooled output
(the attention-pool probe's), every layer's attention and the probe's weights ≤ 1e-4."""

import pytest
import timm
import torch
from safetensors.torch import save_file
from torch.overrides import TorchFunctionMode

from tests.checkpoints.parity import TimmAttention, check, images, scramble
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

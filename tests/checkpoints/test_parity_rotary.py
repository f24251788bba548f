"""RoPE families against their peers' own forward passes: timm Eva (DINOv3 ports, EVA-02), qk-norm ViT,
transformers DINOv3ViTModel (eager), and facebookresearch/dinov3 state dicts written from the timm port.

Tiny models (depth 2, width 64, 4 heads) with scrambled weights on non-square images; the peer's
attention is its own softmax output (timm fused_attn off, transformers eager).
"""

import pytest
import timm
import torch
from safetensors.torch import save_file
from transformers import DINOv3ViTConfig, DINOv3ViTModel

from tests.checkpoints.parity import TimmAttention, check, core_run, images, scramble
from vitcli.checkpoints.load import load_checkpoint
from vitcli.errors import VitcliError

TINY = dict(embed_dim=64, depth=2, num_heads=4)


def _timm_parity(tmp_path, name: str, size: tuple[int, int], **kwargs):
    model = scramble(timm.create_model(name, pretrained=False, **TINY, **kwargs))
    attn = TimmAttention(model)
    path = tmp_path / f"{name}.safetensors"
    save_file(model.state_dict(), path)
    x = images(2, *size)
    loaded, out = core_run(path, x, heads=4, image_size=size)
    with torch.no_grad():
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
    check(name, {"features": (out.output, feats), "pooled": (out.pooled, pooled)}, out.attentions, attn.weights)
    return loaded


def test_timm_dinov3_qkvb(tmp_path) -> None:
    loaded = _timm_parity(tmp_path, "vit_small_patch16_dinov3_qkvb", (48, 80), num_classes=0)
    c = loaded.config
    assert loaded.family == "timm-dinov3" and (c.rope, c.rope_base, c.posenc, c.num_registers) == ("dinov3", 100, "none", 4)
    assert c.layer_scale and c.qkv_bias and c.eps == 1e-5 and c.pooling == "mean"


def test_timm_dinov3_without_bias_and_swiglu(tmp_path) -> None:
    loaded = _timm_parity(tmp_path, "vit_small_plus_patch16_dinov3", (64, 48), num_classes=0)
    assert loaded.config.mlp == "swiglu" and not loaded.config.qkv_bias


def test_timm_eva02_packed_swiglu(tmp_path) -> None:
    loaded = _timm_parity(tmp_path, "eva02_tiny_patch14_224", (56, 84), img_size=(56, 84), num_classes=0)
    c = loaded.config
    assert loaded.family == "timm-eva02" and (c.rope, c.rope_ref_grid, c.posenc, c.mlp) == ("eva", (16, 16), "learned",
                                                                                             "swiglu_packed")


def test_timm_eva02_sub_ln_and_inner_norm(tmp_path) -> None:
    loaded = _timm_parity(tmp_path, "eva02_tiny_patch14_224", (56, 84), img_size=(56, 84), num_classes=7,
                          scale_mlp=True, scale_attn_inner=True, qkv_fused=False)
    c = loaded.config
    assert (c.mlp, c.mlp_norm, c.attn_norm, c.num_classes) == ("swiglu", True, True, 7)
    assert loaded.origin["blocks.0.attn.qkv.bias"] == "blocks.0.attn.q_proj.bias + blocks.0.attn.v_proj.bias"


def test_timm_qk_norm_vit(tmp_path) -> None:
    loaded = _timm_parity(tmp_path, "vit_tiny_patch16_224", (48, 80), img_size=(48, 80), num_classes=0, qk_norm=True)
    assert loaded.family == "timm-vit" and loaded.config.qk_norm and loaded.config.rope == "none"


@pytest.mark.parametrize("gated", [False, True])
def test_transformers_dinov3(tmp_path, gated: bool) -> None:
    extra = dict(use_gated_mlp=True, key_bias=True, hidden_act="silu", intermediate_size=96) if gated else {}
    config = DINOv3ViTConfig(**{**dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                       image_size=64, patch_size=16, num_register_tokens=2), **extra})
    model = scramble(DINOv3ViTModel(config))
    model.config._attn_implementation = "eager"
    model.save_pretrained(tmp_path / "hf")
    x = images(2, 48, 80, seed=2)
    loaded, out = core_run(tmp_path / "hf", x)
    with torch.no_grad():
        o = model(pixel_values=x, output_attentions=True)
    assert loaded.family == "hf-dinov3" and loaded.config.mlp == ("swiglu" if gated else "mlp")
    check("transformers DINOv3ViTModel", {"features": (out.output, o.last_hidden_state),
                                          "pooled": (out.pooled, o.pooler_output)}, out.attentions, list(o.attentions))


def _upstream_state(m, periods: torch.Tensor) -> dict:
    """timm's DINOv3 port written in facebookresearch/dinov3's layout; k's bias is random and masked out."""
    sd, out, d = m.state_dict(), {}, m.embed_dim
    g = torch.Generator().manual_seed(5)
    out.update(cls_token=sd["cls_token"], storage_tokens=sd["reg_token"], mask_token=torch.randn(1, d, generator=g))
    out["rope_embed.periods"] = periods.to(torch.bfloat16)  # stored downcast, as Meta's files are
    for k in ("patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"):
        out[k] = sd[k]
    for i in range(len(m.blocks)):
        p = f"blocks.{i}."
        for k in ("norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "attn.qkv.weight", "attn.proj.weight",
                  "attn.proj.bias", "mlp.fc1.weight", "mlp.fc1.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
            out[p + k] = sd[p + k]
        out[p + "attn.qkv.bias"] = torch.cat([sd[p + "attn.q_bias"], torch.randn(d, generator=g), sd[p + "attn.v_bias"]])
        out[p + "attn.qkv.bias_mask"] = torch.cat([torch.ones(d), torch.zeros(d), torch.ones(d)])
        out[p + "ls1.gamma"], out[p + "ls2.gamma"] = sd[p + "gamma_1"], sd[p + "gamma_2"]
    return out


def test_upstream_dinov3_state_dict(tmp_path) -> None:
    m = scramble(timm.create_model("vit_small_patch16_dinov3_qkvb", pretrained=False, num_classes=0,
                                   global_pool="token", **TINY))
    periods = m.rope.periods * (1 + 0.3 * torch.rand(m.rope.periods.shape, generator=torch.Generator().manual_seed(3)))
    m.rope.periods.copy_(periods.to(torch.bfloat16).float())  # the peer uses the file's own (scrambled) periods
    attn = TimmAttention(m)
    torch.save({"teacher": _upstream_state(m, periods)}, tmp_path / "dinov3_vits16_pretrain.pth")
    x = images(2, 48, 80, seed=3)
    loaded, out = core_run(tmp_path / "dinov3_vits16_pretrain.pth", x, heads=4)
    assert loaded.family == "dinov3" and loaded.config.pooling == "cls" and loaded.ignored_keys == ["mask_token"]
    assert loaded.origin["position.rope.periods"] == "rope_embed.periods"
    with torch.no_grad():
        feats = m.forward_features(x)
        pooled = m.forward_head(feats, pre_logits=True)
    check("dinov3 upstream", {"features": (out.output, feats), "pooled": (out.pooled, pooled)}, out.attentions,
          attn.weights)


def test_known_family_with_unbuilt_part_names_it(tmp_path) -> None:
    """PE's attention pool is built now (test_parity_pe.py); gated attention (blocks.N.attn.gate) is not."""
    m = timm.create_model("vit_pe_core_tiny_patch16_384", pretrained=False, img_size=64, **TINY)
    m.blocks[0].attn.gate = torch.nn.Linear(64, 64)  # what timm's AttentionRope(gated=True) holds
    save_file(m.state_dict(), tmp_path / "pe.safetensors")
    with pytest.raises(VitcliError, match=r"gated attention \(blocks.N.attn.gate\)"):
        load_checkpoint(tmp_path / "pe.safetensors", heads=4)

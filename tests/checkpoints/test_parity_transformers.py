"""Hugging Face transformers checkpoints: ViT, CLIP vision, DINOv2 (with registers), DeiT."""

import torch
import transformers as hf
from safetensors.torch import save_file

from tests.checkpoints.parity import check, core_run, images, scramble


def _eager(config):
    config._attn_implementation = "eager"  # the path that returns attention weights
    return config


@torch.no_grad()
def _hf_run(model, x):
    return model(pixel_values=x, output_attentions=True)


def test_vit_model_save_pretrained_folder(tmp_path) -> None:
    """ViTModel with its tanh pooler, saved the way the hub stores it (config.json, legacy key names)."""
    config = _eager(hf.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                                 image_size=32, patch_size=8))
    model = scramble(hf.ViTModel(config), seed=10)
    model.save_pretrained(tmp_path / "vit")
    x = images(2, 32, 32, seed=10)
    loaded, out = core_run(tmp_path / "vit", x)
    c = loaded.config
    assert loaded.family == "hf-vit"
    assert (c.heads, c.eps, c.activation, c.num_classes, c.grid) == (4, 1e-12, "gelu", 0, (4, 4))
    assert loaded.ignored_keys == ["pooler.dense.bias", "pooler.dense.weight"]  # no tanh pooler in the core
    ref = _hf_run(model, x)
    check("transformers ViTModel", {"features": (out.output, ref.last_hidden_state),
                                    "pooled": (out.pooled, ref.last_hidden_state[:, 0])},
          out.attentions, list(ref.attentions))


def test_vit_for_classification_state_dict_without_qkv_bias(tmp_path) -> None:
    """A bare torch.save of a transformers-5 state dict (new key names), no config: heads given."""
    config = _eager(hf.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96,
                                 image_size=48, patch_size=16, num_labels=7, qkv_bias=False, hidden_act="gelu"))
    model = scramble(hf.ViTForImageClassification(config), seed=11)
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")
    x = images(1, 48, 48, seed=11)
    loaded, out = core_run(tmp_path / "pytorch_model.bin", x, heads=2)
    c = loaded.config
    assert (c.qkv_bias, c.num_classes, c.heads) == (False, 7, 2)
    assert loaded.origin["blocks.0.attn.qkv.weight"] == (
        "vit.layers.0.attention.q_proj.weight + vit.layers.0.attention.k_proj.weight + vit.layers.0.attention.v_proj.weight")
    ref = _hf_run(model, x)
    check("transformers ViTForImageClassification (no qkv bias)", {"logits": (out.logits, ref.logits)},
          out.attentions, list(ref.attentions))


def test_clip_vision_model_safetensors_without_config(tmp_path) -> None:
    """No config.json: heads by CLIP's 64 rule, QuickGELU and eps 1e-5 from transformers' CLIP defaults."""
    config = _eager(hf.CLIPVisionConfig(hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
                                        intermediate_size=256, image_size=32, patch_size=8))
    model = scramble(hf.CLIPVisionModel(config), seed=12)
    save_file(model.state_dict(), tmp_path / "clip_vision.safetensors")
    x = images(2, 32, 32, seed=12)
    loaded, out = core_run(tmp_path / "clip_vision.safetensors", x)
    c = loaded.config
    assert loaded.family == "hf-clip"
    assert (c.heads, c.activation, c.eps, c.patch_bias, c.pre_norm, c.final_norm, c.fc_norm) == (
        2, "quick_gelu", 1e-5, False, True, False, True)
    ref = _hf_run(model, x)
    check("transformers CLIPVisionModel", {"features": (out.output, ref.last_hidden_state),
                                           "pooled": (out.pooled, ref.pooler_output)},
          out.attentions, list(ref.attentions))


def test_clip_vision_with_projection_and_config(tmp_path) -> None:
    """config.json says gelu (not the class default): it is followed; the projection becomes the head."""
    config = _eager(hf.CLIPVisionConfig(hidden_size=96, num_hidden_layers=1, num_attention_heads=3,
                                        intermediate_size=192, image_size=48, patch_size=16, projection_dim=24,
                                        hidden_act="gelu"))
    model = scramble(hf.CLIPVisionModelWithProjection(config), seed=13)
    model.save_pretrained(tmp_path / "clipproj")
    x = images(1, 48, 48, seed=13)
    loaded, out = core_run(tmp_path / "clipproj", x)
    c = loaded.config
    assert (c.heads, c.activation, c.num_classes, c.head_bias) == (3, "gelu", 24, False)
    ref = _hf_run(model, x)
    check("transformers CLIPVisionModelWithProjection", {"features": (out.output, ref.last_hidden_state),
                                                         "projection": (out.logits, ref.image_embeds)},
          out.attentions, list(ref.attentions))


def test_dinov2_and_dinov2_with_registers(tmp_path) -> None:
    for cls, cfg_cls, extra, label in (
        (hf.Dinov2Model, hf.Dinov2Config, {}, "hf-dinov2"),
        (hf.Dinov2WithRegistersModel, hf.Dinov2WithRegistersConfig, {"num_register_tokens": 2}, "hf-dinov2-reg"),
    ):
        config = _eager(cfg_cls(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=28,
                                patch_size=7, **extra))
        model = scramble(cls(config), seed=14)
        model.save_pretrained(tmp_path / label)
        x = images(1, 28, 28, seed=14)
        loaded, out = core_run(tmp_path / label, x)
        c = loaded.config
        assert loaded.family == label
        assert (c.layer_scale, c.pos_prefix_rows, c.num_registers, c.eps) == (True, 1, extra.get("num_register_tokens", 0), 1e-6)
        assert loaded.ignored_keys == ["embeddings.mask_token"]
        ref = _hf_run(model, x)
        check(f"transformers {cls.__name__}", {"features": (out.output, ref.last_hidden_state),
                                               "pooled": (out.pooled, ref.pooler_output)},
              out.attentions, list(ref.attentions))


def test_deit_with_distillation_token(tmp_path) -> None:
    config = _eager(hf.DeiTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=128,
                                  image_size=32, patch_size=8, num_labels=5))
    model = scramble(hf.DeiTForImageClassificationWithTeacher(config), seed=15)
    model.save_pretrained(tmp_path / "deit")
    x = images(1, 32, 32, seed=15)
    loaded, out = core_run(tmp_path / "deit", x)
    assert loaded.family == "hf-deit" and loaded.config.distilled
    ref = _hf_run(model, x)
    check("transformers DeiTForImageClassificationWithTeacher", {"logits": (out.logits, ref.logits)},
          out.attentions, list(ref.attentions))


def test_clip_model_vision_tower_with_text_tower_ignored(tmp_path) -> None:
    vision = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=1, intermediate_size=128, image_size=32,
                  patch_size=16)
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=1, intermediate_size=64, vocab_size=50,
                bos_token_id=0, eos_token_id=1, pad_token_id=1)
    model = scramble(hf.CLIPModel(_eager(hf.CLIPConfig(vision_config=vision, text_config=text, projection_dim=16))), 16)
    model.save_pretrained(tmp_path / "clip")
    x = images(1, 32, 32, seed=16)
    loaded, out = core_run(tmp_path / "clip", x)
    assert loaded.family == "hf-clip" and loaded.config.num_classes == 16
    assert "logit_scale" in loaded.ignored_keys and "text_projection.weight" in loaded.ignored_keys
    assert all(k.startswith(("text_model.", "text_projection.", "logit_scale")) for k in loaded.ignored_keys)
    with torch.no_grad():
        ref = model.vision_model(pixel_values=x, output_attentions=True)
        embeds = model.get_image_features(pixel_values=x)
    embeds = getattr(embeds, "pooler_output", embeds)  # transformers 5 returns an output object
    check("transformers CLIPModel vision tower", {"pooled": (out.pooled, ref.pooler_output),
                                                  "projection": (out.logits, embeds)},
          out.attentions, list(ref.attentions))


def test_facebookresearch_dinov2_layout_against_transformers(tmp_path) -> None:
    """The original DINOv2 repo's names (register_tokens, mask_token, a class row in pos_embed), made
    by renaming a transformers Dinov2WithRegisters state dict, give transformers' numbers."""
    config = _eager(hf.Dinov2WithRegistersConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=1,
                                                 image_size=28, patch_size=7, num_register_tokens=4))
    model = scramble(hf.Dinov2WithRegistersModel(config), seed=17)
    sd = model.state_dict()
    names = {"embeddings.cls_token": "cls_token", "embeddings.mask_token": "mask_token",
             "embeddings.register_tokens": "register_tokens", "embeddings.position_embeddings": "pos_embed",
             "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
             "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
             "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
    original = {new: sd[old] for old, new in names.items()}
    for i in range(2):
        hf_block, block = f"encoder.layer.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            original[block + f"attn.qkv.{part}"] = torch.cat(
                [sd[hf_block + f"attention.{n}_proj.{part}"] for n in "qkv"])
            original[block + f"attn.proj.{part}"] = sd[hf_block + f"attention.o_proj.{part}"]
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                original[block + f"{name}.{part}"] = sd[hf_block + f"{name}.{part}"]
        original[block + "ls1.gamma"] = sd[hf_block + "layer_scale1.lambda1"]
        original[block + "ls2.gamma"] = sd[hf_block + "layer_scale2.lambda1"]
    assert len(original) == len(sd) - 2 * 2 * 2  # q, k, v fused: two tensors fewer per block and kind
    torch.save(original, tmp_path / "dinov2_vits14_reg4_pretrain.pth")
    x = images(1, 28, 28, seed=17)
    loaded, out = core_run(tmp_path / "dinov2_vits14_reg4_pretrain.pth", x, heads=1)
    c = loaded.config
    assert loaded.family == "dinov2-reg" and (c.num_registers, c.pos_prefix_rows) == (4, 1)
    assert loaded.ignored_keys == ["mask_token"]
    assert loaded.preprocess.resize_to == (256, 256) and loaded.preprocess.size == (224, 224)
    ref = _hf_run(model, x)
    check("facebookresearch DINOv2-reg layout vs transformers", {"features": (out.output, ref.last_hidden_state)},
          out.attentions, list(ref.attentions))

"""Each family's key table against a tiny peer model with random weights: detected, mapped completely
(no key left over, every core key present, shapes right), the unused keys only the known ones.

The expected core keys and shapes are written out here from the peer's own sizes and the core's
documented names (vitcli/core/config.py), not from the tables under test.
"""

from dataclasses import dataclass

import open_clip
import pytest
import timm
import torch
import transformers as hf
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from vitcli.checkpoints.families import FAMILIES, detect, map_keys


@dataclass
class Spec:
    """A ViT's core state dict, described by its sizes and which optional parts it has."""

    dim: int
    mlp: int
    patch: int
    depth: int
    table_rows: int
    cls: bool = True
    dist: bool = False
    regs: int = 0
    patch_bias: bool = True
    pre_norm: bool = False
    norm: bool = True
    fc_norm: bool = False
    head: int = 0
    head_bias: bool = True
    layer_scale: bool = False

    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Core key → shape, from vitcli/core/config.py's list of names."""
        d, m = self.dim, self.mlp
        out: dict[str, tuple[int, ...]] = {"pos_embed": (1, self.table_rows, d),
                                           "patch_embed.proj.weight": (d, 3, self.patch, self.patch)}
        flags = {"cls_token": self.cls, "dist_token": self.dist}
        out.update({k: (1, 1, d) for k, on in flags.items() if on})
        if self.regs:
            out["reg_tokens"] = (1, self.regs, d)
        norms = [n for n, on in (("norm_pre", self.pre_norm), ("norm", self.norm), ("fc_norm", self.fc_norm)) if on]
        out.update({f"{n}.{p}": (d,) for n in norms for p in ("weight", "bias")})
        if self.patch_bias:
            out["patch_embed.proj.bias"] = (d,)
        if self.head:
            for name in ("head", "head_dist") if self.dist else ("head",):
                out[f"{name}.weight"] = (self.head, d)
                if self.head_bias:
                    out[f"{name}.bias"] = (self.head,)
        for i in range(self.depth):
            b = f"blocks.{i}."
            out.update({b + "norm1.weight": (d,), b + "norm1.bias": (d,), b + "norm2.weight": (d,), b + "norm2.bias": (d,),
                        b + "attn.qkv.weight": (3 * d, d), b + "attn.qkv.bias": (3 * d,),
                        b + "attn.proj.weight": (d, d), b + "attn.proj.bias": (d,),
                        b + "mlp.fc1.weight": (m, d), b + "mlp.fc1.bias": (m,),
                        b + "mlp.fc2.weight": (d, m), b + "mlp.fc2.bias": (d,)})
            if self.layer_scale:
                out.update({b + "ls1.gamma": (d,), b + "ls2.gamma": (d,)})
        return out


def _timm(name: str, **kw):
    return timm.create_model(name, pretrained=False, **kw).state_dict()


def _hf_vit():
    cfg = hf.ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=96, image_size=32,
                       patch_size=16)
    return hf.ViTModel(cfg).state_dict()  # with its tanh pooler


def _hf_clip():
    cfg = hf.CLIPConfig(vision_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                           intermediate_size=96, image_size=32, patch_size=16),
                        text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                         intermediate_size=64), projection_dim=16)
    return hf.CLIPModel(cfg).state_dict()


def _hf_clip_vision():
    return hf.CLIPVisionModel(hf.CLIPVisionConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2,
                                                  intermediate_size=96, image_size=32, patch_size=16)).state_dict()


def _hf_dinov2(registers: int):
    kw = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, mlp_ratio=4, image_size=28,
              patch_size=14)
    if registers:
        return hf.Dinov2WithRegistersModel(hf.Dinov2WithRegistersConfig(**kw, num_register_tokens=registers)).state_dict()
    return hf.Dinov2Model(hf.Dinov2Config(**kw)).state_dict()


def _torchvision():
    return TorchvisionViT(image_size=32, patch_size=16, num_layers=2, num_heads=2, hidden_dim=64, mlp_dim=96,
                          num_classes=7).state_dict()


def _open_clip():
    cfg = open_clip.get_model_config("ViT-B-32")
    cfg["vision_cfg"] = {**cfg["vision_cfg"], "layers": 2, "width": 128, "image_size": 64}
    cfg["text_cfg"] = {**cfg["text_cfg"], "layers": 1}
    return open_clip.CLIP(**cfg).state_dict()  # embed_dim 512: visual.proj (128, 512)


TEXT_TOWER = ("text_model.", "text_projection", "logit_scale", "transformer.", "token_embedding.", "positional_embedding",
              "ln_final.", "attn_mask")

CASES = {
    "timm vit": (lambda: _timm("vit_tiny_patch16_224", img_size=32, depth=2, num_classes=5), "timm", "",
                 Spec(192, 768, 16, 2, 1 + 4, head=5), ()),
    "timm deit": (lambda: _timm("deit_tiny_distilled_patch16_224", img_size=32, depth=1), "timm", "",
                  Spec(192, 768, 16, 1, 2 + 4, dist=True, head=1000), ()),
    "timm dinov2-reg": (lambda: _timm("vit_small_patch14_reg4_dinov2", img_size=28, depth=1), "timm", "",
                        Spec(384, 1536, 14, 1, 4, regs=4, layer_scale=True), ()),  # no class row (no_embed_class)
    "timm clip": (lambda: _timm("vit_base_patch16_clip_224", img_size=32, depth=1), "timm", "",
                  Spec(768, 3072, 16, 1, 1 + 4, patch_bias=False, pre_norm=True, head=1000), ()),
    "hf ViTModel": (_hf_vit, "hf-vit", "", Spec(64, 96, 16, 2, 1 + 4), ("pooler.dense.",)),
    "hf CLIPModel": (_hf_clip, "hf-clip", "vision_model.",
                     Spec(64, 96, 16, 2, 1 + 4, patch_bias=False, pre_norm=True, norm=False, fc_norm=True, head=16,
                          head_bias=False), TEXT_TOWER),
    "hf CLIPVisionModel": (_hf_clip_vision, "hf-clip", "",
                           Spec(64, 96, 16, 1, 1 + 4, patch_bias=False, pre_norm=True, norm=False, fc_norm=True), ()),
    "hf Dinov2Model": (lambda: _hf_dinov2(0), "hf-dinov2", "", Spec(32, 128, 14, 1, 1 + 4, layer_scale=True),
                       ("embeddings.mask_token",)),
    "hf Dinov2WithRegisters": (lambda: _hf_dinov2(4), "hf-dinov2", "",
                               Spec(32, 128, 14, 1, 1 + 4, regs=4, layer_scale=True), ("embeddings.mask_token",)),
    "torchvision": (_torchvision, "torchvision", "", Spec(64, 96, 16, 2, 1 + 4, head=7), ()),
    "open_clip": (_open_clip, "clip", "visual.",
                  Spec(128, 512, 32, 2, 1 + 4, patch_bias=False, pre_norm=True, head=512, head_bias=False), TEXT_TOWER),
}


@pytest.mark.parametrize("case", list(CASES))
def test_family_table_maps_a_peer_model_completely(case: str) -> None:
    build, family, root, spec, unused = CASES[case]
    torch.manual_seed(0)
    state = build()
    before = {k: v for k, v in state.items()}
    fam, found_root = detect(state)
    assert (fam.name, found_root) == (family, root)
    mapped = map_keys(state, fam, found_root)
    assert mapped.leftover == [] and mapped.problems == []
    assert all(k.removeprefix(root).startswith(unused) or k.startswith(unused) for k in mapped.ignored), mapped.ignored
    expected = spec.shapes()
    got = {k: tuple(v.shape) for k, v in mapped.tensors.items()}
    assert sorted(got) == sorted(expected), (set(got) ^ set(expected))
    assert got == expected
    assert mapped.depth == spec.depth
    # every source key is used once or listed as unused; the input is untouched
    used = {part for source in mapped.origin.values() for part in source.split(" + ")}
    assert used | set(mapped.ignored) == set(state) and not used & set(mapped.ignored)
    assert state.keys() == before.keys() and all(state[k] is before[k] for k in state)


def test_separate_q_k_v_are_stacked_in_order() -> None:
    """transformers' q, k, v projections become one (3D, D) qkv, q first (the core's order)."""
    state = _hf_vit()
    fam, root = detect(state)
    qkv = map_keys(state, fam, root).tensors["blocks.1.attn.qkv.weight"]
    parts = [state[f"layers.1.attention.{n}_proj.weight"] for n in "qkv"]
    assert torch.equal(qkv, torch.cat(parts, 0))


def test_every_family_has_a_default_variant_and_distinct_labels() -> None:
    labels = [v.label for f in FAMILIES for v in f.variants]
    assert len(labels) == len(set(labels))
    assert set(labels) == {"timm-vit", "deit", "dino", "dinov2", "dinov2-reg", "timm-dinov2", "timm-dinov2-reg",
                           "timm-clip", "hf-vit", "hf-deit", "hf-clip", "hf-dinov2", "hf-dinov2-reg", "torchvision",
                           "openai-clip", "open_clip",
                           "dinov3", "hf-dinov3", "timm-dinov3", "timm-eva02", "timm-eva", "timm-pe",  # RoPE families
                           "timm-pe-spatial", "timm-pe-lang",

                           # issue 13 (mapbias): SigLIP, AIMv2, DeiT III, BEiT / v2 / data2vec
                           "timm-siglip", "timm-aimv2", "deit3", "timm-beit", "timm-beitv2", "hf-siglip", "hf-aimv2",
                           "hf-beit", "hf-data2vec-vision", "timm-naflex-siglip2", "hf-siglip2"}
    for fam in FAMILIES:  # the last variant always applies
        assert fam.variants[-1].when.__name__ == "always", fam.name

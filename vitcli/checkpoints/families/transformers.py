"""Hugging Face transformers: ViTModel (and DeiT), CLIPVisionModel / CLIPModel's tower, Dinov2Model.

Key names come in two styles: the hub's legacy names (`encoder.layer.{i}.attention.attention.query`)
and transformers 5's in-memory names (`layers.{i}.attention.q_proj`); both are in each table. The
activation follows config.json's `hidden_act`, else the config class's default; preprocessing
follows preprocessor_config.json, else the image processor class's defaults.
"""

from collections.abc import Callable

from vitcli.checkpoints.config import HFProcessor
from vitcli.checkpoints.families.base import Evidence, Family, Rule, Variant, Why, always, pair
from vitcli.checkpoints.preprocess import (IMAGENET, INCEPTION, OPENAI_CLIP, Preprocess, exact_resize, normalize_name,
                                           shortest_crop)
from vitcli.core.config import ViTConfig
from vitcli.errors import VitcliError

HF_ACT = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
          "gelu_fast": "gelu_tanh", "silu": "silu"}
PIL_FILTERS = {2: "bilinear", 3: "bicubic"}
# transformers' interpolate_pos_encoding: bicubic to the new grid's size, no antialiasing. ViT, DeiT, CLIP,
# SigLIP and BEiT refuse another size unless it is passed interpolate_pos_encoding=True: vitcli resamples as that does.
HF_RESAMPLE = ("bicubic_plain", "bicubic, no antialias, as transformers' "
               "interpolate_pos_encoding=True (the model refuses other sizes without it)")
HF_DINOV2_RESAMPLE = ("bicubic_plain", "bicubic, no antialias, in float32 "
                      "(transformers Dinov2Embeddings.interpolate_pos_encoding)")
HF_DINOV2_REG_RESAMPLE = ("bicubic", "antialiased bicubic, in float32 "
                          "(transformers Dinov2WithRegistersEmbeddings.interpolate_pos_encoding)")
_QKV_LEGACY = tuple(f"attention.attention.{n}" for n in ("query", "key", "value"))
_QKV_V5 = tuple(f"attention.{n}_proj" for n in ("q", "k", "v"))


def hf_activation(default: str, family: str) -> Callable[[Evidence, str], Why]:
    """config.json's hidden_act, else `default` (the transformers config class's)."""
    def rule(ev: Evidence, label: str) -> Why:
        act = ev.files.hidden_act
        if act is None:
            return default, f"activation {default} (transformers' default for {family})"
        if act not in HF_ACT:
            raise VitcliError(ev.name, f"config.json hidden_act '{act}' is not one vitcli implements "
                              f"({', '.join(HF_ACT)})")
        return HF_ACT[act], f"activation {HF_ACT[act]} (config.json hidden_act {act})"
    return rule


def processor_preprocess(ev: Evidence, c: ViTConfig) -> Preprocess | None:
    """preprocessor_config.json as a Preprocess (shortest-edge resize and crop, or exact resize)."""
    p: HFProcessor | None = ev.files.processor
    if p is None:
        return None
    mean, std = p.mean or INCEPTION[0], p.std or INCEPTION[1]
    kind = dict(interpolation=PIL_FILTERS.get(p.resample, "bicubic"), mean=mean, std=std,
                normalize=normalize_name(mean, std), crop_pct=None, crop_rounding="floor",
                source=f"transformers {p.type} (preprocessor_config.json)")
    if p.shortest_edge:
        short = (p.shortest_edge, p.shortest_edge)
        if p.do_center_crop is not False:
            return Preprocess(p.crop_size or c.image_size, short, "shortest", True, **kind)  # type: ignore[arg-type]
        return Preprocess(short, short, "shortest", False, **kind)  # type: ignore[arg-type]
    hw = p.size or c.image_size
    crop = p.crop_size or hw
    crop_on = bool(p.do_center_crop)
    return Preprocess(crop if crop_on else hw, hw, "exact", crop_on, **kind)  # type: ignore[arg-type]


HF_VIT = Family(
    "hf-vit", "Hugging Face transformers ViTModel / ViTForImageClassification (and DeiT)",
    markers=(r"^embeddings\.patch_embeddings\.projection\.weight$", r"\.layernorm_before\.weight$"),
    roots=("vit.", "deit.", ""),
    block_prefixes=("encoder.layer.{i}.", "layers.{i}."),
    block_styles=(0, 1),  # legacy names (the hub's) / transformers-5 in-memory names
    top=(
        Rule("cls_token", ("embeddings.cls_token",)),
        Rule("dist_token", ("embeddings.distillation_token",)),
        Rule("pos_embed", ("embeddings.position_embeddings",)),
        *pair("patch_embed.proj", "embeddings.patch_embeddings.projection"),
        *pair("norm", "layernorm"),
    ),
    block=(
        *pair("norm1", "layernorm_before"),
        *pair("attn.qkv", (_QKV_LEGACY, _QKV_V5)),
        *pair("attn.proj", ("attention.output.dense", "attention.o_proj")),
        *pair("norm2", "layernorm_after"),
        *pair("mlp.fc1", ("intermediate.dense", "mlp.fc1")),
        *pair("mlp.fc2", ("output.dense", "mlp.fc2")),
    ),
    variants=(
        Variant("hf-deit", lambda ev: ev.has("dist_token"),
                lambda c: exact_resize(c.image_size, IMAGENET, "bicubic", "transformers DeiTImageProcessor defaults")),
        Variant("hf-vit", always,
                lambda c: exact_resize(c.image_size, INCEPTION, "bilinear", "transformers ViTImageProcessor defaults")),
    ),
    outside=(*pair("head", ("classifier", "cls_classifier")), *pair("head_dist", "distillation_classifier")),
    ignore=(r"^embeddings\.mask_token$", r"^pooler\.dense\.(weight|bias)$"),
    eps=1e-12,
    activation=hf_activation("gelu", "hf-vit"),
    file_preprocess=processor_preprocess,
    pos_resample=HF_RESAMPLE,
    required=("patch_embed.proj.weight", "pos_embed", "cls_token", "norm.weight"),
)

HF_CLIP = Family(
    "hf-clip", "Hugging Face transformers CLIPVisionModel / CLIPModel vision tower",
    markers=(r"^embeddings\.class_embedding$", r"^pre_layrnorm\.weight$"),
    roots=("vision_model.", ""),
    block_prefixes=("encoder.layers.{i}.",),
    top=(
        Rule("cls_token", ("embeddings.class_embedding",), "3d"),
        Rule("pos_embed", ("embeddings.position_embedding.weight",), "3d"),
        *pair("patch_embed.proj", "embeddings.patch_embedding"),
        *pair("norm_pre", "pre_layrnorm"),
        *pair("fc_norm", "post_layernorm"),  # HF applies it to the pooled class token only
    ),
    block=(
        *pair("norm1", "layer_norm1"),
        *pair("attn.qkv", (tuple(f"self_attn.{n}_proj" for n in "qkv"),)),
        *pair("attn.proj", "self_attn.out_proj"),
        *pair("norm2", "layer_norm2"),
        *pair("mlp.fc1", "mlp.fc1"),
        *pair("mlp.fc2", "mlp.fc2"),
    ),
    variants=(Variant("hf-clip", always, lambda c: shortest_crop(
        c.image_size, c.image_size[0], OPENAI_CLIP, "bicubic", "floor", "transformers CLIPImageProcessor defaults")),),
    outside=(Rule("head.weight", ("visual_projection.weight",)),),
    ignore=(r"^embeddings\.position_ids$",),
    ignore_outside=(r"^text_model\.", r"^text_projection\.", r"^logit_(scale|bias)$"),
    eps=1e-5,
    activation=hf_activation("quick_gelu", "hf-clip"),
    file_preprocess=processor_preprocess,
    pos_resample=HF_RESAMPLE,
    required=("patch_embed.proj.weight", "pos_embed", "cls_token", "fc_norm.weight"),
)


def _dinov2_default(c: ViTConfig) -> Preprocess:
    return shortest_crop((224, 224), 256, IMAGENET, "bicubic", "floor",
                         "transformers BitImageProcessor as configured for facebook/dinov2")


HF_DINOV2 = Family(
    "hf-dinov2", "Hugging Face transformers Dinov2Model / Dinov2WithRegistersModel",
    markers=(r"^embeddings\.patch_embeddings\.projection\.weight$", r"\.layer_scale1\.lambda1$"),
    roots=("dinov2.", "dinov2_with_registers.", ""),
    block_prefixes=("encoder.layer.{i}.", "layers.{i}."),
    block_styles=(0, 1),
    top=(
        Rule("cls_token", ("embeddings.cls_token",)),
        Rule("reg_tokens", ("embeddings.register_tokens",)),
        Rule("pos_embed", ("embeddings.position_embeddings",)),
        *pair("patch_embed.proj", "embeddings.patch_embeddings.projection"),
        *pair("norm", "layernorm"),
    ),
    block=(
        *pair("norm1", "norm1"),
        *pair("attn.qkv", (_QKV_LEGACY, _QKV_V5)),
        *pair("attn.proj", ("attention.output.dense", "attention.o_proj")),
        Rule("ls1.gamma", ("layer_scale1.lambda1",)),
        *pair("norm2", "norm2"),
        *pair("mlp.fc1", "mlp.fc1"),
        *pair("mlp.fc2", "mlp.fc2"),
        Rule("ls2.gamma", ("layer_scale2.lambda1",)),
    ),
    variants=(Variant("hf-dinov2-reg", lambda ev: ev.has("reg_tokens"), _dinov2_default,
                      pos_resample=HF_DINOV2_REG_RESAMPLE),
              Variant("hf-dinov2", always, _dinov2_default)),
    ignore=(r"^embeddings\.mask_token$",),
    eps=1e-6,
    activation=hf_activation("gelu", "hf-dinov2"),
    file_preprocess=processor_preprocess,
    pos_resample=HF_DINOV2_RESAMPLE,
    required=("patch_embed.proj.weight", "pos_embed", "cls_token", "norm.weight"),
)

__all__ = ["HF_CLIP", "HF_DINOV2", "HF_RESAMPLE", "HF_VIT"]

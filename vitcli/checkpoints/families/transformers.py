"""Hugging Face transformers: ViTModel (and DeiT), CLIPVisionModel / CLIPModel's tower, Dinov2Model.

Key names come in two styles: the hub's legacy names (`encoder.layer.{i}.attention.attention.query`)
and transformers 5's in-memory names (`layers.{i}.attention.q_proj`); both are in each table. The
activation follows config.json's `hidden_act`, else the config class's default; preprocessing
follows preprocessor_config.json read by its image processor class's rules (`PROCESSOR_CLASSES`),
else that class's defaults at the model's size.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, cast

from vitcli.checkpoints.config import HFProcessor
from vitcli.checkpoints.families.base import Evidence, Family, Rule, Variant, Why, always, pair
from vitcli.checkpoints.preprocess import IMAGENET, INCEPTION, OPENAI_CLIP, Preprocess, normalize_name
from vitcli.core.config import ViTConfig
from vitcli.errors import VitcliError

HF_ACT = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
          "gelu_fast": "gelu_tanh", "silu": "silu"}
PIL_FILTERS = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic"}  # PIL numbers vitcli resizes with
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


@dataclass(frozen=True)
class ProcessorClass:
    """A transformers image processor class: its attributes in the file's terms (what a field the file
    leaves out or sets to null becomes) and the steps no field shows."""

    defaults: HFProcessor
    rescale_first: bool = False  # x/255 before the resize, so the resize is float (DINOv3ViTImageProcessor)
    naflex: bool = False  # aspect kept within max_num_patches of patch_size (Siglip2ImageProcessor)
    pil: bool = True  # has a PIL backend class (AutoImageProcessor with backend="pil" / use_fast=False)


def _class(name: str, mean_std, resample: int, size: int | tuple[int, int] | None = None, shortest: int | None = None,
           crop: int | None = None, center_crop: bool | None = None, square: bool = True, **rules) -> ProcessorClass:
    mean, std = mean_std
    return ProcessorClass(HFProcessor(name, tuple(mean), tuple(std), resample, size, shortest,
                                      (crop, crop) if crop else None, center_crop, True, True, 1 / 255, True, square),
                          **rules)


# transformers 5's image processor classes (their class attributes; tests/checkpoints/test_processors.py
# checks each against the installed transformers). An integer size is H = W where default_to_square.
PROCESSOR_CLASSES = {c.defaults.type: c for c in (
    _class("ViTImageProcessor", INCEPTION, 2, size=(224, 224)),
    _class("DeiTImageProcessor", INCEPTION, 3, size=(256, 256), crop=224, center_crop=True),
    _class("CLIPImageProcessor", OPENAI_CLIP, 3, shortest=224, crop=224, center_crop=True, square=False),
    _class("BitImageProcessor", OPENAI_CLIP, 3, shortest=224, crop=224, center_crop=True, square=False),
    _class("SiglipImageProcessor", INCEPTION, 3, size=(224, 224), square=False),
    ProcessorClass(replace(_class("Siglip2ImageProcessor", INCEPTION, 2).defaults, patch_size=16, max_num_patches=256),
                   naflex=True),
    _class("BeitImageProcessor", INCEPTION, 3, size=(224, 224), crop=224, center_crop=False),
    _class("DINOv3ViTImageProcessor", IMAGENET, 2, size=(224, 224), rescale_first=True, pil=False),
)}
BASE_PROCESSOR = ProcessorClass(HFProcessor("BaseImageProcessor", resample=2, do_resize=True, do_rescale=True,
                                            rescale_factor=1 / 255, do_normalize=True, default_to_square=True))
TORCHVISION_NOTE = "torchvision backend: transformers' AutoImageProcessor default"


def over_class(defaults: HFProcessor, given: HFProcessor) -> HFProcessor:
    """The file's fields over the class's, as transformers' _set_attributes does (null: the class's);
    a size in either form replaces the class's size in both."""
    changes = {f.name: getattr(given, f.name) for f in fields(given) if getattr(given, f.name) not in (None, "")}
    if "size" in changes or "shortest_edge" in changes:
        changes = {"size": None, "shortest_edge": None, **changes}
    return replace(defaults, **changes)


def _refuse(where: str, p: HFProcessor) -> None:
    """Settings vitcli does not reproduce: one line naming the file and the field."""
    problems = [(p.do_resize is False, "do_resize false"), (p.do_rescale is False, "do_rescale false"),
                (p.rescale_factor is not None and not math.isclose(p.rescale_factor, 1 / 255),
                 "rescale_factor ≠ 1/255"),
                (p.resample not in PIL_FILTERS, f"resample {p.resample} (only {', '.join(map(str, PIL_FILTERS))})")]
    for bad, what in problems:
        if bad:
            raise VitcliError(where, f"{p.type} with {what} is not a preprocessing vitcli reproduces")


def class_preprocess(given: HFProcessor, c: ViTConfig, where: str = "preprocessor_config.json") -> Preprocess:
    """What transformers' AutoImageProcessor does with these settings: the class's rules (its table
    row) under the given fields, run with torchvision on tensors (its default backend)."""
    where = given.file or where
    known = PROCESSOR_CLASSES.get(given.type)
    k = known or BASE_PROCESSOR
    p = over_class(k.defaults, given)
    _refuse(where, p)
    mean, std = (p.mean, p.std) if p.do_normalize is not False else ((0.0,) * 3, (1.0,) * 3)
    if mean is None or std is None:
        raise VitcliError(where, f"{p.type}: image_mean / image_std missing")
    note = "" if known else f"; {given.type or 'no class named'}: not in vitcli's table, transformers' base rules"
    source = f"transformers {p.type} ({Path(where).name if given.file else where}; {TORCHVISION_NOTE}{note})"
    resample = cast(int, p.resample)  # in PIL_FILTERS: _refuse checked it
    kind: dict[str, Any] = dict(interpolation=PIL_FILTERS[resample], mean=mean, std=std,
                                normalize=normalize_name(mean, std), crop_pct=None, crop_rounding="floor",
                                source=source, backend="torch", rescale_first=k.rescale_first)
    if k.naflex:
        return Preprocess(c.image_size, c.image_size, "patches", False,
                          patch_size=p.patch_size, max_patches=p.max_num_patches, **kind)
    square = p.default_to_square is not False
    if p.shortest_edge or (isinstance(p.size, int) and not square):
        n = p.shortest_edge or p.size
        resize, mode = (n, n), "shortest"
    elif p.size is not None:
        resize, mode = ((p.size, p.size) if isinstance(p.size, int) else p.size), "exact"
    else:
        raise VitcliError(where, f"{p.type}: no size")
    if not p.do_center_crop:
        return Preprocess(resize, resize, mode, False, **kind)  # type: ignore[arg-type]
    if p.crop_size is None:
        raise VitcliError(where, f"{p.type}: do_center_crop without crop_size")
    return Preprocess(p.crop_size, resize, mode, True, **kind)  # type: ignore[arg-type]


def processor_preprocess(ev: Evidence, c: ViTConfig) -> Preprocess | None:
    """preprocessor_config.json read by its image processor class's rules (`class_preprocess`)."""
    p: HFProcessor | None = ev.files.processor
    return None if p is None else class_preprocess(p, c)


def class_default(name: str, **fixed) -> Callable[[ViTConfig], Preprocess]:
    """A family's preprocessing without a preprocessor_config.json: transformers' class `name` at the
    model's own size (its table's), unless `fixed` names the sizes (the hub's repositories' values)."""
    def default(c: ViTConfig) -> Preprocess:
        k = PROCESSOR_CLASSES[name]
        own = (dict(patch_size=c.patch_size, max_num_patches=c.grid[0] * c.grid[1]) if k.naflex else
               dict(shortest_edge=c.image_size[0], crop_size=c.image_size) if k.defaults.shortest_edge else
               dict(size=c.image_size, crop_size=c.image_size if k.defaults.do_center_crop else None))
        given = HFProcessor(name, **{**own, **fixed})
        return class_preprocess(given, c, "its class defaults, no preprocessor_config.json")
    return default


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
        Variant("hf-deit", lambda ev: ev.has("dist_token"),  # ImageNet mean/std as facebook/deit-* configure it
                class_default("DeiTImageProcessor", mean=IMAGENET[0], std=IMAGENET[1])),
        Variant("hf-vit", always, class_default("ViTImageProcessor")),
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
    variants=(Variant("hf-clip", always, class_default("CLIPImageProcessor"), joint_head=True),),
    outside=(Rule("head.weight", ("visual_projection.weight",)),),
    ignore=(r"^embeddings\.position_ids$",),
    ignore_outside=(r"^text_model\.", r"^text_projection\.", r"^logit_(scale|bias)$"),
    eps=1e-5,
    activation=hf_activation("quick_gelu", "hf-clip"),
    file_preprocess=processor_preprocess,
    pos_resample=HF_RESAMPLE,
    required=("patch_embed.proj.weight", "pos_embed", "cls_token", "fc_norm.weight"),
)


_dinov2_default = class_default("BitImageProcessor", shortest_edge=256, crop_size=(224, 224), mean=IMAGENET[0],
                                std=IMAGENET[1])  # as facebook/dinov2-* configure it


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

__all__ = ["BASE_PROCESSOR", "HF_CLIP", "HF_DINOV2", "HF_RESAMPLE", "HF_VIT", "PROCESSOR_CLASSES", "ProcessorClass",
           "class_default", "class_preprocess", "over_class", "processor_preprocess"]

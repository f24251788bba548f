"""One key table per checkpoint family, a few flags, and the architecture read from tensor shapes.

Each family is a `Family`: where its vision weights live (`roots`), how its blocks are named, a
table from vitcli's core keys (see `vitcli/core/config.py`) to the family's keys, the keys it
carries that a vision model does not use (text towers, poolers, mask tokens), and the defaults
that weights cannot show (LayerNorm eps, activation). Everything else is read from shapes, the
way CLIP's `build_model` does it:

  patch size, channels, D      patch_embed.proj.weight (D, C, P, P)
  depth                        the number of block indices
  MLP size                     blocks.0.mlp.fc1.weight (M, D)
  prefix tokens                cls / dist / register token tensors; registers (1, R, D)
  position rows and grid       pos_embed (1, r + N, D): r ∈ {class+dist, all prefix, 0}, N a square
                               (a non-square grid needs image_size, or comes from a config file)
  biases, layer scale, norms   whether the tensors exist
  head / projection            head.weight (classes, D); CLIP's proj (D, E) is transposed
  heads                        config file when there is one, else D / 64 (CLIP's rule), except
                               the widths whose models use 16 wider heads (1152, 1280, 1408, 1664)

Activation cannot be read from weights. The rule used (and printed by `info`): timm and open_clip
use exact GELU unless the model name says `quickgelu` (timm `vit_*_clip_quickgelu_*`, open_clip
`*-quickgelu`) or open_clip_config.json sets `quick_gelu`; OpenAI CLIP files (TorchScript
archives, or state dicts carrying OpenAI's `input_resolution` / `context_length` / `vocab_size`
entries) use QuickGELU; Hugging Face models follow config.json's `hidden_act`, else the config
class default (ViT, DINOv2: gelu; CLIP: quick_gelu); torchvision uses exact GELU. An explicit
`activation=` always wins.
"""

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from vitcli.checkpoints.preprocess import (IMAGENET, INCEPTION, OPENAI_CLIP, Preprocess, exact_resize, normalize_name,
                                           shortest_crop, timm_preprocess)
from vitcli.core.config import ViTConfig
from vitcli.errors import VitcliError

Source = str | tuple[str, ...]  # one key, or keys concatenated along dim 0 (separate q, k, v → qkv)


@dataclass(frozen=True)
class Rule:
    """One core key and the family keys it can come from (alternatives, first match wins)."""

    core: str
    sources: tuple[Source, ...]
    op: str = ""  # "": as is; "3d": (D,) or (T, D) → (1, T, D); "T": transpose (CLIP's proj)


def _pair(core: str, src: str | tuple[Source, ...], op: str = "") -> list[Rule]:
    """Rules for core.weight and core.bias from src.weight / src.bias (each alternative)."""
    alts = (src,) if isinstance(src, str) else src
    return [Rule(f"{core}.{p}", tuple(_suffix(a, p) for a in alts), op) for p in ("weight", "bias")]


def _suffix(source: Source, part: str) -> Source:
    return f"{source}.{part}" if isinstance(source, str) else tuple(f"{s}.{part}" for s in source)


@dataclass(frozen=True)
class Family:
    """A checkpoint layout: its key table and the flags its weights cannot show."""

    name: str
    title: str
    markers: tuple[str, ...]  # regexes that must each match a key under the root
    roots: tuple[str, ...]  # where the vision model's keys start, most specific first
    block_prefixes: tuple[str, ...]  # with {i}; the first one present is used
    top: tuple[Rule, ...]
    block: tuple[Rule, ...]
    outside: tuple[Rule, ...] = ()  # rules on full keys outside the root (classifier, projection)
    ignore: tuple[str, ...] = ()  # regexes on keys under the root that the vision model does not use
    ignore_outside: tuple[str, ...] = ()  # regexes on full keys outside the root (text tower, …)
    eps: float = 1e-6
    activation: str = "gelu"
    required: tuple[str, ...] = ("patch_embed.proj.weight", "pos_embed")
    block_styles: tuple[int, ...] = ()  # per block prefix: which source alternative names a missing key


TIMM = Family(
    "timm", "timm ViT layout (timm, DeiT, DINO, DINOv2, MAE repos)",
    markers=(r"^patch_embed\.proj\.weight$", r"^blocks\.0\.attn\.qkv\.weight$"),
    roots=("", "backbone.", "encoder."),
    block_prefixes=("blocks.{i}.",),
    top=(
        Rule("cls_token", ("cls_token",)),
        Rule("dist_token", ("dist_token",)),
        Rule("reg_tokens", ("reg_token", "register_tokens")),
        Rule("pos_embed", ("pos_embed",)),
        *_pair("patch_embed.proj", "patch_embed.proj"),
        *_pair("norm_pre", "norm_pre"),
        *_pair("norm", "norm"),
        *_pair("fc_norm", "fc_norm"),
        *_pair("head", "head"),
        *_pair("head_dist", "head_dist"),
    ),
    block=(
        *_pair("norm1", "norm1"), *_pair("attn.qkv", "attn.qkv"), *_pair("attn.proj", "attn.proj"),
        Rule("ls1.gamma", ("ls1.gamma",)), *_pair("norm2", "norm2"), *_pair("mlp.fc1", "mlp.fc1"),
        *_pair("mlp.fc2", "mlp.fc2"), Rule("ls2.gamma", ("ls2.gamma",)),
    ),
    ignore=(r"^mask_token$",),
    ignore_outside=(r"^head\.(mlp|last_layer|bn|last_norm)\b",),  # DINO's projection head next to the backbone
    eps=1e-6,
)

_HF_QKV_LEGACY = tuple(f"attention.attention.{n}" for n in ("query", "key", "value"))
_HF_QKV_V5 = tuple(f"attention.{n}_proj" for n in ("q", "k", "v"))

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
        *_pair("patch_embed.proj", "embeddings.patch_embeddings.projection"),
        *_pair("norm", "layernorm"),
    ),
    block=(
        *_pair("norm1", "layernorm_before"),
        *_pair("attn.qkv", (_HF_QKV_LEGACY, _HF_QKV_V5)),
        *_pair("attn.proj", ("attention.output.dense", "attention.o_proj")),
        *_pair("norm2", "layernorm_after"),
        *_pair("mlp.fc1", ("intermediate.dense", "mlp.fc1")),
        *_pair("mlp.fc2", ("output.dense", "mlp.fc2")),
    ),
    outside=(*_pair("head", ("classifier", "cls_classifier")), *_pair("head_dist", "distillation_classifier")),
    ignore=(r"^embeddings\.mask_token$", r"^pooler\.dense\.(weight|bias)$"),
    eps=1e-12,
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
        *_pair("patch_embed.proj", "embeddings.patch_embedding"),
        *_pair("norm_pre", "pre_layrnorm"),
        *_pair("fc_norm", "post_layernorm"),  # HF applies it to the pooled class token only
    ),
    block=(
        *_pair("norm1", "layer_norm1"),
        *_pair("attn.qkv", (tuple(f"self_attn.{n}_proj" for n in "qkv"),)),
        *_pair("attn.proj", "self_attn.out_proj"),
        *_pair("norm2", "layer_norm2"),
        *_pair("mlp.fc1", "mlp.fc1"),
        *_pair("mlp.fc2", "mlp.fc2"),
    ),
    outside=(Rule("head.weight", ("visual_projection.weight",)),),
    ignore=(r"^embeddings\.position_ids$",),
    ignore_outside=(r"^text_model\.", r"^text_projection\.", r"^logit_(scale|bias)$"),
    eps=1e-5, activation="quick_gelu",
    required=("patch_embed.proj.weight", "pos_embed", "cls_token", "fc_norm.weight"),
)

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
        *_pair("patch_embed.proj", "embeddings.patch_embeddings.projection"),
        *_pair("norm", "layernorm"),
    ),
    block=(
        *_pair("norm1", "norm1"),
        *_pair("attn.qkv", (_HF_QKV_LEGACY, _HF_QKV_V5)),
        *_pair("attn.proj", ("attention.output.dense", "attention.o_proj")),
        Rule("ls1.gamma", ("layer_scale1.lambda1",)),
        *_pair("norm2", "norm2"),
        *_pair("mlp.fc1", "mlp.fc1"),
        *_pair("mlp.fc2", "mlp.fc2"),
        Rule("ls2.gamma", ("layer_scale2.lambda1",)),
    ),
    ignore=(r"^embeddings\.mask_token$",),
    eps=1e-6,
    required=("patch_embed.proj.weight", "pos_embed", "cls_token", "norm.weight"),
)

TORCHVISION = Family(
    "torchvision", "torchvision VisionTransformer (vit_b_16, vit_b_32, vit_l_16, vit_h_14)",
    markers=(r"^conv_proj\.weight$", r"^encoder\.pos_embedding$"),
    roots=("",),
    block_prefixes=("encoder.layers.encoder_layer_{i}.",),
    top=(
        Rule("cls_token", ("class_token",)),
        Rule("pos_embed", ("encoder.pos_embedding",)),
        *_pair("patch_embed.proj", "conv_proj"),
        *_pair("norm", "encoder.ln"),
        *_pair("head", "heads.head"),
    ),
    block=(
        *_pair("norm1", "ln_1"),
        Rule("attn.qkv.weight", ("self_attention.in_proj_weight",)),
        Rule("attn.qkv.bias", ("self_attention.in_proj_bias",)),
        *_pair("attn.proj", "self_attention.out_proj"),
        *_pair("norm2", "ln_2"),
        *_pair("mlp.fc1", ("mlp.0", "mlp.linear_1")),
        *_pair("mlp.fc2", ("mlp.3", "mlp.linear_2")),
    ),
    eps=1e-6,
    required=("patch_embed.proj.weight", "pos_embed", "cls_token", "norm.weight"),
)

CLIP = Family(
    "clip", "OpenAI CLIP / open_clip visual tower",
    markers=(r"^conv1\.weight$", r"^class_embedding$", r"^transformer\.resblocks\.0\.attn\.in_proj_weight$"),
    roots=("visual.", ""),
    block_prefixes=("transformer.resblocks.{i}.",),
    top=(
        Rule("cls_token", ("class_embedding",), "3d"),
        Rule("pos_embed", ("positional_embedding",), "3d"),
        *_pair("patch_embed.proj", "conv1"),
        *_pair("norm_pre", "ln_pre"),
        *_pair("norm", "ln_post"),
        Rule("head.weight", ("proj",), "T"),
    ),
    block=(
        *_pair("norm1", "ln_1"),
        Rule("attn.qkv.weight", ("attn.in_proj_weight",)),
        Rule("attn.qkv.bias", ("attn.in_proj_bias",)),
        *_pair("attn.proj", "attn.out_proj"),
        Rule("ls1.gamma", ("ls_1.gamma",)),
        *_pair("norm2", "ln_2"),
        *_pair("mlp.fc1", "mlp.c_fc"),
        *_pair("mlp.fc2", "mlp.c_proj"),
        Rule("ls2.gamma", ("ls_2.gamma",)),
    ),
    ignore_outside=(r"^transformer\.", r"^token_embedding\.", r"^positional_embedding$", r"^ln_final\.",
                    r"^text_projection$", r"^logit_(scale|bias)$", r"^(input_resolution|context_length|vocab_size)$",
                    r"^attn_mask$"),
    eps=1e-5,
    required=("patch_embed.proj.weight", "pos_embed", "cls_token"),
)

# Detection order: the most specific markers first (CLIP's text tower also has `transformer.`).
FAMILIES: tuple[Family, ...] = (CLIP, HF_CLIP, HF_DINOV2, HF_VIT, TORCHVISION, TIMM)
FAMILY_NAMES = {f.name: f for f in FAMILIES}
OPENAI_MARKERS = ("input_resolution", "context_length", "vocab_size")
WIDE_HEADS = {1152: 16, 1280: 16, 1408: 16, 1664: 16}  # SigLIP-so400m, ViT-H, ViT-g, ViT-bigG


def detect(keys: Iterable[str], family: str | None = None) -> tuple[Family, str]:
    """The family whose markers all match, and its root prefix; `family` forces one."""
    keys = list(keys)
    if family and family not in FAMILY_NAMES:
        raise VitcliError(family, f"unknown checkpoint family: use one of {', '.join(FAMILY_NAMES)}")
    candidates = (FAMILY_NAMES[family],) if family else FAMILIES
    for fam in candidates:
        for root in fam.roots:
            rel = [k[len(root):] for k in keys if k.startswith(root)]
            if all(any(re.search(m, k) for k in rel) for m in fam.markers):
                return fam, root
    sample = ", ".join(sorted(keys)[:6])
    known = ", ".join(f.name for f in FAMILIES)
    if family:
        raise VitcliError(family, f"the keys do not look like a {family} checkpoint (first keys: {sample})")
    raise VitcliError("checkpoint", f"not a ViT checkpoint vitcli knows ({known}); first keys: {sample}")


@dataclass
class Mapped:
    """The checkpoint in core names, with what was used, ignored and left over."""

    family: Family
    root: str
    tensors: dict[str, Tensor]  # core key → tensor
    origin: dict[str, str]  # core key → source key(s)
    expected: dict[str, str]  # core key → source name(s) it would come from (for 'missing' messages)
    ignored: list[str]  # known keys a vision model does not use
    leftover: list[str]  # keys no rule took
    depth: int
    problems: list[str] = field(default_factory=list)  # shape clashes while concatenating


def map_keys(tensors: dict[str, Tensor], fam: Family, root: str) -> Mapped:
    """Apply the family's table: core tensors, and every source key sorted into used / ignored / left over."""
    used: set[str] = set()
    out: dict[str, Tensor] = {}
    origin: dict[str, str] = {}
    expected: dict[str, str] = {}
    problems: list[str] = []

    def take(core: str, rule: Rule, prefix: str, style: int = 0) -> None:
        expected[core] = _describe(rule.sources[min(style, len(rule.sources) - 1)], prefix)
        for alt in rule.sources:
            names = [prefix + n for n in ((alt,) if isinstance(alt, str) else alt)]
            if all(n in tensors for n in names):
                parts = [tensors[n] for n in names]
                used.update(names)
                try:
                    value = torch.cat(parts, 0) if len(parts) > 1 else parts[0]
                except RuntimeError:
                    problems.append(f"{' + '.join(names)} have shapes {', '.join(str(tuple(p.shape)) for p in parts)} "
                                    "that cannot be stacked")
                    return
                out[core] = _apply(value, rule.op, names[0], problems)
                origin[core] = " + ".join(names)
                return

    for rule in fam.top:
        take(rule.core, rule, root)
    block_prefix, indices = _blocks(tensors, fam, root)
    position = fam.block_prefixes.index(block_prefix)
    style = fam.block_styles[position] if position < len(fam.block_styles) else 0
    depth = max(indices) + 1 if indices else 0
    for i in range(depth):
        prefix = root + block_prefix.format(i=i)
        for rule in fam.block:
            take(f"blocks.{i}.{rule.core}", rule, prefix, style)
    for rule in fam.outside:
        if rule.core not in out:
            take(rule.core, rule, "")
    ignored, leftover = [], []
    for key in tensors:
        if key in used:
            continue
        inside = key.startswith(root)
        patterns = fam.ignore if inside else fam.ignore_outside
        name = key[len(root):] if inside else key
        (ignored if any(re.search(p, name) for p in patterns) else leftover).append(key)
    return Mapped(fam, root, out, origin, expected, sorted(ignored), sorted(leftover), depth, problems)


def _describe(source: Source, prefix: str) -> str:
    return " + ".join(prefix + s for s in ((source,) if isinstance(source, str) else source))


def _apply(value: Tensor, op: str, name: str, problems: list[str]) -> Tensor:
    if op == "3d":
        if value.dim() not in (1, 2, 3):
            problems.append(f"{name} has shape {tuple(value.shape)}, expected (D,), (T, D) or (1, T, D)")
        return value.reshape(1, -1, value.shape[-1])
    if op == "T":
        if value.dim() != 2:
            problems.append(f"{name} has shape {tuple(value.shape)}, expected a (D, E) projection")
            return value
        return value.t()
    return value


def _blocks(tensors: dict[str, Tensor], fam: Family, root: str) -> tuple[str, set[int]]:
    for prefix in fam.block_prefixes:
        pattern = re.compile("^" + re.escape(root + prefix).replace(r"\{i\}", r"(\d+)"))
        indices = {int(m.group(1)) for k in tensors if (m := pattern.match(k))}
        if indices:
            return prefix, indices
    return fam.block_prefixes[0], set()


# ---- architecture from shapes ---------------------------------------------------------------

@dataclass
class Context:
    """What besides the tensors tells us about the model: its name, config files, file format."""

    name: str  # spec or file name, searched for 'quickgelu'
    format: str
    nested_under: str = ""
    configs: dict[str, dict] = field(default_factory=dict)
    all_keys: tuple[str, ...] = ()


def infer_config(m: Mapped, ctx: Context, overrides: dict[str, Any]) -> tuple[ViTConfig, str, Preprocess, list[str]]:
    """The core config, the family label, the preprocessing and notes on every rule applied."""
    t, fam, notes = m.tensors, m.family, []
    missing = [k for k in fam.required if k not in t]
    if missing:
        raise VitcliError(ctx.name, f"{fam.name} checkpoint without {', '.join(m.expected.get(k, k) for k in missing)}")
    w = t["patch_embed.proj.weight"]
    if w.dim() != 4 or w.shape[-1] != w.shape[-2]:
        raise VitcliError(ctx.name, f"{m.expected['patch_embed.proj.weight']} has shape {tuple(w.shape)}; "
                          "expected a square conv kernel (D, C, P, P)")
    dim, in_chans, patch = int(w.shape[0]), int(w.shape[1]), int(w.shape[-1])
    if m.depth == 0:
        raise VitcliError(ctx.name, f"no transformer blocks found ({fam.block_prefixes[0].format(i=0)}…)")
    fc1 = t.get("blocks.0.mlp.fc1.weight")
    mlp_dim = int(fc1.shape[0]) if fc1 is not None else 4 * dim
    hf, timm_cfg, oc = _hf_config(ctx.configs), ctx.configs.get("config.json", {}), ctx.configs.get("open_clip_config.json", {})
    oc_model = oc.get("model_cfg", {}) if isinstance(oc.get("model_cfg"), dict) else {}
    oc_vision = oc_model.get("vision_cfg", {}) if isinstance(oc_model.get("vision_cfg"), dict) else {}

    class_token, distilled = "cls_token" in t, "dist_token" in t
    registers = int(t["reg_tokens"].shape[1]) if "reg_tokens" in t and t["reg_tokens"].dim() == 3 else 0
    image_size = _config_image_size(overrides, hf, timm_cfg, oc_vision)
    grid, pos_rows = _grid_and_rows(t["pos_embed"], patch, class_token, distilled, registers, image_size, ctx.name)
    image_size = (grid[0] * patch, grid[1] * patch)

    heads, why = _heads(dim, overrides, hf, oc_vision)
    notes.append(why)
    family = _label(fam, t, ctx, m)
    activation, why = _activation(fam, family, ctx, hf, timm_cfg, oc_model, overrides)
    notes.append(why)
    eps = float(overrides.get("eps") or hf.get("layer_norm_eps") or fam.eps)
    if fam is TIMM and "norm_pre.weight" in t and not overrides.get("eps"):
        eps = 1e-5  # timm's CLIP towers use nn.LayerNorm's default eps
    if fam in (HF_VIT, HF_CLIP, HF_DINOV2):
        notes.append("other input grids: the position table is resampled as timm does (antialiased bicubic); "
                     "transformers' own interpolation differs (no antialias; DINOv2 adds a scale offset)")
    notes.append(f"LayerNorm eps {eps:g} ({'given' if overrides.get('eps') else 'config.json' if hf.get('layer_norm_eps') else family + ' default'})")
    pooling = overrides.get("pooling") or _pooling(fam, t, timm_cfg, oc_vision)
    fc_norm = "fc_norm.weight" in t
    final_norm = "norm.weight" in t
    if fam is CLIP and oc_vision.get("final_ln_after_pool") and final_norm:  # open_clip: ln_post after pooling
        t["fc_norm.weight"], t["fc_norm.bias"] = t.pop("norm.weight"), t.pop("norm.bias")
        m.origin["fc_norm.weight"], m.origin["fc_norm.bias"] = m.origin.pop("norm.weight"), m.origin.pop("norm.bias")
        fc_norm, final_norm = True, False
    head = t.get("head.weight")
    config = ViTConfig(
        name=_model_name(ctx), image_size=image_size, patch_size=patch, in_chans=in_chans, dim=dim, depth=m.depth,
        heads=heads, mlp_dim=mlp_dim, class_token=class_token, distilled=distilled, num_registers=registers,
        posenc="learned", pos_prefix_rows=pos_rows, patch_bias="patch_embed.proj.bias" in t,
        qkv_bias="blocks.0.attn.qkv.bias" in t, layer_scale="blocks.0.ls1.gamma" in t,
        pre_norm="norm_pre.weight" in t, final_norm=final_norm, fc_norm=fc_norm, pooling=pooling,
        num_classes=int(head.shape[0]) if head is not None and head.dim() == 2 else 0,
        head_bias="head.bias" in t, eps=eps, activation=activation,
        extra={"family": family, "format": ctx.format, "rules": list(notes)},
    )
    preprocess = _preprocess(fam, family, config, ctx, hf, timm_cfg, oc)
    return config, family, preprocess, notes


def _hf_config(configs: dict[str, dict]) -> dict:
    """The vision part of a Hugging Face config.json (CLIP nests it under vision_config)."""
    cfg = configs.get("config.json", {})
    if "model_type" not in cfg:
        return {}
    if isinstance(cfg.get("vision_config"), dict):
        return cfg["vision_config"]
    return cfg


def _as_hw(value: Any) -> tuple[int, int] | None:
    if isinstance(value, int):
        return value, value
    if isinstance(value, (list, tuple)) and len(value) in (2, 3) and all(isinstance(v, int) for v in value):
        return int(value[-2]), int(value[-1])
    return None


def _config_image_size(overrides: dict, hf: dict, timm_cfg: dict, oc_vision: dict) -> tuple[int, int] | None:
    """A native image size given explicitly or by a config file (needed for non-square grids)."""
    if overrides.get("image_size"):
        return _as_hw(tuple(overrides["image_size"])) if not isinstance(overrides["image_size"], int) else _as_hw(overrides["image_size"])
    for value in (hf.get("image_size"), (timm_cfg.get("pretrained_cfg") or {}).get("input_size"),
                  (timm_cfg.get("model_args") or {}).get("img_size"), oc_vision.get("image_size")):
        if _as_hw(value):
            return _as_hw(value)
    return None


def _grid_and_rows(pos: Tensor, patch: int, cls: bool, dist: bool, regs: int, image_size: tuple[int, int] | None,
                   where: str) -> tuple[tuple[int, int], int]:
    """Native grid and the number of prefix rows in the position table (1, r + N, D)."""
    length = int(pos.shape[1])
    candidates = list(dict.fromkeys([int(cls) + int(dist), int(cls) + int(dist) + regs, 0]))
    if image_size is not None:
        if image_size[0] % patch or image_size[1] % patch:
            raise VitcliError(where, f"image size {image_size[0]}x{image_size[1]} is not a multiple of the patch size {patch}")
        grid = (image_size[0] // patch, image_size[1] // patch)
        for r in candidates:
            if length - r == grid[0] * grid[1]:
                return grid, r
        # a config's size may differ from the table (e.g. a model fine-tuned at another size): fall through
    for r in candidates:
        n = length - r
        side = math.isqrt(max(n, 0))
        if n > 0 and side * side == n:
            return (side, side), r
    rows = " or ".join(str(r) for r in candidates)
    raise VitcliError(where, f"the position table has {length} rows: not {rows} prefix rows plus a square grid; "
                      f"for a non-square grid pass the native image size (image_size=(H, W))")


def _heads(dim: int, overrides: dict, hf: dict, oc_vision: dict) -> tuple[int, str]:
    if overrides.get("heads"):
        return int(overrides["heads"]), f"{overrides['heads']} heads (given)"
    if isinstance(hf.get("num_attention_heads"), int):
        return hf["num_attention_heads"], f"{hf['num_attention_heads']} heads (config.json)"
    if isinstance(oc_vision.get("width"), int) and oc_vision.get("width") == dim:
        head_width = int(oc_vision.get("head_width", 64))
        return dim // head_width, f"{dim // head_width} heads (open_clip_config.json head_width {head_width})"
    if dim in WIDE_HEADS:
        return WIDE_HEADS[dim], f"{WIDE_HEADS[dim]} heads (width {dim}: the 16-head models of this width)"
    if dim % 64 == 0:
        return dim // 64, f"{dim // 64} heads (head dim 64, CLIP's rule)"
    raise VitcliError("heads", f"cannot tell the number of heads of a {dim}-wide model from its weights "
                      "(not a multiple of 64): pass heads=N")


def _label(fam: Family, t: dict[str, Tensor], ctx: Context, m: Mapped) -> str:
    """A finer family name for `info`: timm-vit, deit, dino, dinov2, dinov2-reg, timm-dinov2, timm-clip, …"""
    if fam is TIMM:
        if ctx.nested_under.split(".")[-1] in ("teacher", "student") or m.root == "backbone.":
            return "dino"
        if "blocks.0.ls1.gamma" in t:
            original = any(k.endswith("mask_token") for k in ctx.all_keys) or any(
                k.endswith("register_tokens") for k in ctx.all_keys)
            reg = "-reg" if "reg_tokens" in t else ""
            return f"dinov2{reg}" if original else f"timm-dinov2{reg}"
        if "dist_token" in t:
            return "deit"
        if "norm_pre.weight" in t:
            return "timm-clip"
        return "timm-vit"
    if fam is CLIP:
        return "openai-clip" if _is_openai(ctx) else "open_clip"
    if fam is HF_VIT and "dist_token" in t:
        return "hf-deit"
    if fam is HF_DINOV2 and "reg_tokens" in t:
        return "hf-dinov2-reg"
    return fam.name


def _is_openai(ctx: Context) -> bool:
    return ctx.format == "torchscript" or any(k in ctx.all_keys for k in OPENAI_MARKERS)


_HF_ACT = {"gelu": "gelu", "quick_gelu": "quick_gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
           "gelu_fast": "gelu_tanh"}


def _activation(fam: Family, family: str, ctx: Context, hf: dict, timm_cfg: dict, oc_model: dict,
                overrides: dict) -> tuple[str, str]:
    if overrides.get("activation"):
        return overrides["activation"], f"activation {overrides['activation']} (given)"
    names = f"{_model_name(ctx)} {timm_cfg.get('architecture', '')}".lower()  # the file's name, not its folders
    if fam in (HF_VIT, HF_CLIP, HF_DINOV2):
        act = hf.get("hidden_act")
        if isinstance(act, str):
            if act not in _HF_ACT:
                raise VitcliError(ctx.name, f"config.json hidden_act '{act}' is not one vitcli implements "
                                  f"({', '.join(_HF_ACT)})")
            return _HF_ACT[act], f"activation {_HF_ACT[act]} (config.json hidden_act {act})"
        return fam.activation, f"activation {fam.activation} (transformers' default for {fam.name})"
    if family == "openai-clip":
        return "quick_gelu", "activation quick_gelu (OpenAI CLIP weights)"
    if "quickgelu" in names or oc_model.get("quick_gelu"):
        return "quick_gelu", "activation quick_gelu (model name / open_clip config says quickgelu)"
    return "gelu", f"activation gelu ({family}'s default; pass activation='quick_gelu' for QuickGELU-trained weights)"


def _pooling(fam: Family, t: dict[str, Tensor], timm_cfg: dict, oc_vision: dict) -> str:
    if "cls_token" not in t:
        return "mean"
    if fam is TIMM:
        pool = timm_cfg.get("global_pool")
        if pool in ("avg", "token"):
            return "mean" if pool == "avg" else "cls"
        return "mean" if "fc_norm.weight" in t else "cls"  # timm puts fc_norm after average pooling
    if fam is CLIP and oc_vision.get("pool_type") == "avg":
        return "mean"
    return "cls"


def _model_name(ctx: Context) -> str:
    name = ctx.name.rstrip("/").split("/")[-1] if not ctx.name.startswith(("hf-hub:", "timm:")) else ctx.name
    for ext in (".safetensors", ".pth.tar", ".pth", ".pt", ".bin"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


# ---- preprocessing --------------------------------------------------------------------------

_PIL_FILTERS = {2: "bilinear", 3: "bicubic"}


def _preprocess(fam: Family, family: str, c: ViTConfig, ctx: Context, hf: dict, timm_cfg: dict, oc: dict) -> Preprocess:
    size = c.image_size
    pcfg = timm_cfg.get("pretrained_cfg") if isinstance(timm_cfg.get("pretrained_cfg"), dict) else None
    if fam is TIMM and pcfg:
        in_size = _as_hw(pcfg.get("input_size")) or size
        mean_std = (tuple(pcfg.get("mean", INCEPTION[0])), tuple(pcfg.get("std", INCEPTION[1])))
        return timm_preprocess(in_size, float(pcfg.get("crop_pct") or 0.875), mean_std,
                               pcfg.get("interpolation", "bicubic") if pcfg.get("interpolation") in ("bicubic", "bilinear") else "bicubic",
                               pcfg.get("crop_mode") or "center", "timm pretrained_cfg (config.json)")
    proc = ctx.configs.get("preprocessor_config.json")
    if fam in (HF_VIT, HF_CLIP, HF_DINOV2) and proc:
        return _hf_processor(proc, size)
    if fam is CLIP and isinstance(oc.get("preprocess_cfg"), dict):
        p = oc["preprocess_cfg"]
        mean_std = (tuple(p.get("mean", OPENAI_CLIP[0])), tuple(p.get("std", OPENAI_CLIP[1])))
        interp = "bilinear" if p.get("interpolation") == "bilinear" else "bicubic"
        if p.get("resize_mode") == "squash":
            return exact_resize(size, mean_std, interp, "open_clip_config.json preprocess_cfg")
        return shortest_crop(size, size[0], mean_std, interp, "round", "open_clip_config.json preprocess_cfg")
    # Defaults of each family's own library for this kind of model.
    if family == "timm-vit":
        if c.num_classes:
            return timm_preprocess(size, 0.9, INCEPTION, "bicubic", source="timm ViT default (augreg): crop_pct 0.9")
        return timm_preprocess(size, 0.9, IMAGENET, "bicubic",
                               source="timm ViT without head (DINO/MAE-style): ImageNet mean/std, crop_pct 0.9")
    if family == "deit":
        return timm_preprocess(size, 0.9, IMAGENET, "bicubic", source="timm DeiT default: crop_pct 0.9")
    if family == "dino":
        return timm_preprocess(size, 0.875, IMAGENET, "bicubic", source="DINO eval: resize 256, crop 224, bicubic")
    if family.startswith("timm-dinov2"):
        return timm_preprocess(size, 1.0, IMAGENET, "bicubic", source="timm DINOv2 default: crop_pct 1.0")
    if family.startswith("dinov2"):
        return shortest_crop((224, 224), 256, IMAGENET, "bicubic", "round",
                             "facebookresearch/dinov2 eval transform: resize 256, crop 224, bicubic")
    if family == "timm-clip":  # timm's tags differ; these are the commonest for each kind of head
        if c.num_classes in (1000, 11821):
            return timm_preprocess(size, 0.95, OPENAI_CLIP, "bicubic",
                                   source="timm CLIP fine-tuned classifier default (laion2b_ft_in12k_in1k): crop_pct 0.95")
        return timm_preprocess(size, 1.0, OPENAI_CLIP, "bicubic", source="timm CLIP image tower default: crop_pct 1.0")
    if fam is HF_VIT:
        return exact_resize(size, INCEPTION if family == "hf-vit" else IMAGENET, "bilinear" if family == "hf-vit" else "bicubic",
                            f"transformers {'ViTImageProcessor' if family == 'hf-vit' else 'DeiTImageProcessor'} defaults")
    if fam is HF_CLIP:
        return shortest_crop(size, size[0], OPENAI_CLIP, "bicubic", "floor", "transformers CLIPImageProcessor defaults")
    if fam is HF_DINOV2:
        return shortest_crop((224, 224), 256, IMAGENET, "bicubic", "floor",
                             "transformers BitImageProcessor as configured for facebook/dinov2")
    if fam is TORCHVISION:
        if size == (224, 224):
            return shortest_crop(size, 256, IMAGENET, "bilinear", "round", "torchvision IMAGENET1K_V1 transforms")
        return shortest_crop(size, size[0], IMAGENET, "bicubic", "round", "torchvision SWAG weights transforms")
    return shortest_crop(size, size[0], OPENAI_CLIP, "bicubic", "round", f"{family} preprocess (CLIP's transform)")


def _hf_processor(p: dict, native: tuple[int, int]) -> Preprocess:
    """A transformers preprocessor_config.json as a Preprocess."""
    mean = tuple(p.get("image_mean", INCEPTION[0]))
    std = tuple(p.get("image_std", INCEPTION[1]))
    interp = _PIL_FILTERS.get(p.get("resample", 2), "bicubic")
    size = p.get("size", {"height": native[0], "width": native[1]})
    crop = p.get("crop_size", size)
    crop_hw = _as_hw(crop) or (_as_hw((crop.get("height"), crop.get("width"))) if isinstance(crop, dict) else None) or native
    source = f"transformers {p.get('image_processor_type', 'image processor')} (preprocessor_config.json)"
    if isinstance(size, dict) and "shortest_edge" in size:
        short = int(size["shortest_edge"])
        if p.get("do_center_crop", True):
            return Preprocess(crop_hw, (short, short), "shortest", True, interp, mean, std, normalize_name(mean, std),
                              None, "floor", source)
        return Preprocess((short, short), (short, short), "shortest", False, interp, mean, std,
                          normalize_name(mean, std), None, "floor", source)
    hw = _as_hw(size) or (_as_hw((size.get("height"), size.get("width"))) if isinstance(size, dict) else None) or native
    crop_on = bool(p.get("do_center_crop", False))
    return Preprocess(crop_hw if crop_on else hw, hw, "exact", crop_on, interp, mean, std, normalize_name(mean, std),
                      None, "floor", source)


__all__ = ["FAMILIES", "FAMILY_NAMES", "Context", "Family", "Mapped", "Rule", "detect", "infer_config", "map_keys"]

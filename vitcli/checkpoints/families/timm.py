"""timm's VisionTransformer layout, shared by the DeiT, DINO, DINOv2 and MAE repositories.

Variants (first match): DINO (a teacher/student backbone), the DINOv2 repository's own files
(mask token or `register_tokens` present: its eval transform), timm's DINOv2 ports (layer scale),
DeiT (distillation token), timm's CLIP towers (ln_pre; nn.LayerNorm's eps 1e-5), plain timm ViT.
The DINOv2 repository's giants keep their SwiGLU as `mlp.w12` (gate rows, then value rows) and `mlp.w3`:
the core's packed SwiGLU. DINO and DINOv2 files resize their tables as their own repositories do.
"""

from vitcli.checkpoints.families.base import Evidence, Family, Rule, Variant, Why, always, name_activation, pair
from vitcli.checkpoints.preprocess import IMAGENET, INCEPTION, OPENAI_CLIP, Preprocess, shortest_crop, timm_preprocess
from vitcli.core.config import ViTConfig


def _is_dino(ev: Evidence) -> bool:
    return ev.nested_under.split(".")[-1] in ("teacher", "student") or ev.root == "backbone."


def _dinov2(ev: Evidence) -> bool:
    return ev.has("blocks.0.ls1.gamma")


def _dinov2_repo(ev: Evidence) -> bool:
    """The facebookresearch/dinov2 files keep the mask token and name registers `register_tokens`."""
    return _dinov2(ev) and any(k.endswith(("mask_token", "register_tokens")) for k in ev.all_keys)


def _vit_default(c: ViTConfig) -> Preprocess:
    if c.num_classes:
        return timm_preprocess(c.image_size, 0.9, INCEPTION, "bicubic",
                               source="timm ViT default (augreg): crop_pct 0.9")
    return timm_preprocess(c.image_size, 0.9, IMAGENET, "bicubic",
                           source="timm ViT without head (DINO/MAE-style): ImageNet mean/std, crop_pct 0.9")


def _clip_default(c: ViTConfig) -> Preprocess:
    """timm's tags differ; these are the commonest for each kind of head."""
    if c.num_classes in (1000, 11821):
        return timm_preprocess(c.image_size, 0.95, OPENAI_CLIP, "bicubic",
                               source="timm CLIP fine-tuned classifier default (laion2b_ft_in12k_in1k): crop_pct 0.95")
    return timm_preprocess(c.image_size, 1.0, OPENAI_CLIP, "bicubic",
                           source="timm CLIP image tower default: crop_pct 1.0")


def _dinov2_repo_default(c: ViTConfig) -> Preprocess:
    return shortest_crop((224, 224), 256, IMAGENET, "bicubic", "round",
                         "facebookresearch/dinov2 eval transform: resize 256, crop 224, bicubic")


def _timm_dinov2_default(c: ViTConfig) -> Preprocess:
    return timm_preprocess(c.image_size, 1.0, IMAGENET, "bicubic", source="timm DINOv2 default: crop_pct 1.0")


def _siglip_default(c: ViTConfig) -> Preprocess:
    return timm_preprocess(c.image_size, 0.9, INCEPTION, "bicubic", source="timm SigLIP default: crop_pct 0.9")


def _aimv2_default(c: ViTConfig) -> Preprocess:
    return timm_preprocess(c.image_size, 1.0, OPENAI_CLIP, "bicubic", source="timm AIMv2 default: crop_pct 1.0")


def _deit3_default(c: ViTConfig) -> Preprocess:
    return timm_preprocess(c.image_size, 0.9, IMAGENET, "bicubic",
                           source="timm DeiT III (fb_in1k) default: crop_pct 0.9")


def _is_deit3(ev: Evidence) -> bool:
    """DeiT III: layer scale and a position table without the class token's row (`no_embed_class`)."""
    names = f"{ev.model_name} {ev.files.architecture}".lower()
    return ev.has("blocks.0.ls1.gamma") and ("deit3" in names or ev.files.timm is None and _no_class_row(ev))


def _no_class_row(ev: Evidence) -> bool:
    """A class token whose position table rows are a square grid with no prefix row."""
    import math

    rows = ev.shapes.get("pos_embed", (0, 0, 0))[1]
    return (ev.has("cls_token") and not ev.has("reg_tokens") and math.isqrt(rows) ** 2 == rows
            and "dinov2" not in ev.model_name.lower())


# The upstream repositories' own interpolate_pos_encoding (their files load into their own models, not timm's).
DINO_RESAMPLE = ("bicubic_offset", "bicubic, no antialias, scale factor "
                 "(n + 0.1) / M (facebookresearch/dino and dinov2 interpolate_pos_encoding, interpolate_offset 0.1)")
DINOV2_REG_RESAMPLE = ("bicubic", "antialiased bicubic to the new size "
                       "(facebookresearch/dinov2 _reg models: interpolate_antialias=True, interpolate_offset 0)")

VARIANTS = (
    Variant("timm-siglip", lambda ev: ev.has("attn_pool.latent"), _siglip_default),
    Variant("timm-aimv2", lambda ev: ev.has("blocks.0.mlp.fc1_g.weight"), _aimv2_default, eps=1e-5),
    Variant("deit3", _is_deit3, _deit3_default),
    Variant("dino", _is_dino, lambda c: timm_preprocess(c.image_size, 0.875, IMAGENET, "bicubic",
                                                         source="DINO eval: resize 256, crop 224, bicubic"),
            pos_resample=DINO_RESAMPLE),
    Variant("dinov2-reg", lambda ev: _dinov2_repo(ev) and ev.has("reg_tokens"), _dinov2_repo_default,
            pos_resample=DINOV2_REG_RESAMPLE),
    Variant("dinov2", _dinov2_repo, _dinov2_repo_default, pos_resample=DINO_RESAMPLE),
    Variant("timm-dinov2-reg", lambda ev: _dinov2(ev) and ev.has("reg_tokens"), _timm_dinov2_default),
    Variant("timm-dinov2", _dinov2, _timm_dinov2_default),
    Variant("deit", lambda ev: ev.has("dist_token"),
            lambda c: timm_preprocess(c.image_size, 0.9, IMAGENET, "bicubic",
                                      source="timm DeiT default: crop_pct 0.9")),
    # eps: nn.LayerNorm's default
    Variant("timm-clip", lambda ev: ev.has("norm_pre.weight"), _clip_default, eps=1e-5, joint_head=True),
    Variant("timm-vit", always, _vit_default),
)


def _activation(ev: Evidence, label: str) -> Why:
    """AIMv2's SwiGLU and the packed SwiGLU (DINOv2 giants) use SiLU; the rest follow the name rule (timm's
    SigLIP towers: exact GELU)."""
    if label == "timm-aimv2":
        return "silu", "activation silu (timm AIMv2: SwiGLU with act_layer silu)"
    fc1, fc2 = ev.shapes.get("blocks.0.mlp.fc1.weight"), ev.shapes.get("blocks.0.mlp.fc2.weight")
    if fc1 and fc2 and fc1[0] == 2 * fc2[-1]:
        return "silu", ("activation silu (a packed SwiGLU MLP: silu(gate)·value, as dinov2 SwiGLUFFNFused / "
                        "timm SwiGLUPacked)")
    return name_activation(ev, label)


MAP_RULES = (  # the attention-pool probe (timm AttentionPoolLatent), kept as is
    Rule("attn_pool.latent", ("attn_pool.latent",)),
    *pair("attn_pool.q", "attn_pool.q"), *pair("attn_pool.kv", "attn_pool.kv"),
    *pair("attn_pool.proj", "attn_pool.proj"), *pair("attn_pool.norm", "attn_pool.norm"),
    *pair("attn_pool.mlp.fc1", "attn_pool.mlp.fc1"), *pair("attn_pool.mlp.fc2", "attn_pool.mlp.fc2"),
)


# open_clip's CustomTextCLIP beside a timm image tower (`visual.trunk.`: SigLIP, PE): its text tower and scales
OPEN_CLIP_TEXT = (r"^text\.", r"^logit_(scale|bias)$")


def _pooling(ev: Evidence) -> str:
    """config.json's global_pool, else mean when fc_norm is present (timm puts it after average pooling)."""
    pool = ev.files.global_pool
    if pool in ("avg", "token"):
        return "mean" if pool == "avg" else "cls"
    return "mean" if ev.has("fc_norm.weight") else "cls"


def _pretrained_cfg(ev: Evidence, c: ViTConfig) -> Preprocess | None:
    """timm's pretrained_cfg from config.json (save_for_hf / the hub)."""
    p = ev.files.timm
    if p is None:
        return None
    interpolation = p.interpolation if p.interpolation in ("bicubic", "bilinear") else "bicubic"
    return timm_preprocess(p.input_size or c.image_size, p.crop_pct or 0.875,
                           (p.mean or INCEPTION[0], p.std or INCEPTION[1]), interpolation,  # type: ignore[arg-type]
                           p.crop_mode or "center", "timm pretrained_cfg (config.json)")


TIMM = Family(
    "timm", "timm ViT layout (timm, DeiT, DINO, DINOv2, MAE repos)",
    markers=(r"^patch_embed\.proj\.weight$", r"^blocks\.0\.attn\.qkv\.weight$"),
    roots=("", "backbone.", "encoder.", "timm_model.", "visual.trunk."),  # TimmWrapperModel; open_clip's timm towers
    block_prefixes=("blocks.{i}.",),
    top=(
        Rule("cls_token", ("cls_token",)),
        Rule("dist_token", ("dist_token",)),
        Rule("reg_tokens", ("reg_token", "register_tokens")),
        Rule("pos_embed", ("pos_embed",)),
        *pair("patch_embed.proj", "patch_embed.proj"),
        *pair("norm_pre", "norm_pre"),
        *pair("norm", "norm"),
        *pair("fc_norm", "fc_norm"),
        *pair("head", "head"),
        *pair("head_dist", "head_dist"),
        Rule("patch_embed.norm.weight", ("patch_embed.norm.weight",)),  # AIMv2's RMSNorm
        *MAP_RULES,
    ),
    block=(
        *pair("norm1", "norm1"), *pair("attn.qkv", "attn.qkv"), *pair("attn.proj", "attn.proj"),
        *pair("attn.q_norm", "attn.q_norm"), *pair("attn.k_norm", "attn.k_norm"),  # qk_norm=True
        Rule("ls1.gamma", ("ls1.gamma",)), *pair("norm2", "norm2"),
        *pair("mlp.fc1", ("mlp.fc1", "mlp.w12")),  # dinov2 SwiGLUFFNFused: w12 packs [x1; x2], silu(x1)·x2
        *pair("mlp.fc2", ("mlp.fc2", "mlp.w3")), Rule("ls2.gamma", ("ls2.gamma",)),
        *pair("mlp.fc1_g", "mlp.fc1_g"), *pair("mlp.fc1_x", "mlp.fc1_x"),  # SwiGLU (AIMv2)
        # sub-LN (scale_attn_norm / scale_mlp_norm: BEiT-3)
        *pair("attn.norm", "attn.norm"), *pair("mlp.norm", "mlp.norm"),
    ),
    variants=VARIANTS,
    ignore=(r"^mask_token$",),
    ignore_outside=(r"^head\.(mlp|last_layer|bn|last_norm)\b", *OPEN_CLIP_TEXT),  # DINO's projection head
    eps=1e-6,
    activation=_activation,
    pooling=_pooling,
    file_preprocess=_pretrained_cfg,
)

def _naflex_default(c: ViTConfig) -> Preprocess:
    return timm_preprocess(c.image_size, 1.0, INCEPTION, "bicubic",
                           source="timm NaFlexViT SigLIP 2 default: crop_pct 1.0")


def _naflex_activation(ev: Evidence, label: str) -> Why:
    """timm's naflexvit_*_siglip models use tanh-GELU (act_layer gelu_tanh); the others exact GELU."""
    names = f"{ev.model_name} {ev.files.architecture}".lower()
    if "siglip" in names or ev.has("attn_pool.latent"):
        return "gelu_tanh", "activation gelu_tanh (timm naflexvit SigLIP: act_layer gelu_tanh)"
    return name_activation(ev, label)


TIMM_NAFLEX = Family(
    "timm-naflex", "timm NaFlexViT layout (naflexvit_*: Linear patch embedding, bilinear table)",
    markers=(r"^embeds\.proj\.weight$", r"^blocks\.0\.attn\.qkv\.weight$"),
    roots=("", "timm_model."),
    block_prefixes=("blocks.{i}.",),
    top=(
        Rule("cls_token", ("embeds.cls_token",)),
        Rule("reg_tokens", ("embeds.reg_token",)),
        Rule("pos_embed", ("embeds.pos_embed",), "3d"),  # (1, R, C, D) → (1, R·C, D)
        Rule("patch_embed.proj.weight", ("embeds.proj.weight",), "hwc"),
        Rule("patch_embed.proj.bias", ("embeds.proj.bias",)),
        *pair("norm", "norm"),
        *pair("fc_norm", "fc_norm"),
        *pair("head", "head"),
        *MAP_RULES,
    ),
    block=TIMM.block,
    variants=(Variant("timm-naflex-siglip2", always, _naflex_default),),
    eps=1e-6,
    activation=_naflex_activation,
    pooling=_pooling,
    file_preprocess=_pretrained_cfg,
    pos_resample=("bilinear", "antialiased bilinear, to each image's own grid (NaFlex)"),
    patch_remainder="refuse",  # batch_patchify needs whole patches (no dynamic_img_pad)
)

__all__ = ["MAP_RULES", "OPEN_CLIP_TEXT", "TIMM", "TIMM_NAFLEX"]

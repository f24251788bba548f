"""The rotary-position families: timm's Eva layout (DINOv3 ports, EVA-02, Perception Encoder), transformers'
DINOv3ViTModel, and facebookresearch/dinov3's own state dicts.

Weights do not show the RoPE variant, so each family's `parts` rule says it and why:
  DINOv3   no position table, registers: coords in [-1, 1], periods 100^(4i/d), half pairing
           (the upstream files carry `rope_embed.periods`, loaded as they are; timm and
           transformers compute them, so vitcli does too); LayerNorm eps 1e-5.
  EVA-02   a learned table and RoPE: integer coords scaled onto the 16×16 pretraining grid
           (timm ref_feat_shape), base 10000, interleaved pairs; SwiGLU, sub-LN in the MLP.
  PE       timm vit_pe_*: EVA's RoPE with xy indexing, grid offset 1 with a class token (0 without),
           the native grid as reference; core: norm_pre + attention pool (8 heads); spatial / lang:
           norm_pre and no final norm, patch mean (timm's avg pool).
Separate q/k/v projections become `attn.qkv` by concatenation; EVA's q_bias / v_bias become its
bias with k's part 0; DINOv3's `qkv.bias_mask` zeroes k's part of the bias.
"""

from vitcli.checkpoints.families.base import NATIVE_GRID, Evidence, Family, Rule, Variant, always, pair
from vitcli.checkpoints.families.timm import MAP_RULES, OPEN_CLIP_TEXT, _pretrained_cfg
from vitcli.checkpoints.families.transformers import class_default, processor_preprocess
from vitcli.checkpoints.preprocess import IMAGENET, INCEPTION, OPENAI_CLIP, Preprocess, shortest_crop, timm_preprocess
from vitcli.core.config import ViTConfig
from vitcli.errors import VitcliError

DINOV3_ROPE = {"rope": "dinov3", "rope_base": 100.0}
DINOV3_NOTE = "RoPE dinov3 (coords in [-1, 1], period base 100, rotate-half pairs; no jitter/rescale at inference)"
PE_POOL_HEADS = 8  # timm vit_pe_core_*: attn_pool_num_heads=8 whatever the width
EVA02_ROPE = {"rope": "eva", "rope_base": 10000.0, "rope_ref_grid": (16, 16)}
EVA02_NOTE = ("RoPE eva (timm RotaryEmbeddingCat: integer coords scaled onto the 16x16 pretraining grid, "
              "base 10000, interleaved pairs)")

# Parts of these families that vitcli cannot build yet: a key that shows one → its name.
UNBUILT = (
    ("attn_pool.", "the attention-pool (MAP) head attn_pool.* (Perception Encoder, SigLIP)"),
    ("blocks.0.attn.gate.", "gated attention (blocks.N.attn.gate)"),
    ("cls_norm.", "the separate class-token norm cls_norm (DINOv3 untie_cls_and_patch_norms)"),
    ("local_cls_norm.", "the local class-token norm local_cls_norm (DINOv3 7B)"),
)


def refuse_unbuilt(ev: Evidence, family: str, skip: tuple[str, ...] = ()) -> None:
    """One error naming the part of a known family that vitcli cannot build (`skip`: parts this family builds)."""
    rel = [k[len(ev.root):] for k in ev.all_keys if k.startswith(ev.root)]
    for start, part in UNBUILT:
        if start not in skip and any(k.startswith(start) for k in rel):
            raise VitcliError(ev.name, f"{family} checkpoint with {part}: a part vitcli cannot build yet")


def _is_dinov3(ev: Evidence) -> bool:
    """A DINOv3 port: named so by config.json's architecture, else by the file name or a missing position table."""
    if ev.files.architecture:
        return "dinov3" in ev.files.architecture.lower()
    return "dinov3" in ev.model_name.lower() or not ev.has("pos_embed")


def _glu(ev: Evidence) -> bool:
    """SwiGLU MLP: separate fc1_g / fc1_x, or a packed fc1 twice as tall as fc2 is wide."""
    fc1, fc2 = ev.shapes.get("blocks.0.mlp.fc1.weight"), ev.shapes.get("blocks.0.mlp.fc2.weight")
    return ev.has("blocks.0.mlp.fc1_g.weight") or bool(fc1 and fc2 and fc1[0] == 2 * fc2[-1])


def _eva_parts(ev: Evidence) -> tuple[dict, tuple[str, ...]]:
    """DINOv3 (no table) or EVA-02 (table + SwiGLU or separate q/k/v); other Eva models without RoPE."""
    refuse_unbuilt(ev, "timm Eva")
    if _is_dinov3(ev):
        return DINOV3_ROPE, (DINOV3_NOTE,)
    if _glu(ev) or any(k.endswith("attn.q_proj.weight") for k in ev.all_keys):
        return EVA02_ROPE, (EVA02_NOTE,)
    return {}, ("no RoPE: an Eva layout without EVA-02's SwiGLU or separate q/k/v (EVA-01)",)


def _eva_pooling(ev: Evidence) -> str:
    """config.json's global_pool, else timm's default for these models: avg (DINOv3 ports too)."""
    return "cls" if ev.files.global_pool == "token" else "mean"


def _dinov3_timm(c: ViTConfig) -> Preprocess:
    return timm_preprocess(c.image_size, 1.0, IMAGENET, "bicubic", source="timm DINOv3 default: crop_pct 1.0")


def _eva02_timm(c: ViTConfig) -> Preprocess:
    return timm_preprocess(c.image_size, 0.9, OPENAI_CLIP, "bicubic",
                           source="timm EVA-02 fine-tuned default: OpenAI CLIP mean/std, crop_pct 0.9")


TIMM_EVA = Family(
    "timm-eva", "timm Eva layout (DINOv3 ports, EVA-02)",
    markers=(r"^patch_embed\.proj\.weight$",
             r"^blocks\.0\.(gamma_1|attn\.q_bias|attn\.q_proj\.weight|mlp\.fc1_g\.weight)$"),
    absent=(r"^patch_embed\.norm\.weight$",),  # AIMv2 (timm's ViT layout: RMSNorm, SwiGLU, a patch norm)
    roots=("", "visual.trunk.", "visual."),
    ignore_outside=OPEN_CLIP_TEXT,
    block_prefixes=("blocks.{i}.",),
    top=(
        Rule("cls_token", ("cls_token",)),
        Rule("reg_tokens", ("reg_token",)),
        Rule("pos_embed", ("pos_embed",)),
        *pair("patch_embed.proj", "patch_embed.proj"),
        *pair("norm_pre", "norm_pre"),
        *pair("norm", "norm"),
        *pair("fc_norm", "fc_norm"),
        *pair("head", "head"),
    ),
    block=(
        *pair("norm1", "norm1"),
        Rule("attn.qkv.weight", ("attn.qkv.weight", ("attn.q_proj.weight", "attn.k_proj.weight",
                                                     "attn.v_proj.weight"))),
        Rule("attn.qkv.bias", (("attn.q_bias", "attn.v_bias"), tuple(f"attn.{n}_proj.bias" for n in "qkv"),
                               ("attn.q_proj.bias", "attn.v_proj.bias"), "attn.qkv.bias"), "qzv"),  # qzv: 2 parts
        *pair("attn.q_norm", "attn.q_norm"), *pair("attn.k_norm", "attn.k_norm"), *pair("attn.norm", "attn.norm"),
        *pair("attn.proj", "attn.proj"),
        Rule("ls1.gamma", ("gamma_1",)),
        *pair("norm2", "norm2"),
        *pair("mlp.fc1", "mlp.fc1"), *pair("mlp.fc1_g", "mlp.fc1_g"), *pair("mlp.fc1_x", "mlp.fc1_x"),
        *pair("mlp.norm", "mlp.norm"), *pair("mlp.fc2", "mlp.fc2"),
        Rule("ls2.gamma", ("gamma_2",)),
    ),
    variants=(
        Variant("timm-dinov3", _is_dinov3, _dinov3_timm, eps=1e-5),
        Variant("timm-eva02", _glu, _eva02_timm),
        Variant("timm-eva", always, _eva02_timm),
    ),
    eps=1e-6,
    pooling=_eva_pooling,
    file_preprocess=_pretrained_cfg,
    parts=_eva_parts,
    required=("patch_embed.proj.weight",),
)


def _dinov3_parts(ev: Evidence) -> tuple[dict, tuple[str, ...]]:
    refuse_unbuilt(ev, "DINOv3")
    return DINOV3_ROPE, (DINOV3_NOTE,)


def _upstream_default(c: ViTConfig) -> Preprocess:
    return shortest_crop((224, 224), 256, IMAGENET, "bicubic", "round",
                         "facebookresearch/dinov3 eval transform: resize 256, crop 224, bicubic")


_hf_default = class_default("DINOv3ViTImageProcessor")


DINOV3 = Family(
    "dinov3", "facebookresearch/dinov3 state dicts (storage_tokens, rope_embed.periods)",
    markers=(r"^patch_embed\.proj\.weight$", r"^(storage_tokens|rope_embed\.periods)$"),
    roots=("", "backbone.", "teacher.backbone."),
    block_prefixes=("blocks.{i}.",),
    top=(
        Rule("cls_token", ("cls_token",)),
        Rule("reg_tokens", ("storage_tokens",)),
        Rule("position.rope.periods", ("rope_embed.periods",)),
        *pair("patch_embed.proj", "patch_embed.proj"),
        *pair("norm", "norm"),
        *pair("head", "head"),
    ),
    block=(
        *pair("norm1", "norm1"),
        Rule("attn.qkv.weight", ("attn.qkv.weight",)),
        Rule("attn.qkv.bias", (("attn.qkv.bias", "attn.qkv.bias_mask"), "attn.qkv.bias"), "masked"),
        *pair("attn.proj", "attn.proj"),
        Rule("ls1.gamma", ("ls1.gamma",)),
        *pair("norm2", "norm2"),
        *pair("mlp.fc1", "mlp.fc1"), *pair("mlp.fc1_g", "mlp.w1"), *pair("mlp.fc1_x", "mlp.w2"),
        *pair("mlp.fc2", ("mlp.fc2", "mlp.w3")),
        Rule("ls2.gamma", ("ls2.gamma",)),
    ),
    variants=(Variant("dinov3", always, _upstream_default, eps=1e-5),),
    ignore=(r"^mask_token$",),
    eps=1e-5,
    pooling=lambda ev: "cls",
    parts=_dinov3_parts,
    required=("patch_embed.proj.weight",),
)

_HF_QKV = tuple(f"attention.{n}_proj.weight" for n in "qkv")
HF_DINOV3 = Family(
    "hf-dinov3", "Hugging Face transformers DINOv3ViTModel",
    markers=(r"^embeddings\.patch_embeddings\.weight$", r"^embeddings\.register_tokens$|layer_scale1\.lambda1$"),
    roots=("", "dinov3."),
    block_prefixes=("model.layer.{i}.", "layer.{i}."),
    top=(
        Rule("cls_token", ("embeddings.cls_token",)),
        Rule("reg_tokens", ("embeddings.register_tokens",)),
        *pair("patch_embed.proj", "embeddings.patch_embeddings"),
        *pair("norm", "norm"),
    ),
    block=(
        *pair("norm1", "norm1"),
        Rule("attn.qkv.weight", (_HF_QKV,)),
        Rule("attn.qkv.bias", (tuple(f"attention.{n}_proj.bias" for n in "qkv"),
                               ("attention.q_proj.bias", "attention.v_proj.bias")), "qzv"),
        *pair("attn.proj", "attention.o_proj"),
        Rule("ls1.gamma", ("layer_scale1.lambda1",)),
        *pair("norm2", "norm2"),
        *[Rule(f"mlp.fc1.{p}", (f"mlp.up_proj.{p}",), unless="mlp.gate_proj.weight") for p in ("weight", "bias")],
        *pair("mlp.fc1_g", "mlp.gate_proj"),
        *[Rule(f"mlp.fc1_x.{p}", (f"mlp.up_proj.{p}",), needs="mlp.gate_proj.weight") for p in ("weight", "bias")],
        *pair("mlp.fc2", "mlp.down_proj"),
        Rule("ls2.gamma", ("layer_scale2.lambda1",)),
    ),
    variants=(Variant("hf-dinov3", always, _hf_default),),
    ignore=(r"^embeddings\.mask_token$",),
    eps=1e-5,
    pooling=lambda ev: "cls",
    parts=_dinov3_parts,
    file_preprocess=processor_preprocess,
    required=("patch_embed.proj.weight",),
)


def _pe_parts(ev: Evidence) -> tuple[dict, tuple[str, ...]]:
    """Perception Encoder: timm's RoPE (xy indexing, offset 1 with a class token, coords on the native grid)
    and its attention-pool probe with 8 heads (timm attn_pool_num_heads, not in the weights)."""
    refuse_unbuilt(ev, "Perception Encoder (timm vit_pe_*)", skip=("attn_pool.",))
    offset = float(ev.has("cls_token"))
    changes = {"rope": "eva", "rope_base": 10000.0, "rope_offset": offset, "rope_xy": True,
               "rope_ref_grid": NATIVE_GRID}
    notes = [f"RoPE eva (PE: grid offset {offset:g}, xy indexing, reference grid = the native grid, "
             "as timm's ref_feat_shape for every vit_pe_*)"]
    if ev.has("attn_pool.latent"):
        changes["pool_heads"] = PE_POOL_HEADS
        notes.append(f"attention pool: {PE_POOL_HEADS} heads (timm vit_pe_* attn_pool_num_heads)")
    return changes, tuple(notes)


def _pe_timm(c: ViTConfig) -> Preprocess:
    return timm_preprocess(c.image_size, 1.0, INCEPTION, "bicubic",
                           source="timm Perception Encoder default (_pe_cfg): mean/std 0.5, crop_pct 1.0")


def _pe_lang(ev: Evidence) -> bool:
    return "pe_lang" in f"{ev.model_name} {ev.files.architecture}".lower()


# PE's Eva blocks use a fused qkv with its own full bias (timm AttentionRope), not EVA's q_bias / v_bias.
PE_BLOCK = tuple(Rule("attn.qkv.bias", ("attn.qkv.bias",)) if r.core == "attn.qkv.bias" else r
                 for r in TIMM_EVA.block)
PE_ARCHITECTURES = r"^vit_pe_"  # timm's PE names; a config.json naming another model is not PE

# timm's vit_pe_core_*: norm_pre + the attention pool, with or without a class token (the gigantic core has
# none). No other timm model has both: SigLIP's pool comes without norm_pre, CLIP's norm_pre without a pool.
TIMM_PE = Family(
    "timm-pe", "timm Perception Encoder core (vit_pe_core_*)",
    markers=(r"^patch_embed\.proj\.weight$", r"^attn_pool\.latent$", r"^norm_pre\.weight$"),
    roots=("", "visual.trunk."), ignore_outside=OPEN_CLIP_TEXT, block_prefixes=TIMM_EVA.block_prefixes,
    top=(*TIMM_EVA.top, *MAP_RULES), block=PE_BLOCK,
    variants=(Variant("timm-pe", always, _pe_timm, joint_head=True),), eps=1e-5, parts=_pe_parts,
                 file_preprocess=_pretrained_cfg,
    required=("patch_embed.proj.weight",), architectures=PE_ARCHITECTURES,
)

# timm's vit_pe_spatial_* and vit_pe_lang_* (the same layout): norm_pre, then blocks (LayerScale gamma_1 /
# gamma_2 in the gigantic and lang models), and no final norm, fc_norm or pool. timm's CLIP towers have
# norm_pre too but always a final norm (or fc_norm); no timm model but PE has norm_pre without one.
PE_SPATIAL_NOTE = ("recognised by its keys: norm_pre without a final norm or pool, which in timm only "
                   "vit_pe_spatial_* / vit_pe_lang_* have (a config.json naming another model overrides them); "
                   "RoPE settings are timm's for those models, not in the weights; --family timm reads it as a "
                   "plain ViT without RoPE")
TIMM_PE_SPATIAL = Family(
    "timm-pe-spatial", "timm Perception Encoder without a head (vit_pe_spatial_*, vit_pe_lang_*)",
    markers=(r"^patch_embed\.proj\.weight$", r"^norm_pre\.weight$", r"^blocks\.0\.attn\.qkv\.weight$"),
    absent=(r"^norm\.weight$", r"^fc_norm\.weight$", r"^attn_pool\.", r"^blocks\.0\.attn\.q_bias$"),
    roots=("", "visual.trunk."), ignore_outside=OPEN_CLIP_TEXT, block_prefixes=TIMM_EVA.block_prefixes,
    top=TIMM_EVA.top, block=PE_BLOCK,
    variants=(Variant("timm-pe-lang", _pe_lang, _pe_timm), Variant("timm-pe-spatial", always, _pe_timm)),
    eps=1e-5, pooling=_eva_pooling, parts=_pe_parts, notes=(PE_SPATIAL_NOTE,), file_preprocess=_pretrained_cfg,
    required=("patch_embed.proj.weight",), architectures=PE_ARCHITECTURES,
)

__all__ = ["DINOV3", "HF_DINOV3", "TIMM_EVA", "TIMM_PE", "TIMM_PE_SPATIAL", "refuse_unbuilt"]

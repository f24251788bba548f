"""Hugging Face transformers SigLIP: SiglipVisionModel, the vision tower of SiglipModel, and SigLIP 2
(Siglip2VisionModel / Siglip2Model: NaFlex, a Linear patch embedding on patches flattened (row,
column, channel), mapped to the equivalent conv kernel, and the table resized bilinearly).

No class token; the position table has one row per patch (`position_embedding.weight` (N, D));
`post_layernorm` normalises every token (the core's final `norm`), and the attention-pool head
(`head.probe`, `head.attention` = nn.MultiheadAttention with a stacked `in_proj_weight`,
`head.layernorm`, `head.mlp`) maps onto timm's `attn_pool.*` names.

AIMv2 (Aimv2VisionModel, Aimv2Model's vision tower): RMSNorm, SwiGLU, and with `use_head` its
attention-pooling head (`head.cls_token` as the query itself, `head.k_proj` + `v_proj` stacked into
`attn_pool.kv`, `head.output_proj`), the core's attention pool without q projection or MLP.
"""

from vitcli.checkpoints.families.base import Family, Rule, Variant, always, pair
from vitcli.checkpoints.families.transformers import HF_RESAMPLE, class_default, hf_activation, processor_preprocess

HF_MAP_RULES = (
    Rule("attn_pool.latent", ("head.probe",)),
    Rule("attn_pool.q.weight", ("head.attention.in_proj_weight",), "q3"),
    Rule("attn_pool.q.bias", ("head.attention.in_proj_bias",), "q3"),
    Rule("attn_pool.kv.weight", ("head.attention.in_proj_weight",), "kv3"),
    Rule("attn_pool.kv.bias", ("head.attention.in_proj_bias",), "kv3"),
    *pair("attn_pool.proj", "head.attention.out_proj"),
    *pair("attn_pool.norm", "head.layernorm"),
    *pair("attn_pool.mlp.fc1", "head.mlp.fc1"),
    *pair("attn_pool.mlp.fc2", "head.mlp.fc2"),
)

SIGLIP2_RESAMPLE = ("bilinear", "antialiased bilinear, to each image's own grid "
                    "(transformers Siglip2VisionEmbeddings.resize_positional_embeddings)")

HF_SIGLIP = Family(
    "hf-siglip", "Hugging Face transformers SiglipVisionModel / SiglipModel vision tower",
    markers=(r"^embeddings\.patch_embedding\.weight$", r"^encoder\.layers\.0\.layer_norm1\.weight$",
             r"^post_layernorm\.weight$"),
    roots=("vision_model.", ""),
    block_prefixes=("encoder.layers.{i}.",),
    top=(
        Rule("pos_embed", ("embeddings.position_embedding.weight",), "3d"),
        Rule("patch_embed.proj.weight", ("embeddings.patch_embedding.weight",), "hwc"),  # SigLIP 2: Linear
        Rule("patch_embed.proj.bias", ("embeddings.patch_embedding.bias",)),
        *pair("norm", "post_layernorm"),
        *HF_MAP_RULES,
    ),
    block=(
        *pair("norm1", "layer_norm1"),
        *pair("attn.qkv", (tuple(f"self_attn.{n}_proj" for n in "qkv"),)),
        *pair("attn.proj", "self_attn.out_proj"),
        *pair("norm2", "layer_norm2"),
        *pair("mlp.fc1", "mlp.fc1"),
        *pair("mlp.fc2", "mlp.fc2"),
    ),
    variants=(Variant("hf-siglip2", lambda ev: "linear-patch" in ev.applied,
                      class_default("Siglip2ImageProcessor"),  # NaFlex: the table's patches are the budget
                      pos_resample=SIGLIP2_RESAMPLE, patch_remainder="refuse"),
              Variant("hf-siglip", always, class_default("SiglipImageProcessor")),),
    ignore=(r"^embeddings\.position_ids$",),
    ignore_outside=(r"^text_model\.", r"^logit_(scale|bias)$"),
    eps=1e-6,
    activation=hf_activation("gelu_tanh", "hf-siglip"),
    file_preprocess=processor_preprocess,
    pos_resample=HF_RESAMPLE,
    required=("patch_embed.proj.weight", "pos_embed", "norm.weight"),
)




_aimv2_default = class_default("CLIPImageProcessor")  # as apple/aimv2-* configure it, at the model's size


# transformers' Aimv2AttentionPoolingHead: its cls_token is the probe's query as it is (no q projection),
# separate k / v projections (biased with qkv_bias), output_proj; no norm or MLP after it.
AIMV2_HEAD_RULES = (
    Rule("attn_pool.latent", ("head.cls_token",)),
    Rule("attn_pool.kv.weight", (("head.k_proj.weight", "head.v_proj.weight"),)),
    Rule("attn_pool.kv.bias", (("head.k_proj.bias", "head.v_proj.bias"),)),
    *pair("attn_pool.proj", "head.output_proj"),
)
AIMV2_HEAD_NOTE = ("pooling: transformers' attention-pooling head when the weights have it (use_head): head.cls_token "
                   "queries the final tokens as it is, k_proj / v_proj, output_proj, no norm or MLP: pooled = "
                   "pooler_output; without it, the patch mean (as timm's aimv2_*, which have no head)")

HF_AIMV2 = Family(
    "hf-aimv2", "Hugging Face transformers Aimv2VisionModel",
    markers=(r"^embeddings\.patch_embed\.weight$", r"^encoder\.layers\.0\.rms_norm1\.weight$"),
    roots=("vision_model.", ""),
    block_prefixes=("encoder.layers.{i}.",),
    top=(
        Rule("pos_embed", ("embeddings.position_embedding.weight",), "3d"),
        *pair("patch_embed.proj", "embeddings.patch_embed"),
        Rule("patch_embed.norm.weight", ("embeddings.rms_norm.weight",)),
        Rule("norm.weight", ("rms_norm.weight",)),
        *AIMV2_HEAD_RULES,
    ),
    block=(
        Rule("norm1.weight", ("rms_norm1.weight",)),
        *pair("attn.qkv", (tuple(f"attention.{n}_proj" for n in "qkv"),)),
        *pair("attn.proj", "attention.out_proj"),
        Rule("norm2.weight", ("rms_norm2.weight",)),
        *pair("mlp.fc1_g", "ffn.gate_proj"),
        *pair("mlp.fc1_x", "ffn.up_proj"),
        *pair("mlp.fc2", "ffn.down_proj"),
    ),
    variants=(Variant("hf-aimv2", always, _aimv2_default),),
    ignore=(r"^embeddings\.position_ids$",),
    ignore_outside=(r"^text_model\.", r"^(text|visual)_projection\.", r"^logit_scale$"),
    eps=1e-5,
    activation=hf_activation("silu", "hf-aimv2"),
    file_preprocess=processor_preprocess,
    notes=(AIMV2_HEAD_NOTE,),
    pos_resample=("bicubic_plain", "transformers' Aimv2VisionModel has no "
                  "interpolation (other sizes fail there); vitcli resamples as transformers' "
                  "interpolate_pos_encoding=True does elsewhere (bicubic, no antialias)"),
    required=("patch_embed.proj.weight", "pos_embed", "norm.weight"),
)

__all__ = ["AIMV2_HEAD_RULES", "HF_AIMV2", "HF_MAP_RULES", "HF_SIGLIP"]

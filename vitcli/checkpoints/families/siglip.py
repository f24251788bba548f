"""Hugging Face transformers SigLIP: SiglipVisionModel and the vision tower of SiglipModel.

No class token; the position table has one row per patch (`position_embedding.weight` (N, D));
`post_layernorm` normalises every token (the core's final `norm`), and the attention-pool head
(`head.probe`, `head.attention` = nn.MultiheadAttention with a stacked `in_proj_weight`,
`head.layernorm`, `head.mlp`) maps onto timm's `attn_pool.*` names.
"""

from vitcli.checkpoints.families.base import Family, Rule, Variant, always, pair
from vitcli.checkpoints.families.transformers import RESAMPLE_NOTE, hf_activation, processor_preprocess
from vitcli.checkpoints.preprocess import INCEPTION, exact_resize

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

HF_SIGLIP = Family(
    "hf-siglip", "Hugging Face transformers SiglipVisionModel / SiglipModel vision tower",
    markers=(r"^embeddings\.patch_embedding\.weight$", r"^encoder\.layers\.0\.layer_norm1\.weight$",
             r"^post_layernorm\.weight$"),
    roots=("vision_model.", ""),
    block_prefixes=("encoder.layers.{i}.",),
    top=(
        Rule("pos_embed", ("embeddings.position_embedding.weight",), "3d"),
        *pair("patch_embed.proj", "embeddings.patch_embedding"),
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
    variants=(Variant("hf-siglip", always, lambda c: exact_resize(c.image_size, INCEPTION, "bicubic",
                                                                  "transformers SiglipImageProcessor defaults")),),
    ignore=(r"^embeddings\.position_ids$",),
    ignore_outside=(r"^text_model\.", r"^logit_(scale|bias)$"),
    eps=1e-6,
    activation=hf_activation("gelu_tanh", "hf-siglip"),
    file_preprocess=processor_preprocess,
    notes=(RESAMPLE_NOTE,),
    required=("patch_embed.proj.weight", "pos_embed", "norm.weight"),
)

__all__ = ["HF_MAP_RULES", "HF_SIGLIP"]

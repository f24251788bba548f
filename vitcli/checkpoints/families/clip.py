"""OpenAI CLIP and open_clip visual towers (`visual.` under a full CLIP, or the tower alone).

OpenAI's files (TorchScript archives, or state dicts carrying `input_resolution`,
`context_length`, `vocab_size`) were trained with QuickGELU; open_clip's follow the model name
(`*-quickgelu`) or open_clip_config.json. open_clip_config.json may also set average pooling,
ln_post after pooling (`final_ln_after_pool`: a rename norm → fc_norm) and the preprocessing.
"""

from collections.abc import Mapping

from vitcli.checkpoints.config import CheckpointConfig
from vitcli.checkpoints.families.base import Evidence, Family, Rule, Variant, always, pair
from vitcli.checkpoints.preprocess import OPENAI_CLIP, Interpolation, Preprocess, exact_resize, shortest_crop
from vitcli.core.config import ViTConfig

OPENAI_MARKERS = ("input_resolution", "context_length", "vocab_size")


def _is_openai(ev: Evidence) -> bool:
    return ev.format == "torchscript" or any(k in ev.all_keys for k in OPENAI_MARKERS)


def _clip_transform(label: str):
    def preprocess(c: ViTConfig) -> Preprocess:
        return shortest_crop(c.image_size, c.image_size[0], OPENAI_CLIP, "bicubic", "round",
                             f"{label} preprocess (CLIP's transform)")
    return preprocess


def _pooling(ev: Evidence) -> str:
    oc = ev.files.open_clip
    return "mean" if oc and oc.pool_type == "avg" else "cls"


def _renames(files: CheckpointConfig) -> Mapping[str, str]:
    """open_clip's final_ln_after_pool: ln_post is applied after pooling (the core's fc_norm)."""
    if files.open_clip and files.open_clip.final_ln_after_pool:
        return {"norm.weight": "fc_norm.weight", "norm.bias": "fc_norm.bias"}
    return {}


def _preprocess_cfg(ev: Evidence, c: ViTConfig) -> Preprocess | None:
    """open_clip_config.json's preprocess_cfg: squash (exact resize) or shortest side and crop."""
    p = ev.files.open_clip_preprocess
    if p is None:
        return None
    mean_std = (p.mean or OPENAI_CLIP[0], p.std or OPENAI_CLIP[1])
    interpolation: Interpolation = "bilinear" if p.interpolation == "bilinear" else "bicubic"
    if p.resize_mode == "squash":
        return exact_resize(c.image_size, mean_std, interpolation, "open_clip_config.json preprocess_cfg")
    return shortest_crop(c.image_size, c.image_size[0], mean_std, interpolation, "round",
                         "open_clip_config.json preprocess_cfg")


CLIP = Family(
    "clip", "OpenAI CLIP / open_clip visual tower",
    markers=(r"^conv1\.weight$", r"^class_embedding$", r"^transformer\.resblocks\.0\.attn\.in_proj_weight$"),
    roots=("visual.", ""),
    block_prefixes=("transformer.resblocks.{i}.",),
    top=(
        Rule("cls_token", ("class_embedding",), "3d"),
        Rule("pos_embed", ("positional_embedding",), "3d"),
        *pair("patch_embed.proj", "conv1"),
        *pair("norm_pre", "ln_pre"),
        *pair("norm", "ln_post"),
        Rule("head.weight", ("proj",), "T"),
    ),
    block=(
        *pair("norm1", "ln_1"),
        Rule("attn.qkv.weight", ("attn.in_proj_weight",)),
        Rule("attn.qkv.bias", ("attn.in_proj_bias",)),
        *pair("attn.proj", "attn.out_proj"),
        Rule("ls1.gamma", ("ls_1.gamma",)),
        *pair("norm2", "ln_2"),
        *pair("mlp.fc1", "mlp.c_fc"),
        *pair("mlp.fc2", "mlp.c_proj"),
        Rule("ls2.gamma", ("ls_2.gamma",)),
    ),
    variants=(
        Variant("openai-clip", _is_openai, _clip_transform("openai-clip"),
                activation=("quick_gelu", "activation quick_gelu (OpenAI CLIP weights)"), joint_head=True),
        Variant("open_clip", always, _clip_transform("open_clip"), joint_head=True),
    ),
    ignore_outside=(r"^transformer\.", r"^token_embedding\.", r"^positional_embedding$", r"^ln_final\.", r"^text\.",
                    r"^text_projection$", r"^logit_(scale|bias)$", r"^(input_resolution|context_length|vocab_size)$",
                    r"^attn_mask$"),
    eps=1e-5,
    pooling=_pooling,
    renames=_renames,
    file_preprocess=_preprocess_cfg,
    pos_resample=("bicubic", "CLIP's model takes only its native size; "
                  "resampled as timm does (antialiased bicubic)"),
    required=("patch_embed.proj.weight", "pos_embed", "cls_token"),
)

__all__ = ["CLIP"]

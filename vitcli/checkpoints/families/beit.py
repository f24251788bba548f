"""BEiT, BEiT v2 and data2vec-vision: timm's `beit.py` layout and transformers' BeitModel /
Data2VecVisionModel.

Their parts: q and v biases with k's fixed at zero (`q_bias`, `v_bias`; transformers' key has no
bias), a relative position bias table per block or one shared (`rel_pos_bias.`), layer scale
(`gamma_1`/`gamma_2`, transformers' `lambda_1`/`lambda_2`) and, for the fine-tuned classifiers,
the patch mean through `fc_norm` (transformers' `pooler.layernorm`) with no final norm.
"""

from vitcli.checkpoints.families.base import Evidence, Family, Rule, Variant, always, pair
from vitcli.checkpoints.families.timm import _pretrained_cfg
from vitcli.checkpoints.families.transformers import HF_RESAMPLE, class_default, hf_activation, processor_preprocess
from vitcli.checkpoints.preprocess import IMAGENET, INCEPTION, Preprocess, timm_preprocess
from vitcli.core.config import ViTConfig

TABLE = "relative_position_bias_table"


def _beit_pooling(ev: Evidence) -> str:
    """The patch mean when there is an fc_norm (use_mean_pooling), else the class token."""
    return "mean" if ev.has("fc_norm.weight") else "cls"


def _timm_beit_default(c: ViTConfig) -> Preprocess:
    return timm_preprocess(c.image_size, 0.9, INCEPTION, "bicubic", source="timm BEiT default: crop_pct 0.9")


def _timm_beitv2_default(c: ViTConfig) -> Preprocess:
    return timm_preprocess(c.image_size, 0.9, IMAGENET, "bicubic", source="timm BEiT v2 default: crop_pct 0.9")


def _named(word: str):
    return lambda ev: word in f"{ev.model_name} {ev.files.architecture}".lower()


TIMM_BEIT = Family(
    "timm-beit", "timm BEiT / BEiT v2 layout (beit.py)",
    markers=(r"^patch_embed\.proj\.weight$", r"^blocks\.0\.attn\.qkv\.weight$", TABLE + "$"),
    roots=("", "timm_model."),
    block_prefixes=("blocks.{i}.",),
    top=(
        Rule("cls_token", ("cls_token",)),
        Rule("pos_embed", ("pos_embed",)),
        *pair("patch_embed.proj", "patch_embed.proj"),
        Rule(f"rel_pos_bias.{TABLE}", (f"rel_pos_bias.{TABLE}",)),
        *pair("norm", "norm"),
        *pair("fc_norm", "fc_norm"),
        *pair("head", "head"),
    ),
    block=(
        *pair("norm1", "norm1"),
        Rule("attn.qkv.weight", ("attn.qkv.weight",)),
        Rule("attn.qkv.bias", (("attn.q_bias", "attn.v_bias"),), "qzv"),
        Rule(f"rel_pos_bias.{TABLE}", (f"attn.{TABLE}",)),
        *pair("attn.proj", "attn.proj"),
        Rule("ls1.gamma", ("gamma_1",)),
        *pair("norm2", "norm2"),
        *pair("mlp.fc1", "mlp.fc1"),
        *pair("mlp.fc2", "mlp.fc2"),
        Rule("ls2.gamma", ("gamma_2",)),
    ),
    variants=(Variant("timm-beitv2", _named("beitv2"), _timm_beitv2_default),
              Variant("timm-beit", always, _timm_beit_default)),
    ignore=(r"relative_position_index$", r"^mask_token$"),
    eps=1e-6,
    pooling=_beit_pooling,
    file_preprocess=_pretrained_cfg,
    required=("patch_embed.proj.weight", "cls_token"),
    notes=("relative position bias: the table is used at the native grid only (not resampled)",),
)

_Q = ("attention.attention.query", "attention.q_proj")
_K = ("attention.attention.key", "attention.k_proj")
_V = ("attention.attention.value", "attention.v_proj")

HF_BEIT = Family(
    "hf-beit", "Hugging Face transformers BeitModel / Data2VecVisionModel",
    markers=(r"^embeddings\.patch_embeddings\.projection\.weight$", TABLE + "$"),
    roots=("beit.", "data2vec_vision.", ""),
    block_prefixes=("encoder.layer.{i}.", "layers.{i}."),
    block_styles=(0, 1),
    top=(
        Rule("cls_token", ("embeddings.cls_token",)),
        Rule("pos_embed", ("embeddings.position_embeddings",)),
        *pair("patch_embed.proj", "embeddings.patch_embeddings.projection"),
        Rule(f"rel_pos_bias.{TABLE}", (f"encoder.relative_position_bias.{TABLE}", f"relative_position_bias.{TABLE}")),
        *pair("norm", "layernorm"),
        *pair("fc_norm", "pooler.layernorm"),
    ),
    block=(
        *pair("norm1", "layernorm_before"),
        Rule("attn.qkv.weight", (tuple(f"{n}.weight" for n in (_Q[0], _K[0], _V[0])),
                                 tuple(f"{n}.weight" for n in (_Q[1], _K[1], _V[1])))),
        Rule("attn.qkv.bias", ((f"{_Q[0]}.bias", f"{_V[0]}.bias"), (f"{_Q[1]}.bias", f"{_V[1]}.bias")), "qzv"),
        Rule(f"rel_pos_bias.{TABLE}", (f"attention.attention.relative_position_bias.{TABLE}",
                                       f"relative_position_bias.{TABLE}")),
        *pair("attn.proj", ("attention.output.dense", "attention.o_proj")),
        Rule("ls1.gamma", ("lambda_1",)),
        *pair("norm2", "layernorm_after"),
        *pair("mlp.fc1", ("intermediate.dense", "mlp.fc1")),
        *pair("mlp.fc2", ("output.dense", "mlp.fc2")),
        Rule("ls2.gamma", ("lambda_2",)),
    ),
    variants=(Variant("hf-data2vec-vision", lambda ev: ev.root == "data2vec_vision." or _named("data2vec")(ev),
                      class_default("BeitImageProcessor")),
              Variant("hf-beit", always, class_default("BeitImageProcessor"))),
    outside=(*pair("head", "classifier"),),
    ignore=(r"relative_position_index$", r"^embeddings\.mask_token$"),
    ignore_outside=(r"^lm_head\.", r"^layernorm\.",),
    eps=1e-12,
    pos_resample=HF_RESAMPLE,
    activation=hf_activation("gelu", "hf-beit"),
    pooling=_beit_pooling,
    file_preprocess=processor_preprocess,
    required=("patch_embed.proj.weight", "cls_token"),
    notes=("relative position bias: the table is used at the native grid only (not resampled)",),
)

__all__ = ["HF_BEIT", "TIMM_BEIT"]

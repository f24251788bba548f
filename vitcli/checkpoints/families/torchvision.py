"""torchvision's VisionTransformer (vit_b_16, vit_b_32, vit_l_16, vit_h_14): exact GELU, eps 1e-6."""

from vitcli.checkpoints.families.base import Family, Rule, Variant, always, pair
from vitcli.checkpoints.preprocess import IMAGENET, Preprocess, shortest_crop
from vitcli.core.config import ViTConfig


def _weights_transforms(c: ViTConfig) -> Preprocess:
    """IMAGENET1K_V1 at 224 (resize 256, bilinear); the SWAG weights at their own size (bicubic)."""
    if c.image_size == (224, 224):
        return shortest_crop(c.image_size, 256, IMAGENET, "bilinear", "round", "torchvision IMAGENET1K_V1 transforms")
    return shortest_crop(c.image_size, c.image_size[0], IMAGENET, "bicubic", "round",
                         "torchvision SWAG weights transforms")


TORCHVISION = Family(
    "torchvision", "torchvision VisionTransformer (vit_b_16, vit_b_32, vit_l_16, vit_h_14)",
    markers=(r"^conv_proj\.weight$", r"^encoder\.pos_embedding$"),
    roots=("",),
    block_prefixes=("encoder.layers.encoder_layer_{i}.",),
    top=(
        Rule("cls_token", ("class_token",)),
        Rule("pos_embed", ("encoder.pos_embedding",)),
        *pair("patch_embed.proj", "conv_proj"),
        *pair("norm", "encoder.ln"),
        *pair("head", "heads.head"),
    ),
    block=(
        *pair("norm1", "ln_1"),
        Rule("attn.qkv.weight", ("self_attention.in_proj_weight",)),
        Rule("attn.qkv.bias", ("self_attention.in_proj_bias",)),
        *pair("attn.proj", "self_attention.out_proj"),
        *pair("norm2", "ln_2"),
        *pair("mlp.fc1", ("mlp.0", "mlp.linear_1")),
        *pair("mlp.fc2", ("mlp.3", "mlp.linear_2")),
    ),
    variants=(Variant("torchvision", always, _weights_transforms),),
    eps=1e-6,
    pos_resample=("bicubic", "torchvision's model takes only its native size; "
                  "resampled as timm does (antialiased bicubic)"),
    required=("patch_embed.proj.weight", "pos_embed", "cls_token", "norm.weight"),
)

__all__ = ["TORCHVISION"]

"""The hyper-parameters of a ViT, in one frozen dataclass that every layer shares.

The core model built from a `ViTConfig` has these state-dict keys (timm's paper names, so the
checkpoint loader maps each family onto them with a key table and a few flags):

  cls_token (1, 1, D)          reg_tokens (1, R, D)        dist_token (1, 1, D)
  pos_embed (1, pos_prefix_rows + N, D)                    (learned; sin-cos tables are buffers)
  patch_embed.proj.weight (D, C, P, P)   patch_embed.proj.bias (D)   [if patch_bias]
  norm_pre.weight / .bias (D)                              [if pre_norm]
  blocks.{i}.norm1.weight / .bias
  blocks.{i}.attn.qkv.weight (3D, D) / .bias (3D)          [q, k, v stacked in that order]
  blocks.{i}.attn.proj.weight (D, D) / .bias
  blocks.{i}.ls1.gamma (D)                                 [if layer_scale]
  blocks.{i}.norm2.weight / .bias
  blocks.{i}.mlp.fc1.weight (M, D) / .bias,  blocks.{i}.mlp.fc2.weight (D, M) / .bias
  blocks.{i}.ls2.gamma (D)                                 [if layer_scale]
  blocks.{i}.attn.q_norm.weight / .bias (d), attn.k_norm.*  [if qk_norm]
  blocks.{i}.attn.norm.weight / .bias (D)                  [if attn_norm]
  blocks.{i}.mlp.fc1_g.weight (M, D) / .bias, mlp.fc1_x.*  [mlp "swiglu", instead of mlp.fc1]
  blocks.{i}.mlp.fc1.weight (2M, D) / .bias                [mlp "swiglu_packed": gate rows first]
  blocks.{i}.mlp.norm.weight / .bias (M)                   [if mlp_norm]
  position.rope.periods (d/4)                              [if rope: the rotation periods]
  norm.weight / .bias (D)                                  [if final_norm]
  fc_norm.weight / .bias (D)                               [if fc_norm: LN after pooling]
  attn_pool.latent (1, 1, D), attn_pool.q / .kv (2D, D) / .proj / .norm / .mlp.fc1 / .mlp.fc2
                                                           [if pooling == "map": the probe; q if
                                                           pool_query_proj, norm and mlp if pool_mlp]
  rel_pos_bias.relative_position_bias_table ((2R-1)(2C-1)+3, H)   [if rel_pos_bias == "shared";
                                                           per block blocks.{i}.rel_pos_bias.*]
  patch_embed.norm.weight (D)                              [if patch_norm]
  blocks.{i}.mlp.fc1_g / fc1_x / fc2                       [if mlp == "swiglu"]
  head.weight (num_classes, D) / head.bias                 [if num_classes; bias if head_bias]
  head_dist.weight / .bias                                 [if distilled and num_classes]

Token order: [cls?, dist?, registers..., patches...]. The position table covers the first
`pos_prefix_rows` prefix tokens and the patches; the remaining prefix tokens (registers in
DINOv2, for example) get no position.

Each part is chosen by a `Literal` field (posenc, attention, mlp, activation, norm, pooling) and
built by its own module (position.py, attention.py, mlp.py, norm.py, pooling.py); a new kind of
part is a new value of its Literal and a module, and `validate` reads the allowed values from
the Literals themselves.
"""

from dataclasses import dataclass, field, replace
from typing import Any, Literal

PosEncKind = Literal["learned", "sincos1d", "sincos2d", "none"]
AttentionKind = Literal["plain"]  # multi-head self-attention softmax(Q·Kᵀ/√d)·V
# fc1, activation, fc2; SiLU(fc1_g)·fc1_x, fc2 (SwiGLU: timm SwiGLU, AIMv2); the same with fc1 packing [g; x]
# (timm GluMlp)
MlpKind = Literal["mlp", "swiglu", "swiglu_packed"]
RopeKind = Literal["none", "dinov3", "eva"]  # rotary position on q, k of the patches (rope.py)
Activation = Literal["gelu", "gelu_tanh", "quick_gelu", "silu"]
NormKind = Literal["layernorm", "rmsnorm"]
Pooling = Literal["cls", "mean", "none", "map"]  # map: an attention-pool probe (SigLIP)
RelPosKind = Literal["none", "layer", "shared"]  # BEiT's relative position bias: per block or one for all
# How a learned table meets another grid (posenc.RESAMPLE holds each one's interpolate arguments):
#   bicubic         antialiased bicubic to the grid's size: timm's resample_abs_pos_embed, DINOv2 with registers
#   bilinear        antialiased bilinear to the grid's size: NaFlex (timm naflexvit, transformers SigLIP 2)
#   bicubic_plain   bicubic to the grid's size, no antialiasing: transformers' interpolate_pos_encoding
#   bicubic_offset  bicubic, no antialiasing, at scale factor (n + 0.1) / M per axis: facebookresearch/dino
#                   and dinov2 without registers (interpolate_offset 0.1)
PosResample = Literal["bicubic", "bilinear", "bicubic_plain", "bicubic_offset"]
# An image side that is not a multiple of P: refused (vitcli's presets), or floored as a stride-P conv does
# (floor(H/P) × floor(W/P) patches, the last H mod P rows and W mod P columns unused: timm, transformers, …).
PatchRemainder = Literal["refuse", "floor"]


@dataclass(frozen=True)
class ViTConfig:
    """Everything needed to build the core ViT; defaults are ViT-B/16 at 224×224."""

    name: str = "vit-b16"
    image_size: tuple[int, int] = (224, 224)  # [H, W] the model was built for (native grid)
    patch_size: int = 16
    in_chans: int = 3
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp_dim: int = 3072
    class_token: bool = True
    distilled: bool = False  # DeiT's distillation token after the class token
    num_registers: int = 0  # register tokens (DINOv2-reg, "ViTs need registers")
    posenc: PosEncKind = "learned"
    pos_prefix_rows: int = 1  # prefix tokens that have a row in the position table
    patch_bias: bool = True  # CLIP's conv1 has none
    qkv_bias: bool = True
    layer_scale: bool = False  # DINOv2: ls1.gamma, ls2.gamma
    pre_norm: bool = False  # CLIP's ln_pre before the blocks
    final_norm: bool = True
    fc_norm: bool = False  # LayerNorm applied after pooling instead of before (timm avg pool)
    pooling: Pooling = "cls"
    num_classes: int = 1000  # 0: no head; for CLIP this is the projection width
    head_bias: bool = True  # CLIP's proj has no bias
    eps: float = 1e-6  # norm eps (timm 1e-6, transformers ViT 1e-12, CLIP 1e-5)
    attention: AttentionKind = "plain"
    mlp: MlpKind = "mlp"
    activation: Activation = "gelu"
    norm: NormKind = "layernorm"  # every norm: norm_pre, norm1, norm2, norm, fc_norm
    # Rotary position (rope.py), beside or instead of the table: DINOv3 (coords in [-1, 1], periods
    # base^(4i/d), half pairing) or EVA / PE (integer coords scaled to rope_ref_grid, interleaved).
    rope: RopeKind = "none"
    rope_base: float = 10000.0  # DINOv3: 100
    rope_ref_grid: tuple[int, int] | None = None  # EVA: coords rescaled onto this grid (timm ref_feat_shape)
    rope_offset: float = 0.0  # added to every coordinate (PE: 1)
    rope_xy: bool = False  # the first half of the angles follows columns, not rows (PE: grid_indexing xy)
    qk_norm: bool = False  # LayerNorm over each head's q and k (attn.q_norm, attn.k_norm)
    attn_norm: bool = False  # EVA's sub-LN on the attention output before proj (attn.norm)
    mlp_norm: bool = False  # EVA's sub-LN inside the MLP before fc2 (mlp.norm)
    # Parts of the newer families (SigLIP, BEiT, AIMv2); the defaults leave a plain ViT as it was.
    proj_bias: bool = True  # attn.proj bias (AIMv2 has none)
    mlp_bias: bool = True  # MLP linear biases (AIMv2 has none)
    patch_norm: bool = False  # patch_embed.norm after the projection (AIMv2's RMSNorm)
    rel_pos_bias: RelPosKind = "none"  # blocks.{i}.rel_pos_bias.* (layer) or rel_pos_bias.* (shared)
    pos_resample: PosResample = "bicubic"  # learned table to the image's grid, as the family's library does it
    patch_remainder: PatchRemainder = "refuse"  # sides not a multiple of P: refused, or floored (the grid)
    # The attention-pool probe's own shape when it differs from the blocks' (PE: 8 heads, MLP 4·D).
    pool_heads: int | None = None  # None: `heads`
    pool_mlp_dim: int | None = None  # None: `mlp_dim`
    pool_query_proj: bool = True  # attn_pool.q on the latent (timm MAP); AIMv2's head queries with the latent itself
    pool_qkv_bias: bool = True  # biases of attn_pool.q / .kv (AIMv2: its qkv_bias, off in apple's models)
    pool_mlp: bool = True  # attn_pool.norm + .mlp, a residual after proj (timm MAP); AIMv2's head has none
    extra: dict = field(default_factory=dict, compare=False)  # family notes for `info`

    @property
    def grid(self) -> tuple[int, int]:
        """Native (rows, cols) of the patch grid (floored when `image_size` is not a multiple of P)."""
        return self.image_size[0] // self.patch_size, self.image_size[1] // self.patch_size

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: class, distillation and register tokens."""
        return int(self.class_token) + int(self.distilled) + self.num_registers

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    def with_changes(self, **changes: Any) -> "ViTConfig":
        """A copy with some fields replaced (frozen dataclass)."""
        return replace(self, **changes)

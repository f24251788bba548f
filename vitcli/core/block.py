"""The pre-norm transformer block: x + ls1(MSA(norm1(x))), then x + ls2(MLP(norm2(x))).

Parts come from the config (attention.py, mlp.py, norm.py); names are timm's (norm1, attn.qkv,
attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma). Besides the whole block, `prefix_rows`
evaluates the first k rows alone, one image at a time, from Q, K, V the caller already has: what
class-token pooling reads of the last block, with shapes that never depend on the batch size.
"""

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from vitcli.core.attention import AttentionDetail, Rotate, bias_image, bias_rows, make_attention
from vitcli.core.config import ViTConfig
from vitcli.core.mlp import make_mlp
from vitcli.core.norm import make_norm
from vitcli.core.relpos import RelativePositionBias, add_bias

QKV = tuple[Tensor, Tensor, Tensor]


class BlockSteps(NamedTuple):
    """One block's forward kept step by step, for methods that take gradients at its pieces (explain)."""

    normed: Tensor  # (B, T, D) norm1(x), the attention's input (Grad-CAM's features)
    q: Tensor  # (B, H, T, d) as the scores use them (after qk-norm and the rotation)
    k: Tensor
    v: Tensor
    heads: Tensor  # (B, H, T, d) SDPA output A·V per head, before the merge
    out: Tensor  # (B, T, D) the block's output
    lse: Tensor | None = None  # (B, H, T) each query row's log-sum-exp of its scores, when asked


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (CaiT, DINOv2): x·γ."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block of the config's attention, MLP and norm."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        d = config.dim
        self.norm1 = make_norm(config.norm, d, config.eps)
        self.attn = make_attention(config)
        self.ls1 = LayerScale(d) if config.layer_scale else nn.Identity()
        self.norm2 = make_norm(config.norm, d, config.eps)
        self.mlp = make_mlp(config)
        self.ls2 = LayerScale(d) if config.layer_scale else nn.Identity()
        self.rel_pos_bias = RelativePositionBias(config.grid, config.heads) if config.rel_pos_bias == "layer" else None

    def attention_bias(self, grid: tuple[int, int], shared: Tensor | None) -> Tensor | None:
        """The score bias of this block: the model's shared one plus the block's own relative bias (BEiT)."""
        return shared if self.rel_pos_bias is None else add_bias(shared, self.rel_pos_bias(grid))

    def steps(self, x: Tensor, rotate: Rotate | None = None, bias: Tensor | None = None,
              lse: bool = False) -> BlockSteps:
        """The block's forward on (B, T, D) with every step kept: the same parts and order as `forward`; with `lse`,
        the scores' log-sum-exp per query row too (`Attention.mix_lse`)."""
        normed = self.norm1(x)  # (B, T, D)
        q, k, v = self.attn.split_heads(normed, rotate)  # each (B, H, T, d)
        heads, row_lse = self.attn.mix_lse(q, k, v, bias) if lse else (self.attn.mix(q, k, v, bias=bias)[0], None)
        return BlockSteps(normed, q, k, v, heads, self.residual(x, self.attn.merge(heads)), row_lse)

    def qkv(self, x: Tensor, rotate: Rotate | None = None) -> QKV:
        """(B, T, D) → Q, K, V of norm1(x), each (B, H, T, d)."""
        return self.attn.split_heads(self.norm1(x), rotate)

    def finish(self, x: Tensor, qkv: QKV, return_weights: bool = False, queries: Sequence[int] | None = None,
               bias: Tensor | None = None) -> tuple[Tensor, AttentionDetail | None]:
        """The block's output (B, T, D) from its input and Q, K, V, with the attention detail when asked."""
        y, detail = self.attn.mix(*qkv, return_weights, queries, bias)  # (B, H, T, d)
        return self.residual(x, self.attn.merge(y)), detail

    def residual(self, x: Tensor, y: Tensor) -> Tensor:
        """x + ls1(y), then + ls2(MLP(norm2(·))): (B, n, D) rows and their attention output → (B, n, D)."""
        x = x + self.ls1(y)
        return x + self.ls2(self.mlp(self.norm2(x)))

    def prefix_rows(self, x: Tensor, qkv: QKV, rows: int, bias: Tensor | None = None) -> Tensor:
        """The first `rows` tokens' output (B, rows, D), attending to all keys, image by image.

        A loop over the batch axis (tiny matmuls on `rows` rows): SDPA with few query rows and
        Linear on few rows give other bits batched than alone, so these shapes never see B. SDPA's
        math kernel here: the fused CPU kernel splits the keys of a few query rows over the threads,
        so its bits would change with the thread count (a Ray actor's rows would not be the local ones).
        """
        from torch.nn.attention import SDPBackend, sdpa_kernel

        q, k, v = qkv
        out = []
        with sdpa_kernel(SDPBackend.MATH):
            for b in range(x.shape[0]):
                y, _ = self.attn.mix(q[b:b + 1, :, :rows], k[b:b + 1], v[b:b + 1],
                                     bias=bias_rows(bias_image(bias, b), slice(0, rows)))  # (1, H, rows, d)
                out.append(self.residual(x[b:b + 1, :rows], self.attn.merge(y)))  # (1, rows, D)
        return torch.cat(out)

    def forward(self, x: Tensor, return_weights: bool = False, queries: Sequence[int] | None = None, *,
                rotate: Rotate | None = None, bias: Tensor | None = None) -> tuple[Tensor, AttentionDetail | None]:
        """(B, T, D) → (B, T, D), with the attention detail when asked."""
        return self.finish(x, self.qkv(x, rotate), return_weights, queries, bias)


__all__ = ["Block", "BlockSteps", "LayerScale", "QKV"]

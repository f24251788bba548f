"""Multi-head self-attention that can show its true weights, and a fused path when it need not.

Y (B, T, D) always comes from F.scaled_dot_product_attention (memory-lean on the CPU), so asking
for weights never changes a number downstream. The weights have three paths:
  fast       none asked: nothing more is computed;
  explicit   A = softmax(Q·Kᵀ/√d_k + bias) (B, H, T, T): every row, filled in row blocks;
  queries    the same for chosen query rows only (B, H, Q, T), so the T×T matrix is never built
             (a class-token map on 12,545 tokens costs H·T floats).

Two inputs let position parts reach the scores without new flags: `rotate(q, k)` turns Q and K
after the projection (RoPE on the patch rows), and `bias` is added to Q·Kᵀ/√d_k before the
softmax (a relative position bias; -inf masks a key). Every path, and the weights, use both.
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitcli.core.config import ViTConfig

# (Q, K) each (B, H, T, d) → the same, rotated (RoPE); applied before the scores
Rotate = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class AttentionDetail(NamedTuple):
    """What one attention layer computed: weights (B, H, T or Q, T), Q, K, V (B, H, T, d) and the score
    bias it added (broadcastable to (B, H, T, T), or None), so that any row can be recomputed as it was."""

    weights: Tensor
    q: Tensor
    k: Tensor
    v: Tensor
    bias: Tensor | None = None


def resolve_indices(indices: Sequence[int], size: int, what: str = "token") -> list[int]:
    """Indices into `size` items, negative ones counted from the end; out of range is a ValueError."""
    out = []
    for i in indices:
        if not -size <= int(i) < size:
            raise ValueError(f"{what} {i} is out of range: there are {size} {what}s (0..{size - 1})")
        out.append(int(i) % size)
    return out


def bias_rows(bias: Tensor | None, rows: slice | Tensor) -> Tensor | None:
    """The query rows `rows` of a score bias broadcastable to (B, H, T, T); one broadcast row stays itself."""
    if bias is None or bias.shape[-2] == 1:
        return bias
    return bias[..., rows, :] if isinstance(rows, slice) else bias.index_select(-2, rows)


def bias_image(bias: Tensor | None, b: int) -> Tensor | None:
    """Image b's score bias (1, …) when the bias has one per image, else the shared bias."""
    return bias[b:b + 1] if bias is not None and bias.dim() == 4 and bias.shape[0] > 1 else bias


WEIGHTS_BLOCK = 1 << 23  # attention scores computed at once when the full matrix is larger


class Attention(nn.Module):
    """Multi-head self-attention with fused `qkv` (3D, D), rows stacked q, k, v, and `proj` (D, D)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, qk_norm: bool = False, attn_norm: bool = False,
                 eps: float = 1e-6, proj_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm = nn.LayerNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()  # qk-norm, per head
        self.k_norm = nn.LayerNorm(self.head_dim, eps=eps) if qk_norm else nn.Identity()
        self.norm = nn.LayerNorm(dim, eps=eps) if attn_norm else nn.Identity()  # EVA's sub-LN before proj
        self.proj = nn.Linear(dim, dim, bias=proj_bias)

    def split_heads(self, x: Tensor, rotate: Rotate | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """(B, T, D) → Q, K, V, each (B, H, T, d); Q and K rotated when `rotate` is given."""
        b, t, _ = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim)  # (B, T, 3, H, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, d)
        q, k = self.q_norm(q), self.k_norm(k)  # normalised before the rotation (timm Attention, EvaAttention)
        if rotate is not None:
            q, k = rotate(q, k)
        return q, k, v

    def weights(self, q: Tensor, k: Tensor, bias: Tensor | None = None) -> Tensor:
        """softmax(Q·Kᵀ/√d_k + bias) over keys: (B, H, Q, d), (B, H, T, d) → (B, H, Q, T), rows sum to 1.

        `bias` has Q rows (or one broadcast row). Filled in blocks of about 8M scores, so the peak
        is the weights plus one block, not twice the weights (12,545 tokens: 1.9 GB less a head).
        """
        b, h, n, _ = q.shape
        t = k.shape[-2]
        step = max(1, WEIGHTS_BLOCK // (b * h * t))
        if step >= n:
            return torch.softmax(self._scores(q, k, bias), dim=-1)
        out = q.new_empty(b, h, n, t)
        for i in range(0, n, step):
            rows = slice(i, i + step)
            out[:, :, rows] = torch.softmax(self._scores(q[:, :, rows], k, bias_rows(bias, rows)), dim=-1)
        return out

    def rows(self, q: Tensor, k: Tensor, bias: Tensor | None, start: int, stop: int,
             out: Tensor | None = None) -> Tensor:
        """Query rows start..stop-1 of `weights` from the layer's full Q, K (B, H, T, d) and score bias: (B, H, c, T).
        What every later reader of a layer's weights (mean distance, rollout, explain) recomputes them with.
        `out` (B, H, c, T), contiguous: the rows are computed in it, in place (explain's reused row blocks)."""
        if out is None:
            return self.weights(q[:, :, start:stop], k, bias_rows(bias, slice(start, stop)))
        scores = self._scores(q[:, :, start:stop], k, bias_rows(bias, slice(start, stop)), out)
        return torch.softmax(scores, dim=-1, out=scores)

    def _scores(self, q: Tensor, k: Tensor, bias: Tensor | None, out: Tensor | None = None) -> Tensor:
        """Q·Kᵀ/√d_k (+ bias): (B, H, Q, T), in `out` when given."""
        if out is None:
            scores = (q * self.scale) @ k.transpose(-2, -1)
            return scores if bias is None else scores + bias
        scores = torch.matmul(q * self.scale, k.transpose(-2, -1), out=out)
        return scores if bias is None else scores.add_(bias)

    def mix(self, q: Tensor, k: Tensor, v: Tensor, return_weights: bool = False,
            queries: Sequence[int] | None = None, bias: Tensor | None = None) -> tuple[Tensor, AttentionDetail | None]:
        """A·V per head, fused: Q (B, H, n, d), K, V (B, H, T, d) → (B, H, n, d); with the weights
        of every query row, or of rows `queries` only, when asked."""
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, n, d)
        if not return_weights:
            return y, None
        if queries is None:
            return y, AttentionDetail(self.weights(q, k, bias), q, k, v, bias)  # (B, H, n, T)
        return y, AttentionDetail(self.query_weights(q, k, bias, queries), q, k, v, bias)  # (B, H, Q, T)

    def mix_lse(self, q: Tensor, k: Tensor, v: Tensor, bias: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """A·V per head (B, H, T, d), as `mix`, and each query row's log-sum-exp of its scores (B, H, T), from which
        any tile of the weights is exp(scores − lse) (explain's tiled backward). SDPA's fused CPU kernel returns
        both from one pass, with `mix`'s bits; elsewhere (a GPU) the scores' row blocks give the lse."""
        if q.device.type == "cpu":
            try:
                y, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=bias)
                return y, lse
            except (AttributeError, RuntimeError):  # an older torch, or inputs the kernel does not take
                pass
        y, _ = self.mix(q, k, v, bias=bias)
        step = max(1, WEIGHTS_BLOCK // (q.shape[0] * q.shape[1] * k.shape[-2]))
        lse = torch.cat([torch.logsumexp(self._scores(q[:, :, i:i + step], k, bias_rows(bias, slice(i, i + step))), -1)
                         for i in range(0, q.shape[-2], step)], dim=-1)  # (B, H, T)
        return y, lse

    def query_weights(self, q: Tensor, k: Tensor, bias: Tensor | None, queries: Sequence[int]) -> Tensor:
        """Rows `queries` of `weights` from the full Q, K (B, H, T, d): (B, H, Q, T), the T×T never built;
        the bits of `mix(..., queries=queries)`'s weights, whoever asks (a Capture's queries or a reducer)."""
        rows = torch.as_tensor(resolve_indices(queries, q.shape[-2]), dtype=torch.long, device=q.device)
        return self.weights(q.index_select(2, rows), k, bias_rows(bias, rows))

    def merge(self, y: Tensor) -> Tensor:
        """(B, H, n, d) → proj of the heads side by side: (B, n, D)."""
        b, _, n, _ = y.shape
        return self.proj(self.norm(y.transpose(1, 2).reshape(b, n, -1)))

    def forward(self, x: Tensor, return_weights: bool = False, queries: Sequence[int] | None = None, *,
                rotate: Rotate | None = None, bias: Tensor | None = None) -> tuple[Tensor, AttentionDetail | None]:
        """(B, T, D) → Y (B, T, D), and the weights with Q, K, V when asked (rows `queries` only if given)."""
        y, detail = self.mix(*self.split_heads(x, rotate), return_weights, queries, bias)
        return self.merge(y), detail


def make_attention(config: ViTConfig) -> Attention:
    """The block's attention of the config's kind, with qk-norm and the inner norm when the config has them."""
    if config.attention == "plain":
        return Attention(config.dim, config.heads, qkv_bias=config.qkv_bias, qk_norm=config.qk_norm,
                         attn_norm=config.attn_norm, eps=config.eps, proj_bias=config.proj_bias)
    raise ValueError(f"unknown attention '{config.attention}': use plain")


__all__ = ["Attention", "AttentionDetail", "Rotate", "WEIGHTS_BLOCK", "bias_image", "bias_rows", "make_attention",
           "resolve_indices"]

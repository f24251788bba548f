"""Multi-head self-attention that can show its weights, and a fused path when it need not.

Three paths give the same Y (B, T, D):
  fast       F.scaled_dot_product_attention; no weights, memory-lean on the CPU;
  explicit   A = softmax(Q·Kᵀ/√d_k) (B, H, T, T), Y = A·V: all weights, T×T memory per head;
  queries    Y from the fast path, and weights only for chosen query rows (B, H, Q, T), so the
             T×T matrix is never built (a class-token map on 12,545 tokens costs H·T floats).
"""

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AttentionDetail(NamedTuple):
    """What one attention layer computed: weights (B, H, T or Q, T) and Q, K, V (B, H, T, d)."""

    weights: Tensor
    q: Tensor
    k: Tensor
    v: Tensor


def resolve_indices(indices: Sequence[int], size: int, what: str = "token") -> list[int]:
    """Indices into `size` items, negative ones counted from the end; out of range is a ValueError."""
    out = []
    for i in indices:
        if not -size <= int(i) < size:
            raise ValueError(f"{what} {i} is out of range: there are {size} {what}s (0..{size - 1})")
        out.append(int(i) % size)
    return out


WEIGHTS_BLOCK = 1 << 23  # attention scores computed at once when the full matrix is larger


class Attention(nn.Module):
    """Multi-head self-attention with fused `qkv` (3D, D), rows stacked q, k, v, and `proj` (D, D)."""

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = dim // heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def split_heads(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(B, T, D) → Q, K, V, each (B, H, T, d)."""
        b, t, _ = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, self.head_dim)  # (B, T, 3, H, d)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, d)
        return q, k, v

    def weights(self, q: Tensor, k: Tensor) -> Tensor:
        """softmax(Q·Kᵀ/√d_k) over keys: (B, H, Q, d), (B, H, T, d) → (B, H, Q, T), rows sum to 1.

        Filled in blocks of about 8M scores, so the peak is the weights plus one block, not twice
        the weights (12,545 tokens: 1.9 GB less a head).
        """
        b, h, n, _ = q.shape
        t = k.shape[-2]
        step = max(1, WEIGHTS_BLOCK // (b * h * t))
        if step >= n:
            return torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        out = q.new_empty(b, h, n, t)
        for i in range(0, n, step):
            out[:, :, i:i + step] = torch.softmax((q[:, :, i:i + step] * self.scale) @ k.transpose(-2, -1), dim=-1)
        return out

    def forward(self, x: Tensor, return_weights: bool = False, queries: Sequence[int] | None = None,
                first: int | None = None) -> tuple[Tensor, AttentionDetail | None]:
        """(B, T, D) → Y (B, T, D), and the weights with Q, K, V when asked (rows `queries` only if given).

        `first=n` (fast path only): Y of the first n tokens alone, (B, n, D), still attending to all T keys.
        """
        b, t, d = x.shape
        q, k, v = self.split_heads(x)  # (B, H, T, d)
        if first is not None:
            if return_weights:
                raise ValueError("first= computes no weights")
            y = F.scaled_dot_product_attention(q[:, :, :first], k, v)  # (B, H, n, d)
            return self.proj(y.transpose(1, 2).reshape(b, -1, d)), None  # (B, n, D)
        if not return_weights:
            y, detail = F.scaled_dot_product_attention(q, k, v), None  # (B, H, T, d)
        elif queries is None:
            attn = self.weights(q, k)  # (B, H, T, T)
            y, detail = attn @ v, AttentionDetail(attn, q, k, v)
        else:
            rows = torch.as_tensor(resolve_indices(queries, t), dtype=torch.long, device=x.device)
            attn = self.weights(q.index_select(2, rows), k)  # (B, H, Q, T)
            y, detail = F.scaled_dot_product_attention(q, k, v), AttentionDetail(attn, q, k, v)
        y = y.transpose(1, 2).reshape(b, t, d)  # (B, H, T, d) → (B, T, D)
        return self.proj(y), detail

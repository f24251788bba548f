"""The attention-pool head (MAP, "multihead attention pooling"; SigLIP, PE, AIMv2): a learned probe
attends over every final token, and its output is the image embedding.

    q = latent·W_q (1, D),  K, V = tokens·W_kv (T, 2D),  A = softmax(q·Kᵀ/√d) (H, 1, T)
    y = proj(A·V),  pooled = y + mlp(norm(y))

Its variants are config data: `pool_query_proj` (W_q; AIMv2's head queries with the latent itself),
`pool_qkv_bias` (biases of W_q, W_kv) and `pool_mlp` (the residual norm + MLP; AIMv2 has none, so
pooled = y). Keys are timm's `AttentionPoolLatent` (attn_pool.latent, .q, .kv, .proj, .norm,
.mlp.fc1/.fc2); transformers' SigLIP `head.probe` / `head.attention` (nn.MultiheadAttention) /
`head.layernorm` / `head.mlp` and AIMv2's `head.cls_token` / `head.k_proj` + `v_proj` /
`head.output_proj` map onto them. The probe's row A is what `attend --query cls` shows on a model without
a class token: the probe stands in for it. A key mask (B, T) of padding is honoured (NaFlex).
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vitcli.core.config import ViTConfig
from vitcli.core.mlp import Mlp
from vitcli.core.norm import make_norm


class AttentionPool(nn.Module):
    """One learned query over all tokens: (B, T, D) → (B, 1, D), with the probe's weights when asked."""

    prefix_rows = None  # reads every token

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        d = config.dim
        self.heads = config.pool_heads or config.heads
        self.head_dim = d // self.heads
        self.scale = self.head_dim**-0.5
        self.latent = nn.Parameter(torch.zeros(1, 1, d))
        self.q = nn.Linear(d, d, bias=config.pool_qkv_bias) if config.pool_query_proj else None
        self.kv = nn.Linear(d, 2 * d, bias=config.pool_qkv_bias)
        self.proj = nn.Linear(d, d)
        self.norm = make_norm(config.norm, d, config.eps) if config.pool_mlp else None
        self.mlp = Mlp(d, config.pool_mlp_dim or config.mlp_dim, config.activation) if config.pool_mlp else None

    def attend(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor | None]:
        """Probe query (B, H, 1, d), keys and values (B, H, T, d) and the score bias (B, 1, 1, T) or None."""
        b, t, _ = x.shape
        q = self.latent if self.q is None else self.q(self.latent)  # (1, 1, D)
        q = q.reshape(1, 1, self.heads, self.head_dim).transpose(1, 2).expand(b, -1, -1, -1)
        k, v = self.kv(x).reshape(b, t, 2, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        bias = None
        if mask is not None:  # (B, T) True for real tokens
            bias = torch.zeros(b, 1, 1, t, dtype=x.dtype, device=x.device).masked_fill(~mask[:, None, None], -torch.inf)
        return q, k, v, bias

    def weights(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The probe's attention over the tokens: (B, T, D) → (B, H, 1, T), rows sum to 1."""
        q, k, _, bias = self.attend(x, mask)
        scores = (q * self.scale) @ k.transpose(-2, -1)  # (B, H, 1, T)
        return torch.softmax(scores if bias is None else scores + bias, dim=-1)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """(B, T, D) final tokens → (B, 1, D) pooled token. SDPA's math kernel, as for Block.prefix_rows:
        the fused CPU kernel splits one query row's keys over the threads, so bits would follow the thread count."""
        from torch.nn.attention import SDPBackend, sdpa_kernel

        q, k, v, bias = self.attend(x, mask)
        with sdpa_kernel(SDPBackend.MATH):
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, 1, d)
        y = self.proj(y.transpose(1, 2).reshape(x.shape[0], 1, -1))  # (B, 1, D)
        return y if self.mlp is None or self.norm is None else y + self.mlp(self.norm(y))


__all__ = ["AttentionPool"]

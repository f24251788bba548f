"""The text tower of a CLIP-family model: token ids → one embedding per prompt in the joint image-text space.

    token_embedding (V, D) + pos_embed (C, D) → L × Block (the image tower's pre-norm block, core/block.py)
    → norm → pool one token → proj (E, D) [+ bias]

Parts are fields of one frozen `TextConfig`, as the checkpoint families differ:
  mask     causal (OpenAI CLIP, open_clip CLIP, PE, transformers CLIPTextModel) or none (SigLIP, SigLIP 2:
           bidirectional); `pad_mask`: padding keys are masked with the tokenizer's attention mask
           (transformers passes it; open_clip and big_vision do not)
  pooling  argmax (the highest id: OpenAI's and open_clip's end-of-text token), eos (the first `eos_id`:
           transformers CLIP configs after PR #24773), last (SigLIP), first
  proj     a matrix (CLIP: no bias) or a Linear with bias (SigLIP's head); none when E = 0
`logit_scale` (and SigLIP's `logit_bias`) are kept with the tower: zero-shot scores are
exp(logit_scale)·cos (+ logit_bias). State-dict keys: token_embedding.weight, pos_embed,
blocks.{i}.* (core/block.py's names), norm.weight / .bias, proj.weight (E, D) / .bias, logit_scale,
logit_bias.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
from torch import Tensor, nn

from vitcli.core.block import Block
from vitcli.core.config import Activation, ViTConfig

if TYPE_CHECKING:
    from vitcli.core.encoder import VisionTransformer

TextPooling = Literal["argmax", "eos", "last", "first"]


@dataclass(frozen=True)
class TextConfig:
    """Everything needed to build a text tower; defaults are OpenAI CLIP ViT-B/32's."""

    vocab_size: int = 49408
    context_length: int = 77
    dim: int = 512
    depth: int = 12
    heads: int = 8
    mlp_dim: int = 2048
    activation: Activation = "gelu"
    eps: float = 1e-5
    causal: bool = True
    pad_mask: bool = False  # mask padding keys with the tokenizer's attention mask (transformers)
    pooling: TextPooling = "argmax"
    eos_id: int = 49407  # the token `eos` pooling looks for
    embed_dim: int = 512  # E of the projection; 0: no projection (the pooled token is the embedding)
    proj_bias: bool = False
    layer_scale: bool = False
    logit_bias: bool = False  # SigLIP: sigmoid(exp(s)·cos + b); CLIP: softmax(exp(s)·cos)

    def block_config(self) -> ViTConfig:
        """The image tower's block settings for one text block (same parts, same key names)."""
        return ViTConfig(name="text", dim=self.dim, depth=self.depth, heads=self.heads, mlp_dim=self.mlp_dim,
                         activation=self.activation, eps=self.eps, layer_scale=self.layer_scale, num_classes=0)

    @property
    def out_dim(self) -> int:
        """The width of one text embedding: E, or D without a projection."""
        return self.embed_dim or self.dim


class TextTransformer(nn.Module):
    """Token ids (K, C) → text embeddings (K, E), unnormalised (the peers' encode_text / get_text_features)."""

    def __init__(self, config: TextConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.token_embedding = nn.Embedding(c.vocab_size, c.dim)
        self.pos_embed = nn.Parameter(torch.zeros(c.context_length, c.dim))
        block = c.block_config()
        self.blocks = nn.ModuleList(Block(block) for _ in range(c.depth))
        self.norm = nn.LayerNorm(c.dim, eps=c.eps)
        self.proj = nn.Linear(c.dim, c.embed_dim, bias=c.proj_bias) if c.embed_dim else None
        self.logit_scale = nn.Parameter(torch.zeros(()))
        self.logit_bias = nn.Parameter(torch.zeros(())) if c.logit_bias else None

    def score_bias(self, mask: Tensor | None, n: int) -> Tensor | None:
        """The additive score bias of the blocks: -inf above the diagonal (causal) and on padding keys
        (`mask` (K, n) bool, True = a token) when the tower masks them; None when nothing is masked."""
        bias = None
        device = self.pos_embed.device
        if self.config.causal:
            bias = torch.full((n, n), float("-inf"), device=device).triu(1)[None, None]  # (1, 1, n, n)
        if self.config.pad_mask and mask is not None:
            keys = torch.zeros(mask.shape, device=device).masked_fill(~mask.to(device), float("-inf"))
            keys = keys[:, None, None, :]  # (K, 1, 1, n)
            bias = keys if bias is None else bias + keys
        return None if bias is None else bias.to(self.pos_embed.dtype)

    def tokens(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """Every token's final feature after the final norm: (K, n) ids → (K, n, D)."""
        n = ids.shape[1]
        x = self.token_embedding(ids) + self.pos_embed[:n]  # (K, n, D)
        bias = self.score_bias(mask, n)
        for block in self.blocks:
            x, _ = block(x, bias=bias)  # (K, n, D)
        return self.norm(x)

    def pool(self, x: Tensor, ids: Tensor) -> Tensor:
        """The pooled token of each prompt: (K, n, D) → (K, D), by the config's rule."""
        index = self.pooled_index(ids)
        if index is not None:
            return x[torch.arange(x.shape[0], device=x.device), index]
        return x[:, -1] if self.config.pooling == "last" else x[:, 0]

    def project(self, pooled: Tensor) -> Tensor:
        """(K, D) → (K, E): the projection into the joint space (identity without one)."""
        return pooled if self.proj is None else self.proj(pooled)

    def pooled_index(self, ids: Tensor) -> Tensor | None:
        """(K,) the token each prompt is pooled from, when the rule names one by the ids (argmax, eos); else None."""
        if self.config.pooling == "argmax":
            return ids.argmax(-1)
        if self.config.pooling == "eos":
            return (ids == self.config.eos_id).int().argmax(-1)
        return None

    def forward(self, ids: Tensor, mask: Tensor | None = None) -> Tensor:
        """(K, n) token ids, (K, n) bool attention mask → (K, E) text embeddings.

        A causal tower pooled at a token (CLIP, PE) runs only up to the last pooled token of the batch: under
        the causal mask no token sees those after it, so the padding beyond changes nothing (8 tokens of 77
        for a short label)."""
        index = self.pooled_index(ids) if self.config.causal else None
        if index is not None:
            n = int(index.max()) + 1
            ids, mask = ids[:, :n], None if mask is None else mask[:, :n]
        return self.project(self.pool(self.tokens(ids, mask), ids))


def patch_embeddings(vit: "VisionTransformer", tokens: Tensor, projects: bool) -> Tensor:
    """Each patch's final feature in the joint image-text space: (B, N, D) tokens after the final norm → (B, N, E).

    Each token goes where the pooled token goes: through the attention-pool head as its only key (softmax over
    one key is 1: proj(v(x)), + mlp(norm(·)); SigLIP, PE), fc_norm, and the projection when the head is one
    (CLIP's proj); a class-token or mean pool passes a single token through unchanged."""
    from vitcli.core.attn_pool import AttentionPool

    pool = vit.attn_pool
    x = tokens
    if isinstance(pool, AttentionPool):
        d = x.shape[-1]
        y = pool.proj(pool.kv(x)[..., d:])  # (B, N, D): the probe's output when this token is the only key
        x = y if pool.mlp is None or pool.norm is None else y + pool.mlp(pool.norm(y))
    x = vit.fc_norm(x)
    return vit.head(x) if projects else x  # (B, N, E)


def zero_shot(image: Tensor, text: Tensor, logit_scale: Tensor, logit_bias: Tensor | None) -> tuple[Tensor, Tensor]:
    """The family's zero-shot rule on (B, E) image and (K, E) text embeddings: logits (B, K) =
    exp(logit_scale)·cos (+ logit_bias), and probabilities: sigmoid with a bias (SigLIP), else softmax over K (CLIP)."""
    cos = nn.functional.normalize(image, dim=-1) @ nn.functional.normalize(text, dim=-1).T  # (B, K)
    logits = logit_scale.exp() * cos
    if logit_bias is not None:
        logits = logits + logit_bias
        return logits, torch.sigmoid(logits)
    return logits, logits.softmax(-1)


__all__ = ["TextConfig", "TextPooling", "TextTransformer", "patch_embeddings", "zero_shot"]

"""The pooling part: which tokens make the image embedding, then fc_norm and the head(s).

  cls    the class token; with DeiT's distillation token after it, both (each through fc_norm,
         the class token to `head`, the distillation token to `head_dist`, both averaged);
  mean   the mean of the patch tokens (timm's global_pool="avg", usually with fc_norm);
  none   no embedding and no head output;
  map    an attention-pool probe over every token (SigLIP; attn_pool.py), its output the embedding.

A pool that reads only prefix rows says how many (`prefix_rows`): the encoder then evaluates the
last block for those rows alone. fc_norm, head and head_dist stay modules of the encoder (their
state-dict keys); `embed` applies them. The probe's weights live under `attn_pool.` (timm's key).
"""

from collections.abc import Sequence

from torch import Tensor, nn

from vitcli.core.config import ViTConfig


class ClassTokenPool(nn.Module):
    """The first `prefix_rows` tokens (class, then distillation): (B, T ≥ k, D) → (B, k, D)."""

    def __init__(self, tokens: int = 1) -> None:
        super().__init__()
        self.prefix_rows = tokens

    def forward(self, x: Tensor) -> Tensor:
        return x[:, :self.prefix_rows]


class MeanPool(nn.Module):
    """The mean of the patch tokens: (B, T, D) → (B, 1, D)."""

    prefix_rows = None  # reads every patch token

    def __init__(self, num_prefix: int) -> None:
        super().__init__()
        self.num_prefix = num_prefix

    def forward(self, x: Tensor) -> Tensor:
        return x[:, self.num_prefix:].mean(dim=1, keepdim=True)


def make_pool(config: ViTConfig) -> nn.Module | None:
    """The pool of the config's `pooling`; None for `none`."""
    if config.pooling == "cls":
        return ClassTokenPool(1 + int(config.distilled))
    if config.pooling == "mean":
        return MeanPool(config.num_prefix_tokens)
    if config.pooling == "none":
        return None
    if config.pooling == "map":
        from vitcli.core.attn_pool import AttentionPool

        return AttentionPool(config)
    raise ValueError(f"unknown pooling '{config.pooling}': use cls, mean, none or map")


def embed(pooled_tokens: Tensor, fc_norm: nn.Module, heads: Sequence[nn.Module]) -> tuple[Tensor, Tensor | None]:
    """(B, k, D) pooled tokens → embedding (B, D) and head output (B, classes): each token through
    fc_norm, token i to head i; with two tokens (DeiT) both the embedding and the logits are averaged."""
    tokens = fc_norm(pooled_tokens)  # (B, k, D)
    pooled = tokens[:, 0] if tokens.shape[1] == 1 else tokens.mean(dim=1)
    if not heads:
        return pooled, None
    logits = [head(tokens[:, i]) for i, head in enumerate(heads)]  # each (B, classes)
    return pooled, logits[0] if len(logits) == 1 else sum(logits[1:], logits[0]) / len(logits)


__all__ = ["ClassTokenPool", "MeanPool", "embed", "make_pool"]

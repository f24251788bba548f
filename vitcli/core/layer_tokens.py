"""What stands for an image at a layer: the residual stream after a block, before the final norm.

  cls      the class token's row                          (B, D)
  mean     the mean of the patch rows (prefix tokens out)  (B, D)
  pooled   at the last block, the model's pooled embedding (final norm, pool, fc_norm); at earlier
           blocks the rows its pool reads there: the class token with class-token pooling, else
           the patch mean                                  (B, D)
  patches  every patch row                                 (B, N, D): each patch a sample

One forward pass keeps every chosen block (`layer_capture`), never a pass per layer.
"""

from collections.abc import Sequence
from typing import Literal

from torch import Tensor

from vitcli.core.capture import Capture
from vitcli.core.config import ViTConfig

Tokens = Literal["cls", "mean", "pooled", "patches"]
TOKENS: tuple[str, ...] = ("cls", "mean", "pooled", "patches")


def default_tokens(config: ViTConfig) -> str:
    """`cls` for a model with a class token, else `mean`."""
    return "cls" if config.class_token else "mean"


def tokens_problem(tokens: str, config: ViTConfig) -> str | None:
    """Why this model cannot give `tokens`, or None."""
    if tokens not in TOKENS:
        return f"'{tokens}' is not one of {', '.join(TOKENS)}"
    if tokens == "cls" and not config.class_token:
        return "this model has no class token: use mean, pooled or patches"
    if tokens == "pooled" and config.pooling == "none":
        return "this model has no pooled embedding (its pooling is none): use cls, mean or patches"
    return None


def layer_capture(layers: Sequence[int], tokens: str, depth: int) -> Capture:
    """The forward pass that keeps these blocks' outputs (and the pooled embedding when asked at the last)."""
    pooled = tokens == "pooled" and depth - 1 in layers
    return Capture(inputs=False, blocks=tuple(layers), final="pooled" if pooled else "none")


def layer_tokens(blocks: dict[int, Tensor], pooled: Tensor | None, layers: Sequence[int], tokens: str,
                 config: ViTConfig) -> list[Tensor]:
    """Each layer's rows: (B, D) per image, or (B, N, D) for patches; `blocks` are the kept (B, T, D)."""
    p = config.num_prefix_tokens
    out = []
    for layer in layers:
        z = blocks[layer]  # (B, T, D)
        if tokens == "pooled" and layer == config.depth - 1 and pooled is not None:
            out.append(pooled)  # (B, D)
        elif tokens == "cls" or (tokens == "pooled" and config.pooling == "cls"):
            out.append(z[:, 0])  # (B, D)
        elif tokens == "patches":
            out.append(z[:, p:])  # (B, N, D)
        else:
            out.append(z[:, p:].mean(1))  # (B, D)
    return out


__all__ = ["TOKENS", "Tokens", "default_tokens", "layer_capture", "layer_tokens", "tokens_problem"]

"""What one forward pass keeps: one small spec instead of hooks or a row of flags.

    Capture()                                   inputs, final tokens, pooled and logits
    Capture(inputs=False, final="pooled")       the image embedding alone (cheapest)
    Capture(blocks=[0], final="none")           block 0's output; blocks 1.. never run
    Capture(attention=[3], queries=[0])         layer 3's class-token row (B, H, 1, T), no T×T
    Capture(attention=range(12), qkv=True)      every layer's full weights and Q, K, V

The encoder runs blocks only up to the last one anything asks for when `final="none"`.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Final = Literal["tokens", "pooled", "none"]
# (layer index, the layer's attention module, what it computed) → a summary kept instead of weights
AttnReduce = Callable[[int, Any, Any], object]


@dataclass(frozen=True)
class Capture:
    """Which intermediates a forward pass keeps (layer indices may be negative, from the end).

    final: "tokens" keeps the encoder output (B, T, D) after the final norm, pooled and logits;
    "pooled" only pooled and logits (with class-token pooling the last block then runs for the
    prefix tokens alone); "none" stops after the last layer named in blocks, attention or reduce.
    """

    inputs: bool = True  # patches, tokens, with_prefix, pos_table, z0
    blocks: Sequence[int] = ()  # block outputs kept, each (B, T, D)
    attention: Sequence[int] = ()  # layers whose attention weights are kept
    queries: Sequence[int] | None = None  # token rows of those weights; None: every row (T×T)
    qkv: bool = False  # Q, K, V of the attention layers, each (B, H, T, d)
    reduce: Sequence[int] = ()  # layers whose attention detail goes to `reducer`
    reducer: AttnReduce | None = None  # keeps a summary (e.g. mean distance) instead of the weights
    final: Final = "tokens"


__all__ = ["AttnReduce", "Capture", "Final"]

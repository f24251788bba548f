"""What one forward pass keeps: one small spec instead of hooks or a row of flags.

    Capture()                                   inputs, final tokens, pooled and logits
    Capture(inputs=False, final="pooled")       the image embedding alone (cheapest)
    Capture(blocks=[0], final="none")           block 0's output; blocks 1.. never run
    Capture(attention=[3], queries=[0])         layer 3's class-token row (B, H, 1, T), no T×T
    Capture(attention=range(12), qkv=True)      every layer's full weights and Q, K, V

The encoder runs blocks only up to the last one anything asks for when `final="none"`. What is
kept comes back in `ViTOutput` keyed by layer (0..depth-1, negative indices resolved).
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from vitcli.core.attention import resolve_indices

if TYPE_CHECKING:
    from vitcli.core.attention import Attention, AttentionDetail

Final = Literal["tokens", "pooled", "none"]
FINALS: tuple[str, ...] = ("tokens", "pooled", "none")
# (layer index, the layer's attention module, what it computed) → a summary kept instead of weights
AttnReduce = Callable[[int, "Attention", "AttentionDetail"], object]


@dataclass(frozen=True)
class Capture:
    """Which intermediates a forward pass keeps (layer indices may be negative, from the end).

    final: "tokens" keeps the encoder output (B, T, D) after the final norm, pooled and logits;
    "pooled" only pooled and logits (with class-token pooling the last block then runs for the
    pooled tokens alone); "none" stops after the last layer named in blocks, attention or reduce.
    `pooled` has the same bits whatever else is kept.
    """

    inputs: bool = True  # patches, tokens, with_prefix, pos_table, z0
    blocks: Sequence[int] = ()  # block outputs kept, each (B, T, D)
    attention: Sequence[int] = ()  # layers whose attention weights are kept
    queries: Sequence[int] | None = None  # token rows of those weights; None: every row (T×T)
    qkv: bool = False  # Q, K, V of the attention layers, each (B, H, T, d)
    reduce: Sequence[int] = ()  # layers whose attention detail goes to `reducer`
    reducer: AttnReduce | None = None  # keeps a summary (e.g. mean distance) instead of the weights
    final: Final = "tokens"
    pool_attention: bool = False  # the attention-pool probe's weights (B, H, 1, T); needs final != "none"

    def join(self, other: "Capture") -> "Capture":
        """One pass keeping what both ask: layer sets united, each reducer called on its own layers (given
        as non-negative indices; the results, dicts, merged per layer), the later final stage. `other`
        keeps no attention weights: its reducer reads the rows it needs from Q, K, as detail.weights
        follow this capture's `queries`."""
        if other.attention:
            raise ValueError("Capture.join: the joined capture keeps no attention weights")
        if any(i < 0 for i in (*self.reduce, *other.reduce)):
            raise ValueError("Capture.join: give the reduced layers as non-negative indices")
        return Capture(inputs=self.inputs or other.inputs, blocks=sorted({*self.blocks, *other.blocks}),
                       attention=self.attention, queries=self.queries, qkv=self.qkv,
                       reduce=sorted({*self.reduce, *other.reduce}),
                       reducer=_joined(self.reducer, set(self.reduce), other.reducer, set(other.reduce)),
                       final=max(self.final, other.final, key=FINALS[::-1].index),
                       pool_attention=self.pool_attention or other.pool_attention)

    def plan(self, depth: int) -> "Plan":
        """The layer sets resolved against `depth`, and how many blocks must run."""
        if self.final not in FINALS:
            raise ValueError(f"unknown final '{self.final}': use one of {', '.join(FINALS)}")
        if self.reduce and self.reducer is None:
            raise ValueError("Capture.reduce names layers but no reducer is given")
        blocks, attention, reduce = (frozenset(resolve_indices(list(s), depth, "layer"))
                                     for s in (self.blocks, self.attention, self.reduce))
        asked = blocks | attention | reduce
        stop = depth if self.final != "none" else max(asked, default=-1) + 1
        return Plan(blocks, attention, reduce, stop)


def _joined(a: AttnReduce | None, a_layers: set[int], b: AttnReduce | None, b_layers: set[int]) -> AttnReduce | None:
    """A reducer calling `a` on its layers and `b` on its own, their results (dicts) merged per layer."""
    if b is None or not b_layers:
        return a
    if a is None or not a_layers:
        return b

    def reduce(layer: int, attn: "Attention", detail: "AttentionDetail") -> object:
        found = [r(layer, attn, detail) for r, layers in ((a, a_layers), (b, b_layers)) if layer in layers]
        return found[0] if len(found) == 1 else _merged(found[0], found[1])

    return reduce


def _merged(x: object, y: object) -> dict[str, object]:
    """Two reducers' results for one layer, each a dict: one dict, a key both keep refused."""
    if not isinstance(x, dict) or not isinstance(y, dict) or x.keys() & y.keys():
        raise ValueError("Capture.join: both reducers keep the same summary of a layer")
    return {**x, **y}


@dataclass(frozen=True)
class Plan:
    """A Capture resolved for one model: non-negative layer sets; blocks 0..stop-1 run."""

    blocks: frozenset[int]
    attention: frozenset[int]
    reduce: frozenset[int]
    stop: int

    def detail(self, layer: int) -> bool:
        """Whether this layer's attention must compute its weights (kept or reduced)."""
        return layer in self.attention or layer in self.reduce

    def touches(self, layer: int) -> bool:
        """Whether anything is kept from this layer's full pass."""
        return layer in self.blocks or self.detail(layer)


__all__ = ["AttnReduce", "Capture", "FINALS", "Final", "Plan"]

"""One forward pass that gathers what `attend` shows: the selected attention, per-head summaries,
mean attention distance, rollout and class-token maps, with memory bounded by what is asked.

Memory (T tokens, H heads, B images, float32 unless said):
  selected weights   B·L_sel·H·Q·T  (Q = 1 for --query cls: 12,545 tokens × 12 heads ≈ 0.6 MB a layer)
  --query all        B·L_sel·H·T²   (T = 197: 1.9 MB a layer; T = 12,545: 7.5 GB a layer)
  mean distance      one block of ~8M weights at a time (rows recomputed from Q, K)
  rollout            two B·T² float64 matrices (T = 12,545: 2.5 GB)
  Q, K, V kept       3·B·H·T·d a selected layer (--save-qkv, --cosine)
"""

from dataclasses import dataclass, field

import torch
from torch import Tensor

from vitcli.core.analysis import (
    DiscardScope,
    Fusion,
    Rollout,
    chunk_size,
    cosine_similarity_matrix,
    fuse_heads,
    fused_matrix,
    mean_distance_of_rows,
    rows_of_detail,
    rows_of_matrix,
)
from vitcli.core.attention import Attention, AttentionDetail
from vitcli.core.capture import Capture
from vitcli.core.config import ViTConfig
from vitcli.core.encoder import ViTOutput, VisionTransformer
from vitcli.core.select import HeadSelection


@dataclass
class RolloutSpec:
    """How to roll attention out: head fusion, discard of the lowest weights, first layer."""

    fusion: Fusion = "mean"
    discard_ratio: float = 0.0
    discard_scope: DiscardScope = "matrix"
    start_layer: int = 0


@dataclass
class AttentionReport:
    """What attend reports, each with a leading batch axis B."""

    output: ViTOutput
    layers: list[int]
    weights: Tensor  # (B, L_sel, H_sel, Q, T): selected layers, heads (or their fusion), queries
    distance: dict[int, Tensor] = field(default_factory=dict)  # layer → (B, H) mean distance (pixels)
    cls_rows: dict[int, Tensor] = field(default_factory=dict)  # layer → (B, H, T) class-token row
    rollout: Tensor | None = None  # (B, T, T)
    cosine: Tensor | None = None  # (B, L_sel, H_sel, Q, T) cos(q_i, k_j)
    qkv: tuple[Tensor, Tensor, Tensor] | None = None  # each (B, L_sel, H, T, d)

    @property
    def grid(self) -> tuple[int, int]:
        return self.output.grid

    @property
    def num_prefix(self) -> int:
        return self.output.num_prefix


def select_heads(x: Tensor, heads: HeadSelection) -> Tensor:
    """(…, H, Q, T) → (…, H_sel, Q, T): chosen heads, or all heads fused into one."""
    if heads.fusion:
        return fuse_heads(x, heads.fusion).unsqueeze(-3)
    if heads.heads == list(range(x.shape[-3])):
        return x  # every head in order: no copy of what may be gigabytes
    return x[..., heads.heads, :, :]


def _reducer(config: ViTConfig, grid: tuple[int, int], full: bool, distance_layers: set[int], renorm: bool,
             rollout: Rollout | None, spec: RolloutSpec | None):
    """The per-layer summary the encoder keeps instead of weights (Capture.reducer)."""
    def reduce(layer: int, attn: Attention, detail: AttentionDetail) -> dict[str, Tensor]:
        b, h, t, _ = detail.k.shape
        rows_of = rows_of_matrix(detail.weights) if full else rows_of_detail(attn, detail)
        chunk = chunk_size(b * h * t)
        kept: dict[str, Tensor] = {}
        if config.class_token:
            kept["cls"] = rows_of(0, 1)[..., 0, :].float()  # (B, H, T)
        if layer in distance_layers:
            kept["distance"] = mean_distance_of_rows(rows_of, t, grid, config.patch_size, config.num_prefix_tokens,
                                                     renorm, chunk)  # (B, H)
        if rollout is not None and spec is not None and layer >= spec.start_layer:
            rollout.add(fused_matrix(rows_of, t, spec.fusion, chunk))
        return kept

    return reduce


def inspect_attention(model: VisionTransformer, images: Tensor, layers: list[int], heads: HeadSelection,
                      queries: list[int] | None, distance_layers: list[int] | None = None, renorm: bool = False,
                      rollout: RolloutSpec | None = None, keep_qkv: bool = False, cosine: bool = False,
                      probe: bool = False) -> AttentionReport:
    """Run the model on (B, C, H, W) and gather the selected attention and the asked analyses.

    Blocks after the last layer needed (selected, distance, rollout) never run. With `probe` the
    weights are the attention-pool probe's row over the final tokens (B, 1, H_sel, 1, T), layer
    "probe", which also stands as the class-token row (maps, masks) of a model without a class token.
    """
    if probe:
        return _probe_report(model, images, heads, distance_layers, renorm)
    from vitcli.core.patches import grid_shape

    grid = grid_shape(images.shape[-2], images.shape[-1], model.config.patch_size)
    depth = model.config.depth
    distance_set = set(distance_layers if distance_layers is not None else layers)
    roll = Rollout(rollout.discard_ratio, rollout.discard_scope) if rollout else None
    if rollout and not 0 <= rollout.start_layer < depth:
        raise ValueError(f"start layer {rollout.start_layer} is outside 0..{depth - 1}")
    reduce_layers = sorted(set(layers) | distance_set | (set(range(rollout.start_layer, depth)) if rollout else set()))
    reducer = _reducer(model.config, grid, queries is None, distance_set, renorm, roll, rollout)
    capture = Capture(inputs=False, attention=layers, queries=queries, qkv=keep_qkv or cosine, reduce=reduce_layers,
                      reducer=reducer, final="none")
    out = model(images, capture)
    selected = [select_heads(w, heads) for w in out.attentions.values()]
    weights = selected[0].unsqueeze(1) if len(selected) == 1 else torch.stack(selected, dim=1)  # (B, L_sel, H_sel, Q, T)
    report = AttentionReport(out, list(out.attentions), weights.float())
    report.distance = {i: r["distance"] for i, r in out.reduced.items() if "distance" in r}
    report.cls_rows = {i: r["cls"] for i, r in out.reduced.items() if "cls" in r}
    report.rollout = roll.result if roll else None
    if out.qkv:
        kept = list(out.qkv.values())
        if cosine:
            report.cosine = torch.stack([select_heads(_query_cosine(q, k, queries), heads) for q, k, _ in kept], 1)
        if keep_qkv:
            report.qkv = tuple(torch.stack(t, dim=1) for t in zip(*kept))  # type: ignore[assignment]
    out.qkv = {}
    return report


def _probe_report(model: VisionTransformer, images: Tensor, heads: HeadSelection, distance_layers: list[int] | None,
                  renorm: bool) -> AttentionReport:
    """The attention-pool probe's weights (the model runs to its pooled output), with mean distances when asked."""
    from vitcli.core.patches import grid_shape

    grid = grid_shape(images.shape[-2], images.shape[-1], model.config.patch_size)
    distance_set = set(distance_layers or ())
    reducer = _reducer(model.config, grid, False, distance_set, renorm, None, None)
    out = model(images, Capture(inputs=False, reduce=sorted(distance_set), reducer=reducer if distance_set else None,
                                final="pooled", pool_attention=True))
    weights = select_heads(out.pool_attention, heads).unsqueeze(1)  # (B, 1, H_sel, 1, T)
    report = AttentionReport(out, ["probe"], weights.float())  # type: ignore[list-item]
    report.distance = {i: r["distance"] for i, r in out.reduced.items() if "distance" in r}
    report.cls_rows = {"probe": out.pool_attention[:, :, 0].float()}  # type: ignore[dict-item]
    return report


def _query_cosine(q: Tensor, k: Tensor, queries: list[int] | None) -> Tensor:
    """cos(q_i, k_j) for the selected query rows: (B, H, T, d) → (B, H, Q, T)."""
    if queries is not None:
        q = q[:, :, queries]
    return cosine_similarity_matrix(q.float(), k.float())

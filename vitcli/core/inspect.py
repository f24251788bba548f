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
    mean_of_patch_rows,
    one_thread,
    patch_mean_row,
    probe_row,
    rows_of_detail,
    rows_of_matrix,
    threads_for,
)
from vitcli.core.attention import Attention, AttentionDetail
from vitcli.core.capture import Capture
from vitcli.core.config import ViTConfig
from vitcli.core.encoder import VisionTransformer, ViTOutput
from vitcli.core.select import HeadSelection, PooledQuery


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
    # (B, T) the query's row of the rollout (a token's, the probe's or the patch mean's)
    rollout_row: Tensor | None = None
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
             rollout: Rollout | None, spec: RolloutSpec | None, mean_layers: frozenset[int] = frozenset()):
    """The per-layer summary the encoder keeps instead of weights (Capture.reducer); at `mean_layers`
    the mean of the patch rows (B, H, T), summed one block of rows at a time."""
    def reduce(layer: int, attn: Attention, detail: AttentionDetail) -> dict[str, Tensor]:
        b, h, t, _ = detail.k.shape
        with threads_for(b * h * t * t):
            return summaries(layer, attn, detail)

    def summaries(layer: int, attn: Attention, detail: AttentionDetail) -> dict[str, Tensor]:
        b, h, t, _ = detail.k.shape
        rows_of = rows_of_matrix(detail.weights) if full else rows_of_detail(attn, detail)
        chunk = chunk_size(b * h * t)
        kept: dict[str, Tensor] = {}
        if config.class_token:
            kept["cls"] = rows_of(0, 1)[..., 0, :].float()  # (B, H, T)
        if layer in mean_layers:
            kept["mean"] = mean_of_patch_rows(rows_of, t, config.num_prefix_tokens, chunk)  # (B, H, T)
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
                      pooled: PooledQuery | None = None, also: Capture | None = None) -> AttentionReport:
    """Run the model on (B, C, H, W) and gather the selected attention and the asked analyses.

    Blocks after the last layer needed (selected, distance, rollout) never run. `pooled` replaces the
    token queries by a row that is no token: "probe", the attention-pool probe's row over the final
    tokens (B, 1, H_sel, 1, T), layer "probe", which also stands as the class-token row (maps, masks)
    of a model without a class token; "mean", the mean of the patch rows of each selected layer
    (B, L_sel, H_sel, 1, T). The rollout's row of a pooled query is its row times the rollout: the
    probe's (heads fused as the rollout's) or 1/N on every patch. `also` (a Capture keeping no weights)
    joins the same pass: its block outputs and reductions come back in `report.output`.
    """
    if pooled == "probe":
        if also is not None:
            raise ValueError("inspect_attention: `also` joins a pass of token queries, not the probe's")
        return _probe_report(model, images, heads, distance_layers, renorm, rollout)
    grid = model.grid_of(images)
    depth = model.config.depth
    distance_set = set(distance_layers if distance_layers is not None else layers)
    roll = _rollout(rollout, depth)
    reduce_layers = sorted(set(layers) | distance_set | (set(range(rollout.start_layer, depth)) if rollout else set()))
    mean_layers = frozenset(layers) if pooled == "mean" else frozenset()
    reducer = _reducer(model.config, grid, queries is None, distance_set, renorm, roll, rollout, mean_layers)
    capture = Capture(inputs=False, attention=() if pooled else layers, queries=None if pooled else queries,
                      qkv=(keep_qkv or cosine) and not pooled,
                      reduce=reduce_layers, reducer=reducer, final="none")
    out = model(images, capture if also is None else capture.join(also))
    with one_thread():  # copies and small steps: two threads wait on each other on a busy machine
        rows = ({i: out.reduced[i]["mean"][:, :, None].float() for i in layers} if pooled
                else out.attentions)  # layer → (B, H, Q, T)
        selected = [select_heads(w, heads) for w in rows.values()]
        weights = selected[0].unsqueeze(1) if len(selected) == 1 else torch.stack(selected,
                                                                                  dim=1)  # (B, L_sel, H_sel, Q, T)
        report = AttentionReport(out, list(rows), weights.float())
        report.distance = {i: r["distance"] for i, r in out.reduced.items() if "distance" in r}
        report.cls_rows = {i: r["cls"] for i, r in out.reduced.items() if "cls" in r}
        report.rollout = roll.result if roll else None
        if report.rollout is not None and (pooled or (queries is not None and len(queries) == 1)):
            report.rollout_row = _rollout_row(report.rollout, out.num_prefix, pooled, queries)
        if out.qkv:
            kept = list(out.qkv.values())
            if cosine and not pooled:
                report.cosine = torch.stack([select_heads(_query_cosine(q, k, queries), heads) for q, k, _ in kept], 1)
            if keep_qkv:
                report.qkv = tuple(torch.stack(t, dim=1) for t in zip(*kept, strict=True))  # type: ignore[assignment]
    out.qkv = {}
    return report


def _rollout(spec: RolloutSpec | None, depth: int) -> Rollout | None:
    """The rollout accumulator a spec asks for, its start layer checked."""
    if spec is None:
        return None
    if not 0 <= spec.start_layer < depth:
        raise ValueError(f"start layer {spec.start_layer} is outside 0..{depth - 1}")
    return Rollout(spec.discard_ratio, spec.discard_scope)


def _rollout_row(rollout: Tensor, num_prefix: int, pooled: PooledQuery | None, queries: list[int] | None) -> Tensor:
    """(B, T, T) rollout → the query's row (B, T): a token's row, or the patch rows' mean."""
    if pooled == "mean":
        return (patch_mean_row(rollout.shape[0], rollout.shape[-1], num_prefix,
                               rollout.device)[:, None] @ rollout)[:, 0]
    return rollout[:, queries[0]]  # type: ignore[index]


def _probe_report(model: VisionTransformer, images: Tensor, heads: HeadSelection, distance_layers: list[int] | None,
                  renorm: bool, rollout: RolloutSpec | None = None) -> AttentionReport:
    """The attention-pool probe's weights (the model runs to its pooled output), with mean distances
    and the rollout when asked; the rollout's row is the probe's (heads fused as the rollout's) times it."""
    grid = model.grid_of(images)
    depth = model.config.depth
    distance_set = set(distance_layers or ())
    roll = _rollout(rollout, depth)
    reduce_layers = sorted(distance_set | (set(range(rollout.start_layer, depth)) if rollout else set()))
    reducer = _reducer(model.config, grid, False, distance_set, renorm, roll, rollout)
    out = model(images, Capture(inputs=False, reduce=reduce_layers, reducer=reducer if reduce_layers else None,
                                final="pooled", pool_attention=True))
    probe = out.pool_attention  # (B, H, 1, T)
    if probe is None:
        raise ValueError("this model has no attention-pool probe")
    weights = select_heads(probe, heads).unsqueeze(1)  # (B, 1, H_sel, 1, T)
    report = AttentionReport(out, ["probe"], weights.float())  # type: ignore[list-item]
    report.distance = {i: r["distance"] for i, r in out.reduced.items() if "distance" in r}
    report.cls_rows = {"probe": probe[:, :, 0].float()}  # type: ignore[dict-item]
    if roll is not None and rollout is not None and roll.result is not None:
        report.rollout = roll.result
        report.rollout_row = (probe_row(probe, rollout.fusion)[:, None] @ roll.result)[:, 0]  # (B, T)
    return report


def attention_row_reducer(row: str, num_prefix: int):
    """A Capture.reducer keeping one attention row of each layer as {"row": (B, H, T)}: the class token's
    ("cls", the bits of a Capture with queries=[0]) or the mean of the patch rows ("mean", summed one
    block of rows at a time). Both recomputed from Q, K, so the pass's own `queries` do not matter."""
    def reduce(layer: int, attn: Attention, detail: AttentionDetail) -> dict[str, Tensor]:
        b, h, t, _ = detail.k.shape
        if row == "cls":
            return {"row": attn.query_weights(detail.q, detail.k, detail.bias, [0])[:, :, 0]}
        with threads_for(b * h * t * t):
            return {"row": mean_of_patch_rows(rows_of_detail(attn, detail), t, num_prefix, chunk_size(b * h * t))}

    return reduce


def _query_cosine(q: Tensor, k: Tensor, queries: list[int] | None) -> Tensor:
    """cos(q_i, k_j) for the selected query rows: (B, H, T, d) → (B, H, Q, T)."""
    if queries is not None:
        q = q[:, :, queries]
    return cosine_similarity_matrix(q.float(), k.float())

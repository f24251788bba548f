"""Which patches made the model give an output y: gradient maps on the tokens, in row blocks.

  grad-rollout  Chefer, Gur & Wolf 2021: R = I; R ← R + Ā_l·R for l = s..L-1 with
                Ā_l = mean_h (∇A ⊙ A)⁺, ∇A = ∂y/∂A; the map is R[cls, prefix:]. Without a class
                token the row read is the attention-pool probe's (heads' mean, over the final
                tokens) times R, or the mean of R's patch rows (every row-product method alike).
  attn-grad     vit-explain's gradient rollout: Ā_l = mean_h (A ⊙ ∇A)⁺, then Abnar-Zuidema
                rollout Â = rownorm(0.5·discard(Ā) + 0.5·I), R = Â_L ⋯ Â_s.
  gradcam       Grad-CAM on tokens: F = norm1 output of block `layer` (patch rows);
                α_k = mean over patches of ∂y/∂F_k; map = ReLU(Σ_k α_k F_k).
  rollout       Abnar-Zuidema rollout of mean-over-heads A (as `attend --rollout`), no gradient.

Every block is the encoder's own: its inputs come from `encode`, and the backward re-runs
`Block.steps` with the encoder's `attention_terms` (rotation, position and relative biases), so the
network explained is the network `attend` and `embed` run.

Memory: ∂y/∂A is never taken through a stored T×T matrix. A forward pass without autograd keeps
each block's input (T·D a layer); the backward runs block by block from the top, recomputing one
block with autograd at a time (manual checkpointing), which gives ∂y/∂Y_h of the attention
output. Then ∂y/∂A_h = (∂y/∂Y_h)·V_hᵀ, and A, ∇A exist one block of query rows at a time. Only
the map's row of R is needed, and e·(I+Ā_L)⋯(I+Ā_s) is a row vector times matrices taken from
the top down, in the order the backward visits the layers: so grad-rollout never holds a T×T
matrix at all. attn-grad and rollout hold one head-fused T×T per layer (the discard ranks it).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from vitcli.core.analysis import chunk_size, patch_mean_row, prefix_row_to_grid, probe_row, rollout_step
from vitcli.core.attention import resolve_indices
from vitcli.core.capture import Capture
from vitcli.core.encoder import VisionTransformer, ViTOutput

Method = Literal["grad-rollout", "attn-grad", "gradcam", "rollout"]
METHODS: tuple[str, ...] = ("grad-rollout", "attn-grad", "gradcam", "rollout")
TargetKind = Literal["top", "class", "image", "patch"]


@dataclass(frozen=True)
class Target:
    """The output y explained: the top logit, logit `index`, cos(pooled, `other`), or cos(patch `index`, pooled)."""

    kind: TargetKind = "top"
    index: int | tuple[int, int] | None = None  # class N, or patch (row, col)
    other: Tensor | None = None  # (D,) pooled embedding of the other image

    @property
    def patch(self) -> tuple[int, int]:
        """(row, col) of a patch target."""
        if not isinstance(self.index, tuple):
            raise ValueError(f"a {self.kind} target has no patch")
        return self.index

    @property
    def class_index(self) -> int:
        """N of a class target."""
        if not isinstance(self.index, int):
            raise ValueError(f"a {self.kind} target has no class index")
        return self.index

    @property
    def other_pooled(self) -> Tensor:
        """(D,) the other image's pooled embedding of an image target."""
        if self.other is None:
            raise ValueError(f"a {self.kind} target has no other image")
        return self.other


@dataclass
class Explanation:
    """Maps (B, rows, cols) float32 unnormalised, the target's value per image and the class explained."""

    maps: Tensor
    score: Tensor  # (B,) y of each image
    klass: Tensor | None  # (B,) class index for top / class targets


@dataclass
class LayerGrad:
    """One block seen by the backward: Q, K, V (B, H, T, d), its score bias, ∂y/∂Y (B, H, T, d) of the
    attention output per head, and (at the Grad-CAM layer) norm1's output F and ∂y/∂F (B, T, D)."""

    layer: int
    q: Tensor
    k: Tensor
    v: Tensor
    bias: Tensor | None = None
    grad_y: Tensor | None = None
    features: Tensor | None = None
    grad_features: Tensor | None = None


def block_inputs(model: VisionTransformer, images: Tensor) -> tuple[list[Tensor], tuple[int, int]]:
    """Every block's input and the last block's output [x_0 … x_L], each (B, T, D), without autograd:
    the encoder's own pass (`encode`) keeping every block's output."""
    grid = model.grid_of(images)
    capture = Capture(inputs=False, blocks=range(model.config.depth), final="none")
    out = ViTOutput(grid, model.config.num_prefix_tokens)
    with torch.no_grad():
        x = model.inputs(images, grid, "conv", "chw", None)  # (B, T, D)
        model.encode(x, grid, capture, capture.plan(model.config.depth), out)
    return [x, *(out.blocks[i] for i in range(model.config.depth))], grid


def target_value(model: VisionTransformer, x_last: Tensor, target: Target,
                 grid: tuple[int, int]) -> tuple[Tensor, Tensor | None]:
    """y (B,) from the last block's output (B, T, D), with autograd; and the class per image (class targets)."""
    out = model.norm(x_last)  # (B, T, D)
    pooled, logits = model.embed_tokens(out)  # (B, D), (B, classes)
    if target.kind in ("top", "class"):
        if logits is None:
            raise ValueError("this model has no classifier head: explain image:OTHER or patch:R,C instead")
        klass = logits.argmax(-1) if target.kind == "top" else torch.full_like(logits[:, 0], target.class_index,
                                                                               dtype=torch.long)
        return logits.gather(1, klass[:, None])[:, 0], klass
    if pooled is None:
        raise ValueError("this model has no pooled embedding (pooling none), so image: and patch: have nothing to "
                         "compare")
    if target.kind == "image":
        return F.cosine_similarity(pooled, target.other_pooled.to(pooled)[None], dim=-1), None
    r, c = target.patch
    patch = out[:, model.config.num_prefix_tokens + r * grid[1] + c]  # (B, D)
    return F.cosine_similarity(patch, pooled, dim=-1), None


def backward_blocks(model: VisionTransformer, xs: list[Tensor], grid: tuple[int, int], target: Target,
                    stop: int, visit: Callable[[LayerGrad], None],
                    features_at: int | None = None) -> tuple[Tensor, Tensor | None]:
    """∂y/∂Y of blocks L-1 down to `stop`, one block recomputed with autograd at a time; `visit` sees each.

    y is summed over the batch (images never mix, so each image gets its own gradient).
    """
    terms = model.attention_terms(grid)
    with torch.enable_grad():
        x_last = xs[-1].detach().requires_grad_()
        y, klass = target_value(model, x_last, target, grid)
        (g,) = torch.autograd.grad(y.sum(), x_last)  # (B, T, D)
        score = y.detach()
        for i in range(len(model.blocks) - 1, stop - 1, -1):
            rotate, bias = terms[i]
            x = xs[i].detach().requires_grad_()
            st = model.block(i).steps(x, rotate, bias)  # the block's own forward, every step kept
            wanted = [x, st.heads] + ([st.normed] if i == features_at else [])
            grads = torch.autograd.grad(st.out, wanted, g)
            g = grads[0]
            visit(LayerGrad(i, st.q.detach(), st.k.detach(), st.v.detach(), bias, grads[1],
                            st.normed.detach() if i == features_at else None, grads[2] if i == features_at else None))
    return score, klass


def fused_rows(model: VisionTransformer, lg: LayerGrad, start: int, stop: int, gradient: bool) -> Tensor:
    """Query rows start..stop-1 of mean_h (A ⊙ ∂y/∂A)⁺ (or of mean_h A): (B, stop-start, T) float32."""
    a = model.block(lg.layer).attn.rows(lg.q, lg.k, lg.bias, start, stop)  # (B, H, c, T)
    if gradient:
        if lg.grad_y is None:
            raise ValueError(f"layer {lg.layer} was visited without its gradient")
        a = (a * (lg.grad_y[:, :, start:stop] @ lg.v.transpose(-2, -1))).clamp_min(0)  # ∂y/∂A = (∂y/∂Y)·Vᵀ
    return a.float().mean(dim=1)


def blocks_of(lg: LayerGrad) -> list[tuple[int, int]]:
    """Row blocks of about 8M scores each."""
    b, h, t, _ = lg.k.shape
    step = chunk_size(b * h * t)
    return [(s, min(s + step, t)) for s in range(0, t, step)]


def start_row(model: VisionTransformer, x_last: Tensor) -> Tensor:
    """The row read from R (B, T): the class token's; without one, the attention-pool probe's row over
    the final tokens (heads' mean), or the mean of the patch rows (attend --rollout's default query)."""
    b, t, _ = x_last.shape
    if model.config.class_token:
        row = torch.zeros(b, t, dtype=torch.float64, device=x_last.device)
        row[:, 0] = 1.0
        return row
    if model.attn_pool is not None:
        with torch.no_grad():
            return probe_row(model.attn_pool.weights(model.norm(x_last)))  # (B, T)
    return patch_mean_row(b, t, model.config.num_prefix_tokens, x_last.device)


class RowProduct:
    """r ← r·M_l for the layers from the top down, M_l = I + Ā_l (grad-rollout) or Â_l (rollouts)."""

    def __init__(self, model: VisionTransformer, method: str, discard_ratio: float, start_layer: int,
                 start: Tensor) -> None:
        self.model, self.method = model, method
        self.discard_ratio, self.start_layer = discard_ratio, start_layer
        self.row = start  # (B, T) float64

    def __call__(self, lg: LayerGrad) -> None:
        if lg.layer < self.start_layer:
            return
        gradient = self.method != "rollout"
        if self.method == "grad-rollout":  # r + r·Ā, block by block: Ā never exists whole
            new = self.row.clone()
            for s, e in blocks_of(lg):
                new += (self.row[:, None, s:e] @ fused_rows(self.model, lg, s, e, True).double())[:, 0]
            self.row = new
            return
        fused = torch.cat([fused_rows(self.model, lg, s, e, gradient) for s, e in blocks_of(lg)], dim=1)  # (B, T, T)
        self.row = (self.row[:, None] @ rollout_step(fused, self.discard_ratio))[:, 0]  # (B, T)


def explain(model: VisionTransformer, images: Tensor, method: str = "grad-rollout", target: Target = Target(),
            start_layer: int = 0, layer: int = -1, discard_ratio: float = 0.0) -> Explanation:
    """The map of `method` for target y on (B, C, H, W): (B, rows, cols) on the input's true grid."""
    depth, n = model.config.depth, model.config.num_prefix_tokens
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}': use one of {', '.join(METHODS)}")
    if not 0 <= start_layer < depth:
        raise ValueError(f"start layer {start_layer} is outside 0..{depth - 1}")
    (layer,) = resolve_indices([layer], depth, "layer")
    xs, grid = block_inputs(model, images)
    if target.kind == "patch" and not (0 <= target.patch[0] < grid[0] and 0 <= target.patch[1] < grid[1]):
        raise ValueError(f"patch {target.patch[0]},{target.patch[1]} is outside the {grid[0]}x{grid[1]} grid")
    if method == "gradcam":
        kept: dict[str, Tensor] = {}

        def cam(lg: LayerGrad) -> None:
            if lg.features is not None and lg.grad_features is not None:
                f, g = lg.features[:, n:].float(), lg.grad_features[:, n:].float()  # (B, N, D) patch rows
                kept["map"] = torch.relu((f * g.mean(dim=1, keepdim=True)).sum(-1))  # (B, N)

        score, klass = backward_blocks(model, xs, grid, target, layer, cam, features_at=layer)
        return Explanation(kept["map"].reshape(-1, *grid), score.float(), klass)
    product = RowProduct(model, method, discard_ratio, start_layer, start_row(model, xs[-1]))
    if method == "rollout":
        terms = model.attention_terms(grid)
        with torch.no_grad():
            y, klass = _score_only(model, xs[-1], target, grid)
            for i in range(depth - 1, start_layer - 1, -1):
                rotate, bias = terms[i]
                product(LayerGrad(i, *model.block(i).qkv(xs[i], rotate), bias))
        score = y
    else:
        score, klass = backward_blocks(model, xs, grid, target, start_layer, product)
    maps = prefix_row_to_grid(product.row, n, grid).float()
    return Explanation(maps, score.float(), klass)


def _score_only(model: VisionTransformer, x_last: Tensor, target: Target,
                grid: tuple[int, int]) -> tuple[Tensor, Tensor | None]:
    """y without a gradient (rollout reports the score of the same target); NaN when the model cannot give it."""
    try:
        return target_value(model, x_last, target, grid)
    except ValueError:
        return torch.full((x_last.shape[0],), float("nan")), None


def pooled_embedding(model: VisionTransformer, images: Tensor) -> Tensor:
    """(1, C, H, W) → the pooled embedding (D,) of another image, for image: targets."""
    if model.config.pooling == "none":
        raise ValueError("this model has no pooled embedding (pooling none), so image: has nothing to compare")
    with torch.no_grad():
        return model(images, Capture(inputs=False, final="pooled")).pooled[0]


__all__ = ["Explanation", "LayerGrad", "METHODS", "Method", "Target", "backward_blocks", "block_inputs", "explain",
           "pooled_embedding", "target_value"]

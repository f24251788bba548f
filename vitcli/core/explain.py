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
  legrad        Bousselham et al. (ICCV 2025), as legrad-torch computes it: for each layer l ≥ s, y_l is
                the target read from layer l's own embedding e_l; map = Σ_l mean_{h, rows} (∂y_l/∂A_l)⁺
                with the prefix columns dropped, min-max scaled to [0, 1] per image. e_l = the head(s)
                after fc_norm after the final norm of the mean of ALL of layer l's output tokens (class
                token included; CLIP: ln_post(mean)·proj). With an attention-pool probe (SigLIP) e_l is
                the probe run on layer l's raw output (no final norm) and A_l is the probe's own row
                (B, H, 1, T), as legrad-torch's SigLIP path. docs/explain-legrad.md has the details.

Targets: top / class:N (a logit), image: (cos of pooled embeddings), patch: (cos of a patch's final
feature with the pooled embedding), text (cos of the image embedding in the joint image-text space
with a given (E,) embedding, e.g. a text tower's: `joint_embedding`).

Every block is the encoder's own: its inputs come from `encode`, and the backward re-runs
`Block.steps` with the encoder's `attention_terms` (rotation, position and relative biases), so the
network explained is the network `attend` and `embed` run. The row-product methods run the same
parts but take the attention's own backward by hand (`attention_grad.attention_backward`), in tiles of
query rows × key columns where they form A and ∂y/∂A anyway: the T×T scores are formed once per layer
in the backward, and the attention output Y and its log-sum-exp come from the forward pass (kept per
block), not from a second SDPA.

Memory: ∂y/∂A is never taken through a stored T×T matrix. A forward pass without autograd keeps
each block's input (T·D a layer) and, for the row-product methods, its A·V (T·D more); the backward
runs block by block from the top, recomputing one block with autograd at a time (manual
checkpointing), which gives ∂y/∂Y_h of the attention output. Then ∂y/∂A_h = (∂y/∂Y_h)·V_hᵀ, and A,
∇A exist one tile at a time, and the layer's Ā one block of query rows at a time per thread. Only
the map's row of R is needed, and e·(I+Ā_L)⋯(I+Ā_s) is a row vector times matrices taken from the
top down, in the order the backward visits the layers, each one row block at a time (r·M = Σ over
blocks of r's entries there times M's rows there): so grad-rollout never holds a T×T matrix at all,
and attn-grad and rollout neither (Â's rows need only Ā's row sums: `analysis.rollout_rows`), unless
a discard ratio ranks the whole of each Ā. The lowest block read forms A and ∂y/∂A only.
legrad's y_l depends on A_l only through block l, so each layer costs one block recomputed with
autograd and its own backward (no sweep through the blocks above): as much as one backward sweep in
all, and no T×T (with a probe, not even a block: the probe alone, on the kept block outputs).
"""

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from vitcli.core.analysis import chunk_size, patch_mean_row, prefix_row_to_grid, probe_row, rollout_rows, rollout_step
from vitcli.core.attention import Rotate, resolve_indices
from vitcli.core.attention_grad import attention_backward
from vitcli.core.attn_pool import AttentionPool
from vitcli.core.block import Block
from vitcli.core.capture import Capture
from vitcli.core.encoder import VisionTransformer, ViTOutput
from vitcli.core.pooling import embed

Method = Literal["grad-rollout", "attn-grad", "gradcam", "rollout", "legrad"]
METHODS: tuple[str, ...] = ("grad-rollout", "attn-grad", "gradcam", "rollout", "legrad")
TargetKind = Literal["top", "class", "image", "patch", "text"]


@dataclass(frozen=True)
class Target:
    """The output y explained: the top logit, logit `index`, cos(pooled, `other`), cos(patch `index`, pooled),
    or (text) cos(the image's joint embedding, `other`)."""

    kind: TargetKind = "top"
    index: int | tuple[int, int] | None = None  # class N, or patch (row, col)
    other: Tensor | None = None  # image: (D,) pooled embedding of the other image; text: (E,) joint-space embedding

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
    """Maps (B, rows, cols) float32 (unnormalised; legrad's min-max scaled to [0, 1]), the target's value per image
    and the class explained."""

    maps: Tensor
    score: Tensor  # (B,) y of each image
    klass: Tensor | None  # (B,) class index for top / class targets


# (layer, start, stop, Ā rows): one row block of a layer's mean_h (A ⊙ ∂y/∂A)⁺ (B, c, T), as the tiled backward forms it
RowsSeen = Callable[[int, int, int, Tensor], None]
Kept = tuple[Tensor, Tensor]  # a block's A·V per head (B, H, T, d) and its scores' log-sum-exp per row (B, H, T)


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


def block_inputs(model: VisionTransformer, images: Tensor,
                 heads: list[Kept] | None = None) -> tuple[list[Tensor], tuple[int, int]]:
    """Every block's input and the last block's output [x_0 … x_L], each (B, T, D), without autograd:
    the encoder's own pass (`encode`) keeping every block's output. Given a list `heads`, each block's
    A·V per head (B, H, T, d) and its scores' log-sum-exp (B, H, T) are appended to it too (the block's own
    `steps`: the same parts in the same order), so that the backward needs no attention forward of its own."""
    grid = model.grid_of(images)
    capture = Capture(inputs=False, blocks=range(model.config.depth), final="none")
    out = ViTOutput(grid, model.config.num_prefix_tokens)
    with torch.no_grad():
        x = model.inputs(images, grid, "conv", "chw", None)  # (B, T, D)
        if heads is None:
            model.encode(x, grid, capture, capture.plan(model.config.depth), out)
            return [x, *(out.blocks[i] for i in range(model.config.depth))], grid
        xs, terms = [x], model.attention_terms(grid)
        for i in range(model.config.depth):
            st = model.block(i).steps(xs[-1], *terms[i], lse=True)
            heads.append((st.heads, cast(Tensor, st.lse)))  # (B, H, T, d), (B, H, T)
            xs.append(st.out)  # (B, T, D)
    return xs, grid


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
    if target.kind == "text":
        return cosine_to(joint_embedding(pooled, logits), target.other, "text"), None
    if target.kind == "image":
        return cosine_to(pooled, target.other, "image"), None
    r, c = target.patch
    patch = out[:, model.config.num_prefix_tokens + r * grid[1] + c]  # (B, D)
    return F.cosine_similarity(patch, pooled, dim=-1), None


def joint_embedding(pooled: Tensor, logits: Tensor | None) -> Tensor:
    """The image embedding (B, E) in the joint image-text space: the head's output where the head is the
    projection (CLIP, PE: what `embed --stage projected` writes), else the pooled embedding itself (SigLIP:
    the probe's output). Whether a model has a joint space at all is the checkpoint's to say
    (families.base.projects), and the API asks it before it builds a text target."""
    return pooled if logits is None else logits


def cosine_to(embedding: Tensor, other: Tensor | None, kind: str) -> Tensor:
    """cos(embedding (B, E), other (E,)) per image: (B,); other's length must be E."""
    if other is None or other.shape[-1] != embedding.shape[-1]:
        size = "no" if other is None else other.shape[-1]
        raise ValueError(f"the {kind} target's embedding has {size} values and this image's has {embedding.shape[-1]}")
    return F.cosine_similarity(embedding, other.to(embedding)[None], dim=-1)


def backward_blocks(model: VisionTransformer, xs: list[Tensor], grid: tuple[int, int], target: Target,
                    stop: int, visit: Callable[[LayerGrad], None], features_at: int | None = None,
                    rows: "RowsSeen | None" = None, heads: list[Kept] | None = None) -> tuple[Tensor, Tensor | None]:
    """∂y/∂Y of blocks L-1 down to `stop`, one block recomputed with autograd at a time; `visit` sees each.

    y is summed over the batch (images never mix, so each image gets its own gradient).
    `rows(layer, start, stop, Ā rows)` sees every row block of mean_h (A ⊙ ∂y/∂A)⁺ (B, c, T) as the attention's
    tiled backward forms it, before `visit` sees the layer. `heads`: each block's A·V and log-sum-exp from the
    forward pass (`block_inputs`), so the backward does not run the attention forward again.
    """
    terms = model.attention_terms(grid)
    with torch.enable_grad():
        x_last = xs[-1].detach().requires_grad_()
        y, klass = target_value(model, x_last, target, grid)
        (g,) = torch.autograd.grad(y.sum(), x_last)  # (B, T, D)
        score = y.detach()
        for i in range(len(model.blocks) - 1, stop - 1, -1):
            rotate, bias = terms[i]
            below, lg = block_backward(model.block(i), i, xs[i], g, rotate, bias, i == features_at, rows,
                                       heads[i] if heads is not None else None, i > stop)
            visit(lg)
            g = below if below is not None else g
    return score, klass


def block_backward(block: Block, layer: int, x: Tensor, g: Tensor, rotate: Rotate | None, bias: Tensor | None,
                   features: bool, rows: RowsSeen | None, heads: Kept | None = None,
                   inputs: bool = True) -> tuple[Tensor | None, LayerGrad]:
    """∂y/∂x of one block (B, T, D) from ∂y/∂out (None when not `inputs`: the lowest block read), and what the
    methods read of it.

    With `rows`, the block's own parts run with autograd except the attention A·V: its output Y and log-sum-exp are
    the forward's (`heads`) or come from SDPA without a graph, and its backward is done here in tiles
    (`attention_grad.attention_backward`), where the methods' A and ∂y/∂A are formed anyway. Without (Grad-CAM
    reads no A), autograd through SDPA's tiled kernels.
    """
    x = x.detach().requires_grad_()
    if rows is None:
        st = block.steps(x, rotate, bias)  # the block's own forward, every step kept
        grads = torch.autograd.grad(st.out, [x, st.heads, st.normed] if features else [x, st.heads], g)
        return grads[0], LayerGrad(layer, st.q.detach(), st.k.detach(), st.v.detach(), bias, grads[1],
                                   st.normed.detach() if features else None, grads[2] if features else None)
    normed = block.norm1(x)  # (B, T, D)
    q, k, v = block.attn.split_heads(normed, rotate)  # each (B, H, T, d), with autograd
    if heads is None:
        with torch.no_grad():
            heads = block.attn.mix_lse(q, k, v, bias)  # (B, H, T, d), (B, H, T)
    y = heads[0].detach().requires_grad_()
    out = block.residual(x, block.attn.merge(y))  # (B, T, D): x's residual path and Y's
    lg = LayerGrad(layer, q.detach(), k.detach(), v.detach(), bias)
    wanted = [x, y] if inputs or features else [y]
    grads = torch.autograd.grad(out, wanted, g)
    lg.grad_y = grads[-1]
    backward = (lg.q, lg.k, lg.v, None if bias is None else bias.detach(), heads[0], heads[1], lg.grad_y,
                block.attn.scale, lambda start, stop, fused: rows(layer, start, stop, fused))
    if not inputs and not features:  # the lowest block read: only its Ā rows, nothing below it
        attention_backward(*backward, inputs=False)
        return None, lg
    dq, dk, dv = attention_backward(*backward)
    below = torch.autograd.grad([q, k, v], [x, normed] if features else [x], [dq, dk, dv])
    if features:
        lg.features, lg.grad_features = normed.detach(), below[1]
    return grads[0] + below[0], lg


def fused_rows(model: VisionTransformer, lg: LayerGrad, start: int, stop: int) -> Tensor:
    """Query rows start..stop-1 of mean_h A (rollout's Ā): (B, stop-start, T) float32."""
    return model.block(lg.layer).attn.rows(lg.q, lg.k, lg.bias, start, stop).float().mean(dim=1)  # (B, c, T)


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
    """r ← r·M_l for the layers from the top down, M_l = I + Ā_l (grad-rollout) or Â_l (rollouts), taken row block
    by row block as the layer's rows come: r·M_l = Σ over blocks of r's entries there times M_l's rows there, so
    no T×T matrix exists, except Ā for a discard ratio (which ranks the whole matrix). Row blocks may come from
    several threads (the tiled backward); their shares are added in row order when the layer is done."""

    def __init__(self, model: VisionTransformer, method: str, discard_ratio: float, start_layer: int,
                 start: Tensor) -> None:
        self.model, self.method = model, method
        self.discard_ratio, self.start_layer = discard_ratio, start_layer
        self.row = start  # (B, T) float64
        self.shares: dict[int, Tensor] = {}  # each row block's share of r·M (B, T) for the layer being visited
        self.fused: Tensor | None = None  # with a discard ratio: the layer's Ā (B, T, T), filled row block by row block
        self.lock = threading.Lock()

    def rows(self, layer: int, start: int, stop: int, fused: Tensor) -> None:
        """One row block of a layer's Ā = mean_h (A ⊙ ∂y/∂A)⁺ (B, c, T), as the backward forms it: its share of r·M."""
        if layer < self.start_layer:
            return
        if self.method != "grad-rollout":
            self.take(start, fused)
            return
        self.shares[start] = (self.row[:, None, start:stop].to(fused.dtype) @ fused)[:, 0].double()  # (B, T): r·Ā there

    def take(self, start: int, fused: Tensor) -> None:
        """Rows start.. of a layer's Ā (B, c, T) for the Abnar-Zuidema step: their share of r·Â, or kept whole
        for the discard."""
        if not self.discard_ratio:
            self.shares[start] = rollout_rows(self.row, fused, start)  # (B, T)
            return
        with self.lock:
            if self.fused is None:
                self.fused = fused.new_empty(fused.shape[0], fused.shape[-1], fused.shape[-1])  # (B, T, T)
        self.fused[:, start:start + fused.shape[1]] = fused

    def __call__(self, lg: LayerGrad) -> None:
        if lg.layer < self.start_layer:
            return
        if self.method == "rollout":
            for s, e in blocks_of(lg):
                self.take(s, fused_rows(self.model, lg, s, e))  # (B, c, T)
        if self.fused is not None:
            self.row = (self.row[:, None] @ rollout_step(self.fused, self.discard_ratio))[:, 0]  # (B, T)
            self.fused = None
            return
        shares = [self.shares[s] for s in sorted(self.shares)]  # in row order: the same sums every run
        total = self.row + shares[0] if self.method == "grad-rollout" else shares[0].clone()  # r + r·Ā, or r·Â
        for share in shares[1:]:
            total.add_(share)
        self.row, self.shares = total, {}


def legrad_columns(grad_y: Tensor, v: Tensor) -> Tensor:
    """LeGrad's row of one layer: mean over heads and query rows of (∂y/∂A)⁺, (B, T) float64, row block by row
    block (grad_y (B, H, Q, d): Q = T for a block, 1 for the probe)."""
    b, h, rows, _ = grad_y.shape
    step = chunk_size(b * h * v.shape[2])
    total = torch.zeros(b, v.shape[2], dtype=torch.float64, device=v.device)
    for s in range(0, rows, step):
        grad_a = grad_y[:, :, s:s + step] @ v.transpose(-2, -1)  # (B, H, c, T): ∂y/∂A = (∂y/∂Y)·Vᵀ, its rows there
        total += grad_a.clamp_min(0).double().sum(dim=(1, 2))
    return total / (h * rows)


def layer_value(model: VisionTransformer, x: Tensor, pooled_tokens: Tensor, target: Target,
                grid: tuple[int, int], klass: Tensor | None) -> Tensor:
    """y_l (B,) read from layer l: its embedding from `pooled_tokens` (B, 1, D) through fc_norm and the head(s);
    patch: the patch of layer l's output x (B, T, D) (through the final norm, none with a probe) against it."""
    pooled_tokens = pooled_tokens.expand(-1, max(1, len(model.heads)), -1)  # DeiT: both heads read the one token
    pooled, logits = embed(pooled_tokens, model.fc_norm, model.heads)  # (B, D), (B, classes) or None
    if target.kind in ("top", "class"):
        return logits.gather(1, klass[:, None])[:, 0]  # type: ignore[union-attr, index]
    if target.kind == "text":
        return cosine_to(joint_embedding(pooled, logits), target.other, "text")
    if target.kind == "image":
        return cosine_to(pooled, target.other, "image")
    r, c = target.index  # type: ignore[misc]
    tokens = x if model.attn_pool is not None else model.norm(x)
    return F.cosine_similarity(tokens[:, model.config.num_prefix_tokens + r * grid[1] + c], pooled, dim=-1)


def legrad(model: VisionTransformer, xs: list[Tensor], grid: tuple[int, int], target: Target,
           start_layer: int) -> tuple[Tensor, Tensor, Tensor | None]:
    """LeGrad's maps (B, rows, cols) in [0, 1], y of the model's own output (B,) and the class (top / class).

    Each layer is one recomputed block and its own backward: y_l reads block l's output, so ∂y_l/∂A_l never
    goes through the blocks above. With a probe, only the probe runs, on the kept block outputs.
    """
    with torch.no_grad():
        score, klass = target_value(model, xs[-1], target, grid)  # also refuses a target the model cannot give
    terms, pool = model.attention_terms(grid), model.attn_pool
    assert pool is None or isinstance(pool, AttentionPool)
    total = torch.zeros(xs[0].shape[0], xs[0].shape[1], dtype=torch.float64, device=xs[0].device)  # (B, T)
    with torch.enable_grad():
        for i in range(start_layer, model.config.depth):
            if pool is not None:  # the probe on layer i's raw output: A_l is its row (B, H, 1, T)
                heads, v = pool.mixed(xs[i + 1])  # (B, H, 1, d), (B, H, T, d)
                heads = heads.detach().requires_grad_()
                y = layer_value(model, xs[i + 1], pool.finish(heads), target, grid, klass)
            else:
                rotate, bias = terms[i]
                block = model.block(i)
                st = block.steps(xs[i].detach().requires_grad_(), rotate, bias)  # the block's own forward
                heads, v = st.heads, st.v
                y = layer_value(model, st.out, model.norm(st.out.mean(dim=1, keepdim=True)), target, grid, klass)
            (g,) = torch.autograd.grad(y.sum(), heads)  # (B, H, Q, d); images never mix
            total += legrad_columns(g, v.detach())
    return min_max(prefix_row_to_grid(total, model.config.num_prefix_tokens, grid)), score, klass


def min_max(maps: Tensor) -> Tensor:
    """(B, rows, cols) → each map scaled to [0, 1] (all zeros where a map is constant), float32."""
    flat = maps.flatten(1)
    lo, hi = flat.min(dim=1).values, flat.max(dim=1).values  # (B,)
    span = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
    return ((maps - lo[:, None, None]) / span[:, None, None]).float()


def explain(model: VisionTransformer, images: Tensor, method: str = "grad-rollout", target: Target = Target(),
            start_layer: int = 0, layer: int = -1, discard_ratio: float = 0.0) -> Explanation:
    """The map of `method` for target y on (B, C, H, W): (B, rows, cols) on the input's true grid."""
    depth, n = model.config.depth, model.config.num_prefix_tokens
    if method not in METHODS:
        raise ValueError(f"unknown method '{method}': use one of {', '.join(METHODS)}")
    if not 0 <= start_layer < depth:
        raise ValueError(f"start layer {start_layer} is outside 0..{depth - 1}")
    (layer,) = resolve_indices([layer], depth, "layer")
    heads: list[Kept] | None = [] if method in ("grad-rollout", "attn-grad") else None
    xs, grid = block_inputs(model, images, heads)
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
    if method == "legrad":
        maps, score, klass = legrad(model, xs, grid, target, start_layer)
        return Explanation(maps, score.float(), klass)
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
        score, klass = backward_blocks(model, xs, grid, target, start_layer, product, rows=product.rows, heads=heads)
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


__all__ = ["METHODS", "Explanation", "LayerGrad", "Method", "Target", "TargetKind", "backward_blocks", "block_inputs",
           "explain", "joint_embedding", "legrad", "pooled_embedding", "target_value"]

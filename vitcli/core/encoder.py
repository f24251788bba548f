"""The ViT encoder: prefix tokens, position, L pre-norm blocks, final norm, pooling, head.

Module and parameter names are the state-dict keys documented in `config.py` (timm's names), so
a checkpoint maps onto them with a key table. The parts (position.py, block.py with attention,
MLP and norms, pooling.py) are chosen by the config. A forward pass takes one `Capture` and
returns its intermediates in one `ViTOutput` instead of hooks.

`pooled` has one way to be computed: when the pool reads only prefix rows (class token, DeiT's
two tokens), from the last block evaluated for those rows alone, image by image, on the same
Q, K, V as the full pass when that also runs; else from the final tokens. Either way the head
runs image by image, so each row's pooled and logits have the bits of that image run alone.
"""

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor, nn

from vitcli.core.attention import AttentionDetail, Rotate
from vitcli.core.block import QKV, Block
from vitcli.core.capture import Capture, Plan
from vitcli.core.config import ViTConfig
from vitcli.core.embedding import Impl, PatchEmbed
from vitcli.core.norm import make_norm
from vitcli.core.patches import Order, crop_to_grid, grid_shape, patchify
from vitcli.core.pooling import embed, make_pool
from vitcli.core.position import make_position
from vitcli.core.relpos import RelativePositionBias, add_bias
from vitcli.core.validate import validate

if TYPE_CHECKING:
    from vitcli.core.attn_pool import AttentionPool


@dataclass
class ViTOutput:
    """Named intermediates of one forward pass (B images, N patches, T = prefix + N tokens).

    Dicts are keyed by layer (0..depth-1), whatever indices the Capture used.
    """

    grid: tuple[int, int]  # (rows, cols) of this input's patch grid
    num_prefix: int  # class, distillation and register tokens before the patches
    # The next five only with Capture(inputs=True).
    patches: Tensor | None = None  # (B, N, P·P·C) flattened patches in the forward's order
    tokens: Tensor | None = None  # (B, N, D) projected patches x_p·E
    with_prefix: Tensor | None = None  # (B, T, D) prefix tokens then patch tokens
    pos_table: Tensor | None = None  # (1, pos_prefix_rows + N, D) table used at this grid; None without one
    z0: Tensor | None = None  # (B, T, D) encoder input: with_prefix + positions
    output: Tensor | None = None  # (B, T, D) after the last block and the final norm; only final="tokens"
    pooled: Tensor | None = None  # (B, D) image embedding (after fc_norm); None for final="none" or pooling none
    logits: Tensor | None = None  # (B, num_classes) head output (class logits or CLIP's projection)
    pool_attention: Tensor | None = None  # (B, H, 1, T) the attention-pool probe's weights (Capture.pool_attention)
    blocks: dict[int, Tensor] = field(default_factory=dict)  # layer → its block's output (B, T, D)
    attentions: dict[int, Tensor] = field(default_factory=dict)  # layer → (B, H, T, T) or (B, H, Q, T)
    qkv: dict[int, tuple[Tensor, Tensor, Tensor]] = field(default_factory=dict)  # layer → Q, K, V (B, H, T, d)
    reduced: dict[int, object] = field(default_factory=dict)  # layer → the reducer's result


class AttentionTerms:
    """What each block's attention takes at one grid besides its input: terms[i] → (rotate, bias).

    rotate turns Q, K (RoPE); bias (1, H, T, T) or None is the position part's score bias plus the
    shared relative position bias plus block i's own (BEiT). Block biases are built when asked, so
    one T×T bias per block is alive at a time, whatever the order the caller visits the blocks in.
    """

    def __init__(self, rotate: Rotate | None, shared: Tensor | None, blocks: nn.ModuleList,
                 grid: tuple[int, int]) -> None:
        self.rotate, self.shared, self.blocks, self.grid = rotate, shared, blocks, grid

    def __getitem__(self, i: int) -> tuple[Rotate | None, Tensor | None]:
        return self.rotate, cast(Block, self.blocks[i]).attention_bias(self.grid, self.shared)


class VisionTransformer(nn.Module):
    """The ViT of a `ViTConfig`; runs on any image whose sides are multiples of the patch size, or on
    any image when `patch_remainder` is "floor" (the last H mod P rows, W mod P columns unused)."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = validate(config)
        d, norm = config.dim, (lambda: make_norm(config.norm, config.dim, config.eps))
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if config.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d)) if config.distilled else None
        self.reg_tokens = nn.Parameter(torch.zeros(1, config.num_registers, d)) if config.num_registers else None
        self.position = make_position(config)
        table = self.position.initial_table()
        if table is None or self.position.learned:
            self.pos_embed = None if table is None else nn.Parameter(table)
        else:  # a fixed table: a buffer outside the state dict, recomputed exactly for other grids
            self.register_buffer("pos_embed", table, persistent=False)
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, d, bias=config.patch_bias)
        if config.patch_norm:  # AIMv2: a norm on the projected patches (key patch_embed.norm)
            self.patch_embed.norm = norm()
        self.rel_pos_bias = RelativePositionBias(config.grid, config.heads) if config.rel_pos_bias == "shared" else None
        self.norm_pre = norm() if config.pre_norm else nn.Identity()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = norm() if config.final_norm else nn.Identity()
        pool = make_pool(config)
        # the probe's weights: timm's attn_pool.*
        self.attn_pool = cast("AttentionPool", pool) if config.pooling == "map" else None
        self.pool = None if config.pooling == "map" else pool
        self.fc_norm = norm() if config.fc_norm else nn.Identity()
        n = config.num_classes
        self.head = nn.Linear(d, n, bias=config.head_bias) if n else nn.Identity()
        self.head_dist = nn.Linear(d, n, bias=config.head_bias) if n and config.distilled else None

    def reset_parameters(self, seed: int = 0) -> None:
        """Set every parameter and buffer from `seed` (the rule and its per-tensor seeds: core/init.py)."""
        from vitcli.core.init import draw

        draw(self, seed)

    def block(self, i: int) -> Block:
        """Block i, typed (an nn.ModuleList holds any Module)."""
        return cast(Block, self.blocks[i])

    @property
    def pooler(self) -> nn.Module | None:
        """The pooling part: class token, patch mean, the attention-pool probe, or None."""
        return self.attn_pool if self.attn_pool is not None else self.pool

    @property
    def pooled_rows(self) -> int | None:
        """The prefix rows the pool reads (1 class token, 2 with DeiT's), or None: every token, or no pool."""
        return getattr(self.pooler, "prefix_rows", None)

    @property
    def heads(self) -> list[nn.Module]:
        """The head of each pooled token: [head] or DeiT's [head, head_dist]; none without classes."""
        if not self.config.num_classes:
            return []
        return [self.head] if self.head_dist is None else [self.head, self.head_dist]

    def grid_of(self, images: Tensor) -> tuple[int, int]:
        """(rows, cols) of the patch grid of (…, C, H, W) images, by the config's `patch_remainder`."""
        return grid_shape(images.shape[-2], images.shape[-1], self.config.patch_size, self.config.patch_remainder)

    def position_rows(self, grid: tuple[int, int]) -> Tensor | None:
        """(1, pos_prefix_rows + N, D) table for this grid: the own one, resampled, or recomputed."""
        return self.position.table_at(self.pos_embed, grid)

    def attention_terms(self, grid: tuple[int, int]) -> AttentionTerms:
        """Every block's rotation and score bias at this grid: the one place they are put together
        (encode, explain and every method that re-runs a block take them from here)."""
        rotate, shared = self.position.attention_terms(grid)
        if self.rel_pos_bias is not None:
            shared = add_bias(shared, self.rel_pos_bias(grid))  # (1, H, T, T)
        return AttentionTerms(rotate, shared, self.blocks, grid)

    def prepend_prefix(self, tokens: Tensor) -> Tensor:
        """(B, N, D) → (B, T, D): [cls, dist, registers…, patches…]."""
        b = tokens.shape[0]
        prefix = [p.expand(b, -1, -1) for p in (self.cls_token, self.dist_token, self.reg_tokens) if p is not None]
        return torch.cat([*prefix, tokens], dim=1)

    def embed_tokens(self, tokens: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Final-norm tokens (B, T or k, D) → pooled (B, D) and logits (B, classes), image by image."""
        pool = self.pooler
        if pool is None:
            return None, None
        rows = [embed(pool(tokens[b:b + 1]), self.fc_norm, self.heads) for b in range(tokens.shape[0])]
        pooled = torch.cat([r[0] for r in rows])
        logits = [r[1] for r in rows if r[1] is not None]  # every image's, or none (no head)
        return pooled, (torch.cat(logits) if logits else None)

    def inputs(self, images: Tensor, grid: tuple[int, int], impl: Impl, order: Order,
               out: ViTOutput | None) -> Tensor:
        """(B, C, H, W) → the blocks' input (B, T, D); the stages go to `out` when given."""
        images = crop_to_grid(images, grid, self.config.patch_size)  # (B, C, rows·P, cols·P): what the conv uses
        patches = patchify(images, self.config.patch_size, order) if out is not None or impl == "linear" else None
        if patches is not None and impl == "linear":
            tokens = self.patch_embed.embed_patches(patches, order)  # (B, N, D)
        else:
            tokens = self.patch_embed(images, impl)  # (B, N, D)
        if self.config.patch_norm:
            tokens = self.patch_embed.norm(tokens)  # (B, N, D)
        with_prefix = self.prepend_prefix(tokens)  # (B, T, D)
        table = self.position_rows(grid)  # (1, rows + N, D)
        z0 = self.position(with_prefix, table)  # (B, T, D)
        if out is not None:
            out.patches, out.tokens, out.with_prefix, out.pos_table, out.z0 = patches, tokens, with_prefix, table, z0
        return self.norm_pre(z0)

    def encode(self, x: Tensor, grid: tuple[int, int], capture: Capture, plan: Plan, out: ViTOutput) -> Tensor | None:
        """Run blocks 0..plan.stop-1 on (B, T, D), keeping what the capture asks in `out`.

        With a prefix-reading pool, the last block's pooled rows are evaluated on their own (and
        `out.pooled` set); its full pass runs only when something needs it. Returns the last
        block's full output, or None when it did not run.
        """
        terms = self.attention_terms(grid)
        last, rows = len(self.blocks) - 1, self.pooled_rows
        for i in range(plan.stop):
            block, (rotate, bias) = self.block(i), terms[i]
            qkv = block.qkv(x, rotate)  # each (B, H, T, d)
            if i == last and rows and capture.final != "none":
                out.pooled, out.logits = self.embed_tokens(self.norm(block.prefix_rows(x, qkv, rows, bias)))
                if capture.final == "pooled" and not plan.touches(i):
                    return None
            x, detail = block.finish(x, qkv, plan.detail(i), capture.queries, bias)  # (B, T, D)
            self.keep(i, x, qkv, detail, capture, plan, out)
        return x

    def keep(self, i: int, x: Tensor, qkv: QKV, detail: AttentionDetail | None, capture: Capture, plan: Plan,
             out: ViTOutput) -> None:
        """Store block i's output, attention, Q, K, V and reduction as the plan asks."""
        if i in plan.blocks:
            out.blocks[i] = x
        if detail is None:
            return
        if i in plan.reduce and capture.reducer is not None:
            out.reduced[i] = capture.reducer(i, self.block(i).attn, detail)
        if i in plan.attention:
            out.attentions[i] = detail.weights
            if capture.qkv:
                out.qkv[i] = qkv

    def forward(self, images: Tensor, capture: Capture = Capture(), *, impl: Impl = "conv",
                order: Order = "chw") -> ViTOutput:
        """(B, C, H, W) → ViTOutput with what `capture` asks (see capture.py).

        Layers not in capture.attention or capture.reduce run the fused kernel and keep nothing;
        capture.queries picks token rows of the weights, (B, H, Q, T) without the T×T matrix.
        Capture(inputs=False) frees patches, tokens, with_prefix, pos_table and z0 before the
        blocks run (4-5 × B·T·D floats less at the peak). final="none" runs no block after the
        last one asked for; final="pooled" with class-token pooling runs the last block for the
        pooled tokens alone unless that block is captured.
        """
        plan = capture.plan(len(self.blocks))
        grid = self.grid_of(images)
        out = ViTOutput(grid, self.config.num_prefix_tokens)
        x = self.inputs(images, grid, impl, order, out if capture.inputs else None)
        last = self.encode(x, grid, capture, plan, out)
        if last is None or capture.final == "none":
            return out
        output = self.norm(last)  # (B, T, D)
        if capture.final == "tokens":
            out.output = output
        if self.pooler is not None and self.pooled_rows is None:  # the pool reads every token
            out.pooled, out.logits = self.embed_tokens(output)
        if capture.pool_attention and self.attn_pool is not None:
            out.pool_attention = self.attn_pool.weights(output)  # (B, H, 1, T)
        return out

"""The ViT encoder: prefix tokens, position table, L pre-norm blocks, final norm, pooling, head.

Module and parameter names are the state-dict keys documented in `config.py` (timm's names), so
a checkpoint maps onto them with a key table. A forward pass returns its intermediates in one
`ViTOutput` instead of hooks; attention weights are computed only for the layers asked for.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from vitcli.core.attention import Attention, AttentionDetail, resolve_indices
from vitcli.core.capture import Capture
from vitcli.core.config import Activation, ViTConfig
from vitcli.core.embedding import Impl, PatchEmbed
from vitcli.core.patches import Order, grid_shape, patchify
from vitcli.core.posenc import position_table, resample_pos_table
from vitcli.core.validate import validate


class QuickGELU(nn.Module):
    """CLIP's GELU approximation x·σ(1.702x)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


def make_activation(name: Activation) -> nn.Module:
    """The MLP non-linearity: exact GELU (erf), its tanh approximation, or QuickGELU."""
    if name == "gelu":
        return nn.GELU()
    if name == "gelu_tanh":
        return nn.GELU(approximate="tanh")
    if name == "quick_gelu":
        return QuickGELU()
    raise ValueError(f"unknown activation '{name}': use gelu, gelu_tanh or quick_gelu")


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (CaiT, DINOv2): x·γ."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    """fc1 (D → M), activation, fc2 (M → D), applied to every token."""

    def __init__(self, dim: int, hidden: int, activation: Activation) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))  # (B, T, D) → (B, T, M) → (B, T, D)


class Block(nn.Module):
    """Pre-norm transformer block: x + ls1(MSA(LN(x))), then x + ls2(MLP(LN(x)))."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        d = config.dim
        self.norm1 = nn.LayerNorm(d, eps=config.eps)
        self.attn = Attention(d, config.heads, qkv_bias=config.qkv_bias)
        self.ls1 = LayerScale(d) if config.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(d, eps=config.eps)
        self.mlp = Mlp(d, config.mlp_dim, config.activation)
        self.ls2 = LayerScale(d) if config.layer_scale else nn.Identity()

    def forward(self, x: Tensor, return_weights: bool = False, queries: Sequence[int] | None = None,
                first: int | None = None) -> tuple[Tensor, AttentionDetail | None]:
        """(B, T, D) → (B, T, D), with the attention detail when asked; (B, n, D) for the first n tokens only."""
        y, detail = self.attn(self.norm1(x), return_weights, queries, first)
        x = x[:, :first] + self.ls1(y)
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x, detail


@dataclass
class ViTOutput:
    """Named intermediates of one forward pass (B images, N patches, T = prefix + N tokens)."""

    grid: tuple[int, int]  # (rows, cols) of this input's patch grid
    num_prefix: int  # class, distillation and register tokens before the patches
    # The next five are None after forward(keep_inputs=False).
    patches: Tensor | None  # (B, N, P·P·C) flattened patches in the forward's order
    tokens: Tensor | None  # (B, N, D) projected patches x_p·E
    with_prefix: Tensor | None  # (B, T, D) prefix tokens then patch tokens
    pos_table: Tensor | None  # (1, pos_prefix_rows + N, D) table used at this grid; None for `none`
    z0: Tensor | None  # (B, T, D) encoder input: with_prefix + positions
    output: Tensor  # (B, T, D) after the last block and the final norm; (B, prefix, D) if pooled_only
    pooled: Tensor | None  # (B, D) image embedding (after fc_norm); None when pooling is `none`
    logits: Tensor | None  # (B, num_classes) head output (class logits or CLIP's projection)
    blocks: list[Tensor] = field(default_factory=list)  # each (B, T, D), when keep_blocks
    attn_layers: list[int] = field(default_factory=list)  # which layer each entry below is from
    attentions: list[Tensor] = field(default_factory=list)  # each (B, H, T, T) or (B, H, Q, T)
    qkv: list[tuple[Tensor, Tensor, Tensor]] = field(default_factory=list)  # each (B, H, T, d)
    reduced: dict[int, object] = field(default_factory=dict)  # layer → attn_reduce's result


# (layer index, the layer's attention module, what it computed) → a summary kept instead of weights
AttnReduce = Callable[[int, Attention, AttentionDetail], object]


class VisionTransformer(nn.Module):
    """The ViT of a `ViTConfig`; runs on any image whose sides are multiples of the patch size."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = validate(config)
        d, rows = config.dim, config.pos_prefix_rows
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d)) if config.class_token else None
        self.dist_token = nn.Parameter(torch.zeros(1, 1, d)) if config.distilled else None
        self.reg_tokens = nn.Parameter(torch.zeros(1, config.num_registers, d)) if config.num_registers else None
        if config.posenc == "learned":
            self.pos_embed = nn.Parameter(position_table("learned", config.grid, d, rows)[None])
        elif config.posenc == "none":
            self.pos_embed = None
        else:  # a fixed table: a buffer outside the state dict, recomputed exactly for other grids
            self.register_buffer("pos_embed", position_table(config.posenc, config.grid, d, rows)[None],
                                 persistent=False)
        self.patch_embed = PatchEmbed(config.patch_size, config.in_chans, d, bias=config.patch_bias)
        self.norm_pre = nn.LayerNorm(d, eps=config.eps) if config.pre_norm else nn.Identity()
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d, eps=config.eps) if config.final_norm else nn.Identity()
        self.fc_norm = nn.LayerNorm(d, eps=config.eps) if config.fc_norm else nn.Identity()
        n = config.num_classes
        self.head = nn.Linear(d, n, bias=config.head_bias) if n else nn.Identity()
        self.head_dist = nn.Linear(d, n, bias=config.head_bias) if n and config.distilled else None

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator) -> None:
        """Set every parameter and buffer from a CPU generator: weights N(0, 1/fan_in), tokens N(0, 1/D)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                _normal_(module.weight, module.weight[0].numel() ** -0.5, generator)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.fill_(0.0)
            elif isinstance(module, LayerScale):
                module.gamma.fill_(1.0)
        for p in (self.cls_token, self.dist_token, self.reg_tokens):
            if p is not None:
                _normal_(p, self.config.dim**-0.5, generator)
        if self.pos_embed is not None:  # learned: D**-0.5·randn; sin-cos: the fixed table again
            kind, grid, rows = self.config.posenc, self.config.grid, self.config.pos_prefix_rows
            self.pos_embed.copy_(position_table(kind, grid, self.config.dim, rows, generator)[None])

    def position_rows(self, grid: tuple[int, int]) -> Tensor | None:
        """(1, pos_prefix_rows + N, D) table for this grid: the own one, resampled, or recomputed."""
        if self.pos_embed is None or grid == self.config.grid:
            return self.pos_embed
        rows = self.config.pos_prefix_rows
        if self.config.posenc == "learned":
            return resample_pos_table(self.pos_embed, self.config.grid, grid, rows)
        return position_table(self.config.posenc, grid, self.config.dim, rows)[None].to(self.pos_embed)

    def add_positions(self, x: Tensor, table: Tensor | None) -> Tensor:
        """(B, T, D) + table; prefix tokens beyond pos_prefix_rows (registers) get nothing."""
        if table is None:
            return x
        if self.config.pos_prefix_rows == self.config.num_prefix_tokens:
            return x + table  # every prefix token has a row
        rows, gap = self.config.pos_prefix_rows, self.config.num_prefix_tokens - self.config.pos_prefix_rows
        zeros = table.new_zeros(1, gap, table.shape[-1])  # (1, unpositioned prefix, D)
        return x + torch.cat([table[:, :rows], zeros, table[:, rows:]], dim=1)  # (B, T, D)

    def prepend_prefix(self, tokens: Tensor) -> Tensor:
        """(B, N, D) → (B, T, D): [cls, dist, registers…, patches…]."""
        b = tokens.shape[0]
        prefix = [p.expand(b, -1, -1) for p in (self.cls_token, self.dist_token, self.reg_tokens) if p is not None]
        return torch.cat([*prefix, tokens], dim=1)

    def pool(self, output: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """(B, T, D) → pooled (B, D) and head output (B, classes); DeiT averages its two heads."""
        if self.config.pooling == "none":
            return None, None
        first = self.config.num_prefix_tokens
        pooled = self.fc_norm(output[:, 0] if self.config.pooling == "cls" else output[:, first:].mean(1))
        logits = self.head(pooled) if self.config.num_classes else None
        if self.head_dist is not None:
            dist = self.fc_norm(output[:, 1])  # (B, D) distillation token
            logits = (logits + self.head_dist(dist)) / 2
            pooled = (pooled + dist) / 2
        return pooled, logits

    def encode(self, x: Tensor, keep_blocks: bool, attn_layers: Sequence[int] | None,
               attn_queries: Sequence[int] | None, keep_qkv: bool,
               reduce: tuple[Sequence[int], AttnReduce] | None = None,
               pooled_only: bool = False) -> tuple[Tensor, dict]:
        """Run the blocks on (B, T, D); keep block outputs, the asked layers' attention and reductions."""
        depth = len(self.blocks)
        wanted = set(resolve_indices(attn_layers, depth, "layer")) if attn_layers is not None else set()
        reduce_at = set(resolve_indices(reduce[0], depth, "layer")) if reduce else set()
        kept: dict = {"blocks": [], "attn_layers": [], "attentions": [], "qkv": [], "reduced": {}}
        last = depth - 1
        prefix_only = (pooled_only and self.config.pooling == "cls" and not keep_blocks
                       and last not in wanted and last not in reduce_at)
        for i, block in enumerate(self.blocks):
            first = self.config.num_prefix_tokens if prefix_only and i == last else None
            x, detail = block(x, i in wanted or i in reduce_at, attn_queries, first)  # (B, T, D)
            if detail is not None and reduce and i in reduce_at:
                kept["reduced"][i] = reduce[1](i, block.attn, detail)
            if detail is not None and i in wanted:
                kept["attn_layers"].append(i)
                kept["attentions"].append(detail.weights)
                if keep_qkv:
                    kept["qkv"].append((detail.q, detail.k, detail.v))
            if keep_blocks:
                kept["blocks"].append(x)
        return x, kept

    def forward(self, images: Tensor, *, impl: Impl = "conv", order: Order = "chw", keep_inputs: bool = True,
                keep_blocks: bool = False, attn_layers: Sequence[int] | None = None,
                attn_queries: Sequence[int] | None = None, keep_qkv: bool = False,
                attn_reduce: tuple[Sequence[int], AttnReduce] | None = None,
                pooled_only: bool = False, capture: "Capture | None" = None) -> ViTOutput:
        """(B, C, H, W) → ViTOutput; attention weights (and Q, K, V) only for `attn_layers`.

        `pooled_only=True` computes what `pooled` and `logits` need and no more: with class-token
        pooling the last block runs for the prefix tokens alone (about 9/12 of one block saved), so
        `output` is then (B, prefix, D). It changes nothing when the last block's output is kept.

        `attn_queries` picks token rows of the weights, (B, H, Q, T) without the T×T matrix;
        layers not in `attn_layers` run the fused kernel and keep nothing. `attn_reduce=(layers, f)`
        hands each of those layers' detail to f and keeps only f's result (a summary such as the
        mean attention distance) in `reduced`: all-layer analyses without T×T per layer. `keep_inputs=False`
        frees patches, tokens, with_prefix, pos_table and z0 before the blocks run (4-5 × B·T·D
        floats less at the peak: what a 12,545-token attention map needs).
        """
        if capture is not None:  # TEMPORARY bridge until the encoder takes only a Capture
            keep_inputs, keep_blocks = capture.inputs, bool(capture.blocks)
            attn_layers, attn_queries, keep_qkv = list(capture.attention) or None, capture.queries, capture.qkv
            attn_reduce = (capture.reduce, capture.reducer) if capture.reducer else None
            pooled_only = capture.final == "pooled"
        grid = grid_shape(images.shape[-2], images.shape[-1], self.config.patch_size)
        patches = patchify(images, self.config.patch_size, order) if keep_inputs or impl == "linear" else None
        if impl == "linear":
            tokens = self.patch_embed.embed_patches(patches, order)  # (B, N, D)
        else:
            tokens = self.patch_embed(images, impl)  # (B, N, D)
        with_prefix = self.prepend_prefix(tokens)  # (B, T, D)
        table = self.position_rows(grid)  # (1, rows + N, D)
        z0 = self.add_positions(with_prefix, table)  # (B, T, D)
        x = self.norm_pre(z0)
        if not keep_inputs:
            patches = tokens = with_prefix = table = z0 = None
        x, kept = self.encode(x, keep_blocks, attn_layers, attn_queries, keep_qkv, attn_reduce, pooled_only)
        output = self.norm(x)  # (B, T, D)
        pooled, logits = self.pool(output)
        return ViTOutput(grid, self.config.num_prefix_tokens, patches, tokens, with_prefix, table, z0,
                         output, pooled, logits, **kept)


def _normal_(p: Tensor, std: float, generator: torch.Generator) -> None:
    """Fill `p` in place with N(0, std²) from a CPU generator (no temporary, so no memory spike)."""
    if p.device.type == "cpu" and p.dtype == torch.float32:
        p.normal_(0.0, std, generator=generator)
    else:  # draw the same float32 values on the CPU, then copy them over
        p.copy_(torch.empty(p.shape).normal_(0.0, std, generator=generator))

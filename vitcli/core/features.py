"""Feature analyses behind `vitcli figures`: patch-embedding filter PCA, feature PCA to RGB with
a foreground mask, patch-to-patch cosine similarity and high-norm token outliers.

Pure torch on tensors, no I/O; PCA and cosine similarity come from `vitcli.core.analysis`.
Prefix tokens (class, distillation, registers) are kept apart from the patches by their count.
"""

from dataclasses import dataclass

import torch
from torch import Tensor

from vitcli.core.analysis import cosine_similarity_matrix, pca

# --- patch-embedding filters (ViT paper, figure 7 left) -------------------------------------------




def filter_components(weight: Tensor, k: int = 28) -> tuple[Tensor, Tensor]:
    """First k principal components of the D filters (rows of the (D, C·P·P) weight, centred):
    components (k, C, P, P) and their explained variance ratio (k,)."""
    filters = weight.detach().double().reshape(weight.shape[0], -1)  # (D, C·P·P)
    comps, _, ratio = pca(filters, k)
    return comps.reshape(-1, *weight.shape[1:]), ratio  # (k, C, P, P)


def tiles_for_display(components: Tensor) -> Tensor:
    """(k, C, P, P) → (k, P, P, C) in [0, 1], each tile min-max normalised on its own."""
    flat = components.flatten(1)  # (k, C·P·P)
    lo, hi = flat.amin(1, keepdim=True), flat.amax(1, keepdim=True)
    scaled = (flat - lo) / (hi - lo).clamp_min(torch.finfo(flat.dtype).tiny)
    return scaled.reshape(components.shape).permute(0, 2, 3, 1)


# --- feature PCA to RGB (DINOv2, figure 1) --------------------------------------------------------


@dataclass
class FeaturePCA:
    """PCA colours of patch features over B images on one (rows, cols) grid."""

    rgb: Tensor  # (B, rows, cols, 3) in [0, 1]; 0 on the background when a mask is used
    first: Tensor  # (B, rows, cols) first component, sign fixed, min-max scaled to [0, 1]
    foreground: Tensor | None  # (B, rows, cols) bool, with a threshold
    explained: Tensor  # (3,) explained variance ratio of the PCA that coloured the map
    flipped: bool  # whether the first component's sign was flipped


def border_mask(grid: tuple[int, int]) -> Tensor:
    """(rows, cols) bool: the outermost ring of patches."""
    rows, cols = grid
    mask = torch.zeros(rows, cols, dtype=torch.bool)
    mask[0, :] = mask[-1, :] = True
    mask[:, 0] = mask[:, -1] = True
    return mask


def minmax(x: Tensor, dim: int = 0) -> Tensor:
    """Scale x to [0, 1] along `dim` (per column of an (M, k) array by default)."""
    lo, hi = x.amin(dim, keepdim=True), x.amax(dim, keepdim=True)
    return (x - lo) / (hi - lo).clamp_min(torch.finfo(x.dtype).tiny)


def foreground_sign(first: Tensor, grid: tuple[int, int]) -> float:
    """+1 or −1 so that border patches (taken as background) score below the mean: first (B, N)."""
    border = border_mask(grid).flatten()  # (N,)
    return -1.0 if first[:, border].mean() > first.mean() else 1.0


def feature_pca_rgb(features: Tensor, grid: tuple[int, int], threshold: float | None = None) -> FeaturePCA:
    """DINOv2 fig. 1: features (B, N, D) of patch tokens → first three components as RGB.

    Components are min-max scaled per component over all images. With `threshold`, patches
    whose first component (sign fixed: border = background, then scaled to [0, 1]) exceeds it
    are foreground, and a second PCA on foreground patches alone colours them.
    """
    b, n, d = features.shape
    flat = features.double().reshape(b * n, d)  # (B·N, D)
    _, proj, ratio = pca(flat, 3)  # (B·N, k)
    sign = foreground_sign(proj[:, 0].reshape(b, n), grid)
    proj[:, 0] *= sign
    first = minmax(proj[:, :1])[:, 0]  # (B·N,)
    rgb, fg = _pad3(minmax(proj)), None
    if threshold is not None:
        fg = first > threshold
        if int(fg.sum()) < 2:
            raise ValueError(f"foreground threshold {threshold} keeps {int(fg.sum())} patch(es); lower it")
        _, fg_proj, ratio = pca(flat[fg], 3)
        rgb = torch.zeros(b * n, 3, dtype=torch.float64)
        rgb[fg] = _pad3(minmax(fg_proj))
    shape = (b, grid[0], grid[1])
    return FeaturePCA(rgb.reshape(*shape, 3), first.reshape(shape), None if fg is None else fg.reshape(shape),
                      _pad_ratio(ratio), sign < 0)


def _pad3(x: Tensor) -> Tensor:
    """(M, k ≤ 3) → (M, 3): missing components (rank-deficient input) are 0."""
    return torch.cat([x, x.new_zeros(x.shape[0], 3 - x.shape[1])], dim=1) if x.shape[1] < 3 else x


def _pad_ratio(ratio: Tensor) -> Tensor:
    return torch.cat([ratio, ratio.new_zeros(3 - ratio.shape[0])]) if ratio.shape[0] < 3 else ratio


# --- patch similarity ------------------------------------------------------------------------------


def patch_similarity(query_tokens: Tensor, target_tokens: Tensor, patch: int, num_prefix: int,
                     grid: tuple[int, int]) -> Tensor:
    """Cosine similarity of patch `patch` (row-major) of (T, D) query tokens with every patch of
    (T', D) target tokens on their (rows, cols) grid → (rows, cols)."""
    query = query_tokens[num_prefix + patch].double()[None]  # (1, D)
    cells = target_tokens[num_prefix:].double()  # (N', D)
    if cells.shape[0] != grid[0] * grid[1]:
        raise ValueError(f"{target_tokens.shape[0]} tokens minus {num_prefix} prefix do not fill a {grid[0]}x{grid[1]} "
                         "grid")
    return cosine_similarity_matrix(query, cells)[0].reshape(grid)


def patch_index(row: int, col: int, grid: tuple[int, int]) -> int:
    """Row-major index of patch (row, col); negative values count from the end."""
    rows, cols = grid
    if not (-rows <= row < rows and -cols <= col < cols):
        raise ValueError(f"patch {row},{col} is outside the {rows}x{cols} grid "
                         f"(rows 0..{rows - 1}, cols 0..{cols - 1})")
    return (row % rows) * cols + col % cols


# --- high-norm tokens (Darcet et al. 2023) ----------------------------------------------------------


def token_norms(blocks: list[Tensor]) -> Tensor:
    """L2 norm of every token after every block: L × (T, D) → (L, T)."""
    return torch.stack([b.double().norm(dim=-1) for b in blocks])


def mad_thresholds(norms: Tensor, k: float) -> Tensor:
    """Per layer, median + k·MAD of (L, N) norms (MAD unscaled: median |x − median|) → (L,).
    Medians of an even count average the two middle values (torch.median would take the lower)."""
    norms = norms.double()
    med = norms.quantile(0.5, dim=-1, keepdim=True)  # (L, 1)
    mad = (norms - med).abs().quantile(0.5, dim=-1)  # (L,)
    return med[:, 0] + k * mad


def high_norm_tokens(norms: Tensor, num_prefix: int, thresholds: Tensor) -> list[tuple[int, int]]:
    """(layer, patch index) of patch tokens whose norm is above their layer's threshold; norms (L, T)."""
    above = norms[:, num_prefix:] > thresholds[:, None]  # (L, N)
    return [(int(i), int(p)) for i, p in above.nonzero().tolist()]


def class_attention_share(attentions: list[Tensor]) -> Tensor:
    """Share of the class token's attention each token takes, mean over heads:
    L × (H, 1, T) weights of query 0 → (L, T); each row sums to 1."""
    return torch.stack([a[:, 0].double().mean(dim=0) for a in attentions])


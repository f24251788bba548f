"""Analyses of attention and features: head fusion, rollout, mean attention distance, entropy,
mass-threshold masks, cosine similarity and PCA. Pure torch on tensors; no I/O.

Every function keeps the prefix tokens (class, distillation, registers) apart from the patches
by their count, and maps patch rows onto the true (rows, cols) grid, never √N.
"""

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Literal, cast

import torch
from torch import Tensor

if TYPE_CHECKING:
    from vitcli.core.attention import Attention, AttentionDetail

Fusion = Literal["mean", "max", "min"]
DiscardScope = Literal["row", "matrix"]
# (start, stop) → the attention weights of query rows start..stop-1: (…, H, stop-start, T)
RowsOf = Callable[[int, int], Tensor]


def rows_of_matrix(attn: Tensor) -> RowsOf:
    """Row blocks of a full (…, H, T, T) matrix."""
    return lambda start, stop: attn[..., start:stop, :]


def rows_of_detail(attn: "Attention", detail: "AttentionDetail") -> RowsOf:
    """Row blocks recomputed on demand by the layer's own `weights` from its Q, K and score bias (relative
    position bias, masks): only one block of T×T exists at a time."""
    return lambda start, stop: attn.rows(detail.q, detail.k, detail.bias, start, stop)


def chunk_size(rows_elements: int, budget: int = 1 << 23) -> int:
    """Query rows per block so that one block holds about `budget` weights (32 MiB in float32)."""
    return max(1, budget // max(1, rows_elements))


def fuse_heads(attn: Tensor, fusion: Fusion) -> Tensor:
    """(…, H, Q, T) → (…, Q, T): the heads' mean, or their element-wise max or min."""
    if fusion == "mean":
        return attn.mean(dim=-3)
    if fusion == "max":
        return attn.amax(dim=-3)
    if fusion == "min":
        return attn.amin(dim=-3)
    raise ValueError(f"unknown head fusion '{fusion}': use mean, max or min")


def discard_lowest(attn: Tensor, ratio: float, scope: DiscardScope = "matrix") -> Tensor:
    """Zero the `ratio` share of the smallest weights of each image's (T, T) matrix, or of each row.

    (…, T, T) → same shape; every image and row is treated alike (code in the wild often does
    only the first image of a batch). The diagonal is never dropped, so no token loses itself.
    """
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"discard ratio {ratio} is outside [0, 1)")
    if ratio == 0.0:
        return attn
    t = attn.shape[-1]
    eye = torch.eye(t, dtype=torch.bool, device=attn.device)
    ranked = attn.masked_fill(eye, float("inf"))  # the diagonal sorts last
    flat = ranked.flatten(-2) if scope == "matrix" else ranked  # (…, T·T) or (…, T, T)
    count = int(flat.shape[-1] * ratio)
    if count == 0:
        return attn
    lowest = flat.topk(count, dim=-1, largest=False).indices
    keep = torch.ones_like(flat, dtype=torch.bool).scatter_(-1, lowest, False)
    return attn * keep.reshape(attn.shape)


def fused_matrix(rows_of: RowsOf, num_tokens: int, fusion: Fusion, chunk: int) -> Tensor:
    """The head-fused (…, T, T) matrix built block by block (float64)."""
    return torch.cat([fuse_heads(rows_of(s, s + chunk).double(), fusion) for s in range(0, num_tokens, chunk)], dim=-2)


def rollout_step(fused: Tensor, discard_ratio: float = 0.0, discard_scope: DiscardScope = "matrix") -> Tensor:
    """Abnar & Zuidema's one-layer matrix Â = rownorm(0.5·discard(Ā) + 0.5·I): (B, T, T) → (B, T, T) float64.

    The one home of the step: `Rollout` (attend) multiplies Â from the left, explain's row product
    from the right; both get the same Â.
    """
    fused = discard_lowest(fused.double(), discard_ratio, discard_scope)  # (B, T, T)
    hat = 0.5 * fused + 0.5 * torch.eye(fused.shape[-1], dtype=fused.dtype, device=fused.device)
    return hat / hat.sum(dim=-1, keepdim=True)  # rows sum to 1 again


def rollout_rows(row: Tensor, fused: Tensor, start: int) -> Tensor:
    """The share of r·Â (Â = `rollout_step` of Ā, no discard) of rows start..start+c-1, from r (B, T) and those
    rows of Ā (B, c, T): (B, T) float64. Â's row i is (0.5·Ā_i + 0.5·e_i) / (0.5·Σ_j Ā_ij + 0.5), so r·Â is the
    sum of these shares over row blocks and Ā never needs to exist whole (explain's row product)."""
    rows = fused.double()  # (B, c, T)
    w = 0.5 * row[:, start:start + rows.shape[1]] / (0.5 * rows.sum(dim=-1) + 0.5)  # (B, c)
    share = (w[:, None] @ rows)[:, 0]  # (B, T)
    share[:, start:start + rows.shape[1]] += w
    return share


class Rollout:
    """Abnar & Zuidema (2020) one layer at a time: R ← Â·R with Â = `rollout_step`.

    `add` takes each layer's head-fused (B, T, T) matrix in depth order; `result` is (B, T, T)
    with rows summing to 1 (float64). Holding only R keeps memory at one T×T per image.
    """

    def __init__(self, discard_ratio: float = 0.0, discard_scope: DiscardScope = "matrix") -> None:
        self.discard_ratio, self.discard_scope = discard_ratio, discard_scope
        self.result: Tensor | None = None

    def add(self, fused: Tensor) -> None:
        hat = rollout_step(fused, self.discard_ratio, self.discard_scope)  # (B, T, T)
        self.result = hat if self.result is None else hat @ self.result




def mean_of_patch_rows(rows_of: RowsOf, num_tokens: int, num_prefix: int, chunk: int) -> Tensor:
    """The mean of the patch rows (…, H, T) float64, summed one block of `chunk` rows at a time."""
    total = sum(rows_of(s, min(s + chunk, num_tokens)).double().sum(-2) for s in range(num_prefix, num_tokens, chunk))
    return cast(Tensor, total) / (num_tokens - num_prefix)


def probe_row(pool_attention: Tensor, fusion: Fusion = "mean") -> Tensor:
    """The attention-pool probe's row as a rollout's starting row: (B, H, 1, T) → (B, T) float64,
    heads fused and renormalised to sum to 1 (a no-op for the mean)."""
    row = fuse_heads(pool_attention.double(), fusion)[:, 0]  # (B, T)
    return row / row.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)


def patch_mean_row(batch: int, num_tokens: int, num_prefix: int, device: torch.device | str = "cpu") -> Tensor:
    """The mean of the patch rows as a starting row: (B, T) float64, 1/N on each patch, 0 on the prefix."""
    row = torch.zeros(batch, num_tokens, dtype=torch.float64, device=device)
    row[:, num_prefix:] = 1.0 / (num_tokens - num_prefix)
    return row


def prefix_row_to_grid(row: Tensor, num_prefix: int, grid: tuple[int, int]) -> Tensor:
    """(…, T) over all tokens → (…, rows, cols): prefix tokens sliced off, then the true grid."""
    rows, cols = grid
    if row.shape[-1] - num_prefix != rows * cols:
        raise ValueError(f"{row.shape[-1]} tokens minus {num_prefix} prefix do not fill a {rows}x{cols} grid")
    return row[..., num_prefix:].reshape(*row.shape[:-1], rows, cols)


def patch_centres(grid: tuple[int, int], patch_size: int) -> Tensor:
    """(N, 2) pixel (y, x) of each patch centre, row-major."""
    rows, cols = grid
    r, c = torch.meshgrid(torch.arange(rows, dtype=torch.float64), torch.arange(cols, dtype=torch.float64),
                          indexing="ij")
    return (torch.stack([r, c], dim=-1).reshape(-1, 2) + 0.5) * patch_size


def mean_distance_of_rows(rows_of: RowsOf, num_tokens: int, grid: tuple[int, int], patch_size: int,
                          num_prefix: int, renorm: bool = False, chunk: int = 1024) -> Tensor:
    """ViT paper D.7: mean over patch queries i of Σ_j A[i, j]·d_ij, prefix tokens removed → (…, H) pixels.

    d_ij is the pixel distance of patch centres (P × grid distance). With `renorm`, each patch
    row is renormalised to sum to 1 after the prefix columns go (the paper's code does not).
    Query rows come in blocks of `chunk`, so neither T×T weights nor N×N distances exist whole.
    """
    n = num_tokens - num_prefix
    if n != grid[0] * grid[1]:
        raise ValueError(f"{num_tokens} tokens minus {num_prefix} prefix do not fill a {grid[0]}x{grid[1]} grid")
    total = None
    for start in range(num_prefix, num_tokens, chunk):
        stop = min(start + chunk, num_tokens)
        rows = rows_of(start, stop)[..., num_prefix:].double()  # (…, H, c, N)
        centres = patch_centres(grid, patch_size).to(rows.device)
        if renorm:
            rows = rows / rows.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
        with one_thread():  # cdist splits even a 196×196 block over the threads: 60 ms on a busy machine, not 0.7
            dist = torch.cdist(centres[start - num_prefix:stop - num_prefix], centres)  # (c, N)
        part = (rows * dist).sum(dim=(-2, -1))  # (…, H)
        total = part if total is None else total + part
    return cast(Tensor, total) / n






def attention_entropy(weights: Tensor, renormalise: bool = False) -> Tensor:
    """Shannon entropy in nats of each attention row: (…, T) → (…); 0·log 0 counts as 0. `renormalise`
    divides each row by its sum first: the heads' max or min of softmax rows is no distribution (its sum
    is above or below 1, and its "entropy" could pass ln T), so the statistic is that of its shape."""
    w = weights.double()
    if renormalise:
        w = w / w.sum(dim=-1, keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    return -(w * torch.log(w.clamp_min(torch.finfo(torch.float64).tiny))).sum(dim=-1)


def mass_threshold_mask(maps: Tensor, threshold: float = 0.6) -> Tensor:
    """DINO's masks: per map, the fewest entries whose weights hold ≥ `threshold` of the map's mass.

    maps (…, rows, cols) → bool of the same shape; entries are taken largest first, so the set
    is the smallest one that reaches the threshold.
    """
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"mass threshold {threshold} is outside (0, 1]")
    flat = maps.flatten(-2).double()  # (…, N)
    values, order = flat.sort(dim=-1, descending=True)
    share = values.cumsum(-1) / values.sum(-1, keepdim=True)
    before = torch.cat([torch.zeros_like(share[..., :1]), share[..., :-1]], dim=-1)
    keep_sorted = before < threshold  # the entry is needed while the mass so far is short
    keep = torch.zeros_like(keep_sorted).scatter_(-1, order, keep_sorted)
    return keep.reshape(maps.shape)


def cosine_similarity_matrix(a: Tensor, b: Tensor, eps: float = 1e-12) -> Tensor:
    """(…, M, D), (…, N, D) → (…, M, N): cos θ between every row of a and every row of b."""
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(eps)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(eps)
    return a @ b.transpose(-2, -1)


@contextmanager
def one_thread() -> Iterator[None]:
    """torch on one thread for small, many-step work: its threads spin at each step's barrier when the
    cores are busy (ViT-B's 768×768 eigh took 3-15 s on a loaded 2-core machine, against 0.3 s on one
    thread, loaded or not; view's checks of 12 layers 1.7 s against 0.13 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


SMALL_WORK = 1 << 22  # elements (e.g. one layer's weights H·T², T ≤ 591 at 12 heads) worked on one thread


def threads_for(elements: int) -> AbstractContextManager[None]:
    """`one_thread` for work on at most SMALL_WORK elements (a few ms on one thread, where two threads'
    barriers at each step cost tens of ms on a busy machine), torch's own threads above."""
    return one_thread() if elements <= SMALL_WORK else nullcontext()


def _eigh_one_thread(scatter: Tensor) -> tuple[Tensor, Tensor]:
    """torch.linalg.eigh on one thread (see `one_thread`)."""
    with one_thread():
        return torch.linalg.eigh(scatter)


def pca(x: Tensor, k: int, center: bool = True) -> tuple[Tensor, Tensor, Tensor]:
    """The first k principal components of the rows of x (M, D): components (k, D) with a fixed
    sign (largest-magnitude entry positive), projections (M, k), and explained variance ratio (k,).

    From the eigendecomposition of the (D, D) scatter matrix, which is the SVD's answer (its
    eigenvalues are the squared singular values) in ~0.3 s where torch's float64 SVD of ViT-B's
    768×768 filters takes ~10 s on this CPU.
    """
    x = x.double()
    mean = x.mean(dim=0, keepdim=True) if center else torch.zeros_like(x[:1])
    centred = x - mean  # (M, D)
    values, vectors = _eigh_one_thread(centred.T @ centred)  # ascending, (D,), (D, D)
    k = min(k, *x.shape)
    var = values.flip(0).clamp_min(0.0)  # (D,) largest first: the squared singular values
    comps = vectors.flip(1)[:, :k].T  # (k, D)
    sign = torch.sign(comps.gather(1, comps.abs().argmax(dim=1, keepdim=True)))
    comps = comps * sign
    return comps, centred @ comps.T, var[:k] / var.sum().clamp_min(torch.finfo(torch.float64).tiny)

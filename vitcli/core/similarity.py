"""How alike two representations of the same n samples are: CKA, unbiased CKA, mutual k-NN, CKNNA, SVCCA.

Pure torch in float64, no I/O. A representation is X (n, d): one row per sample (an image, or a
patch). Every function takes lists of layers (each (n, d_l)) and returns a (layers of A, layers of B)
matrix, so each layer's statistics are computed once for all its pairs.

  cka           Kornblith et al. 2019, linear kernel: ‖X̄ᵀȲ‖²_F / (‖X̄ᵀX̄‖_F ‖ȲᵀȲ‖_F), X̄ column-centred
  unbiased-cka  HSIC₁ (Song et al. 2012) of K = XXᵀ, L = YYᵀ in place of the biased HSIC:
                HSIC₁ = [tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) − 2/(n−2)·1ᵀK̃L̃1] / (n(n−3)), K̃ = K, zero diagonal
  minibatch     Nguyen et al. 2021: mean over batches of HSIC₁(K_i, L_i), then the same ratio
                (`MinibatchCKA`); memory follows the batch, not n
  mutual-knn    Huh et al. 2024: mean over samples of |kNN_A(i) ∩ kNN_B(i)| / k, neighbours by inner product
  cknna         Huh et al. 2024: HSIC₁ of K, L restricted to pairs that are neighbours in both
                (rows i, columns in kNN_A(i) ∩ kNN_B(i)), over the same for K with itself and L with itself
  svcca         Raghu et al. 2017: columns standardised, top `cca_dim` left singular vectors U (exact SVD),
                the mean of the canonical correlations of U_A and U_B (the singular values of U_Aᵀ U_B)

kNN metrics, CKNNA and SVCCA take rows L2-normalised per sample (`unit_rows`), as the
platonic-representation code does; CKA takes them as they are. Terms are computed from the features
(‖XᵀY‖²_F = tr(KL)), or from the n×n Gram matrices when n² is smaller than d_A·d_B.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

Metric = str  # one of METRICS
METRICS: tuple[str, ...] = ("cka", "unbiased-cka", "mutual-knn", "cknna", "svcca")
UNIT_ROWS: tuple[str, ...] = ("mutual-knn", "cknna", "svcca")  # metrics that take L2-normalised rows
CKA_METRICS: tuple[str, ...] = ("cka", "unbiased-cka")
ROW_BLOCK = 1024  # rows of an n×n similarity computed at once for the kNN search


def unit_rows(x: Tensor) -> Tensor:
    """Each row divided by its L2 norm (n, d) → (n, d); a zero row stays zero."""
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-300)


def cross_norms(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> Tensor:
    """‖XᵀY‖²_F = tr(XXᵀ·YYᵀ) for every pair: (len(xs), len(ys)), from Gram matrices when n² ≤ d_x·d_y."""
    n = xs[0].shape[0]
    if n * n <= xs[0].shape[1] * ys[0].shape[1]:
        kx = torch.stack([x @ x.T for x in xs])  # (La, n, n)
        ky = kx if ys is xs else torch.stack([y @ y.T for y in ys])  # (Lb, n, n)
        return torch.einsum("aij,bij->ab", kx, ky)
    out = torch.empty(len(xs), len(ys), dtype=torch.float64)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            out[i, j] = (x.T @ y).square().sum()  # (d_x, d_y) summed
    return out


def linear_cka(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> Tensor:
    """Linear CKA (Kornblith et al. 2019) of every pair of layers on all n samples: (La, Lb)."""
    xc = [x - x.mean(0) for x in xs]  # (n, d) column-centred
    yc = xc if ys is xs else [y - y.mean(0) for y in ys]
    cross = cross_norms(xc, yc)
    self_x = torch.stack([(x.T @ x).norm() for x in xc])  # (La,) ‖X̄ᵀX̄‖_F
    self_y = self_x if ys is xs else torch.stack([(y.T @ y).norm() for y in yc])
    return cross / (self_x[:, None] * self_y[None, :])


@dataclass
class HsicTerms:
    """One layer's per-sample terms of HSIC₁ with the linear kernel K = XXᵀ, K̃ = K with a zero diagonal."""

    x: Tensor  # (n, d)
    sq: Tensor  # (n,) ‖x_i‖² = K_ii
    row: Tensor  # (n,) K̃1 = X·Σx − ‖x_i‖²
    total: Tensor  # () 1ᵀK̃1

    @classmethod
    def of(cls, x: Tensor) -> "HsicTerms":
        sq = x.square().sum(1)  # (n,)
        s = x.sum(0)  # (d,)
        return cls(x, sq, x @ s - sq, s @ s - sq.sum())


def unbiased_hsic(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> Tensor:
    """HSIC₁ (Song et al. 2012) of K = XXᵀ and L = YYᵀ for every pair of layers: (La, Lb); n ≥ 4."""
    n = xs[0].shape[0]
    a = [HsicTerms.of(x) for x in xs]
    b = a if ys is xs else [HsicTerms.of(y) for y in ys]
    sq_a, sq_b = torch.stack([t.sq for t in a]), torch.stack([t.sq for t in b])  # (La, n), (Lb, n)
    trace = cross_norms(xs, ys) - sq_a @ sq_b.T  # tr(K̃L̃) = ‖XᵀY‖² − Σ K_ii L_ii
    totals = torch.stack([t.total for t in a])[:, None] * torch.stack([t.total for t in b])[None, :]
    rows = torch.stack([t.row for t in a]) @ torch.stack([t.row for t in b]).T  # 1ᵀK̃L̃1
    return (trace + totals / ((n - 1) * (n - 2)) - 2 * rows / (n - 2)) / (n * (n - 3))


def cka_ratio(cross: Tensor, self_a: Tensor, self_b: Tensor) -> Tensor:
    """HSIC(K, L) / √(HSIC(K, K)·HSIC(L, L)) for every pair: (La, Lb)."""
    return cross / (self_a[:, None] * self_b[None, :]).sqrt()


def unbiased_cka(xs: Sequence[Tensor], ys: Sequence[Tensor]) -> Tensor:
    """CKA with HSIC₁ in place of the biased HSIC, on all n samples: (La, Lb)."""
    self_a = torch.stack([unbiased_hsic([x], [x])[0, 0] for x in xs])
    self_b = self_a if ys is xs else torch.stack([unbiased_hsic([y], [y])[0, 0] for y in ys])
    return cka_ratio(unbiased_hsic(xs, ys), self_a, self_b)


class MinibatchCKA:
    """Nguyen et al. 2021's minibatch CKA: Σ_i HSIC₁(K_i, L_i) over minibatches i, in the CKA ratio.

    Rows arrive in any amounts; they are cut into minibatches of `rows` in arrival order; a remainder of
    4 rows or more is a minibatch of its own, a smaller one joins the last minibatch (HSIC₁ needs n ≥ 4).
    Memory: two minibatches.
    """

    def __init__(self, rows: int, same: bool) -> None:
        self.rows, self.same = max(4, rows), same  # same: B is A (one list of layers)
        self.cross: Tensor | None = None
        self.self_a: Tensor | None = None
        self.self_b: Tensor | None = None
        self.batches = 0
        self.pending: tuple[list[Tensor], list[Tensor]] | None = None

    def add(self, xs: Sequence[Tensor], ys: Sequence[Tensor]) -> None:
        """More rows: each layer's (b, d) for A and for B (the same rows of the same samples)."""
        if self.pending is None:
            self.pending = ([x.double() for x in xs], [y.double() for y in ys])
        else:
            self.pending = ([torch.cat([p, x.double()]) for p, x in zip(self.pending[0], xs, strict=False)],
                            [torch.cat([p, y.double()]) for p, y in zip(self.pending[1], ys, strict=False)])
        while self.pending[0][0].shape[0] >= 2 * self.rows:
            self._take(self.rows)

    def _take(self, count: int) -> None:
        """Accumulate the first `count` pending rows as one minibatch."""
        assert self.pending is not None
        xs = [x[:count] for x in self.pending[0]]
        ys = xs if self.same else [y[:count] for y in self.pending[1]]
        self.pending = ([x[count:] for x in self.pending[0]], [y[count:] for y in self.pending[1]])
        cross = unbiased_hsic(xs, ys)
        self_a = cross.diagonal() if self.same else torch.stack([unbiased_hsic([x], [x])[0, 0] for x in xs])
        self_b = self_a if self.same else torch.stack([unbiased_hsic([y], [y])[0, 0] for y in ys])
        self.cross = cross if self.cross is None else self.cross + cross
        self.self_a = self_a if self.self_a is None else self.self_a + self_a
        self.self_b = self_b if self.self_b is None else self.self_b + self_b
        self.batches += 1

    def result(self) -> Tensor:
        """The (La, Lb) minibatch CKA of every row added (the remainder joins the last minibatch)."""
        left = 0 if self.pending is None else self.pending[0][0].shape[0]
        if left >= self.rows + 4:
            self._take(self.rows)
            left -= self.rows
        if left:
            self._take(left)
        assert self.cross is not None and self.self_a is not None and self.self_b is not None
        return cka_ratio(self.cross, self.self_a, self.self_b)


def nearest(x: Tensor, k: int) -> Tensor:
    """Each row's k nearest other rows by inner product (n, k), in row blocks (the diagonal excluded)."""
    n = x.shape[0]
    out = []
    for start in range(0, n, ROW_BLOCK):
        sims = x[start:start + ROW_BLOCK] @ x.T  # (r, n)
        rows = torch.arange(sims.shape[0])
        sims[rows, rows + start] = float("-inf")
        out.append(sims.topk(k, dim=1).indices)
    return torch.cat(out)


def mutual_knn(xs: Sequence[Tensor], ys: Sequence[Tensor], k: int) -> Tensor:
    """Mean over samples of the share of k nearest neighbours A and B have in common: (La, Lb)."""
    na = [nearest(x, k) for x in xs]
    nb = na if ys is xs else [nearest(y, k) for y in ys]
    out = torch.empty(len(xs), len(ys), dtype=torch.float64)
    for i, a in enumerate(na):
        for j, b in enumerate(nb):
            common = (a[:, :, None] == b[:, None, :]).any(-1).sum(1)  # (n,)
            out[i, j] = common.double().mean() / k
    return out


def masked_hsic(rows: Tensor, cols: Tensor, u: Tensor, v: Tensor, n: int) -> Tensor:
    """HSIC₁ (platonic-representation's formula, which reads M₁ ⊙ M₂ᵀ) of two n×n matrices that are zero
    but at (rows, cols) (no diagonal), where they hold u and v: from the entries alone, O(entries)."""
    key = rows * n + cols
    order = key.argsort()
    key, u_s, v_s = key[order], u[order], v[order]
    flipped = cols[order] * n + rows[order]  # entry (j, i) of each (i, j)
    at = torch.searchsorted(key, flipped).clamp_max(key.numel() - 1)
    hit = key[at] == flipped
    trace = (u_s[hit] * v_s[at[hit]]).sum()  # Σ_ij M₁_ij M₂_ji
    col_u = torch.zeros(n, dtype=u.dtype).index_add_(0, cols, u)  # 1ᵀM₁
    row_v = torch.zeros(n, dtype=v.dtype).index_add_(0, rows, v)  # M₂1
    return (trace + u.sum() * v.sum() / ((n - 1) * (n - 2)) - 2 * (col_u @ row_v) / (n - 2)) / (n * (n - 3))


def _shared_hsic(x: Tensor, y: Tensor, nx: Tensor, ny: Tensor) -> Tensor:
    """HSIC₁ of K ⊙ M and L ⊙ M, M the pairs (i, j) with j among both kNN_x(i) and kNN_y(i)."""
    n, k = nx.shape
    both = (nx[:, :, None] == ny[:, None, :]).any(-1)  # (n, k): which of x's neighbours y shares
    rows = torch.arange(n)[:, None].expand(n, k)[both]
    cols = nx[both]
    u = (x[rows] * x[cols]).sum(1)  # K_ij on the mask
    v = (y[rows] * y[cols]).sum(1)  # L_ij on the mask
    return masked_hsic(rows, cols, u, v, n)


def cknna(xs: Sequence[Tensor], ys: Sequence[Tensor], k: int) -> Tensor:
    """CKNNA (Huh et al. 2024, unbiased, distance-aware) of every pair of layers: (La, Lb)."""
    na = [nearest(x, k) for x in xs]
    nb = na if ys is xs else [nearest(y, k) for y in ys]
    self_a = torch.stack([_shared_hsic(x, x, a, a) for x, a in zip(xs, na, strict=False)])
    self_b = self_a if ys is xs else torch.stack([_shared_hsic(y, y, b, b) for y, b in zip(ys, nb, strict=False)])
    out = torch.empty(len(xs), len(ys), dtype=torch.float64)
    for i, (x, a) in enumerate(zip(xs, na, strict=False)):
        for j, (y, b) in enumerate(zip(ys, nb, strict=False)):
            out[i, j] = _shared_hsic(x, y, a, b)
    return cka_ratio(out, self_a, self_b)


def top_directions(x: Tensor, dim: int) -> Tensor:
    """SVCCA's first step: columns centred and divided by their std (+1e-8, ddof 1), the `dim` left
    singular vectors of the largest singular values (exact SVD): (n, dim), orthonormal and centred."""
    x = x - x.mean(0)
    x = x / (x.std(0) + 1e-8)
    u, _, _ = torch.linalg.svd(x, full_matrices=False)
    return u[:, :dim]


def svcca(xs: Sequence[Tensor], ys: Sequence[Tensor], dim: int) -> Tensor:
    """The mean of the `dim` canonical correlations of the layers' top singular directions: (La, Lb)."""
    ua = [top_directions(x, dim) for x in xs]
    ub = ua if ys is xs else [top_directions(y, dim) for y in ys]
    out = torch.empty(len(xs), len(ys), dtype=torch.float64)
    for i, a in enumerate(ua):
        for j, b in enumerate(ub):
            out[i, j] = torch.linalg.svdvals(a.T @ b).mean()  # canonical correlations of orthonormal bases
    return out


def similarity(metric: Metric, xs: Sequence[Tensor], ys: Sequence[Tensor], *, topk: int = 10,
               cca_dim: int = 10) -> Tensor:
    """One metric on all n samples of every pair of layers: (La, Lb). `ys is xs` compares A with itself."""
    same = ys is xs
    if metric in UNIT_ROWS:
        xs = [unit_rows(x.double()) for x in xs]
        ys = xs if same else [unit_rows(y.double()) for y in ys]
    else:
        xs = [x.double() for x in xs]
        ys = xs if same else [y.double() for y in ys]
    if metric == "cka":
        return linear_cka(xs, ys)
    if metric == "unbiased-cka":
        return unbiased_cka(xs, ys)
    if metric == "mutual-knn":
        return mutual_knn(xs, ys, topk)
    if metric == "cknna":
        return cknna(xs, ys, topk)
    if metric == "svcca":
        return svcca(xs, ys, cca_dim)
    raise ValueError(f"unknown metric '{metric}': use one of {', '.join(METRICS)}")


__all__ = [
    "CKA_METRICS",
    "METRICS",
    "UNIT_ROWS",
    "MinibatchCKA",
    "cknna",
    "cross_norms",
    "linear_cka",
    "masked_hsic",
    "mutual_knn",
    "nearest",
    "similarity",
    "svcca",
    "unbiased_cka",
    "unbiased_hsic",
    "unit_rows",
]

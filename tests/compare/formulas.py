"""The metrics written from their papers with full n × n Gram matrices in float64 (the tests' reference)."""

import numpy as np
import torch


def hsic_biased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Gretton et al. 2005: tr(KHLH) / (n−1)², H = I − 11ᵀ/n."""
    n = k.shape[0]
    h = torch.eye(n, dtype=k.dtype) - 1.0 / n
    return torch.trace(k @ h @ l @ h) / (n - 1) ** 2


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
    """Song et al. 2012, eq. 5, with platonic-representation's reading tr(K̃L̃) = Σ K̃ ⊙ L̃ᵀ."""
    n = k.shape[0]
    kt, lt = k.clone().fill_diagonal_(0), l.clone().fill_diagonal_(0)
    ones = torch.ones(n, dtype=k.dtype)
    value = (kt * lt.T).sum() + (ones @ kt @ ones) * (ones @ lt @ ones) / ((n - 1) * (n - 2)) \
        - 2 * (ones @ kt @ lt @ ones) / (n - 2)
    return value / (n * (n - 3))


def cka(x: torch.Tensor, y: torch.Tensor, hsic=hsic_biased) -> float:
    k, l = x @ x.T, y @ y.T
    return float(hsic(k, l) / torch.sqrt(hsic(k, k) * hsic(l, l)))


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True)


def knn_mask(k: torch.Tensor, topk: int) -> torch.Tensor:
    """Row i: 1 at the topk largest K_ij, j ≠ i (argsort, as platonic-representation's mutual_knn)."""
    n = k.shape[0]
    order = k.clone().fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :topk]
    mask = torch.zeros(n, n, dtype=k.dtype)
    mask[torch.arange(n)[:, None], order] = 1
    return mask


def mutual_knn(x: torch.Tensor, y: torch.Tensor, topk: int) -> float:
    x, y = unit(x), unit(y)
    return float(((knn_mask(x @ x.T, topk) * knn_mask(y @ y.T, topk)).sum(1) / topk).mean())


def cknna(x: torch.Tensor, y: torch.Tensor, topk: int) -> float:
    x, y = unit(x), unit(y)
    k, l = x @ x.T, y @ y.T

    def sim(a, b):
        mask = knn_mask(a, topk) * knn_mask(b, topk)
        return hsic_unbiased(mask * a, mask * b)

    return float(sim(k, l) / torch.sqrt(sim(k, k) * sim(l, l)))


def svcca(x: torch.Tensor, y: torch.Tensor, dim: int) -> float:
    """Raghu et al. 2017 with numpy: SVD of the standardised features, then CCA by whitening the covariances."""

    def directions(a: np.ndarray) -> np.ndarray:
        a = a - a.mean(0)
        a = a / (a.std(0, ddof=1) + 1e-8)
        u, s, _ = np.linalg.svd(a, full_matrices=False)
        return u[:, :dim] * s[:dim]  # the data in its top directions (scale does not change CCA)

    a, b = directions(unit(x).numpy()), directions(unit(y).numpy())

    def inv_sqrt(c: np.ndarray) -> np.ndarray:
        w, v = np.linalg.eigh(c)
        return v @ np.diag(w ** -0.5) @ v.T

    caa, cbb, cab = a.T @ a, b.T @ b, a.T @ b
    rho = np.linalg.svd(inv_sqrt(caa) @ cab @ inv_sqrt(cbb), compute_uv=False)
    return float(rho[:dim].mean())

"""How well a layer's features classify images: a weighted k-NN (DINO) and a linear probe, on fixed splits.

Pure torch in float64, no I/O.

  k-NN     cosine similarity to every training image, the k most similar vote with weight
           exp(s / T), T = 0.07 (Wu et al. 2018, as DINO's eval_knn); the class with the largest sum wins
  linear   multinomial logistic regression on features standardised with the training mean and std:
           minimise mean cross-entropy + (l2 / 2)·‖W‖²_F (bias unpenalised) with L-BFGS
           (scikit-learn's LogisticRegression with C = 1 / (l2 · n_train))

Splits are stratified and fixed by a seed: a test share of each class, or K folds dealt class by class.
"""

import torch
from torch import Tensor

TEMPERATURE = 0.07  # DINO's k-NN temperature
Split = tuple[Tensor, Tensor]  # (train indices, test indices)


def _shuffled_classes(labels: Tensor, seed: int) -> list[Tensor]:
    """Each class's row indices in an order fixed by `seed`."""
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(labels.numel(), generator=g)
    return [order[labels[order] == c] for c in labels.unique()]


def holdout_split(labels: Tensor, test_fraction: float, seed: int) -> Split:
    """A stratified split: round(n_c · test_fraction) of each class to test (at least 1, at most n_c − 1)."""
    train, test = [], []
    for rows in _shuffled_classes(labels, seed):
        n_test = min(max(1, round(rows.numel() * test_fraction)), rows.numel() - 1)
        test.append(rows[:n_test])
        train.append(rows[n_test:])
    return torch.cat(train).sort().values, torch.cat(test).sort().values


def fold_splits(labels: Tensor, folds: int, seed: int) -> list[Split]:
    """K stratified folds: each class's shuffled rows dealt in turn to folds 0..K−1; fold i tests, the rest train."""
    fold = torch.empty(labels.numel(), dtype=torch.long)
    start = 0
    for rows in _shuffled_classes(labels, seed):
        fold[rows] = (torch.arange(rows.numel()) + start) % folds
        start += rows.numel()
    every = torch.arange(labels.numel())
    return [(every[fold != i], every[fold == i]) for i in range(folds)]


def knn_predict(train: Tensor, train_labels: Tensor, test: Tensor, k: int, classes: int,
                temperature: float = TEMPERATURE) -> Tensor:
    """DINO's weighted k-NN: (n_test,) predicted classes from cosine similarity to the training rows."""
    a = train / train.norm(dim=1, keepdim=True).clamp_min(1e-300)  # (n_train, D)
    b = test / test.norm(dim=1, keepdim=True).clamp_min(1e-300)  # (n_test, D)
    sims, idx = (b @ a.T).topk(k, dim=1)  # (n_test, k)
    votes = torch.zeros(test.shape[0], classes, dtype=sims.dtype)
    votes.scatter_add_(1, train_labels[idx], (sims / temperature).exp())  # (n_test, C)
    return votes.argmax(1)


def standardise(train: Tensor, test: Tensor) -> tuple[Tensor, Tensor]:
    """Both with the training rows' mean and std (ddof 0; a constant column is only centred)."""
    mean, std = train.mean(0), train.std(0, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (train - mean) / std, (test - mean) / std


def linear_predict(train: Tensor, train_labels: Tensor, test: Tensor, classes: int, l2: float,
                   max_iter: int = 1000) -> Tensor:
    """Multinomial logistic regression (L-BFGS, float64) on standardised features: (n_test,) predictions."""
    x, t = standardise(train.double(), test.double())
    w = torch.zeros(x.shape[1], classes, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=max_iter, history_size=20, tolerance_grad=1e-10,
                            tolerance_change=1e-14, line_search_fn="strong_wolfe")

    def loss() -> Tensor:
        opt.zero_grad()
        value = torch.nn.functional.cross_entropy(x @ w + b, train_labels) + 0.5 * l2 * w.square().sum()
        value.backward()
        return value

    with torch.enable_grad():
        opt.step(loss)
    with torch.no_grad():
        return (t @ w + b).argmax(1)


def probe_accuracy(features: Tensor, labels: Tensor, splits: list[Split], k: int, l2: float) -> tuple[float, float]:
    """k-NN and linear-probe accuracy of one layer's (n, D) features: test images right / test images, over the
    splits."""
    classes = int(labels.max()) + 1
    right_knn = right_linear = tested = 0
    x = features.double()
    for train, test in splits:
        truth = labels[test]
        right_knn += int((knn_predict(x[train], labels[train], x[test], k, classes) == truth).sum())
        right_linear += int((linear_predict(x[train], labels[train], x[test], classes, l2) == truth).sum())
        tested += test.numel()
    return right_knn / tested, right_linear / tested


__all__ = [
    "TEMPERATURE",
    "Split",
    "fold_splits",
    "holdout_split",
    "knn_predict",
    "linear_predict",
    "probe_accuracy",
    "standardise",
]

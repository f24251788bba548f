"""core.similarity on random matrices: the sparse HSIC against the dense formula, the minibatch remainder."""

import pytest
import torch

from tests.compare import formulas
from vitcli.core.similarity import MinibatchCKA, masked_hsic, unbiased_hsic


def test_masked_hsic_equals_the_dense_formula_on_a_non_symmetric_pattern() -> None:
    g = torch.Generator().manual_seed(0)
    n = 30
    mask = (torch.rand(n, n, generator=g) < 0.2).double().fill_diagonal_(0)  # (n, n), not symmetric
    k, l = torch.randn(n, n, generator=g, dtype=torch.float64), torch.randn(n, n, generator=g, dtype=torch.float64)
    rows, cols = mask.nonzero(as_tuple=True)
    got = masked_hsic(rows, cols, k[rows, cols], l[rows, cols], n)
    assert abs(float(got - formulas.hsic_unbiased(mask * k, mask * l))) < 1e-12


@pytest.mark.parametrize("count, sizes", [(22, [8, 8, 6]), (19, [8, 11])])
def test_minibatches_of_rows_the_remainder_alone_or_joined(count, sizes) -> None:
    """Rows in chunks of 8 arriving 5 at a time: a remainder of 4 or more stands alone, a smaller one
    joins the last minibatch (HSIC₁ needs n ≥ 4)."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(count, 6, generator=g, dtype=torch.float64)
    y = torch.randn(count, 5, generator=g, dtype=torch.float64)
    acc = MinibatchCKA(8, same=False)
    for s in range(0, count, 5):
        acc.add([x[s:s + 5]], [y[s:s + 5]])
    got = acc.result()
    ends = torch.tensor(sizes).cumsum(0).tolist()
    parts = [(x[e - n:e], y[e - n:e]) for n, e in zip(sizes, ends)]
    h = [(unbiased_hsic([a], [b])[0, 0], unbiased_hsic([a], [a])[0, 0], unbiased_hsic([b], [b])[0, 0]) for a, b in parts]
    want = sum(t[0] for t in h) / (sum(t[1] for t in h) * sum(t[2] for t in h)).sqrt()
    assert acc.batches == len(sizes) and abs(float(got[0, 0] - want)) < 1e-12

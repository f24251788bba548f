"""report.tensor_stats: block-wise statistics equal numpy's whole-array ones."""

import numpy as np
import pytest
import torch

from vitcli import stats as report


@pytest.mark.parametrize("block", [7, 1000, 1 << 22])
def test_block_statistics_equal_numpy(monkeypatch, block: int) -> None:
    monkeypatch.setattr(report, "STATS_BLOCK", block)
    a = np.random.default_rng(0).normal(3.0, 2.0, size=(13, 17, 5)).astype(np.float32)
    a[0, 0, :2] = [np.nan, np.inf]
    a[5, 3, 1] = -np.inf
    s = report.tensor_stats(a)
    finite = a[np.isfinite(a)].astype(np.float64)
    assert s["shape"] == [13, 17, 5] and s["dtype"] == "float32" and (s["nan"], s["inf"]) == (1, 2)
    assert s["min"] == finite.min() and s["max"] == finite.max()
    assert s["mean"] == pytest.approx(finite.mean(), rel=1e-12) and s["std"] == pytest.approx(finite.std(), rel=1e-12)
    t = report.tensor_stats(torch.from_numpy(a[1:5]).to(torch.bfloat16))
    assert t["dtype"] == "bfloat16" and "nan" not in t


def test_integers_empty_and_all_nan() -> None:
    s = report.tensor_stats(np.arange(10, dtype=np.uint8).reshape(2, 5))
    assert (s["min"], s["max"], s["mean"]) == (0.0, 9.0, 4.5) and s["std"] == pytest.approx(np.arange(10).std())
    assert report.tensor_stats(np.zeros((0, 3)))["mean"] is None
    nan = report.tensor_stats(np.full(4, np.nan))
    assert nan["mean"] is None and nan["nan"] == 4

"""Statistics of arrays, computed with the results (min, max, mean, std, NaN/Inf counts) in blocks."""

from typing import Any

import numpy as np
from typing_extensions import NotRequired, TypedDict

STATS_BLOCK = 1 << 22  # values per float64 block (32 MiB)


class TensorStats(TypedDict):
    """An array's statistics in a JSON document: None when no value is finite; nan / inf only when any."""

    shape: list[int]
    dtype: str
    min: float | None
    max: float | None
    mean: float | None
    std: float | None
    nan: NotRequired[int]
    inf: NotRequired[int]


class ChannelStats(TensorStats):
    """One channel's statistics (patchify's `channels`): its name first."""

    channel: str


class RunningStats:
    """min, max, mean and std (population, float64) of values given block by block: the whole array
    is never copied to float64 (a multi-GB attention map) nor kept (rows streamed by a batch run).

    Each block's mean and squared deviations are merged with Chan et al.'s pairwise update, as
    exact as numpy's two-pass std; NaN and ±Inf are counted apart and left out of the statistics.
    """

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0
        self.low, self.high = np.inf, -np.inf
        self.nan = self.inf = 0
        self.shape: list[int] = []
        self.dtype = ""

    def add_values(self, values: np.ndarray) -> None:
        """Take every value of `values` (any shape and dtype) into the statistics."""
        flat = np.asarray(values).reshape(-1)
        for i in range(0, flat.size, STATS_BLOCK):
            b = flat[i:i + STATS_BLOCK].astype(np.float64)
            ok = np.isfinite(b)
            finite = b
            if not ok.all():  # the usual all-finite block is neither copied nor scanned twice more
                finite = b[ok]
                self.nan, self.inf = self.nan + int(np.isnan(b).sum()), self.inf + int(np.isinf(b).sum())
            if finite.size:
                self._merge(finite)

    def _merge(self, finite: np.ndarray) -> None:
        n, mean = finite.size, float(finite.mean())
        m2 = float(np.square(finite - mean).sum())
        total = self.count + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total
        self.low, self.high = min(self.low, float(finite.min())), max(self.high, float(finite.max()))

    def update(self, rows: np.ndarray) -> None:
        """A batch of rows (b, ...): its values, and b more rows in the shape."""
        self.add_values(rows)
        self.shape = [(self.shape[0] if self.shape else 0) + rows.shape[0], *rows.shape[1:]]
        self.dtype = str(rows.dtype)

    STATE = ("count", "mean", "m2", "low", "high", "nan", "inf", "shape", "dtype")

    def state(self) -> dict[str, Any]:
        """Everything the statistics hold, as JSON values (floats round-trip exactly): shipped by a Ray actor."""
        return {k: getattr(self, k) for k in self.STATE}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "RunningStats":
        stats = cls()
        for k in cls.STATE:
            setattr(stats, k, state[k])
        return stats

    def document(self) -> TensorStats:
        """shape, dtype, min, max, mean, std (None when no finite value), and nan / inf when any."""
        doc: TensorStats = {"shape": self.shape, "dtype": self.dtype, "min": None, "max": None, "mean": None,
                            "std": None}
        if self.count:
            doc.update({"min": self.low, "max": self.high, "mean": self.mean, "std": (self.m2 / self.count) ** 0.5})
        if self.nan or self.inf:
            doc.update({"nan": self.nan, "inf": self.inf})
        return doc


def rows_stats(rows: np.ndarray) -> RunningStats:
    """The statistics of one batch of rows (b, ...)."""
    stats = RunningStats()
    stats.update(rows)
    return stats


def merged(a: RunningStats | None, b: RunningStats) -> RunningStats:
    """a and b as one (Chan et al.'s pairwise update, the formula of `_merge`); a is updated in place.

    A run's statistics are its batches' merged in order, whichever backend ran them, so the same
    batches give the same bits (the local backend and the Ray actors)."""
    if a is None or a.count == 0 and not a.shape:
        return b
    n = a.count + b.count
    if b.count:
        delta = b.mean - a.mean
        a.mean += delta * b.count / n
        a.m2 += b.m2 + delta * delta * a.count * b.count / n
        a.count = n
        a.low, a.high = min(a.low, b.low), max(a.high, b.high)
    a.nan, a.inf = a.nan + b.nan, a.inf + b.inf
    a.shape = [a.shape[0] + b.shape[0], *a.shape[1:]] if a.shape and b.shape else (a.shape or b.shape)
    a.dtype = a.dtype or b.dtype
    return a


def tensor_stats(array: Any) -> TensorStats:
    """Shape, dtype, min, max, mean and std (population, float64) of a numpy array or torch tensor."""
    stats = RunningStats()
    if hasattr(array, "detach"):  # torch tensor
        stats.dtype = str(array.dtype).removeprefix("torch.")
        array = array.detach().float().cpu().numpy() if array.dtype.is_floating_point else array.cpu().numpy()
    else:
        stats.dtype = str(array.dtype)
    stats.add_values(array)
    stats.shape = list(array.shape)
    return stats.document()


def channel_stats(chw: np.ndarray) -> list[ChannelStats]:
    """Per-channel stats of a (C, H, W) image."""
    return [{"channel": "RGB"[i] if chw.shape[0] == 3 else str(i), **tensor_stats(c)} for i, c in enumerate(chw)]

"""Tensor statistics, rich tables and the JSON document that every command shares.

One schema for all commands: `command`, `input`, `patch_size`, `grid`, `num_patches`, `tensors`
(name → shape, dtype, min, max, mean, std), plus what each command adds.
"""

import json
import math
import sys
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table
from rich.text import Text


STATS_BLOCK = 1 << 22  # values per float64 block (32 MiB)


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
            finite = b[np.isfinite(b)]
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

    def document(self) -> dict[str, Any]:
        """shape, dtype, min, max, mean, std (None when no finite value), and nan / inf when any."""
        doc: dict[str, Any] = {"shape": self.shape, "dtype": self.dtype, "min": None, "max": None, "mean": None, "std": None}
        if self.count:
            doc.update(min=self.low, max=self.high, mean=self.mean, std=(self.m2 / self.count) ** 0.5)
        if self.nan or self.inf:
            doc.update(nan=self.nan, inf=self.inf)
        return doc


def tensor_stats(array: Any) -> dict[str, Any]:
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


def channel_stats(chw: np.ndarray) -> list[dict[str, Any]]:
    """Per-channel stats of a (C, H, W) image."""
    return [{"channel": "RGB"[i] if chw.shape[0] == 3 else str(i), **tensor_stats(c)} for i, c in enumerate(chw)]


def make_console(to_stderr: bool) -> Console:
    """A console that respects NO_COLOR and plain (non-terminal) output; when not a terminal
    it is at least 120 columns wide, so tables written to files and pipes are not squeezed."""
    console = Console(stderr=to_stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal and console.width < 120:
        console.width = 120
    return console


def fmt(value: Any) -> str:
    """Short human form of a number (4 significant digits, at most 9 characters), shape or size."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}" if 1e-4 <= abs(value) < 1e5 or value == 0 else f"{value:.3e}".replace("e-0", "e-").replace("e+0", "e+")
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10_000 else str(value)
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(str(v) for v in value) + ("," if len(value) == 1 else "") + ")"
    return str(value)


def info_table(title: str, rows: list[tuple[str, Any]]) -> Table:
    """A two-column key/value table."""
    table = Table(title=title, show_header=False, title_justify="left", title_style="bold")
    table.add_column(style="cyan", no_wrap=True)
    table.add_column(overflow="fold")  # a long path folds onto the next line instead of being cut
    for key, value in rows:
        table.add_row(Text(key), Text(value if isinstance(value, str) else fmt(value)))
    return table


class StatsTable:
    """One row per tensor: shape, dtype, min, max, mean, std — wide when it fits the console, else
    stacked (name, shape and dtype in one cell on three lines), so no number or shape is ever cut."""

    def __init__(self, title: str, tensors: dict[str, dict[str, Any]], label: str = "tensor") -> None:
        self.title, self.tensors, self.label = title, tensors, label

    def _numbers(self, s: dict[str, Any]) -> list[str]:
        return [fmt(s[k]) for k in ("min", "max", "mean", "std")]

    def wide(self) -> Table:
        table = Table(title=self.title, title_justify="left", title_style="bold")
        table.add_column(self.label, style="cyan", no_wrap=True)
        for col in ("shape", "dtype", "min", "max", "mean", "std"):
            table.add_column(col, justify="right" if col not in ("shape", "dtype") else "left", no_wrap=True)
        for name, s in self.tensors.items():
            table.add_row(Text(name), fmt(s["shape"]), s["dtype"], *self._numbers(s))
            if s.get("nan") or s.get("inf"):
                table.add_row("", Text(f"({s.get('nan', 0)} NaN, {s.get('inf', 0)} Inf)", style="red"), "", "", "", "", "")
        return table

    def stacked(self) -> Table:
        table = Table(title=self.title, title_justify="left", title_style="bold")
        table.add_column(f"{self.label} / shape / dtype", style="cyan", overflow="fold")
        for col in ("min", "max", "mean", "std"):
            table.add_column(col, justify="right", no_wrap=True)
        for name, s in self.tensors.items():
            bad = f"\n{s.get('nan', 0)} NaN, {s.get('inf', 0)} Inf" if s.get("nan") or s.get("inf") else ""
            table.add_row(Text(f"{name}\n{fmt(s['shape'])}\n{s['dtype']}{bad}"), *self._numbers(s))
        return table

    def width(self) -> int:
        """Columns the wide table needs: every cell whole, plus borders and padding."""
        cells = [[self.label, "shape", "dtype", "min", "max", "mean", "std"]]
        cells += [[name, fmt(s["shape"]), s["dtype"], *self._numbers(s)] for name, s in self.tensors.items()]
        columns = list(zip(*cells))
        return sum(max(len(c) for c in col) for col in columns) + 3 * len(columns) + 1

    def __rich_console__(self, console: Console, options: Any) -> Any:
        yield self.wide() if self.width() <= options.max_width else self.stacked()


def stats_table(title: str, tensors: dict[str, dict[str, Any]], label: str = "tensor") -> StatsTable:
    """One row per tensor: shape, dtype, min, max, mean, std (stacked below the width it needs)."""
    return StatsTable(title, tensors, label)


def emit_json(document: dict[str, Any]) -> None:
    """Exactly one JSON object on standard output, with vitcli's version."""
    from vitcli import __version__

    sys.stdout.write(json.dumps({**document, "version": __version__}, default=_jsonable) + "\n")
    sys.stdout.flush()


def _jsonable(value: Any) -> Any:
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray,)):
        return value.tolist()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


# Eight stops of matplotlib's viridis, so the terminal heatmap needs no matplotlib import.
_VIRIDIS = [(68, 1, 84), (70, 50, 127), (54, 92, 141), (39, 127, 142), (31, 161, 135), (74, 194, 109), (159, 218, 58), (253, 231, 37)]


def _viridis(t: float) -> tuple[int, int, int]:
    """Colour of t in [0, 1], linearly between viridis stops."""
    t = min(max(t, 0.0), 1.0) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    f = t - i
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    return tuple(round(x + (y - x) * f) for x, y in zip(a, b))  # type: ignore[return-value]


_RAMP = " .:-=+*#%@"


def heatmap_text(values: np.ndarray, max_cols: int = 40, colour: bool = True) -> Text:
    """A (rows, cols) map scaled to min..max, for the terminal: coloured half-blocks (two grid rows
    per line), or without colour (NO_COLOR, plain output) a character ramp; wide grids are
    averaged down to `max_cols` columns."""
    v = np.asarray(values, dtype=np.float64)
    step = max(1, -(-v.shape[1] // max_cols))
    if step > 1:
        rows, cols = v.shape[0] // step * step, v.shape[1] // step * step
        v = v[:rows, :cols].reshape(rows // step, step, cols // step, step).mean(axis=(1, 3))
    lo, hi = float(v.min()), float(v.max())
    t = (v - lo) / (hi - lo) if hi > lo else np.zeros_like(v)
    text = Text()
    if not colour:
        for row in t:
            text.append("".join(_RAMP[min(int(x * len(_RAMP)), len(_RAMP) - 1)] * 2 for x in row) + "\n")
        text.append(f"min {fmt(lo)}  max {fmt(hi)}  (' ' low to '@' high)", style="dim")
        return text
    for r in range(0, t.shape[0], 2):
        for c in range(t.shape[1]):
            top = "rgb({},{},{})".format(*_viridis(t[r, c]))
            bottom = "rgb({},{},{})".format(*_viridis(t[r + 1, c])) if r + 1 < t.shape[0] else "default"
            text.append("▀", style=f"{top} on {bottom}")
        text.append("\n")
    text.append("low ", style="dim")
    for i in range(8):
        text.append("█", style="rgb({},{},{})".format(*_viridis(i / 7)))
    text.append(f" high   min {fmt(lo)}  max {fmt(hi)}", style="dim")
    return text

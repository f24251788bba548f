"""Rich tables and the JSON document that every command shares.

One schema for all commands: `command`, `input`, `patch_size`, `grid`, `num_patches`, `tensors`
(name → shape, dtype, min, max, mean, std), plus what each command adds.
"""

import json
import math
import sys
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from vitcli.stats import TensorStats


def make_console(to_stderr: bool) -> Console:
    """A console that respects NO_COLOR and plain (non-terminal) output. Piped or redirected, it is
    80 columns wide (or $COLUMNS), like the terminal most people open: every table fits there."""
    return Console(stderr=to_stderr, highlight=False, soft_wrap=False)


def fmt(value: Any) -> str:
    """Short human form of a number (4 significant digits, at most 9 characters), shape or size."""
    if value is None:
        return "–"
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.4g}" if 1e-4 <= abs(value) < 1e5 or value == 0 else f"{value:.3e}".replace("e-0",
                                                                                                    "e-").replace("e+0",
                                                                                                                  "e+")
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

    def __init__(self, title: str, tensors: "Mapping[str, TensorStats]", label: str = "tensor") -> None:
        self.title, self.tensors, self.label = title, tensors, label

    def _numbers(self, s: "TensorStats") -> list[str]:
        return [fmt(s[k]) for k in ("min", "max", "mean", "std")]

    def wide(self) -> Table:
        table = Table(title=self.title, title_justify="left", title_style="bold")
        table.add_column(self.label, style="cyan", no_wrap=True)
        for col in ("shape", "dtype", "min", "max", "mean", "std"):
            table.add_column(col, justify="right" if col not in ("shape", "dtype") else "left", no_wrap=True)
        for name, s in self.tensors.items():
            table.add_row(Text(name), fmt(s["shape"]), s["dtype"], *self._numbers(s))
            if s.get("nan") or s.get("inf"):
                table.add_row("", Text(f"({s.get('nan', 0)} NaN, {s.get('inf', 0)} Inf)", style="red"), "", "", "", "",
                              "")
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
        columns = list(zip(*cells, strict=False))
        return sum(max(len(c) for c in col) for col in columns) + 3 * len(columns) + 1

    def __rich_console__(self, console: Console, options: Any) -> Any:
        yield self.wide() if self.width() <= options.max_width else self.stacked()


def stats_table(title: str, tensors: "Mapping[str, TensorStats]", label: str = "tensor") -> StatsTable:
    """One row per tensor: shape, dtype, min, max, mean, std (stacked below the width it needs)."""
    return StatsTable(title, tensors, label)


def emit_json(document: Mapping[str, object]) -> None:
    """Exactly one JSON object on standard output, with vitcli's version."""
    from vitcli import __version__

    text = json.dumps(finite({**document, "version": __version__}), allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def finite(value: Any) -> Any:
    """A document as strict JSON values: NaN and ±Infinity as null (bare NaN is not JSON), numpy values as
    Python ones, tuples as lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if type(value).__module__ == "numpy" and hasattr(value, "tolist"):  # numpy scalars and arrays
        return finite(value.tolist())
    if value is None or isinstance(value, (str, int)):
        return value
    raise TypeError(f"not JSON: {type(value).__name__}")


# Eight stops of matplotlib's viridis, so the terminal heatmap needs no matplotlib import.
_VIRIDIS = [(68, 1, 84), (70, 50, 127), (54, 92, 141), (39, 127, 142), (31, 161, 135), (74, 194, 109), (159, 218, 58),
            (253, 231, 37)]


def _viridis(t: float) -> tuple[int, int, int]:
    """Colour of t in [0, 1], linearly between viridis stops."""
    t = min(max(t, 0.0), 1.0) * (len(_VIRIDIS) - 1)
    i = min(int(t), len(_VIRIDIS) - 2)
    f = t - i
    a, b = _VIRIDIS[i], _VIRIDIS[i + 1]
    return tuple(round(x + (y - x) * f) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


_RAMP = " .:-=+*#%@"


def heatmap_text(values: Any, max_cols: int = 40, colour: bool = True) -> Text:
    """A (rows, cols) map scaled to min..max, for the terminal: coloured half-blocks (two grid rows
    per line), or without colour (NO_COLOR, plain output) a character ramp; wide grids are
    averaged down to `max_cols` columns."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64)  # (rows, cols)
    step = max(1, -(-v.shape[1] // max_cols))
    if step > 1:  # step × step blocks, the last ones partial (a grid of one row keeps its row)
        rows, cols = -(-v.shape[0] // step) * step, -(-v.shape[1] // step) * step
        padded = np.full((rows, cols), np.nan)
        padded[:v.shape[0], :v.shape[1]] = v
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN block stays NaN
            v = np.nanmean(padded.reshape(rows // step, step, cols // step, step), axis=(1, 3))
    seen = v[np.isfinite(v)]
    lo, hi = (float(seen.min()), float(seen.max())) if seen.size else (math.nan, math.nan)
    t = np.nan_to_num((v - lo) / (hi - lo)) if hi > lo else np.zeros_like(v)
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

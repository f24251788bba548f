"""Results that show themselves in Jupyter: the document as a table, and the map as a picture.

Each result class mixes in `ShowsItself` and names the field holding its (rows, cols) map in `MAP`
(a `(title, map)` pair is read too); `_repr_html_` is what a notebook cell shows for it.
"""

import base64
import html
import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar

from vitcli.api.documents import ShownTable

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

MAX_ROWS = 60  # document rows shown; the rest is in to_json()
MAP_PIXELS = 224  # the map's longer side on the page


def flat_rows(doc: object, prefix: str = "") -> list[tuple[str, str]]:
    """A JSON document as (dotted key, short value) rows; long lists summarised by their length."""
    if isinstance(doc, Mapping):
        return [row for k, v in doc.items() for row in flat_rows(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(doc, list) and (len(doc) > 8 or any(isinstance(v, (dict, list)) for v in doc)):
        return [(prefix, f"[{len(doc)} values]")]
    return [(prefix, str(doc))]


def html_table(rows: Sequence[Sequence[object]], columns: list[str] | None = None,
               title: str | None = None) -> str:
    """Rows as an HTML table (escaped), at most MAX_ROWS of them."""
    head = f"<caption>{html.escape(title)}</caption>" if title else ""
    if columns:
        head += "<tr>" + "".join(f"<th>{html.escape(str(c))}</th>" for c in columns) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td style='text-align:left'>{html.escape(str(v))}</td>" for v in row) + "</tr>"
                   for row in rows[:MAX_ROWS])
    more = f"<tr><td colspan=9>… {len(rows) - MAX_ROWS} more (to_json())</td></tr>" if len(rows) > MAX_ROWS else ""
    return f"<table>{head}{body}{more}</table>"


def map_png(values: "ArrayLike") -> bytes:
    """A (rows, cols) map min-max scaled to grey levels and enlarged (nearest) as PNG bytes."""
    import numpy as np
    from PIL import Image

    m = np.asarray(values, dtype=np.float64)  # (rows, cols)
    span = np.nanmax(m) - np.nanmin(m)
    grey = np.zeros(m.shape) if not np.isfinite(span) or span == 0 else (m - np.nanmin(m)) / span
    image = Image.fromarray((np.nan_to_num(grey) * 255).astype(np.uint8))  # (rows, cols) uint8
    scale = max(1, MAP_PIXELS // max(m.shape))
    out = io.BytesIO()
    image.resize((m.shape[1] * scale, m.shape[0] * scale), Image.Resampling.NEAREST).save(out, format="PNG")
    return out.getvalue()


class ShowsItself:
    """`_repr_html_` (the document's table and the map) and `_repr_png_` (the map) for a result."""

    MAP: ClassVar[str | None] = None  # the field holding the (rows, cols) map, or a (title, map) pair

    def to_json(self) -> Mapping[str, object]:
        raise NotImplementedError

    def shown_map(self) -> "tuple[str, np.ndarray] | None":
        """(title, (rows, cols) map) when this result has one map to show."""
        value = getattr(self, self.MAP) if self.MAP else None
        title, values = value if isinstance(value, tuple) else (self.MAP or "", value)
        if values is None or getattr(values, "ndim", 0) != 2:
            return None
        return str(title), values

    def shown_tables(self) -> Sequence[ShownTable]:
        """Further tables ({"title", "columns", "rows"}) the terminal shows for this result."""
        return []

    def _repr_png_(self) -> bytes | None:
        shown = self.shown_map()
        return map_png(shown[1]) if shown else None

    def _repr_html_(self) -> str:
        doc = self.to_json()
        parts = [html_table(flat_rows(doc), ["", ""], f"vitcli {doc.get('command', '')}".strip())]
        parts += [html_table(t["rows"], t["columns"], t["title"]) for t in self.shown_tables()]
        shown = self.shown_map()
        if shown:
            data = base64.b64encode(map_png(shown[1])).decode()
            parts.append(f"<figure><img src='data:image/png;base64,{data}' style='image-rendering:pixelated'/>"
                         f"<figcaption>{html.escape(shown[0])}</figcaption></figure>")
        return "".join(parts)


__all__ = ["ShowsItself", "flat_rows", "html_table", "map_png"]

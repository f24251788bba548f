"""The tables people read, built from the commands' JSON documents (front-end layer: no tensor maths).

Every command prints an info table (the input, the model, what was written) and its own tables;
the statistics themselves were computed by the API with the results.
"""

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from vitcli.cli.report import fmt, heatmap_text, info_table, stats_table

if TYPE_CHECKING:
    from vitcli.api.documents import AttendDoc, BatchRun, BatchSummary, CompareDoc, FigureDoc, InputDoc, ModelDoc


def input_rows(doc: "InputDoc") -> list[tuple[str, Any]]:
    """Rows describing one fitted input (the JSON `input` object)."""
    rows: list[tuple[str, Any]] = [
        ("input", doc["path"] if doc["path"] != "-" else "<stdin>"),
        ("format / mode", f"{doc['format'] or '?'} / {doc['mode']}"),
        ("original size [H, W]", "{} × {}".format(*doc["original_size"])),
        ("final size [H, W]", "{} × {}".format(*doc["size"])),
        (f"fit ({doc['fit']})", doc["resize"]),
    ]
    return rows + [("note", n) for n in doc["notes"]]


def nonfinite_summary(counts: dict[str, dict[str, int]]) -> str:
    """'5 NaN, 0 Inf in 1 tensor: blocks.0.attn.qkv.weight'."""
    nan, inf = (sum(c[k] for c in counts.values()) for k in ("nan", "inf"))
    names = ", ".join(list(counts)[:4]) + (f" and {len(counts) - 4} more" if len(counts) > 4 else "")
    return f"{nan:,} NaN, {inf:,} Inf in {len(counts)} tensor{'s' if len(counts) > 1 else ''}: {names}"


def model_rows(doc: "ModelDoc") -> list[tuple[str, Any]]:
    """Rows describing a model (the JSON `model` object)."""
    rows: list[tuple[str, Any]] = [
        ("model", doc["name"] + (f" ({doc['family']})" if doc.get("family") else "")),
        ("weights", doc["source"]),
        ("patch size P", doc["patch_size"]),
        ("grid [rows, cols]", "{} × {}".format(*doc["grid"])),
        *([("native grid", doc["native_grid_from"])] if doc.get("native_grid_from") else []),
        ("tokens T",
         f"{doc['num_tokens']} ({doc['num_prefix_tokens']} prefix + {doc['grid'][0] * doc['grid'][1]} patches)"),
        ("dim D / depth L / heads", f"{doc['dim']} / {doc['depth']} / {doc['heads']} (head dim {doc['head_dim']})"),
        ("MLP dim", doc["mlp_dim"]),
        ("position table", doc.get("position_table", doc["posenc"])),
        ("dtype", doc.get("dtype", "float32")),
        ("parameters", f"{doc['parameters']:,}"),
        ("GMACs (this grid)", f"{doc['gmacs']:.2f}"),
    ]
    if doc.get("parts"):
        rows.append(("parts", " · ".join(f"{k.replace('_', ' ')}: {v}" for k, v in doc["parts"].items())))
    if doc.get("nonfinite_weights"):
        rows.append(("NaN / Inf in weights", nonfinite_summary(doc["nonfinite_weights"])))
    return rows


def output_rows(outputs: Mapping[str, object]) -> list[tuple[str, Any]]:
    return [(name, path) for name, path in outputs.items() if path]


def batch_rows(doc: "BatchSummary | CompareDoc") -> list[tuple[str, Any]]:
    """Rows of a run over many images: counts, batch size, time, outputs."""
    skipped = len(doc["skipped"])
    seconds = doc["seconds"]
    return [
        ("images (sorted by path)", f"{doc['processed']} processed" + (f", {skipped} skipped" if skipped else "")),
        ("batch size / workers", f"{doc['batch_size']} / {doc['workers']}"),
        ("time", f"{seconds:.2f} s ({doc['processed'] / seconds:.1f} images/s)" if seconds else "-"),
        *output_rows(doc["outputs"]),
    ]


def batch_tables(command: str, doc: "BatchRun", rows: list[tuple[str, Any]], label: str) -> list[Any]:
    """The summary of a run over many images."""
    return [info_table(f"vitcli {command} (batch)", batch_rows(doc) + rows),
            stats_table("written", dict([(label, s) for s in doc["tensors"].values()][-1:]))]


def heatmap(title: str, grid: Any, colour: bool) -> Group:
    return Group(Text(title, style="bold"), heatmap_text(grid, colour=colour))


def rows_table(title: str, columns: list[str], rows: list[list[Any]]) -> Table:
    """A table with a first key column (never cut: the other columns wrap first) and right-aligned numbers."""
    table = Table(title=title, title_justify="left", title_style="bold")
    for i, col in enumerate(columns):  # no_wrap, not a min_width: with one, rich drew some tables a column too wide
        table.add_column(col, justify="left" if i == 0 else "right", style="cyan" if i == 0 else None, no_wrap=i == 0)
    for row in rows:
        table.add_row(*(v if isinstance(v, str) else fmt(v) for v in row))
    return table


def span(layers: list[int]) -> str:
    """[0, 1, 2, 3] → '0–3'; short or gapped lists as they are."""
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}–{layers[-1]}"
    return ", ".join(map(str, layers))


def heads_table(doc: "AttendDoc") -> Table:
    """attend's per layer × head summary."""
    table = Table(title=f"attention of {doc['query_names']}", title_justify="left", title_style="bold")
    for name, justify in [("layer", "right"), ("head", "right"), ("entropy (nats)", "right"), ("max weight", "right"),
                          ("at patch (r, c)", "center"), ("on cls", "right"), ("mean distance (px)", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for h in doc["heads"][:200]:
        table.add_row(str(h["layer"]), str(h["head"]), f"{h['entropy']:.3f}", f"{h['max_weight']:.4f}",
                      "({}, {})".format(*h["max_patch"]), "–" if h["cls_weight"] is None else f"{h['cls_weight']:.4f}",
                      "–" if h["mean_distance"] is None else f"{h['mean_distance']:.1f}")
    notes = [f"first 200 of {len(doc['heads'])} rows; --json has all"] if len(doc["heads"]) > 200 else []
    if any(h["head"] in ("max", "min") for h in doc["heads"]):
        notes.append("the heads' max / min of rows is no distribution: its entropy is that of the row / its sum")
    table.caption = "; ".join(notes) or None
    return table


def figure_rows(doc: "FigureDoc") -> list[tuple[str, Any]]:
    """The inputs, the model and the normalisation of a figure."""
    rows = [r for d in doc.get("inputs", []) for r in input_rows(d)]
    return rows + model_rows(doc["model"]) + [("normalize", doc["normalize"])]

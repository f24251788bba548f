"""`vitcli posenc`: position encodings on their own — the table, chosen rows, their similarity."""

from typing import Annotated, Any, Optional

import typer

from dataclasses import dataclass

from vitcli.cli.common import OUTPUT_PANEL, JsonOpt, Output, OutputOpt, QuietOpt, with_options
from vitcli.cli.model import ModelOptions

HELP = """Build a position-encoding table (N+1, D) and show it: shape, stats, chosen rows, similarity.

Kinds: learned (D^-0.5·randn from --seed, or a checkpoint's table with --weights), sincos1d
(PE(pos, 2i) = sin(pos/10000^(2i/D)), PE(pos, 2i+1) = cos(…); class token at 0, patches at 1..N),
sincos2d (MAE: half the channels per axis, zero class row), none.
"""
EPILOG = (
    "Examples:  vitcli posenc --kind sincos1d --dim 4 --grid 4x4 --positions 0:3  ·  "
    "vitcli posenc --kind sincos2d --similarity sim.png  ·  "
    "vitcli posenc --weights vit.safetensors --similarity sim.png --resample 24x24  ·  "
    "vitcli posenc --weights wide.safetensors --native-size 224x448 --similarity sim.png"
)


@with_options(model_opts=ModelOptions)
def posenc_command(
    grid: Annotated[Optional[str], typer.Option("--grid", help="Patch grid ROWSxCOLS (default: the model's, e.g. 14x14).", show_default=False)] = None,
    size: Annotated[Optional[str], typer.Option("--size", help="Image size HxW instead of --grid: the grid is size / patch size.", show_default=False)] = None,
    patch_size: Annotated[Optional[int], typer.Option("-p", "--patch-size", help="Patch size P, with --size. [default: the model's, 16]", show_default=False)] = None,
    kind: Annotated[Optional[str], typer.Option("--kind", help="learned | sincos1d | sincos2d | none [default: the model's, learned]", show_default=False)] = None,
    positions: Annotated[Optional[str], typer.Option("--positions", help="Print these rows: I, A:B (Python slice) or I,J,K.", show_default=False)] = None,
    similarity: Annotated[Optional[str], typer.Option("--similarity", help="Write the cosine-similarity figure (ViT paper fig. 7, centre) as PNG.", rich_help_panel=OUTPUT_PANEL, show_default=False)] = None,
    resample: Annotated[Optional[str], typer.Option("--resample", help="Resample the table to another grid ROWSxCOLS (bicubic, as timm) and show that.", show_default=False)] = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    from vitcli.io.arrays import save_npy

    out = Output(output, as_json, quiet)
    setup = position_setup(model_opts, kind, grid, size, patch_size)
    table, table_grid = setup.table, setup.grid  # (num_prefix + N, D)
    resampled_from = None
    if resample:
        table, table_grid, resampled_from = _resampled(table, setup, resample)
    array = table.numpy()
    if out.output:
        save_npy(out.output, array)
    if similarity:
        _similarity_png(similarity, array, setup.num_prefix, table_grid, setup.kind, resampled_from)
    doc = _document(setup, array, table_grid, resampled_from, positions, out, similarity)
    _report(doc, out)


@dataclass
class PositionSetup:
    """A position table and what it is: (num_prefix + N, D) on the CPU (learned float32, fixed float64)."""

    table: Any
    grid: tuple[int, int]
    num_prefix: int
    kind: str
    source: str
    patch_size: int


def position_setup(opts: ModelOptions, kind: str | None, grid: str | None, size: str | None,
                   patch_size: int | None) -> PositionSetup:
    """The checkpoint's table, or one of `kind` for the model's (or the given) grid."""
    import torch

    from vitcli.cli.model import resolve_config
    from vitcli.core.posenc import KINDS, position_table
    from vitcli.errors import VitcliError
    from vitcli.io.images import parse_hw

    if kind is not None and kind not in KINDS:
        raise VitcliError("--kind", f"'{kind}' is not one of {', '.join(KINDS)}")
    if grid and size:
        raise VitcliError("--grid", "give --grid or --size, not both")
    if opts.weights:
        return checkpoint_table(opts, grid, size)
    setup = resolve_config(opts, patch_size, kind)
    c = setup.config
    if grid:
        target = parse_hw(grid, "--grid")
    elif size:
        h, w = parse_hw(size, "--size")
        target = (h // c.patch_size, w // c.patch_size)
    else:
        target = c.grid
    if min(target) <= 0:
        raise VitcliError("--size", f"{size} holds no {c.patch_size}x{c.patch_size} patch")
    if c.posenc == "learned":  # the very table `embed --seed` adds: drawn with the whole model
        from vitcli.core.presets import build_model

        model = build_model(c.with_changes(image_size=(target[0] * c.patch_size, target[1] * c.patch_size)), opts.seed)
        table = model.pos_embed.detach()[0]
    else:
        # fixed tables in float64: the formula's own values (the model adds them in its dtype)
        table = position_table(c.posenc, target, c.dim, c.pos_prefix_rows, dtype=torch.float64)
    return PositionSetup(table, target, c.pos_prefix_rows, c.posenc, setup.source, c.patch_size)


def checkpoint_table(opts: ModelOptions, grid: str | None, size: str | None) -> PositionSetup:
    """A checkpoint's learned table with its prefix rows counted (`--native-size HxW` names the
    checkpoint's size when its table is not square and no config file says it)."""
    from vitcli.cli.model import resolve_config
    from vitcli.errors import VitcliError

    if grid or size:
        raise VitcliError("--grid" if grid else "--size", "with --weights the grid is the checkpoint's: name its native "
                          "size with --native-size HxW, or show the table on another grid with --resample ROWSxCOLS")
    setup = resolve_config(opts)
    c = setup.config
    table = setup.checkpoint.state_dict.get("pos_embed")
    if table is None:
        raise VitcliError(setup.source, "this checkpoint has no learned position table")
    return PositionSetup(table.detach().float().cpu().reshape(-1, c.dim), c.grid, c.pos_prefix_rows,
                         "learned", setup.source, c.patch_size)


def _resampled(table: Any, setup: Any, text: str) -> tuple[Any, tuple[int, int], list[int]]:
    """The table resampled to the grid in `text`, as timm does for a new image size."""
    from vitcli.core.posenc import resample_pos_table
    from vitcli.io.images import parse_hw

    target = parse_hw(text, "--resample")
    return resample_pos_table(table, setup.grid, target, setup.num_prefix), target, list(setup.grid)


def _similarity_png(path: str, table: Any, num_prefix: int, grid: tuple[int, int], kind: str, src: list[int] | None) -> None:
    """Cosine similarity between the patch rows of the table, as one tile per grid position."""
    import torch

    from vitcli.core.analysis import cosine_similarity_matrix
    from vitcli.io.pictures import save_figure, similarity_figure

    cells = torch.from_numpy(table[num_prefix:]).double()  # (N, D)
    sim = cosine_similarity_matrix(cells, cells).numpy()  # (N, N)
    note = f", resampled from {src[0]}x{src[1]}" if src else ""
    title = f"Position embedding similarity ({kind}, {grid[0]}x{grid[1]}{note})"
    save_figure(path, similarity_figure(sim, grid, title))


def parse_positions(text: str, length: int) -> list[int]:
    """'0:3' → [0, 1, 2]; '5' → [5]; '1,4,-1' → [1, 4, length-1]; checked against `length`."""
    from vitcli.errors import VitcliError

    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError
            rows = list(range(length))[slice(*parts)]
        else:
            rows = [int(p) for p in text.split(",")]
    except ValueError:
        raise VitcliError("--positions", f"'{text}' is not I, A:B or I,J,K") from None
    bad = [r for r in rows if not -length <= r < length]
    if bad or not rows:
        raise VitcliError("--positions", f"'{text}' selects no rows or rows outside 0..{length - 1}")
    return [r % length for r in rows]


def _document(setup: Any, array: Any, grid: tuple[int, int], src: list[int] | None, positions: str | None,
              out: Output, similarity: str | None) -> dict[str, Any]:
    from vitcli.report import tensor_stats

    doc: dict[str, Any] = {
        "command": "posenc",
        "input": None,
        "kind": setup.kind,
        "source": setup.source,
        "patch_size": setup.patch_size,
        "grid": list(grid),
        "num_patches": grid[0] * grid[1],
        "num_prefix_rows": setup.num_prefix,
        "dim": array.shape[1],
        "tensors": {"pos_embed": tensor_stats(array)},
        "outputs": {"array": out.output, "similarity_png": similarity},
    }
    if src:
        doc["resampled_from"] = src
    if positions:
        rows = parse_positions(positions, array.shape[0])
        doc["positions"] = [{"index": r, "values": array[r].tolist()} for r in rows]
    return doc


def _report(doc: dict[str, Any], out: Output) -> None:
    from rich.table import Table

    from vitcli.report import emit_json, fmt, info_table, stats_table

    if out.as_json:
        return emit_json(doc)
    rows: list[tuple[str, Any]] = [
        ("kind", doc["kind"]), ("from", doc["source"]),
        ("grid [rows, cols]", f"{doc['grid'][0]} × {doc['grid'][1]}"),
        ("rows", f"{doc['num_prefix_rows']} prefix + {doc['num_patches']} patches"),
        ("dim D", doc["dim"]),
    ]
    if doc.get("resampled_from"):
        rows.append(("resampled from", "{} × {} (bicubic, antialias)".format(*doc["resampled_from"])))
    rows += [(name, path) for name, path in doc["outputs"].items() if path]
    out.show(info_table("vitcli posenc", rows), stats_table("tensors", doc["tensors"]))
    if "positions" in doc:
        table = Table(title="rows", title_justify="left", title_style="bold")
        table.add_column("row", justify="right", style="cyan")
        table.add_column("values")
        for p in doc["positions"]:
            values = p["values"]
            shown = ", ".join(f"{v:.4f}" for v in values[:12]) + (f", … ({len(values)} values)" if len(values) > 12 else "")
            table.add_row(fmt(p["index"]), f"[{shown}]")
        out.show(table)

"""`vitcli posenc`: position encodings on their own — the table, chosen rows, their similarity."""

from typing import Annotated, Any, Optional

import typer

from vitcli.cli.common import OUTPUT_PANEL, JsonOpt, ModelOptions, Output, OutputOpt, QuietOpt, with_options

HELP = """Build a position-encoding table (N+1, D) and show it: shape, stats, chosen rows, similarity.

Kinds: learned (D^-0.5·randn from --seed, or a checkpoint's table with --weights), sincos1d (PE(pos, 2i) = sin(pos/10000^(2i/D)), PE(pos, 2i+1) = cos(…); class token at 0, patches at 1..N), sincos2d (MAE: half the channels per axis, zero class row), none.
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
    layer: Annotated[int, typer.Option("--layer", help="With --weights of a BEiT-style checkpoint: the layer whose relative position bias (heads, N, N) is shown.")] = -1,
    patch: Annotated[Optional[str], typer.Option("--patch", help="Query patch R,C of the relative-bias maps drawn by --similarity [default: the centre].", show_default=False)] = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    from vitcli.api.posenc import posenc
    from vitcli.cli.common import ImageOptions, open_model
    from vitcli.core.posenc import KINDS
    from vitcli.errors import VitcliError

    out = Output(output, as_json, quiet)
    if kind is not None and kind not in KINDS:
        raise VitcliError("--kind", f"'{kind}' is not one of {', '.join(KINDS)}")
    if grid and size:
        raise VitcliError("--grid", "give --grid or --size, not both")
    model = open_model(model_opts, ImageOptions(patch_size=patch_size), None if model_opts.weights else kind)
    result = posenc(model, kind=kind, grid=grid, size=size, positions=positions, similarity=similarity,
                    resample=resample, output=output, layer=layer, patch=patch)
    out.finish(result.document, *_tables(result.document))


def _tables(doc: dict[str, Any]) -> list[Any]:
    from vitcli.report import info_table, stats_table
    from vitcli.tables import output_rows, rows_table

    if doc["kind"] == "relative-bias":
        rows = [("kind", "relative position bias" + (" (shared by every layer)" if doc["shared"] else "")),
                ("from", doc["source"]), ("layer", doc["layer"]), ("grid [rows, cols]", "{} × {}".format(*doc["grid"])),
                ("shape (heads, N, N)", str(tuple(doc["shape"]))), ("query patch of the maps", tuple(doc["patch"]))]
        return [info_table("vitcli posenc", rows + output_rows(doc["outputs"])), stats_table("tensors", doc["tensors"])]
    rows: list[tuple[str, Any]] = [
        ("kind", doc["kind"]), ("from", doc["source"]), ("grid [rows, cols]", "{} × {}".format(*doc["grid"])),
        ("rows", f"{doc['num_prefix_rows']} prefix + {doc['num_patches']} patches"), ("dim D", doc["dim"]),
    ]
    if doc.get("resampled_from"):
        rows.append(("resampled from", "{} × {} (bicubic, antialias)".format(*doc["resampled_from"])))
    tables = [info_table("vitcli posenc", rows + output_rows(doc["outputs"])), stats_table("tensors", doc["tensors"])]
    if "positions" in doc:
        def shown(values: list[float]) -> str:
            more = f", … ({len(values)} values)" if len(values) > 12 else ""
            return "[" + ", ".join(f"{v:.4f}" for v in values[:12]) + more + "]"

        tables.append(rows_table("rows", ["row", "values"], [[str(p["index"]), shown(p["values"])] for p in doc["positions"]]))
    return tables

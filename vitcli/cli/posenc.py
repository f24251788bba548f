"""`vitcli posenc`: position encodings on their own — the table, chosen rows, their similarity."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from vitcli.cli.common import (
    OUTPUT_PANEL,
    ModelOptions,
    Output,
    OutputOptions,
    examples,
    prose,
    with_options,
)

if TYPE_CHECKING:
    from vitcli.api.documents import RopeDoc
    from vitcli.api.results import PosencDocument

HELP = prose("""Build a position-encoding table (N+1, D) and show it: shape, stats, chosen rows, similarity.

Kinds: rope (2-D rotary: -o writes the rotation angles (N, D/2) for --dim D; --weights: the checkpoint's own periods;
--similarity draws the relative-position kernel), learned (D^-0.5·randn from --seed, or a checkpoint's table with
--weights), sincos1d (PE(pos, 2i) = sin(pos/10000^(2i/D)), PE(pos, 2i+1) = cos(…); class token at 0, patches at 1..N),
sincos2d (MAE: half the channels per axis, zero class row), none.
""")
EXAMPLES = [
    'vitcli posenc --kind sincos1d --dim 4 --grid 4x4 --positions 0:3',
    'vitcli posenc --kind sincos2d --similarity sim.png',
    "python -c \"import timm, safetensors.torch as s; s.save_file(timm.create_model('vit_small_patch16_224', "
    "depth=2).state_dict(), 'vit.safetensors')\"",
    'vitcli posenc --weights vit.safetensors --similarity sim.png --resample 24x24',
    "python -c \"import timm, safetensors.torch as s; s.save_file(timm.create_model('vit_small_patch16_224', "
    "depth=2, img_size=(224, 448)).state_dict(), 'wide.safetensors')\"",
    'vitcli posenc --weights wide.safetensors --native-size 224x448 --similarity sim.png',
]
EPILOG = examples(EXAMPLES)


@with_options(out_opts=OutputOptions, model_opts=ModelOptions)
def posenc_command(
    grid: Annotated[str | None, typer.Option(
        "--grid", metavar="ROWSxCOLS", show_default=False,
        help="Patch grid ROWSxCOLS (default: the model's, e.g. 14x14).")] = None,
    size: Annotated[str | None, typer.Option(
        "--size", metavar="N|HxW|native", show_default=False,
        help="Image size HxW instead of --grid: the grid is size / patch size.")] = None,
    patch_size: Annotated[int | None, typer.Option(
        "-p", "--patch-size", metavar="N", show_default=False,
        help="Patch size P, with --size. \\[default: the model's, 16]")] = None,
    kind: Annotated[str | None, typer.Option(
        "--kind", metavar="KIND", show_default=False,
        help="rope | learned | sincos1d | sincos2d | none \\[default: the model's, learned]")] = None,
    positions: Annotated[str | None, typer.Option(
        "--positions", metavar="ROWS", show_default=False, help="Print these rows: I, A:B (Python slice) or I,J,K.",
    )] = None,
    similarity: Annotated[str | None, typer.Option(
        "--similarity", metavar="FILE", rich_help_panel=OUTPUT_PANEL, show_default=False,
        help="Write the cosine-similarity figure (ViT paper fig. 7, centre) as PNG.")] = None,
    rope_variant: Annotated[str | None, typer.Option(
        "--rope-variant", metavar="NAME", show_default=False,
        help="With --kind rope: dinov3 (coords in [-1, 1], base 100) or eva (integer coords, base 10000). \\[default: "
             "dinov3]")] = None,
    resample: Annotated[str | None, typer.Option(
        "--resample", metavar="ROWSxCOLS", show_default=False,
        help="Resample the table to another grid ROWSxCOLS (bicubic, as timm) and show that.")] = None,
    layer: Annotated[int | None, typer.Option(
        "--layer", metavar="N", show_default=False,
        help="With --weights of a BEiT-style checkpoint: the layer whose relative position bias (heads, N, N) is "
             "shown. \\[default: -1]")] = None,
    patch: Annotated[str | None, typer.Option(
        "--patch", metavar="ROW,COL", show_default=False,
        help="Query patch R,C of the relative-bias maps drawn by --similarity. \\[default: the centre]")] = None,
    *,
    out_opts: OutputOptions,
    model_opts: ModelOptions,
) -> None:
    from vitcli.api.posenc import check_table_mode, posenc
    from vitcli.cli.common import ImageOptions, open_model

    out, output = Output(out_opts), out_opts.output
    if kind == "rope":
        from vitcli.api.posenc import refuse_for_rope

        m = model_opts
        refuse_for_rope({"--size": size, "--patch-size": patch_size, "--positions": positions, "--resample": resample,
                         "--layer": layer, "--patch": patch, "--depth": m.depth, "--heads": m.heads,
                         "--mlp-ratio": m.mlp_ratio, "--eps": m.eps, "--native-size": m.native_size})
        return _rope(model_opts, grid, rope_variant, similarity, output, out)
    check_table_mode(kind, grid or None, size or None)  # before a model is opened for it
    model = open_model(model_opts, ImageOptions(patch_size=patch_size), None if model_opts.weights else kind)
    result = posenc(model, kind=kind, grid=grid, size=size, positions=positions, similarity=similarity,
                    resample=resample, output=output, layer=layer, patch=patch)
    out.finish(result.document, *_tables(result.document))


def _rope(model_opts: ModelOptions, grid: str | None, variant: str | None, similarity: str | None,
          output: str | None, out: Output) -> None:
    """--kind rope: the angles (N, D/2), the frequencies, the relative-position kernel figure."""
    from vitcli.api.rope import rope_posenc
    from vitcli.cli.common import ImageOptions, open_model

    model = open_model(model_opts, ImageOptions(), None) if model_opts.weights else None
    doc = rope_posenc(model, dim=model_opts.dim, grid=grid, variant=variant, similarity=similarity,
                      output=output).document
    out.finish(doc, *_rope_tables(doc))


def _rope_tables(doc: "RopeDoc") -> list[Any]:
    """A rotary embedding: its variant, grid and pairing, and its frequencies."""
    from vitcli.cli.report import info_table
    from vitcli.cli.tables import output_rows, rows_table

    rows = [("kind", f"rope ({doc['rope_variant']})"), ("from", doc["source"]), ("grid [rows, cols]",
            "{} × {}".format(*doc["grid"])), ("rotated dim D", doc["dim"]),
            ("angles", "{} × {}".format(*doc["angles_shape"])),
            ("pairs", doc["pairing"]), ("axes", doc["axes"])]
    freqs = rows_table("frequencies ω_i = 2π / period_i (per axis)", ["i", "period", "ω"],
                       [[str(i), f"{p:.6g}", f"{f:.6g}"]
                        for i, (p, f) in enumerate(zip(doc["periods"], doc["frequencies"], strict=True))])
    return [info_table("vitcli posenc", rows + output_rows(doc["outputs"])), freqs]


def _tables(doc: "PosencDocument") -> list[Any]:
    from vitcli.cli.report import info_table, stats_table
    from vitcli.cli.tables import output_rows, rows_table

    if "periods" in doc:  # posenc(kind="rope")
        return _rope_tables(doc)
    if "shared" in doc:  # a relative position bias
        bias_rows = [("kind", "relative position bias" + (" (shared by every layer)" if doc["shared"] else "")),
                ("from", doc["source"]), ("layer", doc["layer"]), ("grid [rows, cols]", "{} × {}".format(*doc["grid"])),
                ("shape (heads, N, N)", str(tuple(doc["shape"]))), ("query patch of the maps", tuple(doc["patch"]))]
        return [info_table("vitcli posenc", bias_rows + output_rows(doc["outputs"])),
                stats_table("tensors", doc["tensors"])]
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

        tables.append(rows_table("rows", ["row", "values"],
                                 [[str(p["index"]), shown(p["values"])] for p in doc["positions"]]))
    return tables

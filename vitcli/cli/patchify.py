"""`vitcli patchify`: cut an image into P×P patches, flatten each, and put them back."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from vitcli.cli.common import (
    OUTPUT_PANEL,
    BatchOptions,
    ImageOptions,
    ImagesArg,
    OrderChoice,
    Output,
    OutputOptions,
    ValuesChoice,
    batch_spec,
    examples,
    gather,
    value,
    with_options,
)

if TYPE_CHECKING:
    from vitcli.api.results import PatchifyDocument

HELP = """Split an image into N = (H/P)·(W/P) patches of P·P·C values, in row-major order.

Output shape (N, P·P·C). Values are the image's raw uint8 bytes unless --normalize is given.

[bold]Orders[/] inside one patch, for a 2×2 patch of RGB pixels a b / c d:
  chw (default): R(a b c d) G(a b c d) B(a b c d): the Conv2d weight
                 layout of timm, transformers, torchvision and CLIP
  hwc:           a(R G B) b(R G B) c(R G B) d(R G B): vit-pytorch's
                 rearrange('c (h p1) (w p2) -> (h w) (p1 p2 c)')
"""
EXAMPLES = [
    'vitcli patchify sample_images/chelsea.jpg -o patches.npy --grid-png grid.png',
    'vitcli patchify sample_images/chelsea.jpg -o - | python -c "import io, sys, numpy; '
    'print(numpy.load(io.BytesIO(sys.stdin.buffer.read())).shape)"',
    'vitcli patchify --unpatchify patches.npy --grid-size 14x14 -o back.png',
    "vitcli patchify 'sample_images/*.jpg' --output-dir patches/",
]
EPILOG = examples(EXAMPLES)


@with_options(out_opts=OutputOptions, image_opts=ImageOptions, batch=BatchOptions)
def patchify_command(
    images: ImagesArg = None,
    order: Annotated[OrderChoice, typer.Option(  # type: ignore[valid-type]
        "--order", metavar="ORDER", help="Value order inside a patch (see above).",
    )] = OrderChoice["chw"],
    normalize: Annotated[ValuesChoice, typer.Option(  # type: ignore[valid-type]
        "--normalize", metavar="NORMALIZE",
        help="raw: uint8 bytes; none: float32 x/255; imagenet|inception|clip: float32 (x/255 − mean)/std.",
    )] = ValuesChoice["raw"],
    grid_png: Annotated[str | None, typer.Option(
        "--grid-png", metavar="FILE", rich_help_panel=OUTPUT_PANEL, show_default=False,
        help="Write the image as fed in, with the patch grid and each patch's index.")] = None,
    unpatchify: Annotated[str | None, typer.Option(
        "--unpatchify", metavar="FILE", show_default=False,
        help="Inverse: rebuild an image from this (N, P·P·C) .npy; -o FILE.png or FILE.npy.")] = None,
    grid_size: Annotated[str | None, typer.Option(
        "--grid-size", metavar="ROWSxCOLS", show_default=False,
        help="Grid ROWSxCOLS for --unpatchify (default: square).")] = None,
    *,
    out_opts: OutputOptions,
    image_opts: ImageOptions,
    batch: BatchOptions,
) -> None:
    from vitcli.api.patchify import check_mode, patchify
    from vitcli.api.patchify import unpatchify as unpatchify_array

    out, output = Output(out_opts), out_opts.output
    o = image_opts
    if unpatchify is not None:
        batch_spec(batch)  # --batch-size, --workers: checked even when unused
    check_mode(bool(images or batch.from_list), unpatchify, grid_size, size=o.size, patch_size=o.patch_size,
               max_pixels=o.max_pixels, max_patches=o.max_patches)
    if unpatchify is not None:
        result = unpatchify_array(unpatchify, grid_size=grid_size, order=value(order), normalize=value(normalize),
                                  output=output)
        return out.finish(result.document, *_tables(result.document))
    found = gather(images, image_opts, batch)
    with out.progress(len(found)) as progress:
        result = patchify(found, order=value(order), normalize=value(normalize), output=output,
                          output_dir=batch.output_dir, grid_png=grid_png, batch=batch_spec(batch), keep=False,
                          progress=progress)
    out.finish(result.document, *_tables(result.document))


def _tables(doc: "PatchifyDocument") -> list[Any]:
    from vitcli.cli.report import info_table, stats_table
    from vitcli.cli.tables import batch_tables, input_rows, output_rows

    facts = [("patch size P", doc["patch_size"]), ("order / values", f"{doc['order']} / {doc['normalize']}")]
    if "input" not in doc:  # several images
        return batch_tables("patchify", doc, facts, "patches (B, N, P·P·C)")
    rows: list[tuple[str, Any]]
    if doc["command"] == "unpatchify":
        c, h, w = doc["tensors"]["image"]["shape"]
        rows = [("input", doc["input"]["path"]), ("image [C, H, W]", f"{c} × {h} × {w}")]
    else:
        rows = input_rows(doc["input"])
    rows += [facts[0], ("grid [rows, cols]", "{} × {}".format(*doc["grid"])), ("patches N", doc["num_patches"]),
             ("patch vector P·P·C", doc["patch_length"]), facts[1], *output_rows(doc["outputs"])]
    tables = [info_table(f"vitcli {doc['command']}", rows), stats_table("tensors", doc["tensors"])]
    if doc["command"] == "patchify" and doc["channels"]:
        tables.append(stats_table("per channel (C, H, W)", {c["channel"]: c for c in doc["channels"]}, label="channel"))
    return tables

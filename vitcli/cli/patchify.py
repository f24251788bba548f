"""`vitcli patchify`: cut an image into P×P patches, flatten each, and put them back."""

from typing import Annotated, Any, Optional

import typer

from vitcli.cli.batch import BatchOptions, ImagesArg, gather
from vitcli.cli.common import (
    OUTPUT_PANEL, ImageOptions, JsonOpt, NormalizeChoice, OrderChoice, Output, OutputOpt, QuietOpt, with_options,
)

HELP = """Split an image into N = (H/P)·(W/P) patches of P·P·C values, in row-major order.

Output shape (N, P·P·C). Values are the image's raw uint8 bytes unless --normalize is given.

[bold]Orders[/] inside one patch, for a 2×2 patch of RGB pixels a b / c d:
  chw (default): R(a b c d) G(a b c d) B(a b c d)
                 the Conv2d weight layout of timm, transformers, torchvision, CLIP
  hwc:           a(R G B) b(R G B) c(R G B) d(R G B)
                 rearrange('c (h p1) (w p2) -> (h w) (p1 p2 c)'), as vit-pytorch
"""
EPILOG = (
    "Examples:  vitcli patchify sample_images/chelsea.jpg -o patches.npy --grid-png grid.png  ·  "
    "vitcli patchify cat.jpg -o - | python -c \"import sys, numpy; print(numpy.load(sys.stdin.buffer).shape)\"  ·  "
    "vitcli patchify --unpatchify patches.npy --grid-size 14x14 -o back.png  ·  "
    "vitcli patchify 'photos/*.jpg' --output-dir patches/"
)


@with_options(image_opts=ImageOptions, batch=BatchOptions)
def patchify_command(
    images: ImagesArg = None,
    order: Annotated[OrderChoice, typer.Option("--order", help="Value order inside a patch (see above).")] = OrderChoice.chw,
    normalize: Annotated[NormalizeChoice, typer.Option("--normalize", help="raw: uint8 bytes; none: float32 x/255; imagenet|inception|clip: float32 (x/255 − mean)/std.")] = NormalizeChoice.raw,
    output: OutputOpt = None,
    grid_png: Annotated[Optional[str], typer.Option("--grid-png", help="Write the image as fed in, with the patch grid and each patch's index.", rich_help_panel=OUTPUT_PANEL, show_default=False)] = None,
    unpatchify: Annotated[Optional[str], typer.Option("--unpatchify", help="Inverse: rebuild an image from this (N, P·P·C) .npy; -o FILE.png or FILE.npy.", show_default=False)] = None,
    grid_size: Annotated[Optional[str], typer.Option("--grid-size", help="Grid ROWSxCOLS for --unpatchify (default: square).", show_default=False)] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    image_opts: ImageOptions,
    batch: BatchOptions,
) -> None:
    out = Output(output, as_json, quiet)
    if unpatchify is not None:
        return _unpatchify(unpatchify, grid_size, order.value, normalize.value, out)
    if not images and batch.from_list is None:
        raise typer.BadParameter("give an IMAGE to patchify, or --unpatchify FILE.npy", param_hint="IMAGE")
    inputs = gather(images, batch)
    if not inputs.many:
        return _patchify(inputs.paths[0], image_opts, order.value, normalize.value, grid_png, out)
    if grid_png:
        from vitcli.errors import VitcliError

        raise VitcliError("--grid-png", "draws one image; give one IMAGE")
    _patchify_many(inputs.paths, image_opts, batch, order.value, normalize.value, out)


def _patchify_many(paths: list[str], opts: ImageOptions, batch: BatchOptions, order: str, normalize: str,
                   out: Output) -> None:
    """Every image's (N, P·P·C) patches as rows of one (B, N, P·P·C) array, or one file each."""
    import numpy as np

    from vitcli.cli.batch import run_batch, show_summary
    from vitcli.cli.common import check_image_options, prepare_image
    from vitcli.core.patches import patchify
    from vitcli.io.images import normalize as normalise_pixels

    patch_size = 16 if opts.patch_size is None else opts.patch_size
    check_image_options(opts, patch_size)
    report = run_batch(
        paths, batch, out.output, out, patch_size=patch_size,
        prepare=lambda path: prepare_image(path, opts, patch_size),
        compute=lambda items: np.stack([patchify(normalise_pixels(p.pixels, normalize), patch_size, order)
                                        for p in items]),  # (b, N, P·P·C)
    )
    doc = {"command": "patchify", **report.document(), "patch_size": patch_size, "order": order,
           "normalize": normalize, "tensors": {"patches": report.stats.document()}}
    rows = [("patch size P", patch_size), ("order / values", f"{order} / {normalize}")]
    show_summary("patchify", report, rows, "patches (B, N, P·P·C)", doc, out)



def _patchify(image: str, opts: ImageOptions, order: str, normalize: str, grid_png: str | None, out: Output) -> None:
    from vitcli.cli.common import prepare_image
    from vitcli.core.patches import grid_shape, patchify
    from vitcli.io.arrays import save_npy
    from vitcli.io.images import normalize as normalise_pixels
    from vitcli.io.pictures import grid_picture, save_png
    from vitcli.report import channel_stats, tensor_stats

    patch_size = 16 if opts.patch_size is None else opts.patch_size
    prepared = prepare_image(image, opts, patch_size)
    chw = normalise_pixels(prepared.pixels, normalize)  # (3, H, W)
    grid = grid_shape(chw.shape[1], chw.shape[2], patch_size)
    patches = patchify(chw, patch_size, order)  # (N, P·P·C)
    if out.output:
        save_npy(out.output, patches)
    if grid_png:
        save_png(grid_png, grid_picture(prepared.pixels, patch_size))
    doc = {
        "command": "patchify",
        "input": prepared.input_document(),
        "patch_size": patch_size,
        "grid": list(grid),
        "num_patches": patches.shape[0],
        "patch_length": patches.shape[1],
        "order": order,
        "normalize": normalize,
        "tensors": {"patches": tensor_stats(patches)},
        "channels": channel_stats(chw),
        "outputs": {"array": out.output, "grid_png": grid_png},
    }
    _report(doc, prepared.input_rows(), out)


def _report(doc: dict[str, Any], input_rows: list[tuple[str, Any]], out: Output) -> None:
    """Tables for people, or the JSON document for scripts."""
    from vitcli.report import emit_json, info_table, stats_table

    if out.as_json:
        return emit_json(doc)
    rows = input_rows + [
        ("patch size P", doc["patch_size"]),
        ("grid [rows, cols]", f"{doc['grid'][0]} × {doc['grid'][1]}"),
        ("patches N", doc["num_patches"]),
        ("patch vector P·P·C", doc["patch_length"]),
        ("order / values", f"{doc['order']} / {doc['normalize']}"),
    ]
    rows += [(name, path) for name, path in doc["outputs"].items() if path]
    channels = {c["channel"]: c for c in doc.get("channels", [])}
    out.show(info_table(f"vitcli {doc['command']}", rows), stats_table("tensors", doc["tensors"]))
    if channels:
        out.show(stats_table("per channel (C, H, W)", channels, label="channel"))


def _unpatchify(path: str, grid_size: str | None, order: str, normalize: str, out: Output) -> None:
    from vitcli.core.patches import unpatchify
    from vitcli.errors import VitcliError
    from vitcli.io.arrays import load_npy, save_npy
    from vitcli.io.images import denormalize
    from vitcli.io.pictures import save_png
    from vitcli.report import tensor_stats

    if not out.output:
        raise VitcliError("--unpatchify", "needs -o FILE.png (the picture) or -o FILE.npy (the (3, H, W) array)")
    patches = load_npy(path)
    if patches.ndim != 2:
        raise VitcliError(path, f"expected a (N, P·P·C) array, got shape {patches.shape}")
    grid = _parse_grid(grid_size, patches.shape[0], path)
    try:
        chw = unpatchify(patches, grid, 3, order)  # (3, H, W)
    except ValueError as e:
        raise VitcliError(path, str(e)) from None
    if out.output.lower().endswith(".npy") or out.output == "-":
        save_npy(out.output, chw)
    else:
        if normalize == "raw" and chw.dtype != "uint8":
            raise VitcliError(path, f"holds {chw.dtype} values: say which --normalize made them to write a PNG")
        save_png(out.output, denormalize(chw, normalize))
    p = round((patches.shape[1] / 3) ** 0.5)
    doc = {
        "command": "unpatchify", "input": {"path": path}, "patch_size": p, "grid": list(grid),
        "num_patches": patches.shape[0], "patch_length": patches.shape[1], "order": order,
        "normalize": normalize, "tensors": {"patches": tensor_stats(patches), "image": tensor_stats(chw)},
        "outputs": {"image": out.output},
    }
    _report(doc, [("input", path), ("image [C, H, W]", f"{chw.shape[0]} × {chw.shape[1]} × {chw.shape[2]}")], out)


def _parse_grid(text: str | None, n: int, path: str) -> tuple[int, int]:
    """'14x14' → (14, 14); None → the square grid holding n patches."""
    from vitcli.errors import VitcliError
    from vitcli.io.images import parse_hw

    if text is None:
        side = round(n**0.5)
        if side * side != n:
            raise VitcliError(path, f"{n} patches do not make a square grid: give --grid-size ROWSxCOLS")
        return side, side
    return parse_hw(text, "--grid-size")

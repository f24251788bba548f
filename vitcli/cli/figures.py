"""`vitcli figures`: paper figures and feature analyses, each writing its array (.npy) and PNG.

filters (ViT fig. 7 left), pca (DINOv2 fig. 1), similar (patch-to-patch cosine similarity) and
norms (high-norm tokens, Darcet et al. 2023). Position-embedding similarity (ViT fig. 7 centre)
is `vitcli posenc --similarity`; mean attention distance (fig. 7 right) is `vitcli attend`.
"""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from vitcli.cli.common import (
    ImageArg,
    ImageOptions,
    ModelOptions,
    NormalizeOpt,
    Output,
    OutputOptions,
    PngOpt,
    examples,
    image_spec,
    open_model,
    prose,
    with_options,
)
from vitcli.cli.text import TokenizerOpt

if TYPE_CHECKING:
    from vitcli.api.documents import AnyFigure, FiltersDoc, NormsDoc, PcaDoc, SimilarDoc, SimilarTextDoc
    from vitcli.api.images import Images
    from vitcli.api.results import FigureResult

HELP = "Paper figures and feature analyses on any checkpoint: filters, pca, similar, norms."
EXAMPLES = ["vitcli figures filters --png filters.png",
            "vitcli figures pca sample_images/chelsea.jpg sample_images/coffee.jpg --png pca.png",
            "vitcli figures similar sample_images/chelsea.jpg --patch 5,6 --png similar.png",
            "vitcli figures norms sample_images/chelsea.jpg --png norms.png"]
app = typer.Typer(name="figures", help=HELP, epilog=examples(EXAMPLES), no_args_is_help=True, add_completion=False,
                  rich_markup_mode="rich",
                  context_settings={"help_option_names": ["-h", "--help"]})

FILTERS_HELP = prose("""Patch-embedding filters (ViT paper, fig. 7 left): the first principal components of the patch
projection E, one P×P RGB tile each.

The D filters of the projection (the conv weight (D, C, P, P), which is the linear weight (D, P·P·C) reshaped) are rows
of a (D, C·P·P) matrix; it is centred and its principal components are reshaped to (C, P, P). -o writes them as (k, C,
P, P) float64; each PNG tile is min-max normalised on its own (a component's sign and scale are arbitrary).
""")
FILTERS_EXAMPLES = [
    "python -c \"import timm, safetensors.torch as s; s.save_file(timm.create_model('vit_small_patch16_224', "
    "depth=2).state_dict(), 'vit.safetensors')\"",
    'vitcli figures filters --weights vit.safetensors --png filters.png -o filters.npy']
FILTERS_EPILOG = examples(FILTERS_EXAMPLES)
PCA_HELP = prose("""Feature PCA to RGB (DINOv2, fig. 1): the first three principal components of the last layer's patch
tokens
(after the final norm, prefix tokens removed), fitted over all the images together, as red, green and blue (each min-max
scaled over all the images).

--foreground-threshold T: the first component is given the sign that makes the border patches (the outer ring of each
grid, taken as background) score below the mean, scaled to [0, 1], and patches above T are foreground; a second PCA on
the foreground patches alone colours them, the background is black. -o writes (images, rows, cols, 3) float64 in [0, 1].
""")
PCA_EXAMPLES = ['vitcli figures pca sample_images/chelsea.jpg sample_images/coffee.jpg --foreground-threshold 0.5 '
                '--png pca.png']
PCA_EPILOG = examples(PCA_EXAMPLES)
SIMILAR_HELP = prose("""Patch similarity: the cosine similarity of one query patch's features with every patch of the
same
image, or of a second image (--to).

The query is --patch ROW,COL on the grid, or --pixel X,Y in the fitted image (x to the right, y down), by default the
centre patch. Features are the tokens after block --layer (0-based, negative from the end; default -1, the last),
through the model's final norm unless --no-norm (at the last layer that is the encoder output). -o writes the (rows,
cols) map.
""")
SIMILAR_EXAMPLES = ['vitcli figures similar sample_images/chelsea.jpg --patch 5,6 --png similar.png -o similar.npy',
                    'vitcli figures similar sample_images/chelsea.jpg --to sample_images/coffee.jpg --pixel 120,80 '
                    '--layer 6']
SIMILAR_EPILOG = examples(SIMILAR_EXAMPLES)
NORMS_HELP = prose("""High-norm tokens (Darcet et al. 2023, "Vision Transformers Need Registers"): the L2 norm of every
token
after every block, and the patch tokens far above the rest.

A patch token is an outlier at a layer when its norm exceeds median + k·MAD of that layer's patch norms (MAD = median
|norm − median|, unscaled), or --norm-threshold for every layer. Each is listed with its (row, col), norm, and the share
of the class token's attention (mean over heads, in the same block) that it takes; without a class token the share of
the attention-pool probe's attention (over the final tokens: the last layer only) or of the patch rows' mean attention
(each layer), as attend's default query (JSON: attention_row). Register tokens are listed apart. -o writes the norms
(layers, tokens), tokens in model order: prefix (class, registers) first, then the patches.
""")
NORMS_EXAMPLES = ['vitcli figures norms sample_images/chelsea.jpg --png norms.png -o norms.npy']
NORMS_EPILOG = examples(NORMS_EXAMPLES)


def _images(sources: list[str], opts: ImageOptions) -> "Images":
    """The images in the order given (the query image first), with the image options."""
    from vitcli.api.images import Images

    return Images(list(sources), len(sources) > 1, image_spec(opts))


def _show(out: Output, result: "FigureResult[AnyFigure]", rows: list[tuple[str, Any]], *extra: Any) -> None:
    """JSON, or the info table, the figure's tables and extras, then warnings."""
    from vitcli.cli.report import info_table
    from vitcli.cli.tables import output_rows, rows_table

    doc = result.document
    tables = [rows_table(t["title"], t["columns"], t["rows"]) for t in result.tables]
    out.finish(doc, info_table(f"vitcli {doc['command']}", rows + output_rows(doc["outputs"])), *tables, *extra,
               warnings=result.warnings)


@app.command("filters", help=FILTERS_HELP, epilog=FILTERS_EPILOG,
             short_help="Patch-embedding filters as RGB tiles (ViT fig. 7 left).")
@with_options(out_opts=OutputOptions, model_opts=ModelOptions)
def filters_command(
    count: Annotated[int, typer.Option("--count", "-k", metavar="N", help="Number of principal components.")] = 28,
    png: PngOpt = None,
    *,
    out_opts: OutputOptions,
    model_opts: ModelOptions,
) -> None:
    from vitcli.cli.tables import model_rows

    out, output = Output(out_opts), out_opts.output
    result: FigureResult[FiltersDoc] = open_model(model_opts).filters(count=count, output=output, png=png)
    doc = result.document
    _show(out, result, model_rows(doc["model"]) + [("filters (D, C, P, P)", tuple(doc["weight_shape"])),
                                                   ("components", tuple(doc["tensors"]["components"]["shape"]))])


@app.command("pca", help=PCA_HELP, epilog=PCA_EPILOG,
             short_help="Feature PCA to RGB over one or more images (DINOv2 fig. 1).")
@with_options(out_opts=OutputOptions, image_opts=ImageOptions, model_opts=ModelOptions)
def pca_command(
    images: Annotated[list[str], typer.Argument(metavar="IMAGE…",
                                                help="One or more image files (- for standard input).",
                                                show_default=False)],
    foreground_threshold: Annotated[float | None, typer.Option(
        "--foreground-threshold", metavar="X", show_default=False,
        help="Keep patches whose first component (scaled to [0, 1], border = background) is above this, and redo the "
             "PCA on them.")] = None,
    normalize: NormalizeOpt = None,
    png: PngOpt = None,
    *,
    out_opts: OutputOptions,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
) -> None:
    from vitcli.cli.report import stats_table
    from vitcli.cli.tables import figure_rows

    out, output = Output(out_opts), out_opts.output
    model = open_model(model_opts, image_opts)
    result: FigureResult[PcaDoc] = model.pca(_images(images, image_opts), foreground_threshold=foreground_threshold,
                                             normalize=normalize, output=output, png=png)
    doc = result.document
    rows = figure_rows(doc) + [("explained variance",
                                ", ".join(f"{100 * v:.1f}%" for v in doc["explained_variance_ratio"]))]
    if "foreground_patches" in doc:
        n = doc["num_patches"]
        rows.append(("foreground patches", ", ".join(f"{c}/{n}" for c in doc["foreground_patches"])))
    _show(out, result, rows, stats_table("arrays", doc["tensors"]))


@app.command("similar", help=SIMILAR_HELP, epilog=SIMILAR_EPILOG,
             short_help="Cosine similarity of one patch with every patch, at a layer.")
@with_options(out_opts=OutputOptions, image_opts=ImageOptions, model_opts=ModelOptions)
def similar_command(
    image: ImageArg,
    to: Annotated[str | None, typer.Option(
        "--to", metavar="IMAGE", show_default=False, help="Second image: compare the query with its patches instead.",
    )] = None,
    patch: Annotated[str | None, typer.Option(
        "--patch", metavar="ROW,COL", show_default=False, help="Query patch ROW,COL (0-based; negative from the end).",
    )] = None,
    pixel: Annotated[str | None, typer.Option(
        "--pixel", metavar="X,Y", show_default=False,
        help="Query pixel X,Y in the fitted image; its patch is the query.")] = None,
    layer: Annotated[int, typer.Option(
        "--layer", metavar="SEL", help="Block whose output gives the features (0-based, negative from the end).")] = -1,
    norm: Annotated[bool, typer.Option(
        "--norm/--no-norm", metavar="", help="Pass the block output through the final norm.")] = True,
    normalize: NormalizeOpt = None,
    text: Annotated[str | None, typer.Option(
        "--text", metavar="PROMPT", show_default=False,
        help="Compare every patch with this prompt instead (CLIP-family checkpoints): each patch's feature through the "
             "final norm, the pooling head and the projection, against the prompt's text embedding.")] = None,
    tokenizer: TokenizerOpt = None,
    png: PngOpt = None,
    *,
    out_opts: OutputOptions,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
) -> None:
    from vitcli.cli.report import heatmap_text, stats_table
    from vitcli.cli.tables import figure_rows

    out, output = Output(out_opts), out_opts.output
    model = open_model(model_opts, image_opts)
    result: FigureResult[SimilarDoc] | FigureResult[SimilarTextDoc] = model.similar(
        _images([image], image_opts), to=_images([to], image_opts) if to else None, patch=patch, pixel=pixel,
        layer=layer, norm=norm, normalize=normalize, output=output, png=png, text=text, tokenizer=tokenizer)
    doc = result.document
    q, best = doc["query"], doc["most_similar"]
    prefix = doc["num_tokens"] - doc["num_patches"]
    query = ("query text", q["text"]) if "text" in q else \
        ("query patch (row, col)", f"{q['row']}, {q['col']} (token {q['index'] + prefix})")
    features = f"block {doc['layer']} of 0..{doc['model']['depth'] - 1}" + (" + final norm" if doc["norm"] else "")
    features += f", in the joint space ({doc['joint_space']})" if "joint_space" in doc else ""
    rows = figure_rows(doc) + [query, ("features", features),
                               ("most similar patch", f"{best['row']}, {best['col']}: {best['similarity']:.4f}")]
    _show(out, result, rows, stats_table("arrays", doc["tensors"]), heatmap_text(result.heatmap, colour=out.colour))


@app.command("norms", help=NORMS_HELP, epilog=NORMS_EPILOG,
             short_help="High-norm tokens per layer and register tokens (Darcet et al. 2023).")
@with_options(out_opts=OutputOptions, image_opts=ImageOptions, model_opts=ModelOptions)
def norms_command(
    image: ImageArg,
    k: Annotated[float | None, typer.Option(
        "--k", metavar="X", show_default=False,
        help="Outliers lie above median + k·MAD of the layer's patch-token norms. \\[default: 5]")] = None,
    norm_threshold: Annotated[float | None, typer.Option(
        "--norm-threshold", metavar="X", show_default=False,
        help="A fixed norm threshold for every layer instead of the MAD rule.")] = None,
    top: Annotated[int, typer.Option(
        "--top", metavar="N", help="List at most this many outliers (largest norms first).")] = 20,
    normalize: NormalizeOpt = None,
    png: PngOpt = None,
    *,
    out_opts: OutputOptions,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
) -> None:
    from vitcli.cli.tables import figure_rows

    out, output = Output(out_opts), out_opts.output
    model = open_model(model_opts, image_opts)
    result: FigureResult[NormsDoc] = model.norms(_images([image], image_opts), k=k, norm_threshold=norm_threshold,
                                                 top=top, normalize=normalize, output=output, png=png)
    doc = result.document
    _show(out, result,
          figure_rows(doc) + [("outlier rule", doc["rule"]), ("outliers (all layers)", str(len(doc["outliers"])))])

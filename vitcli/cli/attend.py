"""`vitcli attend`: self-attention you can read (tables), measure (entropy, distance, rollout) and see."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from vitcli.cli.common import (
    OUTPUT_PANEL,
    BatchOptions,
    ImageOptions,
    ImagesArg,
    ModelOptions,
    NormalizeOpt,
    Output,
    OutputOptions,
    batch_spec,
    choices,
    examples,
    gather,
    open_model,
    prose,
    value,
    with_options,
)

if TYPE_CHECKING:
    from vitcli.api.results import AttendResult

HELP = prose("""Run the encoder and show self-attention A = softmax(Q·Kᵀ/√d_k) of chosen layers, heads and queries.

-o writes the selection as (layers, heads, queries, tokens); tokens are the prefix tokens (class, distillation,
registers) then the patches row by row on the input's true grid. The table gives, per layer × head: entropy, the
strongest patch (r, c), the class-token weight and the mean attention distance (ViT paper D.7). --query cls never builds
the T×T matrix, so large images fit. Layers and heads count from 0. Several images: -o gets a leading batch axis (B,
layers, heads, queries, tokens) and --distance / --plot-distance average over the images, with their spread.
""")
EXAMPLES = [
    'vitcli attend sample_images/chelsea.jpg',
    'vitcli attend sample_images/chelsea.jpg --layer all --head mean -o attn.npy',
    'vitcli attend sample_images/chelsea.jpg --query 3,5 --overlay q.png --per-head',
    'vitcli attend sample_images/chelsea.jpg --rollout roll.npy --discard-ratio 0.9',
    'vitcli attend sample_images/chelsea.jpg --plot-distance dist.png --size 448',
    'vitcli attend sample_images/ --plot-distance dist.png --distance dist.npy',
]
EPILOG = examples(EXAMPLES)
ANALYSIS_PANEL, PICTURE_PANEL = "Analyses", "Pictures"
Fusion = choices("Fusion", Literal["mean", "max", "min"])
Scope = choices("Scope", Literal["row", "matrix"])


@dataclass
class Analyses:
    """The optional analyses and pictures of attend."""

    rollout: Annotated[str | None, typer.Option(
        "--rollout", metavar="FILE", rich_help_panel=ANALYSIS_PANEL, show_default=False,
        help="Attention rollout: write the (T, T) product as .npy, and the selected query's map as a picture beside "
             "it (same name, .png). The probe's map is its row (heads fused) times the product; mean's the mean of "
             "its patch rows.")] = None
    rollout_fusion: Annotated[Fusion, typer.Option(  # type: ignore[valid-type]
        "--rollout-fusion", metavar="ROLLOUT_FUSION", rich_help_panel=ANALYSIS_PANEL, help="Head fusion for rollout.",
    )] = Fusion("mean")
    discard_ratio: Annotated[float | None, typer.Option(
        "--discard-ratio", metavar="X", rich_help_panel=ANALYSIS_PANEL, show_default=False,
        help="Rollout: zero this share of the lowest weights (never the diagonal) before adding I. \\[default: 0]",
    )] = None
    discard_scope: Annotated[Scope, typer.Option(  # type: ignore[valid-type]
        "--discard-scope", metavar="DISCARD_SCOPE", rich_help_panel=ANALYSIS_PANEL,
        help="Rollout discard over each image's whole matrix or each row.",
    )] = Scope("matrix")
    start_layer: Annotated[int | None, typer.Option(
        "--start-layer", metavar="N", rich_help_panel=ANALYSIS_PANEL, show_default=False,
        help="Rollout: first layer of the product. \\[default: 0]")] = None
    distance: Annotated[str | None, typer.Option(
        "--distance", metavar="FILE", rich_help_panel=ANALYSIS_PANEL, show_default=False,
        help="Write the mean attention distance of every layer and head, (layers, heads) in pixels, as .npy.")] = None
    plot_distance: Annotated[str | None, typer.Option(
        "--plot-distance", metavar="FILE", rich_help_panel=PICTURE_PANEL, show_default=False,
        help="Mean attention distance against depth, one dot per head (ViT fig. 7 right), as PNG.")] = None
    renorm: Annotated[bool, typer.Option(
        "--renorm", metavar="", rich_help_panel=ANALYSIS_PANEL,
        help="Mean distance: renormalise rows after removing prefix tokens (off, as the paper's code).")] = False
    masks: Annotated[str | None, typer.Option(
        "--masks", metavar="FILE", rich_help_panel=ANALYSIS_PANEL, show_default=False,
        help="DINO masks: per head of the last layer, the fewest patches holding --threshold of the class token's "
             "attention, (heads, rows, cols) bool .npy.")] = None
    threshold: Annotated[float | None, typer.Option(
        "--threshold", metavar="X", rich_help_panel=ANALYSIS_PANEL, show_default=False,
        help="Attention mass the DINO masks keep. \\[default: 0.6]")] = None
    cosine: Annotated[str | None, typer.Option(
        "--cosine", metavar="FILE", rich_help_panel=ANALYSIS_PANEL, show_default=False,
        help="cos(q_i, k_j) of the selected queries and every key, same shape as -o, as .npy.")] = None
    save_qkv: Annotated[str | None, typer.Option(
        "--save-qkv", metavar="FILE", rich_help_panel=OUTPUT_PANEL, show_default=False,
        help="Write Q, K, V of the selected layers, each (layers, heads, tokens, head_dim), as .npz.")] = None
    overlay: Annotated[str | None, typer.Option(
        "--overlay", metavar="FILE", rich_help_panel=PICTURE_PANEL, show_default=False,
        help="The query's attention (or the rollout map) over the image with a colour bar, as PNG.")] = None
    per_head: Annotated[bool, typer.Option(
        "--per-head", metavar="", rich_help_panel=PICTURE_PANEL,
        help="--overlay: one panel per head, labelled, in one image.")] = False


@with_options(out_opts=OutputOptions, image_opts=ImageOptions, model_opts=ModelOptions, analyses=Analyses,
              batch=BatchOptions)
def attend_command(
    images: ImagesArg = None,
    layer: Annotated[str, typer.Option(
        "--layer", metavar="SEL", help="Layer I (negative from the end), range A:B (B excluded), I,J or all.")] = "-1",
    head: Annotated[str, typer.Option(
        "--head", metavar="SEL", help="Head I, I,J, all, or a fusion of all heads: mean, max, min.")] = "all",
    query: Annotated[str | None, typer.Option(
        "--query", metavar="QUERY", show_default=False,
        help="Query: cls, dist, reg0… (the prefix tokens as the tables name them), probe (the attention-pool probe's "
             "row), mean (the patch rows' mean), a token index, a patch R,C, or all. \\[default: what the model "
             "pools: cls; without a class token probe, or mean]")] = None,
    normalize: NormalizeOpt = None,
    *,
    out_opts: OutputOptions,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
    analyses: Analyses,
    batch: BatchOptions,
) -> None:
    from dataclasses import asdict

    out, output = Output(out_opts), out_opts.output
    found = gather(images, image_opts, batch)
    model = open_model(model_opts, image_opts)
    a = {k: value(v) for k, v in asdict(analyses).items()}
    with out.progress(len(found)) as progress:
        result = model.attend(found, layer=layer, head=head, query=query, normalize=normalize, output=output,
                              batch=batch_spec(batch), keep=False, progress=progress, **a)
    out.finish(result.document, *_tables(result, out), warnings=result.warnings)


def _tables(result: "AttendResult", out: Output) -> list[Any]:
    from vitcli.cli.report import info_table, stats_table
    from vitcli.cli.tables import batch_tables, heads_table, heatmap, input_rows, model_rows, output_rows, span

    doc = result.document
    rows = model_rows(doc["model"]) + [("normalize", doc["normalize"])]
    if "input" not in doc:  # several images
        rows.append(("layers", span(doc["layers"])))
        if "mean_distance_overall" in doc:
            overall = doc["mean_distance_overall"]
            rows.append(("mean distance over images",
                         f"{overall['mean']:.1f} px (heads' spread over images ± {overall['spread']:.1f})"))
        return batch_tables("attend", doc, rows, "attention (B, L, H, Q, T)")
    rows = input_rows(doc["input"]) + rows
    rows += [("layers", span(doc["layers"])), ("heads", ", ".join(doc["head_selection"])),
             ("query", doc["query_names"]),
             ("array (layers, heads, queries, tokens)", "(" + ", ".join(map(str, doc["shape"])) + ")")]
    if "rollout" in doc:
        ro = doc["rollout"]
        rows.append(("rollout strongest patch",
                     "({}, {}) {:.4f}; prefix tokens {:.4f}".format(*ro["max_patch"], ro["max_weight"],
                                                                    ro["prefix_weight"])))
    if "qkv_note" in doc:
        rows.append(("saved q, k", doc["qkv_note"]))
    if "masks" in doc:
        rows.append((f"DINO masks ({doc['masks']['threshold']:.0%} mass)",
                     "patches per head " + ", ".join(map(str, doc["masks"]["patches_per_head"]))))
    tables = [info_table("vitcli attend", rows + output_rows(doc["outputs"])), heads_table(doc),
              stats_table("tensors", doc["tensors"])]
    if result.terminal_map is not None:
        title, grid = result.terminal_map
        tables.append(heatmap(title, grid, colour=out.colour))
    return tables

"""`vitcli explain`: which patches made the model give an output, as a map, a table and a picture."""

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
    from vitcli.api.documents import ExplainSummary, MethodPatches
    from vitcli.api.results import ExplainResult

HELP = prose("""Explain an output of the model: which patches made it say that.

--method grad-rollout (Chefer et al. 2021: R ← R + mean_h (∇A ⊙ A)⁺·R, the class token's row; without a class token the
attention-pool probe's row (heads' mean) times R, or the mean of R's patch rows, as attend --rollout's default query),
attn-grad (vit-explain's gradient rollout), gradcam (Grad-CAM on block --layer's norm1 tokens), rollout (attention
alone, as attend --rollout), legrad (Bousselham et al. 2025, as legrad-torch: for each block from --start-layer, the
gradient of the target read from that block's own averaged tokens (all of them; through the final norm and the head)
with respect to its attention, clamped ≥ 0, averaged over heads and query rows, summed over blocks; min-max scaled to
[0, 1]; with an attention-pool probe (SigLIP), the probe's attention on each block's raw output), or all side by side
(the first four: all does not include legrad). --target top or class:N (a classifier logit; class:NAME or a bare N too:
the names are the checkpoint's config.json id2label / label_names, shown beside the class in the table and as "label" in
the JSON), image:OTHER (cosine of the pooled embeddings: what makes the two images alike), patch:R,C (cosine of that
patch's final feature with the pooled embedding). -o writes the raw map (rows, cols) float32, unnormalised (legrad's in
[0, 1]); several images give (B, rows, cols) with an index. Gradients go through the model block by block, so large
images fit (1792 px on ViT-B/16 in a few GB).
""")
EXAMPLES = [
    "vitcli explain sample_images/chelsea.jpg --overlay why.png",
    "vitcli explain sample_images/chelsea.jpg --method all --overlay all.png",
    "vitcli explain sample_images/chelsea.jpg --target class:281 -o map.npy",
    "python -c \"import timm, safetensors.torch as s; s.save_file(timm.create_model("
    "'vit_small_patch14_dinov2', depth=2, img_size=224).state_dict(), 'dino.safetensors')\"",
    "vitcli explain sample_images/chelsea.jpg --target image:sample_images/coffee.jpg --weights dino.safetensors",
    "vitcli explain sample_images/chelsea.jpg --method legrad --start-layer 1 --overlay legrad.png",
    "vitcli explain sample_images/ --method gradcam -o maps.npy",
]
EPILOG = examples(EXAMPLES)
Method = choices("Method", Literal["grad-rollout", "attn-grad", "gradcam", "rollout", "legrad", "all"])


@with_options(out_opts=OutputOptions, image_opts=ImageOptions, model_opts=ModelOptions, batch=BatchOptions)
def explain_command(
    images: ImagesArg = None,
    method: Annotated[Method, typer.Option(  # type: ignore[valid-type]
        "--method", help="grad-rollout, attn-grad, gradcam, rollout, legrad, or all (the first four side by side: not "
                         "legrad).",
    )] = Method["grad-rollout"],
    target: Annotated[str, typer.Option(
        "--target",
        help="top, class:N, class:NAME, image:OTHER, patch:R,C or text:PROMPT (cosine of the projected image embedding "
             "with the prompt's text embedding: CLIP-family checkpoints; top needs a classifier head, except with "
             "--method rollout).")] = "top",
    start_layer: Annotated[int | None, typer.Option(
        "--start-layer", show_default=False,
        help="grad-rollout, attn-grad, rollout: first layer of the product; legrad: first block summed (LeGrad's own "
             "default is the last two blocks). \\[default: 0]")] = None,
    layer: Annotated[int | None, typer.Option(
        "--layer", show_default=False,
        help="gradcam: the block whose norm1 output is used (negative from the end). \\[default: -1]")] = None,
    discard_ratio: Annotated[float | None, typer.Option(
        "--discard-ratio", show_default=False,
        help="attn-grad, rollout: zero this share of each layer's lowest weights (never the diagonal) before adding "
             "I. \\[default: 0]")] = None,
    overlay: Annotated[str | None, typer.Option(
        "--overlay", rich_help_panel=OUTPUT_PANEL, show_default=False,
        help="The map over the image with a colour bar, method, target and score in the title, as PNG (--method all: "
             "side by side).")] = None,
    normalize: NormalizeOpt = None,
    *,
    out_opts: OutputOptions,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
    batch: BatchOptions,
) -> None:
    out, output = Output(out_opts), out_opts.output
    found = gather(images, image_opts, batch)
    model = open_model(model_opts, image_opts)
    with out.progress(len(found)) as progress:
        result = model.explain(found, method=value(method), target=target, start_layer=start_layer, layer=layer,
                               discard_ratio=discard_ratio, normalize=normalize, output=output,
                               output_dir=batch.output_dir, overlay=overlay, batch=batch_spec(batch), keep=False,
                               progress=progress)
    out.finish(result.document, *_tables(result, out), warnings=result.warnings)


def _tables(result: "ExplainResult", out: Output) -> list[Any]:
    from vitcli.cli.report import info_table, stats_table
    from vitcli.cli.tables import batch_tables, heatmap, input_rows, model_rows, output_rows, rows_table

    doc = result.document
    if "input" not in doc:  # several images
        run = doc["explain"]
        rows = model_rows(doc["model"]) + [("normalize", doc["normalize"]), ("method", run["method"]),
                                           ("target", run["target"])]
        tables = batch_tables("explain", doc, rows, "map (B, rows, cols)")
        scores = [[r["path"], "-" if r["score"] is None else r["score"], _klass(r)] for r in run["images"][:20]]
        return tables + [rows_table("scores (first 20)", ["image", "score", "class"], scores)]
    ex = doc["explain"]
    rows = model_rows(doc["model"]) + [("normalize", doc["normalize"]), ("method", ex["method"]),
                                       ("target", ex["target"])]
    rows = input_rows(doc["input"]) + rows
    rows += [("score",
              "-" if ex["score"] is None else ex["score"])] + ([("class", _klass(ex))] if "class" in ex else [])
    per_method: list[MethodPatches] = ex["methods"] if ex["method"] == "all" else [{"method": ex["method"],
                                                               "top_patches": ex["top_patches"]}]
    top = [[m["method"], *[f"({p['row']}, {p['col']}) {p['value']:.4g}" for p in m["top_patches"]]] for m in per_method]
    tables = [info_table("vitcli explain", rows + output_rows(doc["outputs"])),
              rows_table("strongest patches (row, col) value", ["method", "1", "2", "3", "4", "5"], top),
              stats_table("tensors", doc["tensors"])]
    if result.maps is None:  # one image's maps are always kept
        return tables
    first = result.maps[0] if ex["method"] == "all" else result.maps
    tables.append(heatmap(f"{per_method[0]['method']} map, {first.shape[0]}×{first.shape[1]} patches", first,
                          colour=out.colour))
    return tables


def _klass(found: "ExplainSummary") -> str:
    """A class as the tables print it: its index, and its label when the checkpoint names it."""
    if "class" not in found:
        return "-"
    return f"{found['class']} ({found['label']})" if "label" in found else str(found["class"])

"""`vitcli view`: one self-contained HTML file to explore a ViT on images, offline."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from vitcli.cli.common import (
    OUTPUT_PANEL,
    ImageOptions,
    JsonOpt,
    ModelOptions,
    NormalizeOpt,
    Output,
    OutputOptions,
    QuietOpt,
    examples,
    image_spec,
    open_model,
    prose,
    with_options,
)

if TYPE_CHECKING:
    from vitcli.api.documents import ViewDoc, ViewText

HELP = prose("""Write one HTML file (inline CSS and JavaScript, the data embedded, no network) that explores the model
on the
images: one tab each.

Hover, click or move with the arrow keys over the image to pick a query patch, or pick a prefix token (class,
distillation, registers) from the list; the page shows its attention at the chosen layer and head (or the heads' mean,
max, min) with a colour bar and the value under the pointer, the rollout, the cosine similarity of its feature (block
output through the final norm, as `figures similar`) with every patch (of --to OTHER if given), the position-embedding
similarity, the per-head table, the mean attention distance against depth and the token norms per layer. The maps equal
`vitcli attend` and `figures similar` within 1e-3. With --text PROMPT (repeat for several; CLIP-family checkpoints), a
panel per prompt shows its LeGrad map (explain --method legrad --target text:PROMPT) and its zero-shot score (as `vitcli
classify` gives it: CLIP's softmax over the prompts, SigLIP's sigmoid). In the browser console: vitcli.select({layer,
head, query}), vitcli.currentMap(), vitcli.ready.
""")
EXAMPLES = [
    "vitcli view sample_images/chelsea.jpg -o chelsea.html",
    "python -c \"import timm, safetensors.torch as s; s.save_file(timm.create_model('vit_small_patch16_224', "
    "depth=2).state_dict(), 'vit.safetensors')\"",
    "vitcli view sample_images/chelsea.jpg sample_images/astronaut.jpg --weights vit.safetensors --layers 0,1 "
    "-o ab.html",
    "vitcli view sample_images/chelsea.jpg --to sample_images/coffee.jpg -o a_vs_b.html",
]
EPILOG = examples(EXAMPLES)


@with_options(image_opts=ImageOptions, model_opts=ModelOptions)
def view_command(
    images: Annotated[list[str], typer.Argument(help="Image files, one tab each.", show_default=False)],
    output: Annotated[str, typer.Option("-o", "--output", help="The HTML file to write.", rich_help_panel=OUTPUT_PANEL,
                                        show_default=False)],
    layers: Annotated[str, typer.Option(
        "--layers", help="Layers embedded: all, I, A:B or I,J (the page's size grows with each).")] = "all",
    to: Annotated[str | None, typer.Option(
        "--to", show_default=False, help="Compare features with this second image (similarity panel).")] = None,
    explain: Annotated[bool, typer.Option(
        "--explain", help="Add the grad-rollout map of the top class (needs the explain feature).")] = False,
    target: Annotated[str | None, typer.Option(
        "--target", show_default=False,
        help="--explain: what to explain, as explain --target takes it: top, class:N or class:NAME (a bare N is "
             "class:N), image:OTHER, patch:R,C. \\[default: top]")] = None,
    text: Annotated[list[str] | None, typer.Option(
        "--text", metavar="PROMPT", show_default=False,
        help="Add a panel for this prompt: its LeGrad map and zero-shot score (repeat for several; CLIP-family "
             "checkpoints).")] = None,
    normalize: NormalizeOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
) -> None:
    from vitcli.api.images import Images

    out = Output(OutputOptions(None, as_json, quiet))
    model = open_model(model_opts, image_opts)
    found = Images(list(images), len(images) > 1, image_spec(image_opts))
    result = model.view(found, output=output, layers=layers, to=to, explain=explain, target=target, text=text,
                        normalize=normalize)
    out.finish(result.document, _table(result.document), warnings=result.warnings)



def _table(doc: "ViewDoc") -> Any:
    from vitcli.cli.report import info_table
    from vitcli.cli.tables import model_rows, span

    kinds = sorted({k for s in doc["storage"] for k in s["layers"].values()})
    rows = model_rows(doc["model"]) + [("images", ", ".join(doc["images"])), ("layers embedded", span(doc["layers"])),
                                       ("attention stored as",
                                        " and ".join({"qk": "float16 Q, K", "rows": "float16 rows"}[k] for k in kinds)),
                                       ("largest map error", f"{doc['max_map_error']:.2e}"),
                                       *_text_rows(doc.get("text")),
                                       ("written", f"{doc['output']} ({doc['size_mb']:.2f} MB)")]
    return info_table("vitcli view", rows)


def _text_rows(text: "ViewText | None") -> list[tuple[str, str]]:
    """The table's lines for the text panels: each image's zero-shot scores by prompt."""
    if not text:
        return []
    several = len(text["scores"]) > 1
    return [(f"zero-shot ({text['rule']})" + (f" {s['image'].split('/')[-1]}" if several else ""),
             ", ".join(f"{p!r}: {v:.4f}" for p, v in zip(text["prompts"], s["probs"], strict=True)))
            for s in text["scores"]]

"""`vitcli embed`: patches → projection → class token → + positions = Z0 → encoder → embedding."""

from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from vitcli.cli.common import (
    BatchOptions,
    ImageOptions,
    ImagesArg,
    ModelOptions,
    NormalizeOpt,
    Output,
    OutputOptions,
    choices,
    examples,
    gather,
    open_model,
    prose,
    value,
    with_options,
)
from vitcli.cli.datasets import DatasetOptions
from vitcli.cli.text import TextOpt, TokenizerOpt, text_table
from vitcli.errors import VitcliError

if TYPE_CHECKING:
    from vitcli.api.results import EmbedDocument

HELP = prose("""Project an image's patches into ViT token embeddings and show every stage.

patches (N, P·P·C) → projected (N, D) → with class token (N+1, D) → + position = Z0 (N+1, D) → encoder output Z_L (N+1,
D) → pooled image embedding (D,). -o writes the --stage you choose. Weights are random from --seed unless --weights
gives a checkpoint. With --text PROMPT (CLIP-family checkpoints), the prompts' text embeddings (K, E) instead.
""")
EXAMPLES = [
    'vitcli embed sample_images/chelsea.jpg',
    'vitcli embed sample_images/chelsea.jpg -o z0.npy',
    'vitcli embed sample_images/chelsea.jpg --stage pooled --model vit-s16 -o emb.npy',
    'vitcli embed sample_images/chelsea.jpg --impl linear --posenc sincos2d --json',
    'vitcli embed sample_images/ --stage pooled -o emb.npy',
    'vitcli embed sample_images/ --stage pooled --model vit-s16 --output-dir out/ --format parquet',
    'vitcli embed sample_images/ --output-dir out/ --resume',
]
EPILOG = examples(EXAMPLES)
Stage = choices("Stage", Literal["patches", "tokens", "input", "output", "pooled", "projected", "layers"])
LayerTokens = choices("LayerTokens", Literal["cls", "mean", "pooled"])
Impl = choices("Impl", Literal["conv", "linear"])
Posenc = choices("Posenc", Literal["learned", "sincos1d", "sincos2d", "none"])
LABELS = {"patches": "patches (N, P·P·C)", "tokens": "projected (N, D)", "with_cls": "with class token (T, D)",
          "input": "Z0 = + position (T, D)", "output": "encoder output Z_L (T, D)", "pooled": "pooled embedding (D,)",
          "projected": "projected (E,): image-text space", "layers": "every chosen block's tokens (L, D)"}


@with_options(out_opts=OutputOptions, image_opts=ImageOptions, model_opts=ModelOptions, batch=BatchOptions,
              data=DatasetOptions)
def embed_command(
    images: ImagesArg = None,
    stage: Annotated[Stage, typer.Option(  # type: ignore[valid-type]
        "--stage", metavar="STAGE",
        help="Which stage -o writes: patches, tokens (the projected patches), input (Z0), output (Z_L), pooled, "
             "projected (CLIP-style models: the image embedding in the joint image-text space, after the projection), "
             "or layers (each block's feature before the final norm, --tokens of --layers: (L, D) an image in .npy; in "
             "Parquet one column per layer, layer_0, layer_1, …, what compare --features reads).",
    )] = Stage["input"],
    impl: Annotated[Impl, typer.Option(  # type: ignore[valid-type]
        "--impl", metavar="IMPL",
        help="Patch projection as Conv2d(C, D, P, stride P) or Linear(P·P·C, D) on patchify's output (same numbers).",
    )] = Impl["conv"],
    posenc: Annotated[Posenc | None, typer.Option(  # type: ignore[valid-type]
        "--posenc", metavar="POSENC", show_default=False,
        help="learned | sincos1d | sincos2d | none \\[default: the model's, learned]",
    )] = None,
    layers: Annotated[str | None, typer.Option(
        "--layers", metavar="LAYERS", show_default=False,
        help="With --stage layers: the blocks (all, -1, 0,3,6 or 2:5). \\[default: all]")] = None,
    tokens: Annotated[LayerTokens | None, typer.Option(  # type: ignore[valid-type]
        "--tokens", metavar="TOKENS", show_default=False,
        help="With --stage layers: cls | mean | pooled. \\[default: cls with a class token, else mean]")] = None,
    normalize: NormalizeOpt = None,
    text: TextOpt = None,
    tokenizer: TokenizerOpt = None,
    *,
    out_opts: OutputOptions,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
    batch: BatchOptions,
    data: DatasetOptions,
) -> None:
    from vitcli.cli.common import batch_spec
    from vitcli.cli.datasets import dataset_spec

    out, output = Output(out_opts), out_opts.output
    if text:
        return _embed_text(out, text, tokenizer, images, model_opts)
    if tokenizer is not None:
        raise VitcliError("--tokenizer", "reads prompts: use it with --text")
    found = gather(images, image_opts, batch)
    model = open_model(model_opts, image_opts, value(posenc))
    with out.progress(len(found)) as progress:
        result = model.embed(found, stage=value(stage), impl=value(impl), normalize=normalize, output=output,
                             output_dir=batch.output_dir, batch=batch_spec(batch), keep=False, progress=progress,
                             dataset=dataset_spec(data), layers=layers, tokens=value(tokens))
    out.finish(result.document, *_tables(result.document), warnings=result.warnings)


def _embed_text(out: Output, texts: list[str], tokenizer: str | None, images: list[str] | None,
                model_opts: ModelOptions) -> None:
    """embed --text: the prompts' text embeddings (K, E) and a table of their tokens and norms."""
    if images:
        raise VitcliError("--text", "embeds prompts, not images: give either images or --text")
    model = open_model(model_opts)
    result = model.embed_text(texts, tokenizer=tokenizer, output=out.output)
    out.finish(result.document, *text_table(result.document))


def _tables(doc: "EmbedDocument") -> list[Any]:
    from vitcli.cli.report import info_table, stats_table
    from vitcli.cli.tables import batch_tables, input_rows, model_rows

    rows = model_rows(doc["model"]) + [("normalize", doc["normalize"])]
    if "input" not in doc:  # several images
        return batch_tables("embed", doc, rows + [("stage written", doc["stage"])], LABELS[doc["stage"]])
    rows = input_rows(doc["input"]) + rows
    rows += [("stage written", f"{doc['stage']} → {doc['outputs']['array']}")] if doc["outputs"]["array"] else []
    labels = {**LABELS,
              "pooled": LABELS["pooled"] + ", before the projection"} if doc["model"].get("projection") else LABELS
    stages = {labels[k]: v for k, v in doc["tensors"].items()}
    return [info_table("vitcli embed", rows), stats_table("stages", stages, label="stage")]

"""`vitcli classify` and the text options `embed --text` shares: zero-shot scores from a CLIP-family text tower."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

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
    examples,
    gather,
    open_model,
    prose,
    with_options,
)

if TYPE_CHECKING:
    from vitcli.api.documents import ClassifyDoc, TextEmbedDoc

HELP = prose("""Score images against text labels with a CLIP-family checkpoint's text tower (zero-shot).

Each label is encoded once; each image's embedding is compared with the family's own rule: CLIP softmax of
exp(logit_scale)·cos over the labels, SigLIP sigmoid of exp(logit_scale)·cos + logit_bias. A classifier checkpoint with
labels of its own (id2label) is scored by its head when no --labels are given. -o writes the probabilities (K,) or (B,
K).
""")
EXAMPLES = [
    "python -c \"import json, os, torch, open_clip, safetensors.torch as s; cfg = {'embed_dim': 128, 'vision_cfg': "
    "{'image_size': 224, 'layers': 4, 'width': 256, 'patch_size': 16, 'head_width': 64}, 'text_cfg': "
    "{'context_length': 77, 'vocab_size': 49408, 'width': 256, 'heads': 4, 'layers': 4}}; m = open_clip.CLIP(**cfg); "
    "os.makedirs('clip', exist_ok=True); s.save_file({k: v.contiguous() for k, v in m.state_dict().items()}, "
    "'clip/open_clip_model.safetensors'); json.dump({'model_cfg': cfg, 'preprocess_cfg': {}}, "
    "open('clip/open_clip_config.json', 'w'))\"",
    'vitcli classify sample_images/chelsea.jpg --weights clip/ --labels "a cat,a dog"',
    'vitcli classify sample_images/ --weights clip/ --labels "cat,cup,rocket" --template "a photo of a {}." -o p.npy',
]
EPILOG = examples(EXAMPLES)
TEXT_PANEL = "Text"

TextOpt = Annotated[list[str] | None, typer.Option(
    "--text", metavar="PROMPT", rich_help_panel=TEXT_PANEL, show_default=False,
    help="A prompt to embed with the checkpoint's text tower (repeat for several): -o writes (K, E).")]
TokenizerOpt = Annotated[str | None, typer.Option(
    "--tokenizer", metavar="PATH", rich_help_panel=TEXT_PANEL, show_default=False,
    help="The tokenizer when the checkpoint's folder has none: tokenizer.json, spiece.model, merges.txt or CLIP's "
         "bpe_simple_vocab_16e6.txt.gz (open_clip ships it), or a folder holding one.")]


def text_table(doc: "TextEmbedDoc") -> list[Any]:
    """embed --text: the tower and one row per prompt (tokens, truncated, norm)."""
    from vitcli.cli.report import info_table
    from vitcli.cli.tables import rows_table

    m = doc["model"]
    tower = (f"{m['text_layout']}: {m['text_depth']} blocks, D {m['text_dim']}, {m['text_heads']} heads, {m['mask']}, "
             f"pooling {m['pooling']}")
    rows = [("weights", m["source"]), ("text tower", tower),
            ("tokenizer", f"{m['tokenizer']} {m['tokenizer_file']}"), ("context", m["context_length"]),
            ("embeddings", f"{tuple(doc['shape'])} → {doc['outputs']['array']}" if doc["outputs"]["array"]
             else str(tuple(doc["shape"])))]
    prompts = [[_short(p["text"]), str(p["tokens"]), "yes" if p["truncated"] else "", p["norm"]]
               for p in doc["prompts"]]
    return [info_table("vitcli embed --text", rows), rows_table("prompts", ["prompt", "tokens", "truncated", "norm"],
                                                                prompts)]


def _short(text: str, width: int = 40) -> str:
    """A prompt on one table line: control characters shown escaped, long ones cut with '…'."""
    shown = text.encode("unicode_escape").decode("ascii") if any(not c.isprintable() for c in text) else text
    return repr(shown) if not shown else shown if len(shown) <= width else shown[:width - 1] + "…"


ScoresOpt = Annotated[str | None, typer.Option(
    "-o", "--output", metavar="FILE", rich_help_panel=OUTPUT_PANEL, show_default=False,
    help="Write the probabilities as .npy to FILE ((K,) for one image, (B, K) for several), or - for standard output.")]


@dataclass
class ScoresOutput(OutputOptions):
    """-o, --json, -q, with -o writing the probabilities."""

    output: ScoresOpt = None


@with_options(out_opts=ScoresOutput, image_opts=ImageOptions, model_opts=ModelOptions, batch=BatchOptions)
def classify_command(
    images: ImagesArg = None,
    labels: Annotated[str | None, typer.Option(
        "--labels", metavar="A,B,…", rich_help_panel=TEXT_PANEL, show_default=False,
        help="Comma-separated labels, used verbatim unless --template is given.")] = None,
    labels_file: Annotated[str | None, typer.Option(
        "--labels-file", metavar="FILE", rich_help_panel=TEXT_PANEL, show_default=False,
        help="A text file of labels, one a line.")] = None,
    template: Annotated[str | None, typer.Option(
        "--template", metavar="TEXT", rich_help_panel=TEXT_PANEL, show_default=False,
        help="A prompt with {} for each label, such as 'a photo of a {}.'.")] = None,
    tokenizer: TokenizerOpt = None,
    normalize: NormalizeOpt = None,
    *,
    out_opts: ScoresOutput,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
    batch: BatchOptions,
) -> None:
    from vitcli.cli.common import batch_spec
    from vitcli.errors import VitcliError

    out, output = Output(out_opts), out_opts.output
    if batch.output_dir:
        raise VitcliError("--output-dir", "classify writes one array of scores: use -o FILE.npy")
    found = gather(images, image_opts, batch)
    model = open_model(model_opts, image_opts)
    with out.progress(len(found)) as progress:
        result = model.classify(found, labels=labels, labels_file=labels_file, template=template, tokenizer=tokenizer,
                                normalize=normalize, output=output, batch=batch_spec(batch), progress=progress)
    out.finish(result.document, *_tables(result.document))


def _tables(doc: "ClassifyDoc", top: int = 10) -> list[Any]:
    """The rule, and each image's labels sorted by score (the first `top`)."""
    import numpy as np

    from vitcli.cli.report import info_table
    from vitcli.cli.tables import rows_table

    rule = {"softmax": "softmax of exp(logit_scale)·cos (CLIP)", "sigmoid": "sigmoid of exp(logit_scale)·cos + "
            "logit_bias (SigLIP)", "head": "the classifier head's softmax"}[doc["rule"]]
    rows = [("weights", doc["model"]["source"]), ("labels", len(doc["labels"])), ("rule", rule)]
    rows += [("truncated", f"{len(doc['truncated'])} labels longer than the context, cut as the library cuts them")] \
        if doc["truncated"] else []
    rows += [("written", doc["outputs"]["array"])] if doc["outputs"]["array"] else []
    probs, logits = np.atleast_2d(doc["probs"]), np.atleast_2d(doc["logits"])
    tables = [info_table("vitcli classify", rows)]
    for name, p, lg in zip(doc["images"], probs, logits, strict=False):
        order = np.argsort(-p, kind="stable")[:top]
        shown = [[_short(doc["labels"][i]), float(p[i]), float(lg[i])] for i in order]
        tables.append(rows_table(f"{name}" + (f" (top {top} of {len(p)})" if len(p) > top else ""),
                                 ["label", "score", "logit"], shown))
    return tables

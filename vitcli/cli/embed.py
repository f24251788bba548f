"""`vitcli embed`: patches → projection → class token → + positions = Z0 → encoder → embedding."""

from enum import Enum
from typing import Annotated, Any, Optional

import typer

from vitcli.cli.common import ImageArg, ImageOptions, JsonOpt, Output, OutputOpt, QuietOpt, with_options
from vitcli.cli.model import ModelOptions

HELP = """Project an image's patches into ViT token embeddings and show every stage.

patches (N, P·P·C) → projected (N, D) → with class token (N+1, D) → + position = Z0 (N+1, D)
→ encoder output Z_L (N+1, D) → pooled image embedding (D,). -o writes the --stage you choose.
Weights are random from --seed unless --weights gives a checkpoint.
"""
EPILOG = (
    "Examples:  vitcli embed sample_images/chelsea.jpg  ·  "
    "vitcli embed cat.jpg -o z0.npy  ·  vitcli embed cat.jpg --stage pooled --model vit-s16 -o emb.npy  ·  "
    "vitcli embed cat.jpg --impl linear --posenc sincos2d --json"
)


class Stage(str, Enum):
    patches = "patches"
    tokens = "tokens"
    input = "input"
    output = "output"
    pooled = "pooled"


class Impl(str, Enum):
    conv = "conv"
    linear = "linear"


class PosencChoice(str, Enum):
    learned = "learned"
    sincos1d = "sincos1d"
    sincos2d = "sincos2d"
    none = "none"


# stage → (ViTOutput field, table label)
STAGES = {
    "patches": ("patches", "patches (N, P·P·C)"),
    "tokens": ("tokens", "projected (N, D)"),
    "with_cls": ("with_prefix", "with class token (T, D)"),
    "input": ("z0", "Z0 = + position (T, D)"),
    "output": ("output", "encoder output Z_L (T, D)"),
    "pooled": ("pooled", "pooled embedding (D,)"),
}


@with_options(image_opts=ImageOptions, model_opts=ModelOptions)
def embed_command(
    image: ImageArg,
    stage: Annotated[Stage, typer.Option("--stage", help="Which stage -o writes: patches, tokens (projected), input (Z0), output (Z_L), pooled.")] = Stage.input,
    impl: Annotated[Impl, typer.Option("--impl", help="Patch projection as Conv2d(C, D, P, stride P) or Linear(P·P·C, D) on patchify's output (same numbers).")] = Impl.conv,
    posenc: Annotated[Optional[PosencChoice], typer.Option("--posenc", help="learned | sincos1d | sincos2d | none [default: the model's, learned]", show_default=False)] = None,
    normalize: Annotated[Optional[str], typer.Option("--normalize", help="imagenet | inception | clip | none [default: the checkpoint's, else imagenet]", show_default=False)] = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
) -> None:
    from vitcli.cli.run import run_model

    out = Output(output, as_json, quiet)
    run = run_model(image, image_opts, model_opts, posenc.value if posenc else None, normalize, impl=impl.value)
    arrays = {key: run.first(field) for key, (field, _) in STAGES.items() if run.first(field) is not None}
    chosen = {"patches": "patches", "tokens": "tokens", "input": "input", "output": "output", "pooled": "pooled"}[stage.value]
    if chosen not in arrays:
        from vitcli.errors import VitcliError

        raise VitcliError("--stage", f"this model has no {chosen} stage (pooling is none)")
    if out.output:
        from vitcli.io.arrays import save_npy

        save_npy(out.output, arrays[chosen])
    doc = {
        **run.document("embed"),
        "stage": stage.value,
        "impl": impl.value,
        "tensors": {key: _stats(a) for key, a in arrays.items()},
        "outputs": {"array": out.output},
    }
    _report(doc, run, out)


def _stats(array: Any) -> dict[str, Any]:
    from vitcli.report import tensor_stats

    return tensor_stats(array)


def _report(doc: dict[str, Any], run: Any, out: Output) -> None:
    from vitcli import __version__
    from vitcli.cli.model import model_rows
    from vitcli.report import emit_json, info_table, stats_table

    if out.as_json:
        return emit_json({**doc, "version": __version__})
    rows = run.prepared.input_rows() + model_rows(doc["model"]) + [("normalize", doc["normalize"])]
    rows += [("stage written", f"{doc['stage']} → {doc['outputs']['array']}")] if doc["outputs"]["array"] else []
    stages = {STAGES[k][1]: v for k, v in doc["tensors"].items()}
    out.show(info_table("vitcli embed", rows), stats_table("stages", stages, label="stage"))
    for w in run.warnings:
        out.message(f"[yellow]warning:[/] {w}")

"""`vitcli embed`: patches → projection → class token → + positions = Z0 → encoder → embedding."""

from enum import Enum
from typing import Annotated, Any, Optional

import typer

from vitcli.cli.batch import BatchOptions, ImagesArg, gather
from vitcli.cli.common import ImageOptions, JsonOpt, NormalizeOpt, Output, OutputOpt, QuietOpt, with_options
from vitcli.cli.model import ModelOptions

HELP = """Project an image's patches into ViT token embeddings and show every stage.

patches (N, P·P·C) → projected (N, D) → with class token (N+1, D) → + position = Z0 (N+1, D)
→ encoder output Z_L (N+1, D) → pooled image embedding (D,). -o writes the --stage you choose.
Weights are random from --seed unless --weights gives a checkpoint.
"""
EPILOG = (
    "Examples:  vitcli embed sample_images/chelsea.jpg  ·  "
    "vitcli embed cat.jpg -o z0.npy  ·  vitcli embed cat.jpg --stage pooled --model vit-s16 -o emb.npy  ·  "
    "vitcli embed cat.jpg --impl linear --posenc sincos2d --json  ·  "
    "vitcli embed photos/ --stage pooled -o emb.npy   (B, D) + emb.index.jsonl"
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


@with_options(image_opts=ImageOptions, model_opts=ModelOptions, batch=BatchOptions)
def embed_command(
    images: ImagesArg = None,
    stage: Annotated[Stage, typer.Option("--stage", help="Which stage -o writes: patches, tokens (projected), input (Z0), output (Z_L), pooled.")] = Stage.input,
    impl: Annotated[Impl, typer.Option("--impl", help="Patch projection as Conv2d(C, D, P, stride P) or Linear(P·P·C, D) on patchify's output (same numbers).")] = Impl.conv,
    posenc: Annotated[Optional[PosencChoice], typer.Option("--posenc", help="learned | sincos1d | sincos2d | none [default: the model's, learned]", show_default=False)] = None,
    normalize: NormalizeOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
    batch: BatchOptions,
) -> None:
    from vitcli.cli.run import run_model

    out = Output(output, as_json, quiet)
    inputs = gather(images, batch)
    if inputs.many:
        return _embed_many(inputs.paths, stage.value, impl.value, posenc.value if posenc else None, normalize,
                           image_opts, model_opts, batch, out)
    image = inputs.paths[0]
    run = run_model(image, image_opts, model_opts, posenc.value if posenc else None, normalize, impl=impl.value)
    arrays = {key: run.first(field) for key, (field, _) in STAGES.items() if run.first(field) is not None}
    chosen = stage.value
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


def _embed_many(paths: list[str], stage: str, impl: str, posenc: str | None, normalize: str | None,
                image_opts: ImageOptions, model_opts: ModelOptions, batch: BatchOptions, out: Output) -> None:
    """One stage for every image: rows of one (B, ...) array, batch by batch, one model for all."""
    import numpy as np
    import torch

    from vitcli.cli.batch import run_batch, show_summary
    from vitcli.cli.model import model_document, model_rows
    from vitcli.cli.run import batch_model
    from vitcli.core.presets import count_params
    from vitcli.errors import VitcliError

    bm = batch_model(image_opts, model_opts, posenc, normalize)
    if stage == "pooled" and bm.setup.config.pooling == "none":
        raise VitcliError("--stage", "this model has no pooled stage (pooling is none)")
    from vitcli.core.capture import Capture

    field, label = STAGES[stage]
    # patches / tokens / input: no block runs; output / pooled: the inputs freed early; pooled: the
    # last block for the class token only (the same bits as the single-image run's pooled)
    captures = {"output": Capture(inputs=False, final="tokens"), "pooled": Capture(inputs=False, final="pooled")}
    capture = captures.get(stage, Capture(final="none"))

    def compute(items: list[Any]) -> np.ndarray:
        with torch.inference_mode():
            result = bm.model(bm.batch_tensor(items), capture, impl=impl)
        return getattr(result, field).float().cpu().numpy()  # (b, ...) e.g. (b, D) pooled

    report = run_batch(paths, batch, out.output, out, prepare=bm.prepare, compute=compute, patch_size=bm.patch_size,
                       overlap=bm.overlap_decoding)
    grid = report.first.get("grid")
    doc = {"command": "embed", **report.document(), "stage": stage, "impl": impl, "normalize": bm.normalize,
           "patch_size": bm.patch_size,
           "model": model_document(bm.setup, tuple(grid) if grid else None, count_params(bm.model)),
           "tensors": {stage: report.stats.document()}}
    rows = model_rows(doc["model"]) + [("normalize", bm.normalize), ("stage written", stage)]
    show_summary("embed", report, rows, label, doc, out)
    if bm.warning:
        out.message(f"[yellow]warning:[/] {bm.warning}")


def _stats(array: Any) -> dict[str, Any]:
    from vitcli.report import tensor_stats

    return tensor_stats(array)


def _report(doc: dict[str, Any], run: Any, out: Output) -> None:
    from vitcli.cli.model import model_rows
    from vitcli.report import emit_json, info_table, stats_table

    if out.as_json:
        return emit_json(doc)
    rows = run.prepared.input_rows() + model_rows(doc["model"]) + [("normalize", doc["normalize"])]
    rows += [("stage written", f"{doc['stage']} → {doc['outputs']['array']}")] if doc["outputs"]["array"] else []
    stages = {STAGES[k][1]: v for k, v in doc["tensors"].items()}
    out.show(info_table("vitcli embed", rows), stats_table("stages", stages, label="stage"))
    for w in run.warnings:
        out.message(f"[yellow]warning:[/] {w}")

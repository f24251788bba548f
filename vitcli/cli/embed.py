"""`vitcli embed`: patches → projection → class token → + positions = Z0 → encoder → embedding."""

from enum import Enum
from typing import Annotated, Any, Optional

import typer

from vitcli.cli.batch import BatchOptions, ImagesArg, gather
from vitcli.cli.common import ImageOptions, JsonOpt, Output, OutputOpt, QuietOpt, with_options
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


@with_options(image_opts=ImageOptions, model_opts=ModelOptions, batch=BatchOptions)
def embed_command(
    images: ImagesArg = None,
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


def _embed_many(paths: list[str], stage: str, impl: str, posenc: str | None, normalize: str | None,
                image_opts: ImageOptions, model_opts: ModelOptions, batch: BatchOptions, out: Output) -> None:
    """One stage for every image: rows of one (B, ...) array, batch by batch, one model for all."""
    import numpy as np
    import torch

    from vitcli.cli.batch import check_image_options, run_batch, show_summary
    from vitcli.cli.common import prepare_image
    from vitcli.cli.model import build, model_document, model_rows, resolve_config
    from vitcli.cli.run import default_normalize, image_tensor
    from vitcli.core.presets import count_params
    from vitcli.errors import VitcliError

    setup = resolve_config(model_opts, image_opts.patch_size, posenc)
    patch = setup.config.patch_size
    if image_opts.size is None:
        image_opts = ImageOptions(**{**image_opts.__dict__, "size": "{}x{}".format(*setup.config.image_size)})
    check_image_options(image_opts, patch)
    if stage == "pooled" and setup.config.pooling == "none":
        raise VitcliError("--stage", "this model has no pooled stage (pooling is none)")
    model, warning = build(setup, model_opts)
    norm = normalize or default_normalize(setup)
    image_tensor(np.zeros((patch, patch, 3), np.uint8), norm)  # an unknown --normalize fails before any image
    param = next(model.parameters())
    field = STAGES["input" if stage == "input" else stage][0]
    keep_inputs = stage in ("patches", "tokens", "input")

    def prepare(path: str) -> Any:
        item = prepare_image(path, image_opts, patch)
        item.data = image_tensor(item.pixels, norm)  # (1, 3, H, W), normalised in the decoding thread
        return item

    def compute(items: list[Any]) -> np.ndarray:
        x = torch.cat([p.data for p in items]).to(param.device, param.dtype)  # (b, 3, H, W)
        with torch.inference_mode():
            result = model(x, impl=impl, keep_inputs=keep_inputs)
        return getattr(result, field).float().cpu().numpy()  # (b, ...) e.g. (b, D) pooled

    report = run_batch(paths, batch, out.output, out, prepare=prepare, compute=compute, patch_size=patch)
    grid = report.first.get("grid")
    doc = {"command": "embed", **report.document(), "stage": stage, "impl": impl, "normalize": norm,
           "patch_size": patch, "model": model_document(setup, tuple(grid) if grid else None, count_params(model)),
           "tensors": {stage: report.stats.document()}}
    rows = model_rows(doc["model"]) + [("normalize", norm), ("stage written", stage)]
    show_summary("embed", report, rows, STAGES["input" if stage == "input" else stage][1], doc, out)
    if warning:
        out.message(f"[yellow]warning:[/] {warning}")


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

"""`vitcli info`: describe a model preset or a checkpoint without running it."""

from typing import Annotated, Any, Optional

import typer

from vitcli.cli.common import JsonOpt, Output, QuietOpt, with_options
from vitcli.cli.model import ModelOptions

HELP = """Describe a ViT: patch size, grid, tokens, dim, depth, heads, MLP, parameters and GMACs.

With --weights, the architecture, family, native size and preprocessing inferred from the
checkpoint, and the keys that were ignored.
"""
EPILOG = "Examples:  vitcli info  ·  vitcli info --model vit-l16 --size 384  ·  vitcli info --weights vit.safetensors --json"


@with_options(model_opts=ModelOptions)
def info_command(
    size: Annotated[Optional[str], typer.Option("--size", help="Image size HxW for the grid and GMACs. [default: the model's native size]", show_default=False)] = None,
    patch_size: Annotated[Optional[int], typer.Option("-p", "--patch-size", help="Override the patch size P.", show_default=False)] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    from vitcli.cli.model import model_document, model_rows, resolve_config
    from vitcli.errors import VitcliError
    from vitcli.io.images import parse_hw
    from vitcli.report import emit_json, info_table

    out = Output(None, as_json, quiet)
    setup = resolve_config(model_opts, patch_size)
    c = setup.config
    h, w = parse_hw(size, "--size") if size else c.image_size
    if h % c.patch_size or w % c.patch_size:
        raise VitcliError("--size", f"{h}x{w} is not a multiple of the patch size {c.patch_size}")
    doc: dict[str, Any] = {"command": "info", "input": None, "patch_size": c.patch_size, "grid": [h // c.patch_size, w // c.patch_size]}
    doc["num_patches"] = doc["grid"][0] * doc["grid"][1]
    doc["model"] = model_document(setup, tuple(doc["grid"]))
    doc["tensors"] = {}
    preprocess = getattr(setup.checkpoint, "preprocess", None)
    if preprocess is not None:
        doc["preprocess"] = preprocess_document(preprocess)
    if out.as_json:
        return emit_json(doc)
    rows = model_rows(doc["model"]) + [
        ("image size [H, W]", f"{h} × {w}" + (" (native)" if (h, w) == tuple(c.image_size) else f" (native {c.image_size[0]} × {c.image_size[1]})")),
        ("activation / LN eps", f"{c.activation} / {c.eps:g}"),
        ("prefix tokens", _prefix(c)),
        ("pooling / head", f"{c.pooling} / {c.num_classes or 'none'}"),
    ]
    if "preprocess" in doc:
        rows += [(f"preprocess {k}", str(v)) for k, v in doc["preprocess"].items()]
    if doc["model"].get("ignored_keys"):
        rows.append(("ignored keys", ", ".join(doc["model"]["ignored_keys"])))
    out.show(info_table("vitcli info", rows))


def _prefix(c: Any) -> str:
    """'class + 4 registers' etc."""
    parts = (["class"] if c.class_token else []) + (["distillation"] if c.distilled else [])
    parts += [f"{c.num_registers} registers"] if c.num_registers else []
    return " + ".join(parts) or "none"


def preprocess_document(preprocess: Any) -> dict[str, Any]:
    """A checkpoint's preprocessing as plain JSON values."""
    from dataclasses import asdict, is_dataclass

    raw = asdict(preprocess) if is_dataclass(preprocess) else dict(vars(preprocess))
    return {k: list(v) if isinstance(v, tuple) else v for k, v in raw.items()}

"""`vitcli info`: describe a model preset or a checkpoint without running it."""

from typing import Annotated, Any, Optional

import typer

from vitcli.cli.common import JsonOpt, ModelOptions, Output, QuietOpt, open_model, with_options

HELP = """Describe a ViT: patch size, grid, tokens, dim, depth, heads, MLP, parameters and GMACs.

With --weights, the architecture, family, native size and preprocessing inferred from the checkpoint, and the keys that were ignored.
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
    from vitcli.cli.common import ImageOptions

    out = Output(None, as_json, quiet)
    doc = open_model(model_opts, ImageOptions(patch_size=patch_size)).info(size)
    out.finish(doc, _table(doc))


def _table(doc: dict[str, Any]) -> Any:
    from vitcli.report import info_table
    from vitcli.tables import model_rows

    m = doc["model"]
    h, w = doc["size"]
    native = tuple(m["native_size"])
    rows = model_rows(m) + [
        ("image size [H, W]", f"{h} × {w}" + (" (native)" if (h, w) == native else f" (native {native[0]} × {native[1]})")),
        ("activation / LN eps", f"{m['activation']} / {m['eps']:g}"),
        ("prefix tokens", doc["prefix_tokens"]),
        ("pooling / head", f"{m['pooling']} / {m['num_classes'] or 'none'}"),
    ]
    rows += [(f"part: {k}", v) for k, v in m.get("parts", {}).items()]
    rows += [(f"preprocess {k}", str(v)) for k, v in doc.get("preprocess", {}).items()]
    if m.get("ignored_keys"):
        rows.append(("ignored keys", ", ".join(m["ignored_keys"])))
    return info_table("vitcli info", rows)

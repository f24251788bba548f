"""`vitcli info`: describe a model preset or a checkpoint without running it."""

from typing import TYPE_CHECKING, Annotated, Any

import typer

from vitcli.cli.common import (
    JsonOpt,
    ModelOptions,
    Output,
    OutputOptions,
    QuietOpt,
    examples,
    open_model,
    prose,
    with_options,
)

if TYPE_CHECKING:
    from vitcli.api.documents import InfoDoc

HELP = prose("""Describe a ViT: patch size, grid, tokens, dim, depth, heads, MLP, parameters and GMACs.

With --weights, the architecture, family, native size and preprocessing inferred from the checkpoint, and the keys that
were ignored. Only what describes the checkpoint is read (a safetensors header, config files); --check-values also reads
every weight and counts NaN / Inf.
""")
EXAMPLES = [
    'vitcli info',
    'vitcli info --model vit-l16 --size 384',
    "python -c \"import timm, safetensors.torch as s; s.save_file(timm.create_model('vit_small_patch16_224', "
    "depth=2).state_dict(), 'vit.safetensors')\"",
    'vitcli info --weights vit.safetensors --json',
    'vitcli info --weights vit.safetensors --check-values',
]
EPILOG = examples(EXAMPLES)


@with_options(model_opts=ModelOptions)
def info_command(
    size: Annotated[str | None, typer.Option(
        "--size", metavar="N|HxW|native", show_default=False,
        help="Image size HxW for the grid and GMACs. \\[default: the model's native size]")] = None,
    list_ignored: Annotated[bool, typer.Option(
        "--list-ignored", metavar="",
        help="List every ignored key of a checkpoint (a CLIP text tower is otherwise one summary line).")] = False,
    check_values: Annotated[bool, typer.Option(
        "--check-values", metavar="",
        help="Read every weight and count NaN / Inf values (slower: the whole file is read).")] = False,
    patch_size: Annotated[int | None, typer.Option(
        "-p", "--patch-size", metavar="N", show_default=False, help="Override the patch size P.")] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    from vitcli.cli.common import ImageOptions

    out = Output(OutputOptions(None, as_json, quiet))
    doc = open_model(model_opts, ImageOptions(patch_size=patch_size), describe_only=not check_values).info(size)
    out.finish(doc, _table(doc, list_ignored))


def _table(doc: "InfoDoc", list_ignored: bool = False) -> Any:
    from vitcli.cli.report import info_table
    from vitcli.cli.tables import model_rows

    m = doc["model"]
    h, w = doc["size"]
    native = tuple(m["native_size"])
    rows = model_rows(m) + [
        ("image size [H, W]",
         f"{h} × {w}" + (" (native)" if (h, w) == native else f" (native {native[0]} × {native[1]})")),
        *([("patch grid", doc["size_note"])] if doc.get("size_note") else []),
        *([("table at other grids", m["position_resample"])] if m.get("position_resample") else []),
        ("activation / LN eps", f"{m['activation']} / {m['eps']:g}"),
        ("prefix tokens", doc["prefix_tokens"]),
        ("pooling / head", f"{m['pooling']} / {m['num_classes'] or 'none'}"),
    ]
    if doc.get("class_labels"):
        labels = doc["class_labels"]
        rows.append(("class labels", f"{labels['count']} ({labels['from']}): " + "; ".join(labels["first"])
                     + ("; …" if labels["count"] > len(labels["first"]) else "")))
    if m.get("layout"):
        rows.append(("layout (--family)", m["layout"]))
        rows += [("layout note", n) for n in m.get("layout_notes", [])]
    rows += [(f"part: {k}", v) for k, v in m.get("parts", {}).items()]
    rows += [(f"preprocess {k}", str(v)) for k, v in doc.get("preprocess", {}).items()]
    summary = doc.get("ignored_summary")
    if m.get("ignored_keys") and (list_ignored or not (summary and summary["text_tower"])):
        rows.append(("ignored keys", ", ".join(m["ignored_keys"])))
    elif m.get("ignored_keys") and summary:
        rows.append(("text tower", f"{summary['text_tower']} tensors, not used (--list-ignored shows them)"))
        if summary["other"]:
            rows.append(("ignored keys", ", ".join(summary["other"])))
    return info_table("vitcli info", rows)

"""Model options shared by embed, posenc, attend and info: preset or checkpoint, overrides, device.

Imports only typer at module level; torch and the core are imported when a command runs.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

if TYPE_CHECKING:
    import torch

    from vitcli.core.config import ViTConfig

MODEL_PANEL = "Model"


@dataclass
class ModelOptions:
    """Which ViT to run and where."""

    model: Annotated[str, typer.Option("--model", help="Preset: vit-ti16, vit-s16, vit-b16, vit-b32, vit-l16, vit-s14, vit-b14, vit-l14, vit-h14.", rich_help_panel=MODEL_PANEL)] = "vit-b16"
    weights: Annotated[Optional[str], typer.Option("--weights", help="Checkpoint: .safetensors, .pth/.pt/.bin, CLIP .pt, or hf-hub:ORG/NAME, timm:NAME (from the local cache).", rich_help_panel=MODEL_PANEL, show_default=False)] = None
    dim: Annotated[Optional[int], typer.Option("-d", "--dim", help="Override the embedding width D.", rich_help_panel=MODEL_PANEL, show_default=False)] = None
    depth: Annotated[Optional[int], typer.Option("--depth", help="Override the number of blocks L.", rich_help_panel=MODEL_PANEL, show_default=False)] = None
    heads: Annotated[Optional[int], typer.Option("--heads", help="Override the number of attention heads.", rich_help_panel=MODEL_PANEL, show_default=False)] = None
    mlp_ratio: Annotated[Optional[float], typer.Option("--mlp-ratio", help="Override the MLP width as a multiple of D.", rich_help_panel=MODEL_PANEL, show_default=False)] = None
    no_cls: Annotated[bool, typer.Option("--no-cls", help="No class token (and no position row for it; mean pooling).", rich_help_panel=MODEL_PANEL)] = False
    seed: Annotated[int, typer.Option("--seed", help="Seed of the random weights: same seed, same numbers.", rich_help_panel=MODEL_PANEL)] = 0
    device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=MODEL_PANEL)] = "auto"
    dtype: Annotated[str, typer.Option("--dtype", help="float32, float16 or bfloat16 (half types are slow on the CPU).", rich_help_panel=MODEL_PANEL)] = "float32"
    native_size: Annotated[Optional[str], typer.Option("--native-size", help="With --weights: the size HxW the checkpoint was trained at, for a non-square position table that has no config.json beside it.", rich_help_panel=MODEL_PANEL, show_default=False)] = None
    strict: Annotated[bool, typer.Option("--strict/--no-strict", help="Refuse checkpoints with left-over or missing keys.", rich_help_panel=MODEL_PANEL)] = True


@dataclass
class ModelSetup:
    """A config ready to build, where it came from, and the checkpoint (if any)."""

    config: "ViTConfig"
    source: str  # "random (seed 0)" or the checkpoint path
    checkpoint: Any = None  # vitcli.checkpoints.load.Loaded when --weights is given


def _value_error(option: str):
    """Turn the core's ValueError into the CLI's one-line error naming the option."""
    from contextlib import contextmanager

    from vitcli.errors import VitcliError

    @contextmanager
    def guard():
        try:
            yield
        except ValueError as e:
            raise VitcliError(option, str(e)) from None

    return guard()


def resolve_config(opts: ModelOptions, patch_size: int | None = None, posenc: str | None = None) -> ModelSetup:
    """The preset with overrides, or the architecture a checkpoint implies (--native-size: the
    checkpoint's image size [H, W], needed for a non-square table without a config file)."""
    from vitcli.errors import VitcliError

    if opts.weights:
        changed = ["mlp_ratio"] if opts.mlp_ratio is not None else []  # --heads fills in, --dim/--depth are checked
        if changed or patch_size is not None:
            names = ", ".join("--" + n.replace("_", "-") for n in changed + (["patch_size"] if patch_size else []))
            raise VitcliError(opts.weights, f"the architecture comes from the checkpoint; drop {names}")
        from vitcli.checkpoints.load import load_checkpoint, require_native_grid

        native_size = None
        if opts.native_size:
            from vitcli.io.images import parse_hw

            native_size = parse_hw(opts.native_size, "--native-size")
        loaded = require_native_grid(load_checkpoint(opts.weights, strict=opts.strict, image_size=native_size,
                                                     heads=opts.heads, dim=opts.dim, depth=opts.depth))
        return ModelSetup(loaded.config, opts.weights, loaded)
    if opts.native_size:
        raise VitcliError("--native-size", "tells a checkpoint's native size: use it with --weights (presets take --size)")
    from vitcli.core.presets import get_preset, override

    with _value_error("--model"):
        preset = get_preset(opts.model)
    with _value_error(opts.model):
        config = override(
            preset, patch_size=patch_size, dim=opts.dim, depth=opts.depth, heads=_heads_for(opts, preset.heads),
            mlp_ratio=opts.mlp_ratio, posenc=posenc, class_token=False if opts.no_cls else None,  # type: ignore[arg-type]
        )
    return ModelSetup(config, f"random weights (seed {opts.seed})")


def _heads_for(opts: ModelOptions, preset_heads: int) -> int | None:
    """--heads, or when only --dim changes and the preset's heads do not divide it, heads of 64
    channels (the ViT rule) or else the largest count that divides D."""
    from math import gcd

    if opts.heads is not None or opts.dim is None or opts.dim % preset_heads == 0:
        return opts.heads
    return opts.dim // 64 if opts.dim % 64 == 0 else gcd(opts.dim, preset_heads)


def device_and_dtype(opts: ModelOptions) -> tuple["torch.device", "torch.dtype", str | None]:
    """Resolved device and dtype, and a warning to show (half types on the CPU)."""
    from vitcli.core.device import resolve_device, resolve_dtype

    with _value_error("--device"):
        device = resolve_device(opts.device)
    with _value_error("--dtype"):
        dtype, warning = resolve_dtype(opts.dtype, device)
    return device, dtype, warning


def build(setup: ModelSetup, opts: ModelOptions) -> tuple[Any, str | None]:
    """The model on its device and dtype (weights from the checkpoint or the seed), and a warning."""
    device, dtype, warning = device_and_dtype(opts)
    if setup.checkpoint is not None:
        from vitcli.checkpoints.load import build_model_from_checkpoint

        model = build_model_from_checkpoint(setup.checkpoint)
        return model.to(device=device, dtype=dtype).eval(), warning
    from vitcli.core.presets import build_model

    return build_model(setup.config, opts.seed, device, dtype), warning


def model_document(setup: ModelSetup, grid: tuple[int, int] | None = None, params: int | None = None) -> dict[str, Any]:
    """The `model` JSON object that embed, attend and info share."""
    from vitcli.core.presets import config_params, count_macs

    c = setup.config
    grid = grid or c.grid
    doc: dict[str, Any] = {
        "name": c.name, "source": setup.source, "patch_size": c.patch_size, "dim": c.dim, "depth": c.depth,
        "heads": c.heads, "head_dim": c.head_dim, "mlp_dim": c.mlp_dim,
        "params": params if params is not None else config_params(c),
        "gmacs": round(count_macs(c, grid) / 1e9, 3), "native_size": list(c.image_size),
        "native_grid": list(c.grid), "grid": list(grid), "num_prefix_tokens": c.num_prefix_tokens,
        "num_tokens": grid[0] * grid[1] + c.num_prefix_tokens, "posenc": c.posenc, "pooling": c.pooling,
        "activation": c.activation, "eps": c.eps, "num_classes": c.num_classes,
    }
    if setup.checkpoint is not None:
        doc["family"] = setup.checkpoint.family
        doc["ignored_keys"] = list(setup.checkpoint.ignored_keys)
        doc["nonfinite_weights"] = dict(getattr(setup.checkpoint, "nonfinite", {}))
    return doc


def nonfinite_summary(counts: dict[str, dict[str, int]]) -> str:
    """'5 NaN, 0 Inf in 1 tensor: blocks.0.attn.qkv.weight' for the table."""
    nan, inf = (sum(c[k] for c in counts.values()) for k in ("nan", "inf"))
    names = ", ".join(list(counts)[:4]) + (f" and {len(counts) - 4} more" if len(counts) > 4 else "")
    return f"{nan:,} NaN, {inf:,} Inf in {len(counts)} tensor{'s' if len(counts) > 1 else ''}: {names}"


def model_rows(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """Table rows describing a model document."""
    rows: list[tuple[str, Any]] = [
        ("model", doc["name"] + (f" ({doc['family']})" if doc.get("family") else "")),
        ("weights", doc["source"]),
        ("patch size P", doc["patch_size"]),
        ("grid [rows, cols]", "{} × {}".format(*doc["grid"])),
        ("tokens T", f"{doc['num_tokens']} ({doc['num_prefix_tokens']} prefix + {doc['grid'][0] * doc['grid'][1]} patches)"),
        ("dim D / depth L / heads", f"{doc['dim']} / {doc['depth']} / {doc['heads']} (head dim {doc['head_dim']})"),
        ("MLP dim", doc["mlp_dim"]),
        ("position encoding", doc["posenc"]),
        ("parameters", f"{doc['params']:,}"),
        ("GMACs (this grid)", f"{doc['gmacs']:.2f}"),
    ]
    if doc.get("nonfinite_weights"):
        rows.append(("NaN / Inf in weights", nonfinite_summary(doc["nonfinite_weights"])))
    return rows

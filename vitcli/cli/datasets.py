"""The dataset options of `embed`: Parquet and shard formats, resumable runs, the Ray backend."""

from dataclasses import dataclass
from typing import Annotated, Any, Literal

import typer

from vitcli.cli.common import OUTPUT_PANEL, choices, value

DATASET_PANEL = "Datasets"
FormatChoice = choices("FormatChoice", Literal["npy", "parquet", "npy-shards"])
BackendChoice = choices("BackendChoice", Literal["local", "ray"])


@dataclass
class DatasetOptions:
    """How a dataset run is stored (Parquet, shards, manifest) and where it runs (local, Ray)."""

    format: Annotated[FormatChoice, typer.Option(  # type: ignore[valid-type]
        "--format", rich_help_panel=OUTPUT_PANEL,
        help="With --output-dir: npy (a file per image), parquet (shards part-00000.parquet …) or npy-shards "
             "(clip-retrieval's img_emb/ + metadata/). -o FILE.parquet writes one Parquet file.",
    )] = FormatChoice("npy")
    shard_size: Annotated[int | None, typer.Option(
        "--shard-size", metavar="N", rich_help_panel=DATASET_PANEL, show_default=False,
        help="Images per shard (with --output-dir and --format parquet or npy-shards); each shard is committed whole, "
             "with a manifest in --output-dir. \\[default: 10000]")] = None
    resume: Annotated[bool, typer.Option(
        "--resume", rich_help_panel=DATASET_PANEL,
        help="Continue the run in --output-dir (after a crash or kill): checks inputs, options and version against "
             "its manifest and computes only the missing shards.")] = False
    backend: Annotated[BackendChoice, typer.Option(  # type: ignore[valid-type]
        "--backend", rich_help_panel=DATASET_PANEL,
        help="local, or ray: a Ray Data pipeline (pip install 'vitcli\\[ray]').",
    )] = BackendChoice("local")
    actors: Annotated[int | None, typer.Option(
        "--actors", metavar="N", rich_help_panel=DATASET_PANEL, show_default=False,
        help="Ray: model actors (one model each). \\[default: 1]")] = None
    num_gpus: Annotated[float | None, typer.Option(
        "--num-gpus", metavar="G", rich_help_panel=DATASET_PANEL, show_default=False,
        help="Ray: GPUs per model actor. \\[default: 0]")] = None
    ray_address: Annotated[str | None, typer.Option(
        "--ray-address", rich_help_panel=DATASET_PANEL, show_default=False,
        help="Ray: the cluster to join, HOST:PORT or auto. \\[default: RAY_ADDRESS, else Ray starts locally]")] = None


def dataset_spec(opts: DatasetOptions) -> Any:
    """The options as the API's DatasetSpec."""
    from vitcli.api.dataset import DatasetSpec

    return DatasetSpec(value(opts.format), opts.shard_size, opts.resume, value(opts.backend), opts.actors,
                       opts.num_gpus, opts.ray_address, command=given_options())


# Options a run records for --resume: all given on the command line but these (where the run is, how it
# reports, and the decoding threads, none of which change a number).
NOT_RECORDED = frozenset({"resume", "output_dir", "as_json", "quiet", "workers"})
MODEL_CHOICE = ("model", "weights")  # one or the other names the model


def given_options() -> dict[str, Any]:
    """The current command's options given on the command line (parameter name → plain JSON value)."""
    ctx = current_context()
    return {name: _plain(v) for name, v in ctx.params.items() if name not in NOT_RECORDED and _given(ctx, name)}


def current_context() -> Any:
    """The running command's click context (typer ≥ 0.20 carries its own copy of click as typer._click)."""
    from importlib import import_module

    try:
        module = import_module("typer._click.globals")
    except ImportError:
        module = import_module("click")
    return module.get_current_context()


def _given(ctx: Any, name: str) -> bool:
    """Whether the option was given (on the command line or by its environment variable), not defaulted."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name in ("COMMANDLINE", "ENVIRONMENT")


def _plain(v: Any) -> Any:
    """An option's value as JSON: Enum choices by their text, tuples as lists."""
    return [_plain(x) for x in v] if isinstance(v, (list, tuple)) else value(v)


def _flag(name: str) -> str:
    """A parameter's option as the user types it (`batch_size` → `--batch-size`, `images` → IMAGE…)."""
    param = next((p for p in current_context().command.params if p.name == name), None)
    if param is None or not param.opts[0].startswith("-"):
        return "IMAGE…" if name == "images" else name
    return max(param.opts, key=len)


def _text(v: Any) -> str:
    """A recorded value as the user typed it (a list of images space-separated)."""
    return " ".join(map(str, v)) if isinstance(v, list) else str(v)


def _shown(name: str, v: Any) -> str:
    """`--model vit-s16`, `--no-cls`, `IMAGE… a.jpg b.jpg` as the user would type them."""
    return f"{_flag(name)} {'' if v is True else _text(v)}".strip()


def resume_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """--resume: the options the run in --output-dir was begun with fill those not given now; a given one
    that contradicts them is one error naming both values (the model by its preset or weights, not a hash)."""
    from vitcli.errors import VitcliError
    from vitcli.io.shards import read_manifest_command

    folder = kwargs["output_dir"]
    recorded = read_manifest_command(folder)
    if recorded is None:  # a manifest from before the record: the API's checks name what differs
        return kwargs
    ctx = current_context()
    given = {n for n in kwargs if _given(ctx, n)}
    ran_with = next((n for n in MODEL_CHOICE if n in recorded), None)
    now = next((n for n in MODEL_CHOICE if n in given), None)
    if now is not None and (recorded.get(now) != _plain(kwargs[now]) or ran_with not in (now, None)):
        before = _shown(ran_with, recorded[ran_with]) if ran_with else "--model vit-b16 (the default)"
        raise VitcliError(_flag(now), f"is {_plain(kwargs[now])}, but the run in {folder} used {before}: "
                          "leave it out to resume that run, or give a new folder")
    for name, old in recorded.items():
        if name not in kwargs:
            continue
        if name not in given:
            kwargs[name] = old
        elif name not in MODEL_CHOICE and _plain(kwargs[name]) != old:
            raise VitcliError(_flag(name),
                              f"is {_text(_plain(kwargs[name]))}, but the run in {folder} used {_text(old)}: "
                              "leave it out to resume with the run's options, or give a new folder")
    defaults = {p.name: _plain(p.default) for p in ctx.command.params}
    for name in sorted(given - set(recorded) - NOT_RECORDED - set(MODEL_CHOICE)):
        if name in kwargs and _plain(kwargs[name]) != defaults.get(name):
            used = ("was begun without it" if defaults.get(name) is None
                    else f"used {_text(defaults[name])} (the default)")
            raise VitcliError(_flag(name), f"is {_text(_plain(kwargs[name]))}, but the run in {folder} {used}: "
                              "leave it out to resume with the run's options, or give a new folder")
    return kwargs

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
                       opts.num_gpus, opts.ray_address)

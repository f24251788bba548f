"""The dataset options of `embed`: Parquet and shard formats, resumable runs, the Ray backend."""

from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional

import typer

from vitcli.cli.common import OUTPUT_PANEL, choices, value

DATASET_PANEL = "Datasets"
FormatChoice = choices("FormatChoice", Literal["npy", "parquet", "npy-shards"])
BackendChoice = choices("BackendChoice", Literal["local", "ray"])


@dataclass
class DatasetOptions:
    """How a dataset run is stored (Parquet, shards, manifest) and where it runs (local, Ray)."""

    format: Annotated[FormatChoice, typer.Option("--format", help="With --output-dir: npy (a file per image), parquet (shards part-00000.parquet …) or npy-shards (clip-retrieval's img_emb/ + metadata/). -o FILE.parquet writes one Parquet file.", rich_help_panel=OUTPUT_PANEL)] = FormatChoice("npy")  # type: ignore[valid-type]
    shard_size: Annotated[Optional[int], typer.Option("--shard-size", metavar="N", help="Images per shard (with --output-dir and --format parquet or npy-shards); each shard is committed whole, with a manifest in --output-dir. \\[default: 10000]", rich_help_panel=DATASET_PANEL, show_default=False)] = None
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run in --output-dir (after a crash or kill): checks inputs, options and version against its manifest and computes only the missing shards.", rich_help_panel=DATASET_PANEL)] = False
    backend: Annotated[BackendChoice, typer.Option("--backend", help="local, or ray: a Ray Data pipeline (pip install 'vitcli\\[ray]').", rich_help_panel=DATASET_PANEL)] = BackendChoice("local")  # type: ignore[valid-type]
    actors: Annotated[Optional[int], typer.Option("--actors", metavar="N", help="Ray: model actors (one model each). \\[default: 1]", rich_help_panel=DATASET_PANEL, show_default=False)] = None
    num_gpus: Annotated[Optional[float], typer.Option("--num-gpus", metavar="G", help="Ray: GPUs per model actor. \\[default: 0]", rich_help_panel=DATASET_PANEL, show_default=False)] = None
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray: the cluster to join, HOST:PORT or auto. \\[default: RAY_ADDRESS, else Ray starts locally]", rich_help_panel=DATASET_PANEL, show_default=False)] = None


def dataset_spec(opts: DatasetOptions) -> Any:
    """The options as the API's DatasetSpec."""
    from vitcli.api.dataset import DatasetSpec

    return DatasetSpec(value(opts.format), opts.shard_size, opts.resume, value(opts.backend), opts.actors,
                       opts.num_gpus, opts.ray_address)

"""Dataset outputs of a model run: one Parquet file, or shards committed through a manifest (resumable).

    run = run_dataset(model, images, compute, main="pooled", normalize=None, batch=BatchSpec(),
                      output=None, output_dir="out/", dataset=DatasetSpec("parquet", resume=True))

Shard k holds inputs [k·N, (k+1)·N) of the sorted list and is run as its own batch run, so its
batches (and so its bytes) are the same whether the run went straight through or was resumed.
`backend="ray"` runs the missing shards on a Ray cluster (vitcli.api.ray_backend), same manifest.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np

from vitcli.api.values import Backend, Format
from vitcli.errors import UsageError, VitcliError

if TYPE_CHECKING:
    from pathlib import Path

    from vitcli.api.base import ModelBase
    from vitcli.api.images import FittedImage, Images, ImageSpec
    from vitcli.api.runs import BatchReport, BatchSpec, ModelRun, ModuleCompute, Prepare, Progress
    from vitcli.checkpoints.preprocess import Preprocess
    from vitcli.io.batch import Sink
    from vitcli.io.shards import Manifest
    from vitcli.stats import RunningStats

DEFAULT_SHARD_SIZE = 10_000


@dataclass(frozen=True)
class DatasetSpec:
    """How a run over many images is stored and where it runs."""

    format: Format = "npy"  # npy (one array, or a file per image), parquet, npy-shards (clip-retrieval)
    shard_size: int | None = None  # images per shard (--output-dir with parquet / npy-shards; default 10,000)
    resume: bool = False  # continue the run whose manifest is in output_dir
    backend: Backend = "local"  # local, or ray (Ray Data: decode tasks → model actors → shard writers)
    actors: int | None = None  # ray: model actors (one model each; default 1)
    num_gpus: float | None = None  # ray: GPUs per actor (default 0)
    ray_address: str | None = None  # ray: join this cluster (default: RAY_ADDRESS, else start Ray locally)
    # the options as given on the command line, kept in the manifest so that `--resume` can reuse them
    command: dict[str, Any] | None = None

    def wanted(self, output: str | None) -> bool:
        """True when this is a dataset run rather than the plain .npy pipeline."""
        return is_parquet(output) or self.format != "npy" or self.backend != "local" or self.resume

    def check_unused(self, sharded: bool) -> None:
        """A UsageError (exit 2) for an option this run would ignore: --shard-size without shards, Ray's without Ray
        (range-checked first, used or not)."""
        from vitcli.api.ranges import check_ranges

        check_ranges(shard_size=self.shard_size, actors=self.actors, num_gpus=self.num_gpus)
        if self.shard_size is not None and not sharded:
            raise UsageError("--shard-size", "cuts a sharded run: use it with --output-dir DIR --format parquet "
                             "(or npy-shards); this run writes no shards")
        if self.backend != "ray":
            for option, given in (("--actors", self.actors), ("--num-gpus", self.num_gpus),
                                  ("--ray-address", self.ray_address)):
                if given is not None:
                    raise UsageError(option, "sets up the Ray backend: use it with --backend ray")

    def checked(self, output: str | None, output_dir: str | None) -> "DatasetSpec":
        """The spec with its format settled from -o; one line for every combination that cannot work."""
        if self.format not in ("npy", "parquet", "npy-shards"):
            raise VitcliError("--format", f"'{self.format}' is not one of npy, parquet, npy-shards")
        if self.backend not in ("local", "ray"):
            raise VitcliError("--backend", f"'{self.backend}' is not local or ray")
        spec = replace(self, format="parquet") if is_parquet(output) and self.format == "npy" else self
        option = "--resume" if spec.resume else "--backend"
        if (spec.resume or spec.backend == "ray") and not output_dir:
            raise VitcliError(option, "works on a sharded run: give --output-dir DIR --format parquet")
        if output and (spec.format != "parquet" or not is_parquet(output)):
            raise VitcliError("-o", f"--format {spec.format} writes a folder: give --output-dir DIR instead of -o"
                              if spec.format != "parquet" else "a Parquet file needs a name ending in .parquet")
        if not output and not output_dir:
            raise VitcliError("--format", f"{spec.format} needs --output-dir DIR (or -o FILE.parquet)")
        if spec.format == "npy":
            raise VitcliError(option, "needs --format parquet or npy-shards with --output-dir DIR")
        spec.check_unused(sharded=not output)
        spec = replace(spec, shard_size=DEFAULT_SHARD_SIZE if spec.shard_size is None else spec.shard_size,
                       actors=1 if spec.actors is None else spec.actors, num_gpus=spec.num_gpus or 0.0)
        if spec.backend == "ray" and spec.format != "parquet":
            raise VitcliError("--backend", "ray writes Parquet shards: use --format parquet")
        return spec


def is_parquet(output: str | None) -> bool:
    return bool(output) and output.lower().endswith(".parquet")  # type: ignore[union-attr]


def run_dataset(model: "ModelBase", images: "Images", compute: "ModuleCompute", *, main: str, normalize: str | None,
                batch: "BatchSpec", output: str | None, output_dir: str | None, dataset: DatasetSpec,
                progress: "Progress | None" = None, describe: dict[str, Any] | None = None) -> "ModelRun":
    """Run `compute` over the images into a Parquet file or a sharded folder; a ModelRun (rows not kept)."""
    from vitcli.api.runs import BatchReport, ModelRun

    spec = dataset.checked(output, output_dir)
    model.resolve_grid(images)
    prepare, norm, fitted_spec = model.preparer(images.spec, normalize)
    meta = file_metadata(model, main, norm, fitted_spec, model.image_plan(images.spec)[1], describe or {})
    if output:
        return _one_file(model, images, compute, prepare, main, batch, output, meta, progress, norm)
    options = manifest_options(meta, batch, spec)
    assert output_dir is not None  # refused by DatasetSpec.checked without one
    if spec.backend == "ray":
        from vitcli.api.ray_backend import run_on_ray

        ray_report = run_on_ray(model, images, compute, main=main, norm=norm, spec=fitted_spec, batch=batch,
                                output_dir=output_dir, dataset=spec, meta=meta, options=options, progress=progress)
        return ModelRun(ray_report, {}, norm, True)
    report: BatchReport = _sharded(model, images, compute, prepare, main, batch, output_dir, spec, meta, options,
                                   progress)
    return ModelRun(report, {}, norm, True)


def hashed(prepare: "Prepare") -> "Prepare":
    """`prepare`, plus the sha256 of the file's bytes (computed in the decoding thread)."""
    from vitcli.io.parquet import file_sha256

    def run(item: object, name: str) -> "FittedImage":
        fitted = prepare(item, name)
        fitted.sha256 = file_sha256(item) if isinstance(item, str) else None
        return fitted

    return run


class _Shared(TypedDict):
    """run_batches' keywords that every file of a dataset run shares."""

    prepare: "Prepare"
    compute: Callable[["list[FittedImage]"], "dict[str, np.ndarray]"]
    main: str
    patch_size: int
    describe: Callable[["FittedImage"], dict[str, str | None]]
    overlap: bool
    progress: "Progress | None"


def _common(model: "ModelBase", compute: "ModuleCompute", prepare: "Prepare", main: str,
            progress: "Progress | None") -> _Shared:
    """run_batches' keywords shared by every file of a dataset run: hashed inputs, the model's batches."""
    def rows(items: "list[FittedImage]") -> dict[str, np.ndarray]:
        return compute(model.batch_tensor(items))

    return _Shared(prepare=hashed(prepare), compute=rows, main=main, patch_size=model.config.patch_size,
                   describe=lambda f: {"sha256": f.sha256}, overlap=not model.on_cpu, progress=progress)


def _one_file(model: "ModelBase", images: "Images", compute: "ModuleCompute", prepare: "Prepare", main: str,
              batch: "BatchSpec", output: str, meta: dict[str, Any], progress: "Progress | None",
              norm: str) -> "ModelRun":
    """-o FILE.parquet: one row per image, committed whole at the end."""
    from vitcli.api.runs import ModelRun, run_batches
    from vitcli.io.parquet import ParquetSink

    images = replace(images, many=True)
    sink = ParquetSink(output, images.names(), meta)
    try:
        report = run_batches(images, batch, sink=sink, **_common(model, compute, prepare, main, progress))
        sink.commit()
    except BaseException:
        sink.abort()
        raise
    report.outputs = {"table": output, "format": "parquet"}
    return ModelRun(report, {}, norm, True)


def shard_sink(fmt: str, folder: "Path", k: int, paths: list[str], first_row: int, meta: dict[str, Any]) -> "Sink":
    """The sink that writes shard k (its files under temporary names until commit)."""
    from vitcli.io.batch import ArraySink
    from vitcli.io.parquet import MetadataIndex, ParquetSink
    from vitcli.io.shards import shard_files

    names = shard_files(fmt, k)
    if fmt == "parquet":
        return ParquetSink(str(folder / names[0]), paths, meta, first_row=first_row)
    return ArraySink(str(folder / names[0]), len(paths), index=lambda: MetadataIndex(folder / names[1], meta))


def _sharded(model: "ModelBase", images: "Images", compute: "ModuleCompute", prepare: "Prepare", main: str,
             batch: "BatchSpec", output_dir: str, spec: DatasetSpec, meta: dict[str, Any], options: dict[str, Any],
             progress: "Progress | None") -> "BatchReport":
    """The missing shards, one batch run each, each committed to the manifest when whole."""
    import time

    from vitcli import __version__
    from vitcli.api.runs import BatchReport, _Silent, run_batches
    from vitcli.io.shards import open_manifest
    from vitcli.signals import interrupt_note

    paths, n = images.names(), spec.shard_size
    assert n is not None  # settled by DatasetSpec.checked
    manifest = open_manifest(output_dir, paths, spec.format, n, options, spec.resume, __version__, spec.command)
    progress = progress or _Silent()
    done_before = [k for k in range(manifest.shard_count()) if str(k) in manifest.doc["shards"]]
    progress(sum(min(n, len(paths) - k * n) for k in done_before))
    total = BatchReport(len(paths), 0, [], 0.0, {}, {}, batch.batch_size, 0)
    start = time.perf_counter()
    common = _common(model, compute, prepare, main, progress)
    with interrupt_note(lambda: resume_note(manifest, output_dir)):
        for k in manifest.missing():
            part = images.items[k * n:(k + 1) * n]
            sink = shard_sink(spec.format, manifest.folder, k, paths[k * n:(k + 1) * n], k * n, meta)
            try:
                report = run_batches(replace(images, items=part, many=True), batch, sink=sink, **common)
                sink.commit()
            except BaseException:
                sink.abort()
                raise
            manifest.commit(k, report.done, report.skipped)
            _add_report(total, report)
    total.seconds = time.perf_counter() - start
    total.outputs = {**manifest.outputs(), "resumed_shards": len(done_before)}
    return total


def resume_note(manifest: "Manifest", output_dir: str) -> str:
    """What an interrupted sharded run keeps, and the way on: `--resume`."""
    done = manifest.shard_count() - len(manifest.missing())
    return (f"{done} of {manifest.shard_count()} shards are done in {output_dir}; "
            f"run the same command with --resume to compute the rest")


def _add_report(total: "BatchReport", part: "BatchReport") -> None:
    """Fold one shard's report into the run's: counts, skipped images, merged statistics."""
    total.done += part.done
    total.skipped += part.skipped
    total.workers = part.workers
    if not total.entries and part.entries:
        total.entries = part.entries[:1]
    for name, s in part.stats.items():
        total.stats[name] = merge_stats(total.stats.get(name), s)


def merge_stats(a: "RunningStats | None", b: "RunningStats") -> "RunningStats":
    """Two RunningStats as one (vitcli.stats.merged)."""
    from vitcli.stats import merged

    return merged(a, b)


def file_metadata(model: "ModelBase", stage: str, norm: str, spec: "ImageSpec", family: "Preprocess | None",
                  describe: dict[str, Any]) -> dict[str, Any]:
    """What every file of the run says about itself: model, weights and their hash, stage, preprocessing, version."""
    from dataclasses import asdict

    from vitcli import __version__
    from vitcli.api.base import preprocess_document

    weights = getattr(model.checkpoint, "path", None) if model.checkpoint is not None else None
    doc = model.document()
    return {
        "vitcli_version": __version__, "stage": stage, **describe,
        "model": {"name": doc["name"], "source": model.source, "family": doc.get("family"), "weights": weights,
                  "weights_sha256": _weights_sha(weights), "seed": model.spec.seed if weights is None else None,
                  "dtype": doc["dtype"], "dim": doc["dim"], "depth": doc["depth"], "heads": doc["heads"],
                  "patch_size": doc["patch_size"], "pooling": doc["pooling"], "posenc": doc["posenc"],
                  "config_sha256": hashlib.sha256(repr(model.config).encode()).hexdigest()},
        "preprocessing": {**asdict(spec), **used_values(spec, family, model.config.patch_size), "normalize": norm,
                          "family": preprocess_document(family) if family is not None else None},
    }


def used_values(spec: "ImageSpec", family: "Preprocess | None", patch_size: int) -> dict[str, Any]:
    """The fit, filter and patch size the run used where the spec left them to their defaults (None)."""
    from vitcli.api.images import DEFAULT_RESAMPLE, fit_used

    if family is not None:  # the checkpoint family's own resize and crop (its `family` entry says which)
        return {"fit": "family", "resample": family.interpolation, "patch_size": patch_size}
    return {"fit": fit_used(spec), "resample": spec.resample or DEFAULT_RESAMPLE, "patch_size": patch_size}


_WEIGHTS_SHA: dict[str, str | None] = {}


def _weights_sha(path: str | None) -> str | None:
    from vitcli.io.parquet import file_sha256

    if path is None:
        return None
    if path not in _WEIGHTS_SHA:
        _WEIGHTS_SHA[path] = file_sha256(path)
    return _WEIGHTS_SHA[path]


def manifest_options(meta: dict[str, Any], batch: "BatchSpec", spec: DatasetSpec) -> dict[str, Any]:
    """The options a resumed run must share with the first (named as the CLI spells them). A seed says
    how it draws: a run begun when one generator drew the whole model resumes with an error, not other weights."""
    m, pre = meta["model"], meta["preprocessing"]
    seed = f"seed {m['seed']} (one generator per tensor)"
    weights = f"weights sha256 {m['weights_sha256'][:16]}" if m["weights_sha256"] else seed
    model = f"{m['name']} ({m['source']}), {weights}, {m['dtype']}, config sha256 {m['config_sha256'][:16]}"
    options = {"--model": model, "--stage": meta["stage"], "--impl": meta.get("impl"), "--normalize": pre["normalize"],
               "--batch-size": batch.batch_size, "--skip-errors": batch.skip_errors, "--backend": spec.backend,
               "--preprocessing": json.dumps({k: v for k, v in pre.items() if k != "normalize"}, sort_keys=True)}
    return options

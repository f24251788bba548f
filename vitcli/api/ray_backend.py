"""`--backend ray`: the missing shards of a run as a Ray Data pipeline, committed through the same manifest.

    paths (one Ray row per batch of a shard, cut as the local backend cuts them)
      → map_batches(Decode)     CPU tasks: decode, fit, sha256 of the file   (uint8 pixels travel)
      → map_batches(Embedder)   a pool of `actors` model actors (one model each, `num_gpus` each)
      → groupby(shard).map_groups(write_shard)   workers write part-NNNNN.parquet (temp + rename)
      → the driver lists each finished shard in the manifest

Shards go in waves of `actors` shards (a groupby waits for its wave), so a kill loses one wave at
most. The output folder must be the same path on every node (a shared file system).
"""

import io
import json
import logging
import os
import socket
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

from vitcli.errors import VitcliError

if TYPE_CHECKING:
    import ray.data

    from vitcli.api.base import ModelBase
    from vitcli.api.dataset import DatasetSpec
    from vitcli.api.images import Images, ImageSpec
    from vitcli.api.runs import BatchReport, BatchSpec, ModuleCompute, Progress
    from vitcli.checkpoints.preprocess import Preprocess
    from vitcli.stats import RunningStats

Columns = dict[str, np.ndarray]  # a Ray batch in "numpy" format, as Ray hands it to a task: column → a value per row
Made = dict[str, "np.ndarray | list[str] | list[bytes] | list[int]"]  # what a task returns: column → a value per row

PROBE_SECONDS = 5.0  # how long a --ray-address may take to answer as a gRPC server (Ray's GCS) does
HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + an empty SETTINGS frame
ACTOR_CPUS = 0.5  # a model actor's CPU claim: leaves room for decoding tasks on a one-CPU node
DECODE_CPUS = 0.5


def import_ray() -> ModuleType:
    """ray and ray.data, or the one-line error that says how to install them."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise VitcliError("--backend", "ray is not installed: pip install 'vitcli[ray]'") from None
    return ray


def connect(ray: ModuleType, address: str | None) -> None:
    """Join the cluster at `address` (or RAY_ADDRESS), else start Ray on this machine."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return
    if address and address not in ("auto", "local") and not address.startswith("ray://"):
        probe_gcs(address)
    root = str(Path(__file__).resolve().parents[2])
    env = {"PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                 runtime_env={"env_vars": env}, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise VitcliError("--ray-address",
                          f"cannot join Ray at {address or 'a local cluster'}: {str(e).splitlines()[0]}") from None
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.execution_options.verbose_progress = False
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # no INFO line per dataset, no progress-bar note


def probe_gcs(address: str) -> None:
    """Whether `address` answers as Ray's GCS (a gRPC server: HTTP/2 SETTINGS after the client preface)
    within PROBE_SECONDS, before ray.init waits on it without bound; else one line naming --ray-address."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=PROBE_SECONDS) as s:
            s.settimeout(PROBE_SECONDS)
            s.sendall(HTTP2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = s.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        raise VitcliError("--ray-address", f"{address} accepted a connection but did not answer as a Ray cluster "
                          f"within {PROBE_SECONDS:g} s") from None
    except (OSError, ValueError) as e:
        raise VitcliError("--ray-address",
                          f"cannot reach a Ray cluster at {address}: {getattr(e, 'strerror', None) or e}") from None
    if len(head) < 9 or head[3] != 4:  # frame type 4: SETTINGS
        raise VitcliError("--ray-address", f"{address} is not a Ray cluster (it does not speak gRPC, as Ray's GCS "
                          "does); give the head node's address, e.g. 10.0.0.5:6379")


def check_resources(ray: ModuleType, dataset: "DatasetSpec") -> None:
    """The cluster holds the GPUs the actors ask for, checked before anything is written."""
    wanted = (dataset.num_gpus or 0) * (dataset.actors or 1)
    if wanted:
        have = float(ray.cluster_resources().get("GPU", 0))
        if have < wanted:
            raise VitcliError("--num-gpus",
                              f"{dataset.actors} actor(s) × {dataset.num_gpus:g} GPU need {wanted:g} GPUs; "
                              f"the Ray cluster has {have:g} (nothing was written)")


def run_on_ray(model: "ModelBase", images: "Images", compute: "ModuleCompute", *, main: str, norm: str,
               spec: "ImageSpec", batch: "BatchSpec", output_dir: str, dataset: "DatasetSpec", meta: dict[str, Any],
               options: dict[str, Any], progress: "Progress | None") -> "BatchReport":
    """The run's missing shards on Ray; the BatchReport (`outputs.ray_nodes`: the nodes that ran the model)."""
    from vitcli import __version__
    from vitcli.api.runs import BatchReport, _Silent
    from vitcli.io.images import NORMALIZE
    from vitcli.io.shards import open_manifest

    ray = import_ray()
    paths, n, actors = images.names(), dataset.shard_size, dataset.actors
    assert n is not None and actors is not None  # settled by DatasetSpec.checked
    if any(not isinstance(i, str) for i in images.items):
        raise VitcliError("--backend", "ray reads image files: give paths, not images in memory")
    connect(ray, dataset.ray_address)  # before anything is written
    check_resources(ray, dataset)
    manifest = open_manifest(output_dir, paths, dataset.format, n, options, dataset.resume, __version__,
                             dataset.command)
    progress = progress or _Silent()
    fitted_spec, family = model.image_plan(images.spec)
    custom = model.preprocess if norm == "custom" else None  # a checkpoint's own mean and std
    mean, std = (custom.mean, custom.std) if custom is not None else NORMALIZE[norm]
    decode_args = (fitted_spec, model.config.patch_size, family)
    dtype = str(next(model.module.parameters()).dtype).replace("torch.", "")
    compute_ref = ray.put(compute)
    folder = str(Path(output_dir).resolve())
    total = BatchReport(len(paths), 0, [], 0.0, {}, {}, batch.batch_size, actors)
    nodes: set[str] = set()
    shard_stats: dict[int, dict[str, dict[str, Any]]] = {}  # shard → name → RunningStats.state()
    start = time.perf_counter()
    missing = manifest.missing()
    progress(len(paths) - sum(min(n, len(paths) - k * n) for k in missing))
    for w in range(0, len(missing), actors):
        wave = missing[w:w + actors]
        items = [{"shard": k, "first": i, "paths": paths[i:min(i + batch.batch_size, (k + 1) * n, len(paths))]}
                 for k in wave for i in range(k * n, min((k + 1) * n, len(paths)), batch.batch_size)]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 4 * actors)))
        ds = ds.map_batches(decode, fn_args=decode_args, batch_size=1, num_cpus=DECODE_CPUS)
        with warnings.catch_warnings():  # Ray 2.5x names no parameter for a scheduling strategy yet
            warnings.simplefilter("ignore", DeprecationWarning)
            ds = ds.map_batches(Embedder, fn_constructor_args=(compute_ref, mean, std, dtype, main, actors),
                                batch_size=1, compute=ray.data.ActorPoolStrategy(size=actors),
                                num_gpus=dataset.num_gpus or None, num_cpus=ACTOR_CPUS,
                                scheduling_strategy="SPREAD")  # model actors spread over the nodes
        shard_paths = {k: paths[k * n:(k + 1) * n] for k in wave}
        ds = ds.groupby("shard", num_partitions=len(wave)).map_groups(write_shard,
                                                                      fn_args=(folder, meta, shard_paths, n,
                                                                               batch.skip_errors),
                                            batch_format="numpy", num_cpus=DECODE_CPUS)
        for rec in _rows(ds):
            k, skipped = int(rec["shard"]), json.loads(rec["skipped"])
            if rec["failed"]:
                raise VitcliError(*json.loads(rec["failed"]))
            manifest.commit(k, int(rec["rows"]), skipped)
            total.done += int(rec["rows"])
            total.skipped += skipped
            nodes.update(json.loads(rec["nodes"]))
            shard_stats[k] = json.loads(rec["stats"])
            progress(int(rec["rows"]) + len(skipped))
    total.seconds = time.perf_counter() - start
    total.stats = _run_stats(shard_stats, main)
    total.outputs = {**manifest.outputs(), "resumed_shards": manifest.shard_count() - len(missing),
                     "backend": "ray", "ray_nodes": sorted(nodes)}
    return total


def _run_stats(shards: dict[int, dict[str, dict[str, Any]]], main: str) -> "dict[str, RunningStats]":
    """The shards' statistics merged in shard order, as the local backend merges them: name → RunningStats."""
    from vitcli.stats import RunningStats, merged

    stats: dict[str, RunningStats] = {}
    for k in sorted(shards):
        for name, state in shards[k].items():
            stats[name] = merged(stats.get(name), RunningStats.from_state(state))
    return {main: stats[main], **stats} if main in stats else stats


def _rows(ds: "ray.data.Dataset") -> Iterator[dict[str, Any]]:  # a shard's record (_record)
    """The dataset's rows; a user error inside Ray comes back as its own one line."""
    try:
        yield from ds.iter_rows()
    except Exception as e:  # noqa: BLE001 - Ray wraps the worker's exception
        cause: BaseException | None = e
        while cause is not None and not isinstance(cause, VitcliError):
            cause = getattr(cause, "cause", None) or cause.__cause__
        if cause is not None:
            raise VitcliError(cause.source, cause.problem) from None
        raise VitcliError("--backend", f"the Ray job failed: {str(e).strip().splitlines()[-1][:300]}") from None


def _pack(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _unpack(data: bytes) -> np.ndarray:
    return np.load(io.BytesIO(data), allow_pickle=False)


def decode(batch: Columns, spec: "ImageSpec", patch_size: int, family: "Preprocess | None") -> Made:
    """A Ray task: one batch of paths → fitted uint8 pixels, index entries (errors among them), sha256s."""
    from vitcli.api.images import fit_one
    from vitcli.io.parquet import file_sha256

    entries, pixels = [], []
    for path in batch["paths"][0]:
        path = str(path)
        entry: dict[str, Any] = {"path": path, "sha256": file_sha256(path)}
        try:
            fitted = fit_one(path, spec, patch_size, family, path)
        except VitcliError as e:
            entries.append({**entry, "error": e.problem})
            continue
        entries.append({**fitted.index_entry(patch_size), **entry})
        pixels.append(fitted.input)  # (H, W, 3) uint8, or float32 for a float-resizing family
    return {"shard": batch["shard"], "first": batch["first"], "entries": [json.dumps(entries)],
            "pixels": [_pack(np.stack(pixels)) if pixels else b""]}


class Embedder:
    """A Ray actor holding one model: fitted pixels → the `main` rows, cut where the image size changes."""

    def __init__(self, compute: "ModuleCompute | ray.ObjectRef", mean: tuple[float, ...], std: tuple[float, ...],
                 dtype: str, main: str, actors: int) -> None:
        import ray
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // actors))
        self.compute = compute if not isinstance(compute, ray.ObjectRef) else ray.get(compute)
        self.mean, self.std, self.main = mean, std, main
        self.dtype = getattr(torch, dtype)
        self.device = "cuda" if ray.get_gpu_ids() and torch.cuda.is_available() else "cpu"
        if self.device == "cuda":
            self.compute.module.to(self.device)
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: Columns) -> Made:
        import torch

        from vitcli.io.images import normalize_mean_std
        from vitcli.stats import rows_stats

        pixels = _unpack(batch["pixels"][0]) if batch["pixels"][0] else np.zeros((0, 1, 1, 3), np.uint8)
        rows, stats, start = [], [], 0
        while start < len(pixels):  # one forward pass needs one image size, as in the local backend
            end = start + 1
            while end < len(pixels) and pixels[end].shape == pixels[start].shape:
                end += 1
            x = torch.cat([torch.from_numpy(normalize_mean_std(p, self.mean,
                                                               self.std))[None] for p in pixels[start:end]])
            result = self.compute(x.to(self.device, self.dtype))  # name → (b, ...)
            rows.append(result[self.main])
            stats.append({name: rows_stats(a).state() for name, a in result.items()})  # the local batch's statistics
            start = end
        out = np.concatenate(rows) if rows else np.zeros((0,), np.float32)
        return {"shard": batch["shard"], "first": batch["first"], "entries": batch["entries"],
                "rows": [_pack(out)], "stats": [json.dumps(stats)], "node": [self.node]}


def write_shard(group: Columns, folder: str, meta: dict[str, Any], shard_paths: dict[int, list[str]],
                n: int, skip_errors: bool) -> Made:
    """A Ray task per shard: its batches in order → part-NNNNN.parquet, renamed into place; a record for the driver."""
    from vitcli.io.parquet import ParquetSink
    from vitcli.io.shards import shard_files
    from vitcli.stats import RunningStats, merged

    k = int(group["shard"][0])
    sink = ParquetSink(os.path.join(folder, shard_files("parquet", k)[0]), shard_paths[k], meta, first_row=k * n)
    skipped: list[dict[str, str]] = []
    nodes: set[str] = set()
    done = 0
    stats: dict[str, RunningStats] = {}
    try:
        for i in np.argsort(group["first"], kind="stable"):
            entries, rows = json.loads(group["entries"][i]), _unpack(group["rows"][i])
            nodes.add(str(group["node"][i]))
            for part in json.loads(group["stats"][i]):  # the batches in order, as the local backend merges them
                for name, state in part.items():
                    stats[name] = merged(stats.get(name), RunningStats.from_state(state))
            good = [e for e in entries if "error" not in e]
            for e in entries:
                if "error" in e and not skip_errors:
                    raise VitcliError(e["path"], e["error"])
                if "error" in e:
                    skipped.append({"path": e["path"], "error": e["error"]})
                    sink.skip(e)
            if good:
                sink.add(rows, good)
                done += len(good)
        sink.commit()
    except VitcliError as e:
        sink.abort()
        return _record(k, 0, [], nodes, [e.source, e.problem], {})
    except BaseException:
        sink.abort()
        raise
    return _record(k, done, skipped, nodes, None, stats)


def _record(k: int, rows: int, skipped: list[dict[str, str]], nodes: set[str], failed: list[str] | None,
            stats: "dict[str, RunningStats]") -> Made:
    """The driver's record of one shard: rows written, skipped images, nodes, a failure, statistics (JSON text)."""
    return {"shard": [k], "rows": [rows], "skipped": [json.dumps(skipped)], "nodes": [json.dumps(sorted(nodes))],
            "failed": [json.dumps(failed) if failed else ""],
            "stats": [json.dumps({name: s.state() for name, s in stats.items()})]}

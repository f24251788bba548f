"""Runs over images: decode in threads, batch, compute, stream rows to a sink; one image is a batch of one.

    report = run_batches(images, BatchSpec(), prepare=fit, compute=rows, sink=sink, patch_size=16)

`compute` turns a list of fitted images into named arrays with a leading batch axis; the sink
takes the main one (a streamed `.npy`, a folder of files, or memory). Images of one batch share a
size (a batch is cut early when the size changes). Memory is bounded by the batch, not the count.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from vitcli.api.images import FittedImage, Images, ImageSpec
from vitcli.errors import VitcliError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vitcli.api.documents import BatchSummary, JSONValue
    from vitcli.checkpoints.preprocess import Preprocess
    from vitcli.core.config import ViTConfig
    from vitcli.io.batch import Sink
    from vitcli.stats import RunningStats

# A batch of model inputs (b, 3, H, W): a torch tensor on the model's device, or patchify's numpy values
Batch = TypeVar("Batch", "torch.Tensor", "np.ndarray")
Batch_co = TypeVar("Batch_co", "torch.Tensor", "np.ndarray", covariant=True)
Prepare = Callable[[object, str], FittedImage]  # (item, name) → the image fitted, its model input in `.data`
Compute = Callable[["torch.Tensor"], "dict[str, np.ndarray]"]  # (b, 3, H, W) → named (b, ...) arrays


class ModuleCompute(Protocol):
    """A `Compute` that holds its network, as a dataset run needs (a Ray actor moves `module` to its GPU)."""

    @property
    def module(self) -> "torch.nn.Module": ...

    def __call__(self, x: "torch.Tensor") -> "dict[str, np.ndarray]": ...


@dataclass(frozen=True)
class BatchSpec:
    """How many images are decoded, batched and written at once."""

    batch_size: int = 16  # images per forward pass
    workers: int | None = None  # decoding threads (default: one per core, at most 8)
    skip_errors: bool = False  # an unreadable image is reported and skipped instead of stopping the run

    def checked(self) -> "BatchSpec":
        if self.batch_size < 1:
            raise VitcliError("--batch-size", f"must be at least 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 1:
            raise VitcliError("--workers", f"must be at least 1, got {self.workers}")
        return self


class Progress(Protocol):
    """What a front end shows while a run goes: images done, and one line per skipped image."""

    def __call__(self, n: int) -> None: ...
    def message(self, text: str) -> None: ...


class _Silent:
    def __call__(self, n: int) -> None:
        pass

    def message(self, text: str) -> None:
        import sys

        sys.stderr.write(text + "\n")


class MemorySink:
    """Rows kept in memory (one image, or a Python caller without an output file): every named array."""

    def __init__(self) -> None:
        self.parts: dict[str, list[np.ndarray]] = {}
        self.entries: list[dict[str, Any]] = []
        self.rows = 0

    def add(self, rows: "dict[str, np.ndarray]", entries: list[dict[str, Any]]) -> None:
        for name, array in rows.items():
            self.parts.setdefault(name, []).append(array)
        self.entries += [{**e, "row": self.rows + i} for i, e in enumerate(entries)]
        self.rows += len(entries)

    def skip(self, entry: dict[str, Any]) -> None:
        self.entries.append({**entry, "row": None})

    def arrays(self) -> "dict[str, np.ndarray | list[np.ndarray]]":
        """name → (B, ...) (one image: B = 1); arrays of different sizes stay a list."""
        out = {}
        for name, parts in self.parts.items():
            same = len({p.shape[1:] for p in parts}) == 1
            out[name] = _concatenate(parts) if same else [row for p in parts for row in p]
        return out


@dataclass
class BatchReport:
    """What a run did: counts, skipped images, where the output went, value statistics."""

    inputs: int
    done: int
    skipped: list[dict[str, str]]
    seconds: float
    stats: "dict[str, RunningStats]"
    outputs: "dict[str, JSONValue]"  # the `outputs` JSON object: paths, counts, names
    batch_size: int
    workers: int
    fitted: list[FittedImage] = field(default_factory=list)  # kept for single-image runs only
    entries: list[dict[str, Any]] = field(default_factory=list)  # index lines (first image first)

    def document(self) -> "BatchSummary":
        """JSON keys every batch command shares."""
        return {
            "images": self.inputs, "processed": self.done, "skipped": self.skipped,
            "order": "sorted by path", "batch_size": self.batch_size, "workers": self.workers,
            "seconds": round(self.seconds, 3),
            "images_per_second": round(self.done / self.seconds, 2) if self.seconds else None,
            "outputs": self.outputs,
        }

    @property
    def first_grid(self) -> tuple[int, int] | None:
        return tuple(self.entries[0]["grid"]) if self.entries and "grid" in self.entries[0] else None


def run_batches(images: Images, batch: BatchSpec, *, prepare: Callable[[object, str], FittedImage],
                compute: Callable[[list[FittedImage]], "dict[str, np.ndarray]"], main: str, patch_size: int,
                sink: "Sink | MemorySink | None" = None,
                describe: Callable[[FittedImage], dict[str, Any]] | None = None,
                overlap: bool = True, progress: Progress | None = None, keep_fitted: bool = False) -> BatchReport:
    """Decode in threads, compute batch by batch, give the rows to `sink`; nothing is committed on failure.

    `main` names the array of `compute`'s result that a file sink writes and `stats` describe first.
    overlap=False when `compute` is a model on the CPU: decoding then waits for it (see decode_all).
    """
    from vitcli.io.inputs import decode_all, default_workers
    from vitcli.stats import merged, rows_stats

    batch = batch.checked()
    progress = progress or _Silent()
    workers = batch.workers or default_workers()
    stats: dict[str, RunningStats] = {}
    skipped: list[dict[str, str]] = []
    entries: list[dict[str, Any]] = []
    kept: list[FittedImage] = []
    pending: list[FittedImage] = []
    start = time.perf_counter()

    def flush() -> None:
        if not pending:
            return
        rows = compute(pending)  # name → (b, ...)
        new = [{**p.index_entry(patch_size), **(describe(p) if describe else {})} for p in pending]
        entries.extend(new)
        if isinstance(sink, MemorySink):
            sink.add(rows, new)
        elif sink is not None:
            sink.add(rows[main], new)
        for name, array in rows.items():  # a batch's statistics merged in: what a Ray actor ships too
            stats[name] = merged(stats.get(name), rows_stats(array))
        if keep_fitted:
            kept.extend(pending)
        progress(len(pending))
        pending.clear()

    names = images.names()
    ahead = batch.batch_size + 2 * workers if overlap else batch.batch_size
    decode = _light(lambda pair: prepare(*pair), keep_fitted)
    for d in decode_all(list(zip(images.items, names, strict=True)), decode, workers, ahead, overlap):
        if d.error is not None:
            _skip_or_fail(names[d.index], d.error, batch.skip_errors, sink, skipped, progress)
            continue
        if d.value is None:
            continue
        if pending and pending[0].pixels.shape != d.value.pixels.shape:
            flush()  # one forward pass needs one image size
        pending.append(d.value)
        if len(pending) >= batch.batch_size:
            flush()
    flush()
    ordered = {main: stats[main], **stats} if main in stats else stats
    return BatchReport(len(images), len(entries), skipped, time.perf_counter() - start, ordered, {},
                       batch.batch_size, workers, kept, entries)


def _light(prepare: Callable[[tuple], FittedImage], keep: bool) -> Callable[[tuple], FittedImage]:
    """`prepare`, then drop the decoded full-size pixels (unless kept for pictures): only the fitted ones wait."""

    def run(pair: tuple) -> FittedImage:
        fitted = prepare(pair)
        if not keep:
            fitted.loaded.release()
        return fitted

    return run


def _skip_or_fail(path: str, error: Exception, skip: bool, sink: "Sink | MemorySink | None", skipped: list,
                  progress: Progress) -> None:
    """With skip_errors: one line and one index entry; otherwise stop the run."""
    if not skip:
        raise error
    problem = getattr(error, "problem", str(error))
    skipped.append({"path": path, "error": problem})
    if sink is not None:
        sink.skip({"path": path, "error": problem})
    progress.message(f"vitcli: skipped: {path}: {problem}")
    progress(1)


__all__ = ["BatchReport", "BatchSpec", "MemorySink", "Progress", "run_batches"]


@dataclass
class ModelRun:
    """One model over images: the batch report, the rows kept in memory, and the normalisation used."""

    report: BatchReport
    # name → (B, ...) when kept in memory (one image, or keep=True); images of several sizes: a list of (...)
    arrays: dict[str, Any]  # np.ndarray | list[np.ndarray] (patchify.py reads it as an array)
    normalize: str
    many: bool

    @property
    def fitted(self) -> list[FittedImage]:
        return self.report.fitted



class Runner(Protocol[Batch_co]):
    """What `run_model` runs images through: a `Model`, or patchify's pixels (no network, nothing to weigh)."""

    config: "ViTConfig"

    @property
    def on_cpu(self) -> bool:
        """Decoding may run ahead of the forward passes (nothing competes with it for the CPU)."""
        ...

    def resolve_grid(self, images: Images) -> None:
        """Settle a position table's grid from the first image before anything runs."""
        ...

    def image_plan(self, spec: ImageSpec) -> "tuple[ImageSpec, Preprocess | None]":
        """The size policy the images are fitted with, or the checkpoint family's own preprocessing."""
        ...

    def preparer(self, spec: ImageSpec,
                 normalize: str | None) -> tuple[Callable[[object, str], FittedImage], str, ImageSpec]:
        """(item, name) → FittedImage with its input in `.data`; the normalisation's name; the spec used."""
        ...

    def batch_tensor(self, items: list[FittedImage]) -> Batch_co:
        """(b, 3, H, W): a torch tensor on the model's device, or patchify's numpy values."""
        ...

    def check_memory(self, batch: int = 0, size: tuple[int, int] | None = None, kept: int = 0,
                     source: str | None = None, kept_source: str | None = None,
                     backward: tuple[str, bool] | None = None) -> None:
        """The one-line error naming the option over the memory limit (see `MemoryMixin`)."""
        ...

    def size_blame(self, family: "Preprocess | None" = None) -> str | None:
        """Who asks for an image size the user did not give (a memory message's subject), if anyone."""
        ...


def run_model(model: Runner[Batch], images: Images, compute: Callable[[Batch], "dict[str, np.ndarray]"], *, main: str,
              normalize: str | None, batch: BatchSpec, output: str | None = None, output_dir: str | None = None,
              keep: bool = True, progress: Progress | None = None,
              describe: Callable[[FittedImage], dict[str, Any]] | None = None,
              kept: Callable[[int, tuple[int, ...]], int] | None = None, kept_source: str | None = None,
              backward: tuple[str, bool] | None = None) -> ModelRun:
    """Fit, batch and run `compute(x)` ((b, 3, H, W) → named (b, ...) arrays) over the images.

    One image is a batch of one, kept in memory (the command writes it without the batch axis).
    Several go to `output` (one streamed .npy + index) or `output_dir` (a file each + index), and
    stay in memory only when `keep`. Options wrong for every image fail before any is read, and so
    does a request over the memory limit when the size is fixed (else each batch is checked before
    its forward pass); `kept(b, (b, 3, H, W))` is the bytes of captures a batch keeps beyond it;
    `backward` (explain's method, discard) estimates a gradient pass instead (MemoryMixin.check_memory).
    """
    from vitcli.io.batch import index_path, open_sink

    model.resolve_grid(images)
    prepare, norm, _ = model.preparer(images.spec, normalize)
    single = not images.many
    if single and output_dir:
        raise VitcliError("--output-dir", "writes one file per image of several; for one image use -o FILE.npy")

    _check_planned(model, images, batch, kept, kept_source, backward)

    def rows(items: list[FittedImage]) -> "dict[str, np.ndarray]":
        x = model.batch_tensor(items)  # (b, 3, H, W): the real size, also for --size native
        model.check_memory(len(items), (int(x.shape[2]), int(x.shape[3])), kept(len(items), x.shape) if kept else 0,
                           items[0].loaded.path if images.spec.size == "native" else None, kept_source, backward)
        return compute(x)

    def run(sink: "Sink | MemorySink | None") -> BatchReport:
        return run_batches(images, batch, sink=sink, prepare=prepare, compute=rows, main=main,
                           patch_size=model.config.patch_size, describe=describe, overlap=not model.on_cpu,
                           progress=progress, keep_fitted=single)

    if single or not (output or output_dir):
        memory = MemorySink() if single or keep else None
        report = run(memory)
        return ModelRun(report, memory.arrays() if memory else {}, norm, not single)
    with open_sink(output, output_dir, images.names()) as sink:
        report = run(sink)
    report.outputs = {"array": output, "index": index_path(output)} if output else {"output_dir": output_dir}
    return ModelRun(report, {}, norm, True)


def _check_planned(model: Runner[Batch], images: Images, batch: BatchSpec,
                   kept: Callable[[int, tuple[int, ...]], int] | None,
                   kept_source: str | None = None, backward: tuple[str, bool] | None = None) -> None:
    """The weights and one batch's forward pass against the memory limit, when the size is known before decoding."""
    from vitcli.io.sizes import parse_size

    spec, family = model.image_plan(images.spec)
    fixed = family is not None and (family.crop or family.resize_mode == "exact")
    hw = tuple(family.size) if family is not None and fixed else parse_size(spec.size) if spec.size is not None \
        else None
    size: tuple[int, int] | None = None if hw is None else (int(hw[0]), int(hw[1]))
    b = max(1, min(batch.batch_size, len(images))) if images.many else 1
    if size is None or not len(images):
        return model.check_memory()
    source = model.size_blame(family) if fixed else model.size_blame() if images.spec.size is None else None
    model.check_memory(b, size, kept(b, (b, 3, size[0], size[1])) if kept else 0, source, kept_source, backward)


def _concatenate(parts: list) -> "np.ndarray":
    import numpy as np

    return np.concatenate(parts)

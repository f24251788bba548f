"""Many images through one command: options, the decode → batch → write loop, progress, summary.

A command plugs in with three functions of its own:

    inputs = gather(images, batch)                   # sorted paths; inputs.many → batch mode
    report = run_batch(inputs.paths, batch, output, out,
                       prepare=lambda path: prepare_image(path, image_opts, patch),   # in threads
                       compute=lambda items: rows,   # list[PreparedImage] → (b, ...) numpy array
                       describe=lambda item: {...})  # extra index keys for one image (optional)
    doc = {**report.document(), ...}                 # the JSON / table summary

Images of one batch share a size (a batch is cut early when the size changes). Only the standard
library and typer at import time.
"""

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from vitcli.cli.common import OUTPUT_PANEL, Output

if TYPE_CHECKING:
    import numpy as np

    from vitcli.cli.common import ImageOptions, PreparedImage
    from vitcli.io.inputs import Inputs
    from vitcli.report import RunningStats

BATCH_PANEL = "Many images"
PROGRESS_ABOVE = 4  # images; a progress bar for more than this many

ImagesArg = Annotated[Optional[list[str]], typer.Argument(
    help="Image files, folders or quoted globs ('photos/*.jpg'), or - for standard input. "
         "Several images give one array with a leading batch axis, in sorted path order.",
    show_default=False)]


@dataclass
class BatchOptions:
    """How many images are found, decoded, batched and written."""

    recursive: Annotated[bool, typer.Option("-r", "--recursive", help="Also take images in sub-folders of folder inputs.", rich_help_panel=BATCH_PANEL)] = False
    from_list: Annotated[Optional[str], typer.Option("--from-list", help="Read more image paths from FILE, one a line (- for standard input).", rich_help_panel=BATCH_PANEL, show_default=False)] = None
    output_dir: Annotated[Optional[str], typer.Option("--output-dir", help="Several images: one .npy per image in this folder (plus index.jsonl) instead of one -o array.", rich_help_panel=OUTPUT_PANEL, show_default=False)] = None
    batch_size: Annotated[int, typer.Option("--batch-size", help="Images per forward pass.", rich_help_panel=BATCH_PANEL)] = 16
    workers: Annotated[Optional[int], typer.Option("--workers", help="Threads decoding images in parallel. [default: one per core, at most 8]", rich_help_panel=BATCH_PANEL, show_default=False)] = None
    skip_errors: Annotated[bool, typer.Option("--skip-errors", help="Report an image that cannot be read (one line, and in the index) and carry on.", rich_help_panel=BATCH_PANEL)] = False


def gather(images: list[str] | None, batch: BatchOptions) -> "Inputs":
    """The sorted input paths; `many` says whether the output gets a batch axis."""
    from vitcli.errors import VitcliError
    from vitcli.io.inputs import expand_inputs

    if batch.batch_size < 1:
        raise VitcliError("--batch-size", f"must be at least 1, got {batch.batch_size}")
    if batch.workers is not None and batch.workers < 1:
        raise VitcliError("--workers", f"must be at least 1, got {batch.workers}")
    if not images and batch.from_list is None:
        raise typer.BadParameter("give at least one IMAGE (a file, folder or glob) or --from-list FILE", param_hint="IMAGE")
    inputs = expand_inputs(images or [], batch.recursive, batch.from_list)
    inputs.many = inputs.many or batch.output_dir is not None
    return inputs


@dataclass
class BatchReport:
    """What a batch run did: counts, skipped images, where the output went, value statistics."""

    inputs: int
    done: int
    skipped: list[dict[str, str]]
    seconds: float
    stats: "RunningStats"
    outputs: dict[str, str | None]
    batch_size: int
    workers: int
    first: dict[str, Any] = field(default_factory=dict)  # the first image's index entry

    def document(self) -> dict[str, Any]:
        """JSON keys every batch command shares."""
        return {
            "images": self.inputs, "processed": self.done, "skipped": self.skipped,
            "order": "sorted by path", "batch_size": self.batch_size, "workers": self.workers,
            "seconds": round(self.seconds, 3), "images_per_second": round(self.done / self.seconds, 2) if self.seconds else None,
            "outputs": self.outputs,
        }

    def rows(self) -> list[tuple[str, Any]]:
        """Table rows for people."""
        rows: list[tuple[str, Any]] = [
            ("images (sorted by path)", f"{self.done} processed" + (f", {len(self.skipped)} skipped" if self.skipped else "")),
            ("batch size / workers", f"{self.batch_size} / {self.workers}"),
            ("time", f"{self.seconds:.2f} s ({self.done / self.seconds:.1f} images/s)" if self.seconds else "-"),
        ]
        return rows + [(k, v) for k, v in self.outputs.items() if v]


def image_entry(item: "PreparedImage", patch_size: int) -> dict[str, Any]:
    """The index line of one image: path, original size, size and grid, all [H, W] / [rows, cols]."""
    h, w = int(item.pixels.shape[0]), int(item.pixels.shape[1])
    entry = {"path": item.loaded.path, "original_size": list(item.loaded.original_size), "size": [h, w],
             "grid": [h // patch_size, w // patch_size]}
    if item.loaded.notes:
        entry["notes"] = item.loaded.notes
    return entry


def run_batch(paths: list[str], batch: BatchOptions, output: str | None, out: Output, *,
              prepare: Callable[[str], "PreparedImage"], compute: Callable[[list["PreparedImage"]], "np.ndarray"],
              patch_size: int, describe: Callable[["PreparedImage"], dict[str, Any]] | None = None,
              overlap: bool = True) -> BatchReport:
    """Decode in threads, compute batch by batch, stream rows to -o / --output-dir; all or nothing.

    overlap=False when `compute` is a model on the CPU: decoding then waits for it (see decode_all)."""
    from vitcli.io.batch import index_path, open_sink
    from vitcli.io.inputs import decode_all, default_workers
    from vitcli.report import RunningStats

    workers = batch.workers or default_workers()
    stats, skipped, first = RunningStats(), [], {}
    start = time.perf_counter()
    with open_sink(output, batch.output_dir, paths) as sink, _progress(len(paths), out) as progress:
        pending: list["PreparedImage"] = []

        def flush() -> None:
            if pending:
                rows = compute(pending)  # (b, ...)
                entries = [{**image_entry(p, patch_size), **(describe(p) if describe else {})} for p in pending]
                if not first:
                    first.update(entries[0])
                if sink is not None:
                    sink.add(rows, entries)
                stats.update(rows)
                progress(len(pending))
                pending.clear()

        ahead = batch.batch_size + 2 * workers if overlap else batch.batch_size
        for d in decode_all(paths, _light(prepare), workers, ahead, overlap):
            if d.error is not None:
                _skip_or_fail(d.path, d.error, batch.skip_errors, sink, skipped, progress)
                continue
            if pending and pending[0].pixels.shape != d.value.pixels.shape:
                flush()  # one forward pass needs one image size
            pending.append(d.value)
            if len(pending) >= batch.batch_size:
                flush()
        flush()
    outputs = {"array": output, "index": index_path(output)} if output else {"output_dir": batch.output_dir}
    return BatchReport(len(paths), stats.shape[0] if stats.shape else 0, skipped, time.perf_counter() - start,
                       stats, outputs, batch.batch_size, workers, first)


def _light(prepare: Callable[[str], "PreparedImage"]) -> Callable[[str], "PreparedImage"]:
    """`prepare`, then drop the decoded full-size pixels: only the fitted ones wait for their batch."""

    def run(path: str) -> "PreparedImage":
        item = prepare(path)
        item.loaded.release()
        return item

    return run


def _skip_or_fail(path: str, error: Exception, skip: bool, sink: Any, skipped: list, progress: Any) -> None:
    """With --skip-errors: one line on stderr and one in the index; otherwise stop the run."""
    if not skip:
        raise error
    problem = getattr(error, "problem", str(error))
    skipped.append({"path": path, "error": problem})
    if sink is not None:
        sink.skip({"path": path, "error": problem})
    progress.message(f"vitcli: skipped: {path}: {problem}")
    progress(1)


class _Progress:
    """Advance a rich progress bar (or nothing), and print lines without breaking it."""

    def __init__(self, bar: Any, task: Any) -> None:
        self.bar, self.task = bar, task

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()


class _progress:
    """Context manager: a bar on stderr for more than a few images when stderr is a terminal."""

    def __init__(self, total: int, out: Output) -> None:
        self.total, self.out, self.bar = total, out, None

    def __enter__(self) -> _Progress:
        if self.total <= PROGRESS_ABOVE or self.out.quiet or not sys.stderr.isatty():
            return _Progress(None, None)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _speed_column(),
                            TextColumn("left"), TimeRemainingColumn(), console=Console(stderr=True), transient=True)
        self.bar.start()
        return _Progress(self.bar, self.bar.add_task("images", total=self.total))

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


def _speed_column() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class SpeedColumn(ProgressColumn):
        """images/s over the run so far."""

        def render(self, task: Any) -> Text:
            speed = task.finished_speed or task.speed
            return Text("… images/s" if speed is None else f"{speed:.1f} images/s", style="progress.data.speed")

    return SpeedColumn()


def show_summary(command: str, report: BatchReport, extra_rows: list[tuple[str, Any]], array_label: str,
                 doc: dict[str, Any], out: Output) -> None:
    """The batch summary as tables, or the JSON document."""
    from vitcli.report import emit_json, info_table, stats_table

    if out.as_json:
        return emit_json(doc)
    out.show(info_table(f"vitcli {command} (batch)", report.rows() + extra_rows),
             stats_table("written", {array_label: report.stats.document()}))

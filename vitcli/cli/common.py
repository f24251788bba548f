"""Options shared by the commands, parsed once into the API's specs; output plumbing and progress.

Only typer and the standard library at import time: `vitcli --help` must stay fast. Choices are
derived from the API's and core's `Literal`s, so there is one list of each.
"""

import dataclasses
import functools
import inspect
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args, get_type_hints

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from vitcli.api.images import Images
    from vitcli.api.models import Model

IMAGE_PANEL, OUTPUT_PANEL, MODEL_PANEL, BATCH_PANEL = "Image", "Output", "Model", "Many images"


def choices(name: str, literal: Any) -> type[Enum]:
    """A str Enum of a Literal's values, for typer's choice lists."""
    return Enum(name, {v: v for v in get_args(literal)}, type=str)  # type: ignore[return-value]


FitChoice = choices("FitChoice", Literal["crop", "resize", "pad", "strict"])
ResampleChoice = choices("ResampleChoice", Literal["bicubic", "bilinear", "nearest", "lanczos"])
OrderChoice = choices("OrderChoice", Literal["chw", "hwc"])
ValuesChoice = choices("ValuesChoice", Literal["raw", "none", "imagenet", "inception", "clip"])


def prose(text: str) -> str:
    """A help text written wrapped at the line length, as the paragraphs --help shows: single line breaks
    become spaces (an indented line, as in a list, keeps its break)."""
    return re.sub(r"(?<=\S)\n(?=\S)", " ", text)


def examples(lines: list[str]) -> str:
    """An --help epilog: one copyable command per line."""
    return "Examples:\n\n" + "\n\n".join(f"  {line}" for line in lines)


def value(option: Any) -> Any:
    """An Enum choice's text (or the value itself)."""
    return getattr(option, "value", option)


ImageArg = Annotated[str,
                     typer.Argument(metavar="IMAGE", help="Image file, or - to read the image from standard input.",
                                    show_default=False)]
ImagesArg = Annotated[list[str] | None, typer.Argument(
    metavar="IMAGE…",
                                                       help="Image files, folders or quoted globs ('photos/*.jpg'), or "
                                                            "- for standard input. Several images give one "
         "array with a leading batch axis, in sorted path order.", show_default=False)]
OutputOpt = Annotated[str | None,
                      typer.Option("-o", "--output", metavar="FILE",
                                   help="Write the array as .npy to FILE, or - for standard output.",
                                   rich_help_panel=OUTPUT_PANEL, show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", metavar="",
                                       help="Print one JSON object on standard output instead of tables.",
                                       rich_help_panel=OUTPUT_PANEL)]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", metavar="", help="Print nothing but errors.",
                                        rich_help_panel=OUTPUT_PANEL)]
NormalizeOpt = Annotated[str | None, typer.Option("--normalize", metavar="NAME",
                                                  help="imagenet | inception | clip | none \\[default: the "
                                                       "checkpoint's, else imagenet]", show_default=False)]
PngOpt = Annotated[str | None, typer.Option("--png", metavar="FILE", help="Write the figure as PNG to FILE.",
                                            rich_help_panel=OUTPUT_PANEL, show_default=False)]


@dataclass
class ImageOptions:
    """The image options every image command takes."""

    size: Annotated[str | None, typer.Option(
        "--size", metavar="N|HxW|native", rich_help_panel=IMAGE_PANEL, show_default=False,
        help="Final size: 224, HxW such as 224x160, or native. \\[default: 224, or the model's native size]")] = None
    fit: Annotated[FitChoice | None, typer.Option(  # type: ignore[valid-type]
        "--fit", metavar="FIT", rich_help_panel=IMAGE_PANEL, show_default=False,
        help="How the image reaches the size: crop (cover, centre-crop), resize (stretch), pad (fit, pad), strict (no "
             "change; must already fit). \\[default: crop; with --weights and no --size, the checkpoint family's own "
             "resize and crop]")] = None
    resample: Annotated[ResampleChoice | None, typer.Option(  # type: ignore[valid-type]
        "--resample", metavar="RESAMPLE", rich_help_panel=IMAGE_PANEL, show_default=False,
        help="Resampling filter when resizing. \\[default: bicubic, or the checkpoint family's]",
    )] = None
    patch_size: Annotated[int | None, typer.Option(
        "-p", "--patch-size", metavar="N", rich_help_panel=IMAGE_PANEL, show_default=False,
        help="Patch size P in pixels. \\[default: 16, or the model's]")] = None
    background: Annotated[str, typer.Option(
        "--background", metavar="R,G,B", rich_help_panel=IMAGE_PANEL,
        help="Colour under transparent pixels and padding: R,G,B or #rrggbb.")] = "255,255,255"
    max_pixels: Annotated[int | None, typer.Option(
        "--max-pixels", metavar="N", rich_help_panel=IMAGE_PANEL, show_default=False,
        help="Largest image (pixels) to decode; guards against decompression bombs. \\[default: Pillow's 89,478,485]",
    )] = None
    max_patches: Annotated[int | None, typer.Option(
        "--max-patches", metavar="N", rich_help_panel=IMAGE_PANEL, show_default=False,
        help="With --size native: scale the image, aspect kept, to at most this many patches (NaFlex, SigLIP 2). "
             "\\[default: the checkpoint's table size for NaFlex models, else no limit]")] = None
    draft: Annotated[bool, typer.Option(
        "--draft/--no-draft", metavar="", rich_help_panel=IMAGE_PANEL,
        help="Decode a JPEG at 1/2, 1/4 or 1/8 scale when it stays at least twice the final size (its shorter side ≥ "
             "4× the longer side of --size); --no-draft always decodes in full.")] = True


@dataclass
class BatchOptions:
    """How many images are found, decoded, batched and written."""

    recursive: Annotated[bool, typer.Option(
        "-r", "--recursive", metavar="", rich_help_panel=BATCH_PANEL,
        help="Also take images in sub-folders of folder inputs.")] = False
    from_list: Annotated[str | None, typer.Option(
        "--from-list", metavar="FILE", rich_help_panel=BATCH_PANEL, show_default=False,
        help="Read more image paths from FILE, one a line (- for standard input).")] = None
    output_dir: Annotated[str | None, typer.Option(
        "--output-dir", metavar="DIR", rich_help_panel=OUTPUT_PANEL, show_default=False,
        help="Several images: one .npy per image in this folder (plus index.jsonl) instead of one -o array.")] = None
    batch_size: Annotated[int, typer.Option(
        "--batch-size", metavar="N", rich_help_panel=BATCH_PANEL, help="Images per forward pass.")] = 16
    workers: Annotated[int | None, typer.Option(
        "--workers", metavar="N", rich_help_panel=BATCH_PANEL, show_default=False,
        help="Threads decoding images in parallel. \\[default: one per core, at most 8]")] = None
    skip_errors: Annotated[bool, typer.Option(
        "--skip-errors", metavar="", rich_help_panel=BATCH_PANEL,
        help="Report an image that cannot be read (one line, and in the index) and carry on.")] = False


@dataclass
class ModelOptions:
    """Which ViT to run and where."""

    model: Annotated[str | None, typer.Option(
        "--model", metavar="NAME", rich_help_panel=MODEL_PANEL, show_default=False,
        help="Preset: vit-ti16, vit-s16, vit-b16, vit-b32, vit-l16, vit-s14, vit-b14, vit-l14, vit-h14 (not with "
             "--weights). \\[default: vit-b16]")] = None
    weights: Annotated[str | None, typer.Option(
        "--weights", metavar="WEIGHTS", rich_help_panel=MODEL_PANEL, show_default=False,
        help="Checkpoint: .safetensors, .pth/.pt/.bin, CLIP .pt, or hf-hub:ORG/NAME, timm:NAME (from the local cache).",
    )] = None
    dim: Annotated[int | None, typer.Option(
        "-d", "--dim", metavar="N", rich_help_panel=MODEL_PANEL, show_default=False,
        help="Override the token width D (with --weights: checked against the weights).")] = None
    depth: Annotated[int | None, typer.Option(
        "--depth", metavar="N", rich_help_panel=MODEL_PANEL, show_default=False,
        help="Override the number of blocks L.")] = None
    heads: Annotated[int | None, typer.Option(
        "--heads", metavar="N", rich_help_panel=MODEL_PANEL, show_default=False,
        help="Override the number of attention heads (with --weights: for weights whose head width is not 64 and that "
             "come without a config).")] = None
    mlp_ratio: Annotated[float | None, typer.Option(
        "--mlp-ratio", metavar="X", rich_help_panel=MODEL_PANEL, show_default=False,
        help="Override the MLP width as a multiple of D.")] = None
    no_cls: Annotated[bool, typer.Option(
        "--no-cls", metavar="", rich_help_panel=MODEL_PANEL,
        help="No class token (and no position row for it; mean pooling).")] = False
    seed: Annotated[int, typer.Option(
        "--seed", metavar="N", rich_help_panel=MODEL_PANEL, help="Seed of the random weights: same seed, same numbers.",
    )] = 0
    device: Annotated[str, typer.Option(
        "--device", metavar="DEVICE", rich_help_panel=MODEL_PANEL, help="auto, cpu, cuda, cuda:N or mps.")] = "auto"
    dtype: Annotated[str, typer.Option(
        "--dtype", metavar="DTYPE", rich_help_panel=MODEL_PANEL,
        help="float32, float16 or bfloat16 (half types are slow on the CPU).")] = "float32"
    native_size: Annotated[str | None, typer.Option(
        "--native-size", metavar="HxW", rich_help_panel=MODEL_PANEL, show_default=False,
        help="With --weights: the size HxW the checkpoint was trained at, for a non-square position table that has no "
             "config.json beside it.")] = None
    eps: Annotated[float | None, typer.Option(
        "--eps", metavar="X", rich_help_panel=MODEL_PANEL, show_default=False,
        help="With --weights: LayerNorm epsilon, when the family default is not the one the weights were trained with.",
    )] = None
    activation: Annotated[str | None, typer.Option(
        "--activation", metavar="NAME", rich_help_panel=MODEL_PANEL, show_default=False,
        help="With --weights: the MLP activation gelu, gelu_tanh or quick_gelu, which weights cannot show.")] = None
    online: Annotated[bool, typer.Option(
        "--online", metavar="", rich_help_panel=MODEL_PANEL,
        help="Let hf-hub: and timm: names download what the local Hugging Face cache lacks (otherwise the cache alone "
             "is read, with no network).")] = False
    family: Annotated[str | None, typer.Option(
        "--family", metavar="NAME", rich_help_panel=MODEL_PANEL, show_default=False,
        help="With --weights: read the checkpoint as this layout (timm, timm-eva, timm-pe, timm-pe-spatial, hf-vit, "
             "clip, …; info lists it as layout) instead of recognising it from its keys.")] = None
    strict: Annotated[bool, typer.Option(
        "--strict/--no-strict", metavar="", rich_help_panel=MODEL_PANEL,
        help="Refuse checkpoints with left-over or missing keys.")] = True


# Every option that names a file read (parameter name), so that one check covers every command; the
# outputs are the API's (vitcli.api.outputs.OUTPUT_OPTIONS), checked there too with the images found.
INPUT_FILES = ("images", "image", "to", "weights", "from_list", "unpatchify", "tokenizer", "labels_file")


def check_planned_outputs(kwargs: dict[str, Any]) -> None:
    """Before a command loads a model: `-` outputs (only one, never with --json, a usage error),
    then the API's output check (each planned file's folder and name, none of them an input)."""
    from vitcli.api.outputs import check_outputs_first, check_stdout

    check_stdout(kwargs, bool(kwargs.get("as_json")))
    inputs: list[Any] = []
    for name in INPUT_FILES:
        value = kwargs.get(name)
        inputs += value if isinstance(value, list) else [value] if isinstance(value, str) else []
    target = kwargs.get("target")
    if isinstance(target, str) and target.startswith("image:"):
        inputs.append(target[len("image:"):])
    output_dir = kwargs.get("output_dir")
    check_outputs_first(kwargs, inputs=inputs, output_dir=output_dir if isinstance(output_dir, str) else None)


def image_spec(opts: ImageOptions) -> Any:
    """The image options as the API's ImageSpec."""
    from vitcli.api.images import ImageSpec

    return ImageSpec(opts.size, value(opts.fit), value(opts.resample), opts.background, opts.max_pixels, opts.draft,
                     opts.patch_size, opts.max_patches)


def batch_spec(opts: BatchOptions) -> Any:
    from vitcli.api.runs import BatchSpec

    return BatchSpec(opts.batch_size, opts.workers, opts.skip_errors).checked()


def gather(images: list[str] | None, opts: ImageOptions, batch: BatchOptions) -> "Images":
    """The command's images as the API's lazy `Images` (sorted paths; `many` → batch outputs)."""
    from dataclasses import replace

    from vitcli.api.images import check_fixed_size, load_images

    batch_spec(batch)
    if not images and batch.from_list is None:
        raise typer.BadParameter("give at least one IMAGE (a file, folder or glob) or --from-list FILE",
                                 param_hint="IMAGE")
    found = load_images(images or [], recursive=batch.recursive, from_list=batch.from_list)
    spec = image_spec(opts)
    check_fixed_size(spec)
    return replace(found, spec=spec, many=found.many or batch.output_dir is not None)


def open_model(opts: ModelOptions, image: ImageOptions | None = None, posenc: str | None = None,
               describe_only: bool = False) -> "Model":
    """`load_model` from the model options (a preset's patch size comes from -p); `describe_only`
    reads a checkpoint's shapes, not its values (`info`)."""
    from vitcli.api.models import load_model
    from vitcli.errors import UsageError

    if opts.weights is not None and opts.model is not None:
        raise UsageError("--model", f"names a preset ({opts.model}) and --weights a checkpoint ({opts.weights}): "
                                    "give one of them")
    patch = image.patch_size if image is not None else None
    load: Callable[..., Model] = load_model  # its keywords parse the options' text
    return load(opts.weights or opts.model or "vit-b16", device=opts.device, dtype=opts.dtype, seed=opts.seed,
                      strict=opts.strict, patch_size=patch, dim=opts.dim, depth=opts.depth, heads=opts.heads,
                      mlp_ratio=opts.mlp_ratio, class_token=False if opts.no_cls else None, posenc=posenc,
                      native_size=opts.native_size, eps=opts.eps, activation=opts.activation, online=opts.online,
                      family=opts.family, describe_only=describe_only)


@dataclass
class OutputOptions:
    """-o, --json, -q: where a command's array, its JSON document and its tables go."""

    output: OutputOpt = None
    as_json: JsonOpt = False
    quiet: QuietOpt = False


class Output:
    """Where tables and data go: tables to stdout, or to stderr when stdout carries data."""

    def __init__(self, opts: OutputOptions) -> None:
        """`-o -` beside --json was refused already (check_planned_outputs, before the command runs)."""
        self.output, self.as_json, self.quiet = opts.output, opts.as_json, opts.quiet
        self._console: Console | None = None

    @property
    def console(self) -> "Console":
        from vitcli.cli.report import make_console

        if self._console is None:
            self._console = make_console(to_stderr=self.as_json or self.output == "-")
        return self._console

    @property
    def colour(self) -> bool:
        """Colours on screen: a terminal with colours, and NO_COLOR not set."""
        return self.console.color_system is not None and not self.console.no_color

    def finish(self, document: Mapping[str, object], *renderables: Any, warnings: Sequence[str] = ()) -> None:
        """The JSON document, or the tables; then warnings on standard error."""
        from vitcli.cli.report import emit_json

        if self.as_json:
            emit_json(document)
        elif not self.quiet:
            for r in renderables:
                if r is not None:
                    self.console.print(r)
        for w in warnings:
            self.message(f"[yellow]warning:[/] {w}")

    def message(self, text: str) -> None:
        """A short note on standard error, unless --quiet."""
        if not self.quiet:
            from vitcli.cli.report import make_console

            make_console(to_stderr=True).print(text)

    def progress(self, total: int) -> "ProgressBar":
        return ProgressBar(total, self)


PROGRESS_ABOVE = 4  # images; a progress bar for more than this many


class ProgressBar:
    """Context manager: a rich bar on stderr for more than a few images when stderr is a terminal;
    called with a count of images done, and `message` prints a line without breaking it."""

    def __init__(self, total: int, out: Output) -> None:
        self.total, self.out = total, out
        self.bar: Any = None  # a rich Progress while shown
        self.task: Any = None

    def __enter__(self) -> "ProgressBar":
        if self.total > PROGRESS_ABOVE and not self.out.quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
            from rich.text import Text

            class Speed(TextColumn):
                def render(self, task: Any) -> Text:
                    speed = task.finished_speed or task.speed
                    return Text("… images/s" if speed is None else f"{speed:.1f} images/s", style="progress.data.speed")

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), Speed(""),
                                TextColumn("left"), TimeRemainingColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("images", total=self.total)
        return self

    def __call__(self, n: int) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, n)

    def message(self, text: str) -> None:
        if self.bar is not None:
            self.bar.console.print(text, markup=False, highlight=False)
        else:
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()


def with_options(**groups: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let a command take a group of options as one dataclass argument.

    Each dataclass field (an `Annotated[..., typer.Option(...)]` with a default) becomes a
    command-line option; the command receives the filled dataclass under the argument's name.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name not in groups]
        added = []
        for cls in groups.values():
            hints = get_type_hints(cls, include_extras=True)
            added += [inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default,
                                        annotation=hints[f.name])
                      for f in dataclasses.fields(cls)]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            if kwargs.get("resume") and kwargs.get("output_dir"):
                from vitcli.cli.datasets import resume_options

                kwargs = resume_options(kwargs)
            check_planned_outputs(kwargs)
            for arg, cls in groups.items():
                kwargs[arg] = cls(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(cls)})
            return command(**kwargs)

        run.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
        return run

    return decorate

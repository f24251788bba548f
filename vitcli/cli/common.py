"""Options and output plumbing shared by every subcommand.

Only typer and the standard library at import time: `vitcli --help` must stay fast.
"""

import dataclasses
import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any, Optional, get_type_hints

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from vitcli.io.images import LoadedImage


class FitChoice(str, Enum):
    crop = "crop"
    resize = "resize"
    pad = "pad"
    strict = "strict"


class ResampleChoice(str, Enum):
    bicubic = "bicubic"
    bilinear = "bilinear"
    nearest = "nearest"
    lanczos = "lanczos"


class NormalizeChoice(str, Enum):
    raw = "raw"
    none = "none"
    imagenet = "imagenet"
    inception = "inception"
    clip = "clip"


class OrderChoice(str, Enum):
    chw = "chw"
    hwc = "hwc"


IMAGE_PANEL = "Image"
OUTPUT_PANEL = "Output"

ImageArg = Annotated[str, typer.Argument(help="Image file, or - to read the image from standard input.", show_default=False)]
SizeOpt = Annotated[Optional[str], typer.Option("--size", help="Final size: 224, HxW such as 224x160, or native. [default: 224, or the model's native size]", rich_help_panel=IMAGE_PANEL, show_default=False)]
FitOpt = Annotated[Optional[FitChoice], typer.Option("--fit", help="How the image reaches the size: crop (cover, centre-crop), resize (stretch), pad (fit, pad), strict (no change; must already fit). [default: crop; with --weights and no --size, the checkpoint family's own resize and crop]", rich_help_panel=IMAGE_PANEL, show_default=False)]
ResampleOpt = Annotated[Optional[ResampleChoice], typer.Option("--resample", help="Resampling filter when resizing. [default: bicubic, or the checkpoint family's]", rich_help_panel=IMAGE_PANEL, show_default=False)]
BackgroundOpt = Annotated[str, typer.Option("--background", help="Colour under transparent pixels and padding: R,G,B or #rrggbb.", rich_help_panel=IMAGE_PANEL)]
MaxPixelsOpt = Annotated[Optional[int], typer.Option("--max-pixels", help="Largest image (pixels) to decode; guards against decompression bombs. [default: Pillow's 89,478,485]", rich_help_panel=IMAGE_PANEL, show_default=False)]
OutputOpt = Annotated[Optional[str], typer.Option("-o", "--output", help="Write the array as .npy to FILE, or - for standard output.", rich_help_panel=OUTPUT_PANEL, show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object on standard output instead of tables.", rich_help_panel=OUTPUT_PANEL)]
QuietOpt = Annotated[bool, typer.Option("-q", "--quiet", help="Print nothing but errors.", rich_help_panel=OUTPUT_PANEL)]
NormalizeOpt = Annotated[Optional[str], typer.Option("--normalize", help="imagenet | inception | clip | none [default: the checkpoint's, else imagenet]", show_default=False)]


@dataclass
class ImageOptions:
    """The image options every image command takes, gathered in one place."""

    size: SizeOpt = None
    fit: FitOpt = None
    resample: ResampleOpt = None
    patch_size: Annotated[Optional[int], typer.Option("-p", "--patch-size", help="Patch size P in pixels. [default: 16, or the model's]", rich_help_panel=IMAGE_PANEL, show_default=False)] = None
    background: BackgroundOpt = "255,255,255"
    max_pixels: MaxPixelsOpt = None
    draft: Annotated[bool, typer.Option("--draft/--no-draft", help="Decode a JPEG at 1/2, 1/4 or 1/8 scale when it stays at least twice the final size (its shorter side ≥ 4× the longer side of --size); --no-draft always decodes in full.", rich_help_panel=IMAGE_PANEL)] = True


@dataclass
class PreparedImage:
    """An image brought to its final size, with the facts the table and JSON report."""

    loaded: "LoadedImage"
    pixels: Any  # (H, W, 3) uint8
    fit: str
    done: str
    data: Any = None  # what a batch command computed from the pixels while decoding (e.g. the input array)

    def input_document(self) -> dict[str, Any]:
        """The JSON `input` object shared by every command."""
        l = self.loaded
        return {
            "path": l.path,
            "original_size": list(l.original_size),
            "size": [int(self.pixels.shape[0]), int(self.pixels.shape[1])],
            "fit": self.fit,
            "resize": self.done,
            "mode": l.mode,
            "format": l.format,
            "frames": l.frames,
            "notes": l.notes,
        }

    def input_rows(self) -> list[tuple[str, Any]]:
        """Table rows describing the input."""
        l = self.loaded
        rows: list[tuple[str, Any]] = [
            ("input", l.path if l.path != "-" else "<stdin>"),
            ("format / mode", f"{l.format or '?'} / {l.mode}"),
            ("original size [H, W]", f"{l.original_size[0]} × {l.original_size[1]}"),
            ("final size [H, W]", f"{self.pixels.shape[0]} × {self.pixels.shape[1]}"),
            (f"fit ({self.fit})", self.done),
        ]
        rows += [("note", n) for n in l.notes]
        return rows


def parse_colour(text: str) -> tuple[int, int, int]:
    """'255,255,255' or '#ffffff' → (r, g, b)."""
    from vitcli.errors import VitcliError

    t = text.strip()
    try:
        if t.startswith("#") and len(t) == 7:
            rgb = tuple(int(t[i : i + 2], 16) for i in (1, 3, 5))
        else:
            rgb = tuple(int(v) for v in t.split(","))
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise ValueError
    except ValueError:
        raise VitcliError("--background", f"'{text}' is not a colour: use R,G,B (0-255) or #rrggbb") from None
    return rgb  # type: ignore[return-value]


def check_patch_size(patch_size: int) -> None:
    """A patch size must be a positive number of pixels."""
    from vitcli.errors import VitcliError

    if patch_size <= 0:
        raise VitcliError("--patch-size", f"must be a positive number of pixels, got {patch_size}")


def check_image_options(opts: ImageOptions, patch_size: int) -> tuple[int, int] | None:
    """Options wrong for every image fail once, before any image is read; the requested [H, W]
    (None for native)."""
    from vitcli.errors import VitcliError
    from vitcli.io.images import parse_size

    check_patch_size(patch_size)
    requested = parse_size(opts.size or "224")
    if requested and (requested[0] % patch_size or requested[1] % patch_size):
        raise VitcliError("--size", f"{opts.size} is not a multiple of the patch size {patch_size}")
    parse_colour(opts.background)
    return requested


def prepare_image(image: str, opts: ImageOptions, patch_size: int, family: Any = None) -> PreparedImage:
    """Load, orient, convert and fit one image: the same pixels for every command.

    `family` (a checkpoint's `Preprocess`) replaces vitcli's size policy by the family library's
    own resize and centre crop (used when the user gave neither --size nor --fit), from the fully
    decoded image as that library sees it."""
    from vitcli.errors import VitcliError
    from vitcli.io import images
    from vitcli.io.inputs import draft_size

    requested = check_image_options(opts, patch_size)
    background = parse_colour(opts.background)
    fit = FitChoice(opts.fit or "crop").value
    draft = draft_size(requested, fit) if opts.draft and family is None else None
    loaded = images.load_image(image, background, opts.max_pixels or images.DEFAULT_MAX_PIXELS, draft)
    h, w = loaded.original_size
    if h < patch_size or w < patch_size:
        raise VitcliError(image, f"image is {h}x{w}, smaller than one {patch_size}x{patch_size} patch")
    if family is not None:
        done = family.describe().split(", mean/std")[0] + (f" ({family.source})" if family.source else "")
        return PreparedImage(loaded, images.preprocess_geometry(family, loaded.image), "family", done)
    resample = ResampleChoice(opts.resample or "bicubic").value
    pixels, done = images.fit_image(loaded, requested, fit, patch_size, resample, background)  # type: ignore[arg-type]
    return PreparedImage(loaded, pixels, fit, done)


class Output:
    """Where tables and data go: tables to stdout, or to stderr when stdout carries data."""

    def __init__(self, output: str | None, as_json: bool, quiet: bool) -> None:
        from vitcli.errors import VitcliError

        if as_json and output == "-":
            raise VitcliError("-o -", "cannot share standard output with --json; write the array to a file")
        self.output, self.as_json, self.quiet = output, as_json, quiet
        self._console: "Console | None" = None

    @property
    def console(self) -> "Console":
        from vitcli.report import make_console

        if self._console is None:
            self._console = make_console(to_stderr=self.as_json or self.output == "-")
        return self._console

    def show(self, *renderables: Any) -> None:
        """Print tables unless --quiet or --json."""
        if self.quiet or self.as_json:
            return
        for r in renderables:
            self.console.print(r)

    def message(self, text: str) -> None:
        """A short note on standard error, unless --quiet."""
        if not self.quiet:
            from vitcli.report import make_console

            make_console(to_stderr=True).print(text)


def with_options(**groups: type) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Let a command take a group of options as one dataclass argument.

    Each dataclass field (an `Annotated[..., typer.Option(...)]` with a default) becomes a
    command-line option; the command receives the filled dataclass under the argument's name.
    This keeps each shared option in one place instead of repeated in every command.
    """

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command)
        own = [p for p in signature.parameters.values() if p.name not in groups]
        added = []
        for cls in groups.values():
            hints = get_type_hints(cls, include_extras=True)
            added += [
                inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=f.default, annotation=hints[f.name])
                for f in dataclasses.fields(cls)
            ]

        @functools.wraps(command)
        def run(**kwargs: Any) -> Any:
            for arg, cls in groups.items():
                kwargs[arg] = cls(**{f.name: kwargs.pop(f.name) for f in dataclasses.fields(cls)})
            return command(**kwargs)

        run.__signature__ = signature.replace(parameters=own + added)  # type: ignore[attr-defined]
        return run

    return decorate

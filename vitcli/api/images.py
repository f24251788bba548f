"""Images for a model: sources (paths, folders, globs, list files, Pillow images, arrays) → fitted pixels.

    images = vitcli.load_images(["cat.jpg", "photos/"], size=224, fit="crop")   # lazy: nothing decoded
    for item in images.fitted(patch_size=16): item.pixels                        # (H, W, 3) uint8

`ImageSpec` holds every image option with its default in one place; `fit_one` is the one way an
image reaches its final size, for every command and for one image or many.
"""

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

from vitcli.api.values import IMAGE_OPTIONS, Fit, Parser, Resample, Size, keywords
from vitcli.errors import VitcliError, option_errors

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL.Image import Image as PILImage

    from vitcli.api.documents import InputDoc
    from vitcli.checkpoints.preprocess import Preprocess
    from vitcli.io.images import LoadedImage

R = TypeVar("R")  # a command's result type, kept by image_keywords
DEFAULT_PATCH = 16
DEFAULT_SIZE = "224"


# What a command's images may be: a path (file, folder, glob, '-' for standard input), a PIL image, an
# (H, W[, C]) array, a loaded `Images`, or a list of paths / PIL images / arrays.
ImageSource = Union[str, os.PathLike, "PILImage", "np.ndarray", "Images",
                    Sequence[Union[str, os.PathLike, "PILImage", "np.ndarray"]]]


@dataclass(frozen=True)
class ImageSpec:
    """How images are read and fitted; None means "the model's (or the checkpoint family's) own"."""

    size: str | None = None  # '224', 'HxW' ([H, W]) or 'native'
    fit: Fit | None = None  # crop (default), resize, pad, strict
    resample: Resample | None = None  # bicubic (default, or the family's filter)
    background: str = "255,255,255"  # under transparent pixels and padding: R,G,B or #rrggbb
    max_pixels: int | None = None  # decompression-bomb guard (Pillow's 89,478,485 by default)
    draft: bool = True  # JPEG draft decoding when the photo is ≥ 4× the final size
    patch_size: int | None = None  # P; a model's own when None (patchify: 16)
    max_patches: int | None = None  # with size 'native': NaFlex's patch budget, the aspect kept
    max_memory: str | int | None = None  # the memory limit (vitcli.core.budget); None: a share of what is free
    # the model's (set by its image plan): a size that is not a multiple of P is refused, or floored as its
    # patch conv does (the image fitted at that size, then its top-left whole patches kept)
    patch_remainder: Literal["refuse", "floor"] = "refuse"


DEFAULT_FIT: Fit = "crop"
DEFAULT_RESAMPLE: Resample = "bicubic"


def fit_used(spec: ImageSpec) -> Fit:
    """The fit a spec applies: its own, else crop; NaFlex's native size within a patch budget resizes."""
    return "resize" if spec.size == "native" and spec.max_patches else (spec.fit or DEFAULT_FIT)


def as_size_text(size: object) -> str | None:
    """224, (224, 160), '224x160' or 'native' → the '--size' text form (None stays None)."""
    if size is None or isinstance(size, str):
        return size
    if isinstance(size, int):
        return str(size)
    if isinstance(size, (tuple, list)) and len(size) == 2:
        return f"{size[0]}x{size[1]}"
    raise VitcliError("--size", f"{size!r} is not N, (H, W), 'HxW' or 'native'")


@dataclass
class FittedImage:
    """An image brought to its final size, with the facts the table and JSON report."""

    loaded: "LoadedImage"
    pixels: "np.ndarray"  # (H, W, 3) uint8
    fit: str  # crop | resize | pad | strict | family
    done: str  # what was done, in words
    data: "torch.Tensor | np.ndarray | None" = None  # the model input, made in the decoding thread (tensor(), array())
    values: "np.ndarray | None" = None  # (H, W, 3) float32 on x/255's scale when the family resizes unrounded floats
    sha256: str | None = None  # the file's bytes' hash, when a dataset run records it (dataset.hashed)

    @property
    def input(self) -> "np.ndarray":
        """What is normalised into the model input: the float values when there are any, else the pixels."""
        return self.pixels if self.values is None else self.values

    def tensor(self) -> "torch.Tensor":
        """The model input (1, 3, H, W) a model's preparer made."""
        import torch

        if not isinstance(self.data, torch.Tensor):
            raise TypeError(f"{self.loaded.path}: prepared without a model input tensor")
        return self.data

    def array(self) -> "np.ndarray":
        """patchify's values (3, H, W) its preparer made."""
        import numpy as np

        if not isinstance(self.data, np.ndarray):
            raise TypeError(f"{self.loaded.path}: prepared without patchify's values")
        return self.data

    def input_document(self) -> "InputDoc":
        """The JSON `input` object shared by every command."""
        loaded = self.loaded
        return {"path": loaded.path, "original_size": list(loaded.original_size),
                "size": [int(self.pixels.shape[0]), int(self.pixels.shape[1])], "fit": self.fit,
                "resize": self.done, "mode": loaded.mode, "format": loaded.format, "frames": loaded.frames,
                "notes": loaded.notes}

    def index_entry(self, patch_size: int) -> dict[str, Any]:
        """The index line of one image: path, original size, size and grid."""
        h, w = int(self.pixels.shape[0]), int(self.pixels.shape[1])
        entry = {"path": self.loaded.path, "original_size": list(self.loaded.original_size), "size": [h, w],
                 "grid": [h // patch_size, w // patch_size]}
        if self.loaded.notes:
            entry["notes"] = self.loaded.notes
        return entry


def parse_colour(text: str) -> tuple[int, int, int]:
    """'255,255,255' or '#ffffff' → (r, g, b)."""
    t = text.strip()
    try:
        rgb = tuple(int(t[i:i + 2], 16) for i in (1, 3, 5)) if t.startswith("#") and len(t) == 7 else \
            tuple(int(v) for v in t.split(","))
        if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
            raise ValueError
    except ValueError:
        raise VitcliError("--background", f"'{text}' is not a colour: use R,G,B (0-255) or #rrggbb") from None
    return rgb


def check_spec(spec: ImageSpec, patch_size: int) -> tuple[int, int] | None:
    """Options wrong for every image fail once, before any image is read; the requested [H, W] (None: native)."""
    from vitcli.api.ranges import check_ranges
    from vitcli.io.sizes import parse_size

    if patch_size <= 0:
        raise VitcliError("--patch-size", f"must be a positive number of pixels, got {patch_size}")
    check_ranges(max_pixels=spec.max_pixels, max_patches=spec.max_patches)
    if spec.fit is not None and spec.fit not in ("crop", "resize", "pad", "strict"):
        raise VitcliError("--fit", f"'{spec.fit}' is not crop, resize, pad or strict")
    if spec.resample is not None and spec.resample not in ("bicubic", "bilinear", "nearest", "lanczos"):
        raise VitcliError("--resample", f"'{spec.resample}' is not bicubic, bilinear, nearest or lanczos")
    requested = parse_size(spec.size or DEFAULT_SIZE)
    if requested and min(requested) < patch_size:
        raise VitcliError("--patch-size", f"{patch_size} is larger than the image size {requested[0]}x{requested[1]} "
                          "(--size): give a smaller --patch-size or a larger --size")
    if requested and spec.patch_remainder == "refuse" and (requested[0] % patch_size or requested[1] % patch_size):
        raise VitcliError("--size", f"{requested[0]}x{requested[1]} is not a multiple of the patch size {patch_size}")
    parse_colour(spec.background)
    if requested:
        check_image_memory(requested, spec.max_memory, "--size")
    return requested


def check_fixed_size(spec: ImageSpec) -> None:
    """A fixed --size over the memory limit fails when the images are named, before a model is built."""
    from vitcli.io.sizes import parse_size

    try:
        requested = parse_size(spec.size or DEFAULT_SIZE)
    except (ValueError, VitcliError):
        return  # malformed: check_spec names it once the patch size is known
    if requested:
        check_image_memory(requested, spec.max_memory, "--size")


def check_image_memory(size: tuple[int, int], max_memory: str | int | None, source: str) -> None:
    """The one-line error when one image fitted to [H, W] would need more than the memory limit."""
    from vitcli.core.budget import image_bytes, memory_limit, over

    try:
        limit = memory_limit(max_memory)
    except ValueError as e:
        raise VitcliError("--max-memory", str(e)) from None
    problem = over(image_bytes(size), limit, f"a {size[0]}×{size[1]} image")
    if problem:
        raise VitcliError(source, problem, needs="max_memory")


def read_one(item: object, spec: ImageSpec, draft: int | None, name: str) -> "LoadedImage":
    """A path ('-': standard input), a Pillow image or an array → LoadedImage (upright 8-bit RGB)."""
    from vitcli.io import images

    background = parse_colour(spec.background)
    if isinstance(item, str):
        from vitcli.core.budget import memory_limit

        with option_errors("--max-memory"):
            limit = memory_limit(spec.max_memory)
        return images.load_image(item, background, spec.max_pixels or images.DEFAULT_MAX_PIXELS, draft, limit)
    return images.image_from_memory(item, name, background)


def fit_one(item: object, spec: ImageSpec, patch_size: int, family: "Preprocess | None" = None,
            name: str = "") -> FittedImage:
    """Load, orient, convert and fit one image: the same pixels for every command.

    `family` (a checkpoint's `Preprocess`) replaces vitcli's size policy by the family library's own
    resize and centre crop, from the fully decoded image as that library sees it.
    """
    from vitcli.io import images
    from vitcli.io.inputs import draft_size

    requested = check_spec(spec, patch_size)
    fit = spec.fit or DEFAULT_FIT
    if requested is None and spec.max_patches:  # NaFlex: the image's own aspect within the patch budget
        fit = "resize"
    draft = draft_size(requested, fit) if spec.draft and family is None else None
    loaded = read_one(item, spec, draft, name or str(item))
    h, w = loaded.original_size
    if h < patch_size or w < patch_size:
        raise VitcliError(loaded.path, f"image is {h}x{w}, smaller than one {patch_size}x{patch_size} patch")
    if family is not None:
        if family.resize_mode != "patches":  # its resize follows the image's aspect: checked before it is made
            check_image_memory(family.resized_size(h, w), spec.max_memory, loaded.path)
        done = family.describe().split(", mean/std")[0] + (f" ({family.source})" if family.source else "")
        values = images.preprocess_values(family, loaded.image)  # (H, W, 3) uint8, or float32 (rescale_first)
        values, done = _floored(values, done, spec, patch_size)
        return FittedImage(loaded, images.as_picture(values), "family", done,
                           values=values if values.dtype.kind == "f" else None)
    if fit == "resize" and requested is None and spec.max_patches:
        requested = images.size_for_max_patches((h, w), patch_size, spec.max_patches)
    pixels, done = images.fit_image(loaded, requested, fit, patch_size, spec.resample or DEFAULT_RESAMPLE,
                                    parse_colour(spec.background), spec.patch_remainder == "floor")
    pixels, done = _floored(pixels, done, spec, patch_size)
    return FittedImage(loaded, pixels, fit, done)


def _floored(pixels: "np.ndarray", done: str, spec: ImageSpec, patch_size: int) -> tuple["np.ndarray", str]:
    """With a flooring model, the pixels its patch conv uses (top-left whole patches) and what was left out."""
    if spec.patch_remainder != "floor":
        return pixels, done
    from vitcli.io.images import floor_to_patches

    used, note = floor_to_patches(pixels, patch_size)
    return used, done + (f"; the model sees the top-left {used.shape[0]}x{used.shape[1]}: {note}" if note else "")


@dataclass
class Images:
    """Sources expanded to an ordered list, decoded only when iterated; `many` gives outputs a batch axis."""

    items: Sequence[object]  # paths (sorted), '-', or in-memory images (PIL, arrays) in the order given
    many: bool
    spec: ImageSpec = field(default_factory=ImageSpec)

    def __len__(self) -> int:
        return len(self.items)

    def names(self) -> list[str]:
        """A name per item: its path, or '<image N>' for an in-memory image."""
        return [item if isinstance(item, str) else f"<image {i}>" for i, item in enumerate(self.items)]

    def with_spec(self, **changes: Any) -> "Images":  # forwarding: ImageSpec's fields
        return replace(self, spec=replace(self.spec, **changes))

    def fitted(self, patch_size: int | None = None, family: "Preprocess | None" = None) -> Iterator[FittedImage]:
        """Decode and fit one at a time (in this thread); errors are raised as they come."""
        p = next((v for v in (patch_size, self.spec.patch_size) if v is not None), DEFAULT_PATCH)
        for item, name in zip(self.items, self.names(), strict=True):
            yield fit_one(item, self.spec, p, family, name)

    def __iter__(self) -> Iterator[FittedImage]:
        return self.fitted()


@keywords()
def load_images(sources: object, *, size: Size = None, fit: Fit | None = None, resample: Resample | None = None,
                background: str = "255,255,255", max_pixels: int | None = None, draft: bool = True,
                patch_size: int | None = None, recursive: bool = False, from_list: str | None = None,
                max_patches: int | None = None, max_memory: str | int | None = None) -> Images:
    """Images from paths, folders (`recursive`), quoted globs, a list file (`from_list`; '-' for
    standard input), '-' (one image on standard input), Pillow images or numpy arrays.

    Paths are de-duplicated and sorted (row i is the i-th path); in-memory images keep their order.
    Nothing is decoded until the images are used, so a million paths cost a list of strings.
    `max_memory` ('8G', '500M' or bytes) is the limit fitting an image is checked against (and
    files are read under); default a share of the free memory.
    """
    from vitcli.io.inputs import expand_inputs

    spec = ImageSpec(as_size_text(size), fit, resample, background, max_pixels, draft, patch_size, max_patches,
                     max_memory)
    check_fixed_size(spec)
    if isinstance(sources, Images):
        return replace(sources, spec=spec)
    listed = list(sources) if isinstance(sources, (list, tuple)) else [] if sources is None else [sources]
    in_memory = [s for s in listed if not isinstance(s, str)]
    if in_memory:
        if len(in_memory) != len(listed):
            raise VitcliError("images", "give paths or in-memory images, not both in one call")
        return Images(listed, isinstance(sources, (list, tuple)), spec)
    if not listed and from_list is None:
        raise VitcliError("IMAGE", "give at least one image (a file, folder or glob) or a list file")
    inputs = expand_inputs([s for s in listed if isinstance(s, str)], recursive, from_list)  # all of them
    return Images(inputs.paths, inputs.many, spec)


def as_images(images: object) -> Images:
    """An `Images`, or sources made into one with default options."""
    return images if isinstance(images, Images) else load_images(images)


def with_image_options(images: object, options: dict[str, object]) -> "Images":
    """Images loaded with the given options; an `Images` keeps its other options."""
    from dataclasses import asdict

    given = {n: v for n, v in options.items() if v is not None}
    load: Callable[..., Images] = load_images  # its keywords parse the options' values again
    if isinstance(images, Images):
        spec = {n: v for n, v in asdict(images.spec).items() if n != "patch_remainder"}
        return load(images, **{**spec, **given})
    return load(images, **given)


def image_keywords(*names: str, **overrides: Parser) -> "Callable[[Callable[..., R]], Callable[..., R]]":
    """`keywords` for a command whose arguments `names` hold images: `load_images`' image options
    (size, fit, resample, …) are accepted too and forwarded to the loading of each (`embed(img, size=448)`)."""
    options = inspect.signature(inspect.unwrap(load_images)).parameters
    extra = tuple(options[n] for n in IMAGE_OPTIONS)

    def forward(bound: inspect.BoundArguments, parsed: dict[str, object]) -> None:
        if not any(v is not None for v in parsed.values()):
            return
        for n in names:
            if bound.arguments.get(n) is not None:
                bound.arguments[n] = with_image_options(bound.arguments[n], parsed)

    return keywords(extra=extra, forward=forward, **overrides)


__all__ = ["FittedImage", "ImageSpec", "Images", "as_images", "check_spec", "fit_one", "image_keywords", "load_images",
           "parse_colour", "with_image_options"]

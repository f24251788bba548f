"""Image loading with Pillow: any mode to 8-bit RGB, EXIF orientation, size policy, normalisation.

One module used by every subcommand, so that every command sees the same pixels.
"""

import functools
import io
import os
import stat
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from vitcli.errors import VitcliError
from vitcli.io.files import check_readable
from vitcli.io.sizes import parse_hw, parse_size  # noqa: F401  (re-exported: one home in sizes.py)

if TYPE_CHECKING:
    from vitcli.checkpoints.preprocess import Preprocess

Fit = Literal["crop", "resize", "pad", "strict"]
FITS: tuple[str, ...] = ("crop", "resize", "pad", "strict")
RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
    "lanczos": Image.Resampling.LANCZOS,
}
# (mean, std) per channel, in units of x/255.
NORMALIZE: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
    "clip": ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    "none": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}
DEFAULT_MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


@dataclass
class LoadedImage:
    """An image as 8-bit RGB plus what was done to get there.

    Kept as a Pillow image: resizing a large photo straight from it avoids two full-size copies
    through numpy; `pixels` is the (H, W, 3) uint8 array, made when first asked for.
    """

    path: str
    image: Image.Image  # mode RGB, upright
    original_size: tuple[int, int]  # [H, W] as stored, after EXIF orientation
    mode: str  # Pillow mode of the file
    format: str | None
    frames: int = 1
    notes: list[str] = field(default_factory=list)  # what was done, for the table

    @cached_property
    def pixels(self) -> np.ndarray:
        return np.asarray(self.image)  # (H, W, 3) uint8

    @property
    def size(self) -> tuple[int, int]:
        return self.image.height, self.image.width

    def release(self) -> None:
        """Free the decoded pixels (a batch keeps only the fitted ones); sizes and notes stay."""
        self.image = Image.new("RGB", (0, 0))
        self.__dict__.pop("pixels", None)


BYTES_PER_PIXEL_AT_MOST = 8  # 16-bit RGBA stored raw: no image file of N pixels needs more than 8·N bytes
FILE_SLACK = 1 << 20  # headers, metadata, a colour profile
READ_CHUNK = 1 << 20
SNIFF = 64 << 10  # the start of a file or stream that must look like an image before the rest is read


def file_cap(max_pixels: int, max_memory: int | None = None) -> tuple[int, str]:
    """The most bytes an image file of at most `max_pixels` pixels can hold, within the memory limit,
    and why (the option that sets it)."""
    by_pixels = max_pixels * BYTES_PER_PIXEL_AT_MOST + FILE_SLACK
    if max_memory is not None and max_memory < by_pixels:
        return max_memory, "over the memory limit (--max-memory)"
    return by_pixels, f"more than an image of at most {max_pixels:,} pixels can hold (--max-pixels)"


def _read_capped(f, path: str, cap: tuple[int, str], sniff: bool = False) -> bytes:
    """At most cap[0] bytes of a stream, read a chunk at a time; an endless or huge stream stops at the cap.
    `sniff`: the first SNIFF bytes must start like an image (`starts_like_an_image`) before more is read."""
    limit, why = cap
    chunks, total = [], 0
    while True:
        chunk = f.read(min(READ_CHUNK if not sniff else SNIFF - total, limit + 1 - total))
        chunks.append(chunk)
        total += len(chunk)
        if sniff and (total >= SNIFF or not chunk):
            sniff = False
            if total and not starts_like_an_image(b"".join(chunks)):
                what = "standard input is not an image" if path == "-" else "not an image"
                raise VitcliError(path, f"{what}: it does not start like any format Pillow can read")
        if not chunk:
            return b"".join(chunks)
        if total > limit:
            raise VitcliError(path, f"more than {_size_text(limit)} of data: {why}")


def starts_like_an_image(head: bytes) -> bool:
    """Whether a format in Pillow's own registry (Image.OPEN) would take data that starts with `head`:
    its `accept` test on the first 16 bytes, as Image.open does, or for the few formats without one
    (TGA, IM, SPIDER, …) its header parser on `head`."""
    Image.init()
    formats = list(Image.OPEN.values())
    if any(accept is not None and _takes(functools.partial(accept, head[:16])) for _, accept in formats):
        return True
    return any(accept is None and _takes(functools.partial(factory, io.BytesIO(head), ""))
               for factory, accept in formats)


def _takes(test: Callable[[], object]) -> bool:
    """A format test's answer; one that fails (a short prefix: struct.error, …) is a no, as in Image.open."""
    try:
        return bool(test())
    except Exception:
        return False


def _size_text(n: int) -> str:
    from vitcli.core.budget import format_bytes

    return format_bytes(n)


def _read_bytes(path: str, cap: tuple[int, str] = (1 << 62, "")) -> bytes:
    """The file's bytes, or standard input's for '-', at most cap[0] of them, with one-line errors."""
    if path == "-":
        try:
            mode = os.fstat(sys.stdin.fileno()).st_mode
        except (OSError, ValueError, io.UnsupportedOperation):  # not a file descriptor (an in-memory stream)
            mode = stat.S_IFIFO
        if (stat.S_ISCHR(mode) and not sys.stdin.isatty()) or stat.S_ISBLK(mode):  # `< /dev/zero`
            raise VitcliError(path, "standard input is a device, not an image file")
        return _read_capped(sys.stdin.buffer, path, cap, sniff=True)
    p = Path(path)
    try:
        check_readable(path)  # before opening: a FIFO blocks the opener, /dev/zero never ends
        with open(p, "rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size > cap[0]:  # checked before reading (a sparse 3 GB file)
                raise VitcliError(path, f"the file holds {_size_text(st.st_size)}: {cap[1]}")
            return _read_capped(f, path, cap, sniff=True)
    except FileNotFoundError:
        raise VitcliError(path, "no such file") from None
    except IsADirectoryError:
        raise VitcliError(path, "is a directory, not an image") from None
    except PermissionError:
        raise VitcliError(path, "permission denied") from None
    except OSError as e:
        raise VitcliError(path, f"cannot read: {e.strerror or e}") from None


def _open(path: str, data: bytes, max_pixels: int, draft: int | None = None) -> Image.Image:
    """Decode with Pillow, treating an over-limit image (decompression bomb) as an error.

    `draft`: for a JPEG, let libjpeg decode at 1/2, 1/4 or 1/8 scale as long as both sides stay
    at least `draft` pixels (Pillow's `Image.draft`); other formats ignore it.
    """
    if not data:
        raise VitcliError(path, "empty file")
    old_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > max_pixels:  # not only the warning: filters are per process, not thread
                raise Image.DecompressionBombError(f"{img.width * img.height} pixels")
            if draft and img.format == "JPEG" and img.mode in ("RGB", "L"):
                img.info["vitcli_full_size"] = img.size  # (W, H) before the reduction
                img.draft(img.mode, (draft, draft))
            img.load()
            return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise VitcliError(
            path, f"image has more than {max_pixels:,} pixels (decompression bomb guard); "
            "raise it with --max-pixels if you trust the file"
        ) from None
    except UnidentifiedImageError:
        raise VitcliError(path, "not an image Pillow can read") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise VitcliError(path, f"damaged or truncated image ({e})") from None
    except MemoryError:
        raise
    except Exception as e:  # parsers fail on damaged data in other ways too (IndexError, struct.error, …)
        raise VitcliError(path, f"damaged or truncated image ({_reason(e)})") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old_limit


def _reason(e: BaseException) -> str:
    """An exception as a short one-line reason."""
    text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def _high_bit_to_uint8(arr: np.ndarray) -> np.ndarray:
    """16-bit / 32-bit integer or float pixels → uint8 by scaling the full range, never clipping.

    Integer images with values ≤ 65535 are taken as 16-bit (v·255/65535, rounded); larger
    integers as 32-bit. Float images are taken as 0..1 when their max is ≤ 1, else 0..255.
    """
    if arr.dtype.kind == "f":
        top = 1.0 if np.nanmax(arr) <= 1.0 else 255.0
        arr = np.nan_to_num(arr, nan=0.0)
        return np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
    top = 65535 if arr.max() <= 65535 else 2**32 - 1
    arr = np.clip(arr.astype(np.float64), 0, top)
    return np.rint(arr * (255.0 / top)).astype(np.uint8)


AMBIGUOUS_FLOAT = 2.0  # a float array whose largest value is in (1, 2) is neither clearly 0..1 nor 0..255


def array_pixels(arr: np.ndarray, name: str) -> np.ndarray:
    """An in-memory array's pixels as uint8, its scale decided by its dtype (never guessed from a few values):

    uint8 as is; uint16 as 16-bit (v·255/65535); every other integer dtype must hold 0..255 (8-bit values in a
    wider type: an int64 array of 0..255 is not 16-bit); floats are 0..1 when their largest value is at most 1,
    0..255 when it is at least 2, and refused between (1.0001 is an overshoot of 0..1, or a dark 0..255 image?),
    below 0 (normalised values are not pixels) or not finite. Anything else is one VitcliError naming `name`."""
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.uint16:
        return np.rint(arr.astype(np.float64) * (255.0 / 65535)).astype(np.uint8)
    if kind in "iu":
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi > 255:
            raise VitcliError(name, f"the image array ({arr.dtype}) holds {lo}..{hi}: integer arrays other than uint16 "
                              "hold 0..255 (give 16-bit pixels as uint16, or floats in 0..1)")
        return arr.astype(np.uint8)
    if kind != "f":
        raise VitcliError(name, f"an image array must hold numbers, got {arr.dtype}")
    if not np.isfinite(arr).all():
        raise VitcliError(name, f"the image array ({arr.dtype}) holds NaN or infinity")
    low, high = float(arr.min()), float(arr.max())
    if low < 0 or high > 255:
        raise VitcliError(name, f"the image array ({arr.dtype}) holds {low:.4g}..{high:.4g}: float pixels are 0..1 or "
                          "0..255 (normalised values are not pixels)")
    if 1.0 < high < AMBIGUOUS_FLOAT:
        raise VitcliError(name, f"the image array ({arr.dtype}) holds {low:.4g}..{high:.6g}: neither 0..1 (its largest "
                          "value is above 1) nor clearly 0..255; clip it to [0, 1] or give uint8")
    top = 1.0 if high <= 1.0 else 255.0
    return np.rint(arr.astype(np.float64) * (255.0 / top)).astype(np.uint8)


def to_rgb(img: Image.Image, background: tuple[int, int, int]) -> tuple[Image.Image, list[str]]:
    """Any Pillow mode → an 8-bit RGB image (the same object when already RGB), alpha composited on `background`."""
    notes: list[str] = []
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        grey = _high_bit_to_uint8(np.asarray(img))
        notes.append(f"{img.mode} scaled to 8-bit")
        return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2)), notes
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    ) or (img.mode in ("L", "RGB") and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, (*background, 255))
        img = Image.alpha_composite(base, rgba)
        notes.append(f"alpha composited on rgb{background}")
    elif img.mode != "RGB":
        notes.append(f"{img.mode} converted to RGB")
    return (img if img.mode == "RGB" else img.convert("RGB")), notes


def load_image(
    path: str, background: tuple[int, int, int] = (255, 255, 255), max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: int | None = None, max_memory: int | None = None,
) -> LoadedImage:
    """Read a file (or '-' for standard input) as upright 8-bit RGB.

    `draft` (see `_open`) may decode a large JPEG at a reduced scale; `original_size` stays the
    file's own size, `pixels` are the reduced ones. At most `file_cap(max_pixels, max_memory)`
    bytes are read: a file or stream larger than any image under the pixel limit is refused.
    """
    data = _read_bytes(path, file_cap(max_pixels, max_memory))
    img = _open(path, data, max_pixels, draft)
    try:
        return _upright_rgb(path, img, background)
    except (VitcliError, MemoryError):
        raise
    except Exception as e:  # a damaged later frame or tag (found by fuzzing: IndexError in GIF seeking)
        raise VitcliError(path, f"damaged or truncated image ({_reason(e)})") from None


def _upright_rgb(path: str, img: Image.Image, background: tuple[int, int, int]) -> LoadedImage:
    """The decoded image's first frame, EXIF-oriented, as 8-bit RGB, with notes of what was done."""
    full = img.info.get("vitcli_full_size", img.size)  # (W, H) as stored
    frames = getattr(img, "n_frames", 1)
    fmt, mode = img.format, img.mode
    notes = [f"animated: first of {frames} frames"] if frames > 1 else []
    if frames > 1:
        img.seek(0)
    orientation = img.getexif().get(0x0112, 1)
    try:
        ImageOps.exif_transpose(img, in_place=True)  # no copy when there is nothing to turn
    except Exception as e:  # a broken EXIF block must not stop the image
        notes.append(f"EXIF orientation ignored ({e})")
    if orientation not in (1, None):
        notes.append(f"EXIF orientation {orientation} applied")
    rgb, mode_notes = to_rgb(img, background)
    w, h = rgb.size
    turned = img.size != tuple(full) and (img.size[0] > img.size[1]) != (full[0] > full[1])
    original = (full[0], full[1]) if turned else (full[1], full[0])  # [H, W] upright
    if (h, w) != original:
        notes.append(f"JPEG decoded at {h}x{w} of {original[0]}x{original[1]} (draft)")
    return LoadedImage(path, rgb, original, mode, fmt, frames, notes + mode_notes)


def _round_to(value: int, step: int, how: Literal["floor", "ceil", "round"]) -> int:
    """A positive multiple of `step` near `value`."""
    q = {"floor": value // step, "ceil": -(-value // step), "round": round(value / step)}[how]
    return max(1, q) * step


def target_size(size: tuple[int, int], requested: tuple[int, int] | None, fit: Fit, patch: int) -> tuple[int, int]:
    """The final [H, W]: the requested size, or for `native` the image's own size at a multiple of P."""
    if requested is not None:
        return requested
    rounding: dict[str, Literal["floor", "ceil", "round"]] = {"crop": "floor", "pad": "ceil", "resize": "round",
                                                              "strict": "floor"}
    how = rounding[fit]
    return _round_to(size[0], patch, how), _round_to(size[1], patch, how)


def size_for_max_patches(hw: tuple[int, int], patch: int, max_patches: int) -> tuple[int, int]:
    """NaFlex's size for `--max-patches` (the bisection is `checkpoints.preprocess.size_for_max_patches`)."""
    from vitcli.checkpoints.preprocess import size_for_max_patches as naflex_size

    if max_patches < 1:
        raise VitcliError("--max-patches", f"must be at least 1, got {max_patches}")
    return naflex_size(hw, patch, max_patches)


def _resize(img: Image.Image, hw: tuple[int, int], resample: str) -> Image.Image:
    return img if (img.height, img.width) == hw else img.resize((hw[1], hw[0]), RESAMPLE[resample])


def fit_image(
    loaded: LoadedImage, requested: tuple[int, int] | None, fit: Fit, patch: int,
    resample: str = "bicubic", background: tuple[int, int, int] = (255, 255, 255), floor: bool = False,
) -> tuple[np.ndarray, str]:
    """Bring the pixels to the final size by the `fit` policy; returns (H, W, 3) and what was done.

    crop:   scale so the image covers the target (short side), then centre-crop;
    resize: scale each axis to the target (aspect may change);
    pad:    scale so the image fits inside the target, then centre-pad with `background`;
    strict: no change at all; the image must already have the final size.
    With `floor` (a model whose patch conv floors) the size need not be a multiple of P: see `floor_to_patches`.
    """
    h, w = loaded.original_size  # the geometry of the file, also when a JPEG was drafted smaller
    th, tw = target_size((h, w), requested, fit, patch)
    if (th % patch or tw % patch) and not floor:
        raise VitcliError("--size", f"{th}x{tw} is not a multiple of the patch size {patch}")
    if (h, w) == (th, tw):
        return loaded.pixels, "none (already the final size)"
    if fit == "strict":
        raise VitcliError(
            loaded.path, f"image is {h}x{w}, --fit strict needs exactly {th}x{tw} (a multiple of patch size {patch})"
        )
    if fit == "resize":
        return np.asarray(_resize(loaded.image, (th, tw), resample)), f"resized {h}x{w} → {th}x{tw}"
    sh, sw = _scaled_size((h, w), (th, tw), fit, native=requested is None)
    step = f"resized {h}x{w} → {sh}x{sw}, " if (sh, sw) != (h, w) else ""
    if fit == "crop":
        top, left = (sh - th) // 2, (sw - tw) // 2
        return _crop_resized(loaded.image, (sh, sw), (top, left, th, tw),
                             resample), f"{step}centre-cropped to {th}x{tw}"
    scaled = np.asarray(_resize(loaded.image, (sh, sw), resample))
    out = np.empty((th, tw, 3), np.uint8)
    out[:] = background
    top, left = (th - sh) // 2, (tw - sw) // 2
    out[top : top + sh, left : left + sw] = scaled
    return out, f"{step}padded to {th}x{tw}"


def floor_to_patches(pixels: np.ndarray, patch: int) -> tuple[np.ndarray, str]:
    """(H, W, 3) → its top-left (rows·P, cols·P) pixels, the part a stride-P patch conv uses, and a
    note saying what was left out ('' when the size is a whole number of patches)."""
    from vitcli.core.patches import remainder_note

    h, w = pixels.shape[:2]
    note = remainder_note(h, w, patch)
    if not note:
        return pixels, ""
    return pixels[: h // patch * patch, : w // patch * patch], note  # (rows·P, cols·P, 3)


BOX_RESIZE_ABOVE = 64_000_000  # pixels of the resized image before a crop


def _crop_resized(img: Image.Image, scaled: tuple[int, int], box: tuple[int, int, int, int],
                  resample: str) -> np.ndarray:
    """The (top, left, height, width) window of the image resized to `scaled`.

    Resize-then-crop, byte for byte what timm, torchvision and CLIP do with Pillow. When the resized
    image would be huge (a long thin strip), only the source box is resampled instead: the same
    filter centres and support, equal up to ±1 rounding, at no memory cost.
    """
    w, h = img.size
    top, left, th, tw = box
    if scaled[0] * scaled[1] <= BOX_RESIZE_ABOVE:
        return np.asarray(_resize(img, scaled, resample).crop((left, top, left + tw, top + th)))  # (th, tw, 3)
    sy, sx = h / scaled[0], w / scaled[1]
    source_box = (left * sx, top * sy, (left + tw) * sx, (top + th) * sy)
    return np.asarray(img.resize((tw, th), RESAMPLE[resample], box=source_box))


def _scaled_size(hw: tuple[int, int], target: tuple[int, int], fit: Fit, native: bool) -> tuple[int, int]:
    """Size before cropping / padding: covers the target (crop) or fits inside it (pad).

    With a native size the target differs from the image by less than a patch, so the image is
    only cropped or padded, never scaled.
    """
    if native:
        return hw
    scale = (max if fit == "crop" else min)(target[0] / hw[0], target[1] / hw[1])
    clamp = max if fit == "crop" else min
    return tuple(max(1, clamp(round(s * scale), t)) for s,
                 t in zip(hw, target, strict=True))  # type: ignore[return-value]


def normalize(pixels: np.ndarray, preset: str) -> np.ndarray:
    """(H, W, 3) uint8 → (3, H, W): raw uint8 for 'raw', else float32 (x/255 − mean)/std."""
    if preset == "raw":
        return np.ascontiguousarray(pixels.transpose(2, 0, 1))  # (3, H, W)
    return normalize_mean_std(pixels, *NORMALIZE[preset])


def normalize_mean_std(pixels: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(H, W, 3) → (3, H, W) float32 (x/255 − mean)/std, per channel, in float32 as the peers do.

    uint8 pixels are divided by 255 here; float pixels are taken as already on x/255's scale
    (a family that resizes after rescaling, see `preprocess_values`)."""
    x = pixels.transpose(2, 0, 1).astype(np.float32)  # (3, H, W)
    if pixels.dtype == np.uint8:
        x = x / np.float32(255)
    return (x - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[:, None, None]


TORCH_MODES = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest-exact"}  # torchvision's names


def _native_uint8(mode: str) -> bool:
    """Whether torchvision resizes a uint8 tensor on the CPU as uint8 (torch's own 8-bit kernels)
    rather than through float32: bicubic always, bilinear with AVX2 / AVX-512 or on ARM
    (torchvision.transforms.v2.functional.resize_image, _do_native_uint8_resize_on_cpu)."""
    import platform

    import torch

    if mode == "bilinear":
        arm = platform.machine() in ("aarch64", "arm64")
        return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") or arm
    return mode in ("bicubic", "nearest-exact")


def resize_tensor(x: "np.ndarray", hw: tuple[int, int], interpolation: str) -> np.ndarray:
    """(H, W, 3) uint8 or float32 → resized (h, w, 3), the same dtype, as torchvision's tensor resize
    does it (antialiased; a uint8 image through float32 is clamped (bicubic) and rounded)."""
    import torch
    import torch.nn.functional as F

    if interpolation not in TORCH_MODES:
        raise VitcliError("--resample", f"'{interpolation}': this checkpoint's processor resizes tensors as "
                          f"torchvision does, with {', '.join(TORCH_MODES)}")
    if x.shape[:2] == hw:
        return x
    mode = TORCH_MODES[interpolation]
    t = torch.from_numpy(np.require(x, requirements=["C", "W"])).permute(2, 0, 1).contiguous()[None]  # (1, 3, H, W)
    cast = t.dtype == torch.uint8 and not _native_uint8(mode)
    smooth = mode != "nearest-exact"
    out = F.interpolate(t.float() if cast else t, size=list(hw), mode=mode,
                        align_corners=False if smooth else None, antialias=smooth)  # (1, 3, h, w)
    if cast:
        out = (out.clamp_(0, 255) if mode == "bicubic" else out).round_().to(torch.uint8)
    return out[0].permute(1, 2, 0).numpy()  # (h, w, 3)


def _resize_pil(x: np.ndarray, hw: tuple[int, int], interpolation: str) -> np.ndarray:
    """(H, W, 3) uint8 → (h, w, 3) uint8 with Pillow's filter (float32: each channel as a mode F image)."""
    if x.shape[:2] == hw:
        return x
    size, filt = (hw[1], hw[0]), RESAMPLE[interpolation]
    if x.dtype != np.uint8:
        return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(x[..., i]), "F").resize(size, filt))
                         for i in range(3)], axis=-1)  # (h, w, 3) float32
    return np.asarray(Image.fromarray(x).resize(size, filt))


RESIZERS = {"pil": _resize_pil, "torch": resize_tensor}  # Preprocess.backend → the resize it names


def _centre_crop(x: np.ndarray, preprocess: "Preprocess") -> np.ndarray:
    """The centre `preprocess.size` window of (H, W, 3), zero-padded first where the crop is larger
    (as torchvision's CenterCrop and transformers' center_crop do)."""
    ch, cw = preprocess.size
    h, w = x.shape[:2]
    if ch > h or cw > w:
        top, left = max(0, (ch - h) // 2), max(0, (cw - w) // 2)
        canvas = np.zeros((max(h, ch), max(w, cw), 3), x.dtype)
        canvas[top:top + h, left:left + w] = x
        x, (h, w) = canvas, canvas.shape[:2]
    top, left, ch, cw = preprocess.crop_box(h, w)
    return x[top:top + ch, left:left + cw]  # (ch, cw, 3)


def preprocess_values(preprocess: "Preprocess", image: "Image.Image | np.ndarray") -> np.ndarray:
    """Resize and centre-crop one RGB image as a checkpoint family's library does: (H, W, 3), uint8,
    or float32 on x/255's scale when the family rescales before resizing (`rescale_first`).

    `preprocess` is a `vitcli.checkpoints.preprocess.Preprocess` (pure data); the resize is
    Pillow's (`backend` 'pil': timm, open_clip, torchvision on PIL images, transformers' PIL
    processors) or torch's as torchvision does it on a tensor (`backend` 'torch': transformers 5)."""
    x = np.asarray(image, dtype=np.uint8)  # (H, W, 3)
    if preprocess.rescale_first:
        import torch

        x = (torch.from_numpy(np.require(x, requirements=["C", "W"])) * (1 / 255)).numpy()  # float32, as its rescale
    hw = preprocess.resized_size(*x.shape[:2])
    x = RESIZERS[preprocess.backend](x, hw, preprocess.interpolation)
    return np.ascontiguousarray(_centre_crop(x, preprocess) if preprocess.crop else x)


def as_picture(values: np.ndarray) -> np.ndarray:
    """(H, W, 3) values as 8-bit pixels: uint8 as they are, floats on x/255's scale rounded."""
    return values if values.dtype == np.uint8 else np.clip(np.rint(values * 255), 0, 255).astype(np.uint8)


def preprocess_geometry(preprocess: "Preprocess", image: "Image.Image | np.ndarray") -> np.ndarray:
    """`preprocess_values` as an 8-bit picture: (H, W, 3) uint8."""
    return as_picture(preprocess_values(preprocess, image))


def apply_preprocess(preprocess: "Preprocess", image: "Image.Image | np.ndarray") -> np.ndarray:
    """Resize, centre-crop and normalise one RGB image as the family's library does: (3, H, W) float32."""
    return normalize_mean_std(preprocess_values(preprocess, image), preprocess.mean, preprocess.std)


def denormalize(chw: np.ndarray, preset: str) -> np.ndarray:
    """Inverse of `normalize`: (3, H, W) → (H, W, 3) uint8."""
    if preset != "raw":
        mean, std = NORMALIZE[preset]
        chw = (chw * np.array(std)[:, None, None] + np.array(mean)[:, None, None]) * 255.0
        chw = np.clip(np.rint(chw), 0, 255)
    return np.ascontiguousarray(chw.transpose(1, 2, 0)).astype(np.uint8)


def image_from_memory(obj: object, name: str, background: tuple[int, int, int] = (255, 255, 255)) -> LoadedImage:
    """A Pillow image or an (H, W), (H, W, 3) or (H, W, 4) array as an upright 8-bit RGB `LoadedImage`.

    An array's scale is decided by its dtype (`array_pixels`); Pillow images get the same EXIF
    orientation and mode handling as files.
    """
    if isinstance(obj, Image.Image):
        return _upright_rgb(name, obj.copy(), background)
    arr = np.asarray(obj)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)) or 0 in arr.shape:
        raise VitcliError(name, f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {arr.shape}")
    arr = array_pixels(arr, name)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    mode = "L" if arr.ndim == 2 else ("RGB" if arr.shape[2] == 3 else "RGBA")
    return _upright_rgb(name, Image.fromarray(np.ascontiguousarray(arr), mode), background)

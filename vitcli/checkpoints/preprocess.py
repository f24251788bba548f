"""What each family's own library does to an image before its model sees it, as one small dataclass.

The families differ in these ways, and `Preprocess` records each so the CLI and `info` can print
it and the user can override it:
  resize     `shortest`: scale so the image covers `resize_to`, keeping its aspect (torchvision's
             Resize(int) for a square target, timm's ResizeKeepRatio for a non-square one);
             `exact`: stretch to `resize_to` (Hugging Face ViTImageProcessor);
             `patches`: keep the aspect, sides multiples of `patch_size`, at most `max_patches`
             patches (SigLIP 2's NaFlex);
  crop       centre-crop to `size` after resizing (timm: resize to size / crop_pct first);
  filter     bicubic or bilinear (antialiased);
  backend    who resizes: Pillow (`pil`: timm, open_clip, torchvision on PIL images, transformers'
             PIL image processors) or torch's interpolate as torchvision runs it on a tensor
             (`torch`: transformers 5's default image processors); with `rescale_first` the tensor
             is divided by 255 before it is resized, so the resize is not rounded to 8 bits
             (transformers' DINOv3ViTImageProcessor);
  mean, std  per channel, on x/255.

Pure data: the Pillow work that runs a `Preprocess` on an image lives in the io layer's images
module (`preprocess_geometry`, `apply_preprocess`), so the checkpoints layer never touches pixels.
"""

import math
from dataclasses import dataclass, replace
from typing import Any, Literal

ResizeMode = Literal["shortest", "exact", "patches"]
Backend = Literal["pil", "torch"]
Interpolation = Literal["bicubic", "bilinear", "nearest", "lanczos"]
CropRounding = Literal["round", "floor"]

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
INCEPTION = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
_NAMED = {"imagenet": IMAGENET, "inception": INCEPTION, "clip": OPENAI_CLIP}


def normalize_name(mean: tuple[float, ...], std: tuple[float, ...]) -> str:
    """The name of a standard (mean, std) pair (the io layer's NORMALIZE keys), else 'custom'."""
    for name, (m, s) in _NAMED.items():
        if all(abs(a - b) < 1e-6 for a, b in zip((*mean, *std), (*m, *s), strict=False)) and len(mean) == len(m):
            return name
    return "custom"


@dataclass(frozen=True)
class Preprocess:
    """How to turn an image into the tensor a checkpoint expects; every field printable as is."""

    size: tuple[int, int]  # [H, W] fed to the model
    resize_to: tuple[int, int]  # [H, W] target of the resize step (before any crop)
    resize_mode: ResizeMode = "shortest"
    crop: bool = True  # centre-crop to `size` after the resize
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, float, float] = IMAGENET[0]
    std: tuple[float, float, float] = IMAGENET[1]
    normalize: str = "imagenet"  # name of (mean, std) in the io layer's NORMALIZE, or 'custom'
    crop_pct: float | None = None  # timm's size / resize ratio, when the family thinks in it
    crop_rounding: CropRounding = "round"  # torchvision's CenterCrop rounds, Hugging Face floors
    source: str = ""  # where these values come from (which library's defaults or config file)
    backend: Backend = "pil"  # Pillow's resize, or torch's as torchvision does it on a tensor
    rescale_first: bool = False  # x/255 before the (then float, unrounded) resize: transformers' DINOv3
    patch_size: int | None = None  # resize_mode 'patches': sides are multiples of it
    max_patches: int | None = None  # resize_mode 'patches': at most this many patches

    def with_changes(self, **changes: Any) -> "Preprocess":
        """A copy with fields replaced; a new mean/std renames `normalize`."""
        out = replace(self, **changes)
        return replace(out, normalize=normalize_name(out.mean, out.std))

    def resized_size(self, height: int, width: int) -> tuple[int, int]:
        """[H, W] after the resize step for an image of `height` × `width`."""
        th, tw = self.resize_to
        if self.resize_mode == "patches":
            return size_for_max_patches((height, width), self.patch_size or th, self.max_patches or 1)
        if self.resize_mode == "exact":
            return th, tw
        if th == tw:  # torchvision Resize(int): short side = size, long side truncated
            short, long = (height, width) if height <= width else (width, height)
            new_long = int(th * long / short)
            return (th, new_long) if height <= width else (new_long, th)
        ratio = min(height / th, width / tw)  # timm ResizeKeepRatio(longest=0)
        return round(height / ratio), round(width / ratio)

    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """(top, left, height, width) of the centre crop of a `height` × `width` image."""
        ch, cw = self.size
        if self.crop_rounding == "round":
            return int(round((height - ch) / 2.0)), int(round((width - cw) / 2.0)), ch, cw
        return (height - ch) // 2, (width - cw) // 2, ch, cw

    def describe(self) -> str:
        """One line: 'resize shortest 248 bicubic (pil) → centre-crop 224×224, mean/std imagenet'."""
        rh, rw = self.resize_to
        resize = f"resize {self.resize_mode} {rh}" + (f"×{rw}" if rh != rw or self.resize_mode == "exact" else "")
        if self.resize_mode == "patches":
            resize = f"resize ≤ {self.max_patches} patches of {self.patch_size} px (aspect kept)"
        how = f"{self.backend}" + (", float after x/255" if self.rescale_first else "")
        crop = f" → centre-crop {self.size[0]}×{self.size[1]}" if self.crop else ""
        return f"{resize} {self.interpolation} ({how}){crop}, mean/std {self.normalize}"


def size_for_max_patches(hw: tuple[int, int], patch: int, max_patches: int) -> tuple[int, int]:
    """NaFlex's size (SigLIP 2): the image's aspect scaled so that its sides, rounded up to multiples
    of P, hold at most `max_patches` patches; the largest such scale, found by bisection as
    transformers' Siglip2ImageProcessor does (scale in [1e-6, 100], to 1e-5)."""
    def side(scale: float, size: int) -> int:
        return max(patch, math.ceil(size * scale / patch) * patch)

    low, high = 1e-6, 100.0
    while high - low >= 1e-5:
        mid = (low + high) / 2
        if (side(mid, hw[0]) // patch) * (side(mid, hw[1]) // patch) <= max_patches:
            low = mid
        else:
            high = mid
    return side(low, hw[0]), side(low, hw[1])


def timm_preprocess(size: tuple[int, int], crop_pct: float, mean_std=INCEPTION,
                    interpolation: Interpolation = "bicubic",
                    crop_mode: str = "center", source: str = "timm") -> Preprocess:
    """timm's `transforms_imagenet_eval`: resize to floor(size / crop_pct), centre-crop `size`."""
    mean, std = mean_std
    scale = (math.floor(size[0] / crop_pct), math.floor(size[1] / crop_pct))
    mode: ResizeMode = "exact" if crop_mode == "squash" else "shortest"
    return Preprocess(size, scale, mode, True, interpolation, tuple(mean), tuple(std), normalize_name(mean, std),
                      crop_pct, "round", source)


def shortest_crop(size: tuple[int, int], resize: int, mean_std, interpolation: Interpolation, rounding: CropRounding,
                  source: str) -> Preprocess:
    """Short side to `resize`, centre-crop `size` (OpenAI CLIP, open_clip, torchvision, HF CLIP/DINOv2)."""
    mean, std = mean_std
    return Preprocess(size, (resize, resize), "shortest", True, interpolation, tuple(mean), tuple(std),
                      normalize_name(mean, std), None, rounding, source)


def exact_resize(size: tuple[int, int], mean_std, interpolation: Interpolation, source: str) -> Preprocess:
    """Stretch to `size`, no crop (Hugging Face ViTImageProcessor)."""
    mean, std = mean_std
    return Preprocess(size, size, "exact", False, interpolation, tuple(mean), tuple(std), normalize_name(mean, std),
                      None, "floor", source)


__all__ = ["IMAGENET", "INCEPTION", "OPENAI_CLIP", "Preprocess", "exact_resize", "normalize_name", "shortest_crop",
           "size_for_max_patches", "timm_preprocess"]

"""Cutting an image into patches and putting it back together.

Works on numpy arrays and torch tensors alike (only reshape and axis permutation are used), so
`patchify` needs no torch import while the torch core uses the very same functions.

Orders of the values inside one flattened patch:
  chw: channel-major, c·P·P + y·P + x: the layout of a Conv2d weight (timm, transformers,
       torchvision, CLIP), so a linear layer with the conv weight reshaped gives the conv output;
  hwc: pixel-major, (y·P + x)·C + c: `rearrange('c (h p1) (w p2) -> (h w) (p1 p2 c)')`, vit-pytorch.
"""

from typing import TYPE_CHECKING, Literal, TypeVar

from vitcli.core.config import PatchRemainder

if TYPE_CHECKING:
    import numpy as np
    import torch

Order = Literal["chw", "hwc"]
ORDERS: tuple[str, ...] = ("chw", "hwc")
A = TypeVar("A", "np.ndarray", "torch.Tensor")


def _permute(x: A, axes: tuple[int, ...]) -> A:
    """Permute axes of a numpy array or a torch tensor."""
    import numpy as np

    return x.transpose(axes) if isinstance(x, np.ndarray) else x.permute(*axes)


def grid_shape(height: int, width: int, patch_size: int, remainder: PatchRemainder = "refuse") -> tuple[int, int]:
    """(rows, cols) of the patch grid: the size must be a whole number of patches (`refuse`), or the
    grid a stride-P conv sees (`floor`: the last H mod P rows and W mod P columns unused)."""
    if patch_size <= 0:
        raise ValueError(f"patch size must be positive, got {patch_size}")
    if remainder == "floor":
        if height < patch_size or width < patch_size:
            raise ValueError(f"size {height}x{width} holds no whole {patch_size}x{patch_size} patch")
    elif height % patch_size or width % patch_size:
        raise ValueError(f"size {height}x{width} is not a multiple of patch size {patch_size}")
    return height // patch_size, width // patch_size


def crop_to_grid(image: A, grid: tuple[int, int], patch_size: int) -> A:
    """(..., C, H, W) → (..., C, rows·P, cols·P): the top-left pixels a stride-P conv uses."""
    h, w = grid[0] * patch_size, grid[1] * patch_size
    return image if tuple(image.shape[-2:]) == (h, w) else image[..., :h, :w]


def remainder_note(height: int, width: int, patch_size: int) -> str:
    """'384×384 px → 27×27 patches, 6 px unused' when the size is not a multiple of P, else ''."""
    dh, dw = height % patch_size, width % patch_size
    if not (dh or dw):
        return ""
    unused = f"{dh} px unused" if dh == dw else f"{dh} px of rows and {dw} px of columns unused"
    return (f"{height}×{width} px → {height // patch_size}×{width // patch_size} patches, {unused} "
            "(the patch conv floors)")


def patchify(image: A, patch_size: int, order: Order = "chw") -> A:
    """(..., C, H, W) → (..., N, P·P·C) with N = (H/P)·(W/P) patches in row-major order."""
    *lead, c, h, w = image.shape
    rows, cols = grid_shape(h, w, patch_size)
    p = patch_size
    k: int = len(lead)
    x = image.reshape(*lead, c, rows, p, cols, p)  # (..., C, R, P, Cl, P)
    inner: tuple[int, int, int] = (k + 0, k + 2, k + 4) if order == "chw" else (k + 2, k + 4, k + 0)
    x = _permute(x, (*range(k), k + 1, k + 3, *inner))  # (..., R, Cl, <inner>)
    return x.reshape(*lead, rows * cols, c * p * p)


def unpatchify(patches: A, grid: tuple[int, int], channels: int = 3, order: Order = "chw") -> A:
    """(..., N, P·P·C) → (..., C, H, W): the exact inverse of `patchify`."""
    *lead, n, length = patches.shape
    rows, cols = grid
    if rows * cols != n:
        raise ValueError(f"grid {rows}x{cols} holds {rows * cols} patches, the array has {n}")
    p = round((length / channels) ** 0.5)
    if p * p * channels != length:
        raise ValueError(f"patch length {length} is not P*P*{channels} for any whole P")
    k: int = len(lead)
    if order == "chw":
        x = patches.reshape(*lead, rows, cols, channels, p, p)  # (..., R, Cl, C, P, P)
        x = _permute(x, (*range(k), k + 2, k + 0, k + 3, k + 1, k + 4))
    else:
        x = patches.reshape(*lead, rows, cols, p, p, channels)  # (..., R, Cl, P, P, C)
        x = _permute(x, (*range(k), k + 4, k + 0, k + 2, k + 1, k + 3))
    return x.reshape(*lead, channels, rows * p, cols * p)

"""`vitcli.patchify` and `vitcli.unpatchify`: an image as (N, P·P·C) patches, and back."""

from collections.abc import Callable
from typing import TYPE_CHECKING

from vitcli.api.documents import PatchifyBatchDoc, PatchifyDoc, UnpatchifyDoc
from vitcli.api.images import ImageSource, image_keywords
from vitcli.api.results import PatchifyResult
from vitcli.api.values import Normalize, Order, choice, keywords
from vitcli.errors import UsageError, VitcliError

Values = Normalize  # the patch values: raw pixels or a normalisation

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import ArrayLike

    from vitcli.api.images import FittedImage, Images, ImageSpec
    from vitcli.api.runs import BatchSpec, Progress


VALUES = ("raw", "none", "imagenet", "inception", "clip")


class _Pixels:
    """The 'model' of patchify: images fitted at a patch size, values as asked, no network."""

    def __init__(self, patch_size: int, normalize: str) -> None:
        from vitcli.core.config import ViTConfig

        self.config = ViTConfig(patch_size=patch_size)
        self.normalize = normalize
        self.on_cpu = False  # nothing competes with decoding: let it run ahead

    def resolve_grid(self, images: "Images") -> None:
        """Nothing to resolve: patchify has no position table."""

    def image_plan(self, spec: "ImageSpec") -> "tuple[ImageSpec, None]":
        """vitcli's size policy as given (no checkpoint family)."""
        return spec, None

    def check_memory(self, batch: int = 0, size: tuple[int, int] | None = None, kept: int = 0,
                     source: str | None = None, kept_source: str | None = None,
                     backward: tuple[str, bool] | None = None) -> None:
        """Nothing to weigh: no network (fit_one checks each image's pixels)."""

    def size_blame(self, family: object = None) -> str | None:
        """No size of patchify's own: --size names itself."""
        return None

    def preparer(self, spec: "ImageSpec",
                 normalize: str | None) -> "tuple[Callable[[object, str], FittedImage], str, ImageSpec]":
        from vitcli.api.images import check_spec, fit_one
        from vitcli.io.images import normalize as values

        check_spec(spec, self.config.patch_size)

        def prepare(item: object, name: str) -> "FittedImage":
            fitted = fit_one(item, spec, self.config.patch_size, None, name)
            fitted.data = values(fitted.pixels, self.normalize)  # (3, H, W)
            return fitted

        return prepare, self.normalize, spec

    def batch_tensor(self, items: "list[FittedImage]") -> "np.ndarray":
        import numpy as np

        return np.stack([i.array() for i in items])  # (b, 3, H, W)


def check_mode(images: bool, unpatchify: str | None, grid_size: str | None, **fitting: object) -> None:
    """The command's two modes: patchify cuts IMAGEs, --unpatchify joins a FILE.npy (it reads P and the
    size from the array), so exactly one is given, --grid-size goes only with --unpatchify and the image-
    fitting numbers (`fitting`, by keyword) only without it; each range-checked either way."""
    from vitcli.api.ranges import check_ranges, refuse_unused
    from vitcli.io.sizes import parse_hw, parse_size

    if grid_size is not None:
        parse_hw(grid_size, "--grid-size")
    if unpatchify is None:
        refuse_unused("--unpatchify FILE.npy", {"--grid-size": grid_size})  # the run checks its own numbers
        if not images:
            raise UsageError("IMAGE", "give an IMAGE to patchify, or --unpatchify FILE.npy")
        return
    if isinstance(fitting.get("size"), str):
        parse_size(str(fitting["size"]))
    check_ranges(**{k: v for k, v in fitting.items() if k != "size"})
    refuse_unused("an IMAGE to patchify (--unpatchify reads P and the size from the array)",
                  {"--" + k.replace("_", "-"): v for k, v in fitting.items()})
    if images:
        raise UsageError("IMAGE", "--unpatchify rebuilds an image from FILE.npy; it takes no IMAGE (it would be "
                         "ignored)")


@image_keywords("images", normalize=choice(Normalize, optional=False))
def patchify(images: "ImageSource", *, order: Order = "chw", normalize: Values = "raw", output: str | None = None,
             output_dir: str | None = None, grid_png: str | None = None, batch: "BatchSpec | None" = None,
             keep: bool = True,
             progress: "Progress | None" = None) -> PatchifyResult:
    """(N, P·P·C) patches of one image in row-major order, or (B, N, P·P·C) of many; values are the
    raw uint8 bytes unless `normalize` names a mean/std. Image options come from `load_images`."""
    from vitcli.api.images import DEFAULT_PATCH, as_images
    from vitcli.api.outputs import check_outputs_first
    from vitcli.api.runs import BatchSpec, run_model
    from vitcli.core.patches import patchify as cut
    from vitcli.stats import channel_stats, tensor_stats

    images = as_images(images)
    check_outputs_first({"output": output, "grid_png": grid_png}, inputs=images.items, many=images.many,
                        output_dir=output_dir)
    if order not in ("chw", "hwc"):
        raise VitcliError("--order", f"'{order}' is not chw or hwc")
    if normalize not in VALUES:
        raise VitcliError("--normalize", f"'{normalize}' is not one of {', '.join(VALUES)}")
    if grid_png and images.many:
        raise VitcliError("--grid-png", "draws one image; give one IMAGE")
    p = DEFAULT_PATCH if images.spec.patch_size is None else images.spec.patch_size
    pixels = _Pixels(p, normalize)
    run = run_model(pixels, images, lambda x: {"patches": cut(x, p, order)}, main="patches", normalize=None,
                    batch=batch or BatchSpec(), output=output if images.many else None, output_dir=output_dir,
                    keep=keep, progress=progress)
    if images.many:
        batch_doc: PatchifyBatchDoc = {
            "command": "patchify", **run.report.document(), "patch_size": p, "order": order, "normalize": normalize,
            "tensors": {"patches": run.report.stats["patches"].document()} if run.report.stats else {}}
        return PatchifyResult(run.arrays.get("patches"), batch_doc)
    fitted = run.fitted[0]
    patches = run.arrays["patches"][0]  # (N, P·P·C)
    if output:
        from vitcli.io.arrays import save_npy

        save_npy(output, patches)
    if grid_png:
        from vitcli.io.pictures import grid_picture, save_png

        save_png(grid_png, grid_picture(fitted.pixels, p))
    h, w = fitted.pixels.shape[:2]
    doc: PatchifyDoc = {
        "command": "patchify", "input": fitted.input_document(), "patch_size": p, "grid": [h // p, w // p],
        "num_patches": patches.shape[0], "patch_length": patches.shape[1], "order": order, "normalize": normalize,
        "tensors": {"patches": tensor_stats(patches)}, "channels": channel_stats(fitted.array()),
        "outputs": {"array": output, "grid_png": grid_png}}
    return PatchifyResult(patches, doc, fitted)


@keywords(normalize=choice(Normalize, optional=False))
def unpatchify(patches: "str | ArrayLike", *, grid_size: str | tuple[int, int] | None = None, order: Order = "chw",
               normalize: Values = "raw", output: str | None = None) -> PatchifyResult:
    """(N, P·P·C) patches (an array or a .npy path) → the (3, H, W) image, written as .npy or PNG."""
    from vitcli.api.outputs import check_outputs_first
    from vitcli.core.patches import unpatchify as join
    from vitcli.io.arrays import load_npy, save_npy
    from vitcli.io.images import denormalize
    from vitcli.io.pictures import save_png
    from vitcli.stats import tensor_stats

    path = patches if isinstance(patches, str) else "<array>"
    check_outputs_first({"output": output}, inputs=[patches] if isinstance(patches, str) else [])
    if isinstance(patches, str) and not output:
        raise VitcliError("--unpatchify", "needs -o FILE.png (the picture) or -o FILE.npy (the (3, H, W) array)")
    import numpy as np

    array = load_npy(patches) if isinstance(patches, str) else np.asarray(patches)
    if array.ndim != 2:
        raise VitcliError(path, f"expected a (N, P·P·C) array, got shape {array.shape}")
    if array.dtype.kind not in "uif":
        raise VitcliError(path, f"holds {array.dtype} values: patches are integers or floats")
    if 0 in array.shape:
        raise VitcliError(path, f"is empty (shape {array.shape}): there are no patches to join")
    grid = _grid(grid_size, array.shape[0], path)
    try:
        chw = join(array, grid, 3, order)  # (3, H, W)
    except ValueError as e:
        raise VitcliError(path, str(e)) from None
    if output and (output.lower().endswith(".npy") or output == "-"):
        save_npy(output, chw)
    elif output:
        if normalize == "raw" and chw.dtype != "uint8":
            raise VitcliError(path, f"holds {chw.dtype} values: say which --normalize made them to write a PNG")
        save_png(output, denormalize(chw, normalize))
    p = round((array.shape[1] / 3) ** 0.5)
    doc: UnpatchifyDoc = {
        "command": "unpatchify", "input": {"path": path}, "patch_size": p, "grid": list(grid),
        "num_patches": array.shape[0], "patch_length": array.shape[1], "order": order, "normalize": normalize,
        "tensors": {"patches": tensor_stats(array), "image": tensor_stats(chw)}, "outputs": {"image": output}}
    return PatchifyResult(chw, doc)


def _grid(value: str | tuple[int, int] | None, n: int, path: str) -> tuple[int, int]:
    """'14x14' or (14, 14) → (14, 14); None → the square grid holding n patches."""
    from vitcli.io.sizes import parse_hw

    if value is None:
        side = round(n**0.5)
        if side * side != n:
            raise VitcliError(path, f"{n} patches do not make a square grid: give --grid-size ROWSxCOLS")
        return side, side
    return parse_hw(value, "--grid-size") if isinstance(value, str) else (int(value[0]), int(value[1]))

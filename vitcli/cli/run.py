"""One forward pass of a ViT on one image, shared by `embed` and `attend`.

Loads and fits the image, builds the model (preset or checkpoint), runs it under inference mode
and keeps the named intermediates for the command to report.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from vitcli.cli.common import ImageOptions, PreparedImage, check_image_options, prepare_image
from vitcli.cli.model import ModelOptions, ModelSetup, build, model_document, resolve_config
from vitcli.core.encoder import ViTOutput


@dataclass
class ModelRun:
    """The image, the model and what its forward pass produced."""

    prepared: PreparedImage
    setup: ModelSetup
    model: Any
    result: ViTOutput | Any  # what call() returned, when given
    normalize: str
    params: int
    warnings: list[str] = field(default_factory=list)

    def first(self, name: str) -> np.ndarray | None:
        """The named intermediate of the (only) image as float32 numpy, batch axis dropped."""
        value = getattr(self.result, name)
        return None if value is None else value[0].detach().float().cpu().numpy()

    def document(self, command: str) -> dict[str, Any]:
        """The JSON keys every model command shares."""
        grid = self.result.grid
        return {
            "command": command,
            "input": self.prepared.input_document(),
            "patch_size": self.setup.config.patch_size,
            "grid": list(grid),
            "num_patches": grid[0] * grid[1],
            "num_tokens": grid[0] * grid[1] + self.result.num_prefix,
            "normalize": self.normalize,
            "model": model_document(self.setup, grid, self.params),
        }


def default_normalize(setup: ModelSetup) -> str:
    """The normalisation the weights expect: the checkpoint family's, else ImageNet's."""
    preprocess = getattr(setup.checkpoint, "preprocess", None)
    return getattr(preprocess, "normalize", None) or "imagenet"


def model_image_options(image_opts: ImageOptions, setup: ModelSetup) -> tuple[ImageOptions, Any]:
    """How images reach a model: the checkpoint family's own resize and crop (its `Preprocess`, with
    --resample as its filter) when the user gave neither --size nor --fit, else vitcli's size policy,
    at the model's native size unless --size says otherwise."""
    from dataclasses import replace

    family = getattr(setup.checkpoint, "preprocess", None)
    if family is not None and image_opts.size is None and image_opts.fit is None:
        if image_opts.resample is not None:
            family = family.with_changes(interpolation=getattr(image_opts.resample, "value", image_opts.resample))
        return image_opts, family
    if image_opts.size is None:
        image_opts = replace(image_opts, size="{}x{}".format(*setup.config.image_size))
    return image_opts, None


def resolve_normalize(normalize: str | None, setup: ModelSetup) -> str:
    """--normalize, else the checkpoint family's mean/std ('custom' when it has no preset name), else imagenet."""
    return normalize or default_normalize(setup)


def image_tensor(pixels: np.ndarray, normalize: str, setup: ModelSetup | None = None) -> torch.Tensor:
    """(H, W, 3) uint8 → (1, 3, H, W) float32, normalised ('custom': the checkpoint's own mean/std)."""
    from vitcli.errors import VitcliError
    from vitcli.io.images import NORMALIZE, normalize as normalise_pixels, normalize_mean_std

    preprocess = getattr(getattr(setup, "checkpoint", None), "preprocess", None)
    if normalize == "custom" and preprocess is not None:
        return torch.from_numpy(normalize_mean_std(pixels, preprocess.mean, preprocess.std))[None]
    if normalize not in NORMALIZE:
        raise VitcliError("--normalize", f"'{normalize}' is not one of {', '.join(NORMALIZE)}")
    return torch.from_numpy(normalise_pixels(pixels, normalize))[None]  # (1, 3, H, W)


def run_model(image: str, image_opts: ImageOptions, model_opts: ModelOptions, posenc: str | None,
              normalize: str | None, call: Callable[[Any, torch.Tensor], Any] | None = None, **forward: Any) -> ModelRun:
    """Fit the image to the model's patch size, build the model and run one forward pass:
    `model(x, **forward)`, or `call(model, x)` for a command that gathers more (attend)."""
    from vitcli.core.presets import count_params

    bm = batch_model(image_opts, model_opts, posenc, normalize)
    prepared = bm.prepare(image)
    x = bm.batch_tensor([prepared])  # (1, 3, H, W)
    with torch.inference_mode():
        result = call(bm.model, x) if call else bm.model(x, **forward)
    return ModelRun(prepared, bm.setup, bm.model, result, bm.normalize, count_params(bm.model),
                    [bm.warning] if bm.warning else [])


@dataclass
class BatchModel:
    """One model for many images: the setup, the built model, the normalisation and a `prepare`
    that fits and normalises an image in a decoding thread (item.data is (1, 3, H, W))."""

    setup: ModelSetup
    model: Any
    normalize: str
    image_opts: ImageOptions
    family: Any  # the checkpoint's Preprocess when its resize and crop are used
    warning: str | None

    @property
    def patch_size(self) -> int:
        return self.setup.config.patch_size

    def prepare(self, path: str) -> PreparedImage:
        item = prepare_image(path, self.image_opts, self.patch_size, self.family)
        item.data = image_tensor(item.pixels, self.normalize, self.setup)  # type: ignore[attr-defined]
        return item

    @property
    def overlap_decoding(self) -> bool:
        """Decode the next batch during the forward pass only when the model is not on the CPU."""
        return next(self.model.parameters()).device.type != "cpu"

    def batch_tensor(self, items: list[PreparedImage]) -> torch.Tensor:
        """(b, 3, H, W) on the model's device and dtype."""
        param = next(self.model.parameters())
        return torch.cat([p.data for p in items]).to(param.device, param.dtype)  # type: ignore[attr-defined]


def batch_model(image_opts: ImageOptions, model_opts: ModelOptions, posenc: str | None,
                normalize: str | None) -> BatchModel:
    """Resolve, check and build once, before any image is read: options wrong for every image fail here."""
    setup = resolve_config(model_opts, image_opts.patch_size, posenc)
    image_opts, family = model_image_options(image_opts, setup)
    check_image_options(image_opts, setup.config.patch_size)
    model, warning = build(setup, model_opts)
    norm = resolve_normalize(normalize, setup)
    image_tensor(np.zeros((1, 1, 3), np.uint8), norm, setup)  # an unknown --normalize fails before any image
    return BatchModel(setup, model, norm, image_opts, family, warning)

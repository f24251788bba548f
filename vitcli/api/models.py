"""`vitcli.load_model`: a preset or a checkpoint as a `Model` that embeds, attends, explains and describes.

    model = vitcli.load_model("vit-s16", seed=0)                 # random weights, reproducible
    model = vitcli.load_model("vit_small.safetensors")           # or a folder, hf-hub:ORG/NAME, timm:NAME
    model = vitcli.load_model("bare.safetensors", heads=4)       # what the weights cannot show

Overrides a checkpoint cannot show (heads, native_size, eps, activation) are applied to it; sizes it
does show (dim, depth, patch_size, mlp_ratio) are checked against it. The commands' methods live in
their own modules (embed, attend, figures) and are mixed into `Model`.
"""

import re
from dataclasses import replace
from typing import TYPE_CHECKING, TypedDict, get_args

from vitcli.api.attend import AttendMixin
from vitcli.api.base import (  # noqa: F401 - their home was here: `from vitcli.api.models import ...` keeps working
    NORMALIZE_NAMES,
    RESAMPLE_WORDS,
    TEXT_TOWER,
    ModelBase,
    ModelSpec,
    ignored_summary,
    position_note,
    prefix_description,
    preprocess_document,
)
from vitcli.api.compare import CompareMixin
from vitcli.api.embed import EmbedMixin
from vitcli.api.explain import ExplainMixin
from vitcli.api.figures import FiguresMixin
from vitcli.api.probe import ProbeMixin
from vitcli.api.values import Dtype, keywords
from vitcli.api.view import ViewMixin
from vitcli.errors import VitcliError, option_errors

if TYPE_CHECKING:
    import torch

    from vitcli.checkpoints.load import Loaded
    from vitcli.core.config import Activation, PosEncKind, ViTConfig
    from vitcli.core.encoder import VisionTransformer


class Sizes(TypedDict):
    """load_model's size overrides (None: the preset's or the checkpoint's own)."""

    patch_size: int | None
    dim: int | None
    depth: int | None
    heads: int | None
    mlp_ratio: float | None
    class_token: bool | None
    posenc: "PosEncKind | None"


class Model(EmbedMixin, ViewMixin, AttendMixin, FiguresMixin, ExplainMixin, CompareMixin, ProbeMixin):
    """A built ViT on its device, with where it came from and how images reach it; its commands' methods."""

    def sibling(self, spec: str) -> "Model":
        """Another model on this one's device, dtype, seed and memory limit (compare's model B)."""
        s = self.spec
        return load_model(spec, device=s.device, dtype=s.dtype, seed=s.seed, max_memory=s.max_memory)


@keywords()
def load_model(spec: str = "vit-b16", *, device: str = "auto", dtype: str = "float32", seed: int = 0,
               strict: bool = True, patch_size: int | None = None, dim: int | None = None, depth: int | None = None,
               heads: int | None = None, mlp_ratio: float | None = None, class_token: bool | None = None,
               posenc: "PosEncKind | None" = None, native_size: object = None, eps: float | None = None,
               activation: "Activation | None" = None, online: bool = False, family: str | None = None,
               max_memory: str | int | None = None, describe_only: bool = False) -> Model:
    """A preset name (vit-ti16 … vit-h14) with random weights from `seed`, or a checkpoint: a file
    (.safetensors, .pth/.pt/.bin, OpenAI CLIP .pt), a Hugging Face snapshot folder, `hf-hub:ORG/NAME`
    or `timm:NAME` from the local cache. Overrides change a preset; with a checkpoint, `heads`,
    `native_size`, `eps` and `activation` supply what weights cannot show and the others are checked.
    Hub names read the local cache; `online=True` lets them download what it lacks. `family` reads a
    checkpoint as that layout (timm, timm-pe-spatial, …: the names `info` lists as `layout`) instead of
    recognising it from its keys. `max_memory` ('8G', '500M' or bytes; default a share of the free
    memory) is the limit every run of the model is estimated against before anything is allocated.
    `describe_only` reads a checkpoint's shapes, not its values (`info`: a safetensors header, no torch);
    the weights are read in full if the model is then run."""
    from vitcli.api.ranges import check_ranges
    from vitcli.core.presets import PRESETS, get_preset

    _check_placement(device, dtype)
    check_ranges(patch_size=patch_size, dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, eps=eps)
    sizes: Sizes = {"patch_size": patch_size, "dim": dim, "depth": depth, "heads": heads, "mlp_ratio": mlp_ratio,
             "class_token": class_token, "posenc": posenc}
    model_spec = ModelSpec(spec, device, dtype, seed, strict, max_memory)
    if spec.strip().lower() in PRESETS:
        if native_size is not None:
            raise VitcliError("--native-size",
                              "tells a checkpoint's native size: use it with --weights (presets take --size)")
        if family is not None:
            raise VitcliError("--family", "tells how to read a checkpoint: use it with --weights")
        config = _preset_config(spec, sizes)
        from vitcli.core.presets import build_model

        model = Model(config, lambda d, t: build_model(config, seed, d, t), f"random weights (seed {seed})", None,
                      model_spec)
        model.preset_base = get_preset(spec)
        model.memory_limit()  # a bad max_memory fails here, before anything else
        return model
    return _checkpoint_model(spec, sizes, native_size, eps, activation, strict, model_spec, online, family,
                             describe_only)


DEVICE_NAMES = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DTYPE_NAMES = get_args(Dtype)


def _check_placement(device: str, dtype: str) -> None:
    """The device and dtype names, checked without importing torch (availability: when the model is built)."""
    if not DEVICE_NAMES.match(device.strip().lower()):
        raise VitcliError("--device", f"'{device}' is not a device: use auto, cpu, cuda, cuda:N or mps")
    if dtype not in DTYPE_NAMES:
        raise VitcliError("--dtype", f"'{dtype}' is not a dtype: use one of {', '.join(DTYPE_NAMES)}")


def _preset_config(name: str, sizes: Sizes) -> "ViTConfig":
    """The preset with overrides; when only dim changes and the preset's heads do not divide it,
    heads of 64 channels (the ViT rule) or else the largest count that divides D."""
    from math import gcd

    from vitcli.core.presets import get_preset, override

    preset = get_preset(name)
    heads, dim = sizes["heads"], sizes["dim"]
    if heads is None and dim is not None and dim % preset.heads:
        heads = dim // 64 if dim % 64 == 0 else gcd(dim, preset.heads)
    with option_errors(name):
        return override(preset, patch_size=sizes["patch_size"], dim=dim, depth=sizes["depth"], heads=heads,
                        mlp_ratio=sizes["mlp_ratio"], posenc=sizes["posenc"], class_token=sizes["class_token"])


def _checkpoint_model(spec: str, sizes: Sizes, native_size: object, eps: float | None,
                      activation: "Activation | None", strict: bool, model_spec: ModelSpec, online: bool = False,
                      family: str | None = None, describe_only: bool = False) -> Model:
    """Load (shapes only when `describe_only`), check the sizes given against the weights, build on the device."""
    from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint

    for name in ("posenc", "class_token"):
        if sizes[name] is not None:
            raise VitcliError("--" + name.replace("_", "-").replace("class-token", "no-cls"),
                              "the checkpoint's own position table and tokens are used; drop it")
    native = _hw(native_size, "--native-size") if native_size is not None else None
    def read(shapes_only: bool) -> "Loaded":
        return load_checkpoint(spec, shapes_only=shapes_only, strict=strict, image_size=native, heads=sizes["heads"],
                               eps=eps, activation=activation, dim=sizes["dim"], depth=sizes["depth"],
                               patch_size=sizes["patch_size"], online=online, family=family)

    loaded = read(describe_only)
    _check_mlp_ratio(loaded.config, sizes["mlp_ratio"])
    model = Model(loaded.config, None, spec, loaded, model_spec)

    def build(device: "torch.device", dtype: "torch.dtype") -> "VisionTransformer":
        held = model.checkpoint or loaded  # resolve_grid may have replaced it; it is never emptied
        if describe_only:  # the values were not read: read them now (the grid found for an image stays)
            held = model.checkpoint = replace(read(False), config=held.config, native_grid=held.native_grid)
        return build_model_from_checkpoint(held, device=device, dtype=dtype)

    model._build = build
    return model


def _check_mlp_ratio(config: "ViTConfig", ratio: float | None) -> None:
    """An MLP ratio may be given with weights, but only as the weights have it."""
    if ratio is not None and abs(ratio - config.mlp_dim / config.dim) > 1e-9:
        raise VitcliError("--mlp-ratio", f"{ratio:g} contradicts the checkpoint's weights, whose MLP is "
                          f"{config.mlp_dim / config.dim:g} × {config.dim} wide")


def _hw(value: object, option: str) -> tuple[int, int]:
    """'HxW', N or (H, W) of positive whole numbers, else one VitcliError naming `option`."""
    from vitcli.io.sizes import parse_hw

    if isinstance(value, str):
        return parse_hw(value, option)
    pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise VitcliError(option, f"{value!r:.60} is not N, (H, W) or 'HxW' with positive whole numbers")
    return pair


__all__ = ["Model", "ModelSpec", "load_model"]

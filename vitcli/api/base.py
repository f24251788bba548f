"""`ModelBase`: what a `Model` owns (its config, weights, device, image plan and JSON document), below the
command modules that use it (embed, attend, figures, view, explain): they subclass it, and `Model` mixes them.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from vitcli.api.budget import MemoryMixin
from vitcli.api.documents import IgnoredSummary, InfoDoc, JSONValue, ModelDoc, SingleDoc
from vitcli.api.images import FittedImage, ImageSpec, check_spec, fit_one
from vitcli.api.outputs import OutputsMixin
from vitcli.api.values import keywords
from vitcli.errors import VitcliError, option_errors

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vitcli.api.images import Images
    from vitcli.checkpoints.config import ClassLabel
    from vitcli.checkpoints.load import Loaded
    from vitcli.checkpoints.preprocess import Preprocess
    from vitcli.core.config import ViTConfig
    from vitcli.core.encoder import VisionTransformer

NORMALIZE_NAMES = ("imagenet", "inception", "clip", "none")


@dataclass
class ModelSpec:
    """Everything `load_model` was given, kept for the table and JSON."""

    spec: str
    device: str = "auto"
    dtype: str = "float32"
    seed: int = 0
    strict: bool = True
    max_memory: str | int | None = None  # the memory limit (vitcli.core.budget); None: a share of what is free


Build = Callable[["torch.device", "torch.dtype"], "VisionTransformer"]  # the torch model, built when first needed


class ModelBase(MemoryMixin, OutputsMixin):
    """A built ViT on its device, with where it came from and how images reach it: what `Model` owns (its
    commands live in their own modules, mixed in by `vitcli.api.models.Model`)."""

    def __init__(self, config: "ViTConfig", build: "Build | None", source: str, checkpoint: "Loaded | None",
                 spec: ModelSpec) -> None:
        self.config, self.source, self.checkpoint, self.spec = config, source, checkpoint, spec
        self.warnings: list[str] = []
        self._build = build
        self._module: VisionTransformer | None = None  # built when first needed
        self._placement: tuple[torch.device, torch.dtype] | None = None
        self.grid_note: str | None = None  # how the native grid was found, when not from the weights
        self.preset_base: ViTConfig | None = None  # a preset before its overrides (names the option over the limit)

    def __repr__(self) -> str:
        """Family, size, parts and weights in one line (nothing is built): what a notebook cell shows."""
        from vitcli.core.parts import model_parts

        c = self.config
        family = f"{self.checkpoint.family} " if self.checkpoint is not None else ""
        parts = ", ".join(v for k, v in model_parts(c).items() if k != "layer_scale" or v != "no")
        return (f"<vitcli.Model {family}{c.name}: {c.dim}-d, {c.depth} blocks, {c.heads} heads, patch {c.patch_size}, "
                f"{c.image_size[0]}x{c.image_size[1]}, {c.num_prefix_tokens} prefix tokens; {parts}; "
                f"{self.source}; {self.spec.dtype}>")

    @property
    def module(self) -> "VisionTransformer":
        """The torch model (eval mode), built when first needed: `info` on a preset builds nothing."""
        if self._module is None:
            if self._build is None:
                raise ValueError("this model was given no way to build its torch module")
            import torch

            self.check_memory()
            with torch.inference_mode(False):  # built in a caller's inference_mode, its tensors could not be
                self._module = self._build(*self.placement)  # used by explain's backward later
        return self._module

    @property
    def placement(self) -> tuple["torch.device", "torch.dtype"]:
        """The device and dtype, checked when first needed (a missing GPU is the one-line error)."""
        if self._placement is None:
            from vitcli.core.device import resolve_device, resolve_dtype

            with option_errors("--device"):
                device = resolve_device(self.spec.device)
            with option_errors("--dtype"):
                dtype, warning = resolve_dtype(self.spec.dtype, device)
            self.warnings += [warning] if warning else []
            self._placement = (device, dtype)
        return self._placement

    # --- a position table whose grid the weights do not show ----------------------------------

    @property
    def grid_known(self) -> bool:
        return self.checkpoint is None or self.checkpoint.native_grid == "known"

    def require_grid(self) -> None:
        """The one-line error naming --native-size when the table's grid is still unknown."""
        if self.checkpoint is not None and not self.grid_known:
            from vitcli.checkpoints.load import require_native_grid

            require_native_grid(self.checkpoint)

    def resolve_grid(self, images: "Images") -> None:
        """Take the native grid from the first image's own grid when the table fits it exactly
        (its fitted size: `--size native` by default); else the error naming --native-size."""
        if self.checkpoint is None or self.grid_known or not len(images):
            return self.require_grid()
        from vitcli.checkpoints.load import fit_native_grid

        spec = images.spec if images.spec.size is not None else replace(images.spec, size="native")
        p = self.config.patch_size
        first = fit_one(images.items[0], replace(spec, patch_size=None), p, None, images.names()[0])
        grid = (first.pixels.shape[0] // p, first.pixels.shape[1] // p)
        resolved = fit_native_grid(self.checkpoint, grid)
        if resolved is None:
            return self.require_grid()
        rows = int(self.checkpoint.state_dict["pos_embed"].shape[1])
        self.checkpoint, self.config = resolved, resolved.config
        self.grid_note = f"{grid[0]} × {grid[1]}, the image's own grid (the table has {rows} rows)"

    # --- facts ---------------------------------------------------------------------------------

    @property
    def preprocess(self) -> "Preprocess | None":
        """The checkpoint family's `Preprocess`, or None for random weights."""
        return getattr(self.checkpoint, "preprocess", None)

    @property
    def projects(self) -> bool:
        """A CLIP-style model whose head projects into the joint image-text space (family data:
        families.base.projects)."""
        return bool(getattr(self.checkpoint, "projects", False))

    @property
    def labels(self) -> dict[int, str]:
        """The classifier's labels by index, from the checkpoint's config.json (id2label / label_names);
        {} for random weights or a file without them."""
        return {label.index: label.text for label in (self.checkpoint.labels if self.checkpoint else ())}

    def find_class(self, name: str) -> list[int]:
        """The classes whose label is `name` (case-insensitive): the label's name or description, whole or
        one of its comma-separated words ("tabby" in "tabby, tabby cat")."""
        want = name.strip().lower()

        def names(label: "ClassLabel") -> set[str]:
            texts = [t.strip().lower() for t in (label.name, label.description) if t]
            return {*texts, *(w.strip() for t in texts for w in t.split(","))}

        return [label.index for label in getattr(self.checkpoint, "labels", ()) if want in names(label)]

    @property
    def params(self) -> int:
        if self._module is None:
            from vitcli.core.presets import config_params

            return config_params(self.config)
        return sum(p.numel() for p in self._module.parameters())

    @property
    def device(self) -> "torch.device":
        return self.placement[0]

    @property
    def on_cpu(self) -> bool:
        return self.device.type == "cpu"

    def document(self, grid: tuple[int, int] | None = None) -> ModelDoc:
        """The `model` JSON object that every model command shares."""
        from vitcli.core.parts import model_parts
        from vitcli.core.presets import count_macs

        c = self.config
        grid = grid or c.grid
        doc: ModelDoc = {
            "name": c.name, "source": self.source, "patch_size": c.patch_size, "dim": c.dim, "depth": c.depth,
            "heads": c.heads, "head_dim": c.head_dim, "mlp_dim": c.mlp_dim,
            "parameters": self.params, "params": self.params,  # "parameters" as the table says; "params": the old key
            "gmacs": round(count_macs(c, grid) / 1e9, 3), "native_size": list(c.image_size),
            "native_grid": list(c.grid), "grid": list(grid), "num_prefix_tokens": c.num_prefix_tokens,
            "num_tokens": grid[0] * grid[1] + c.num_prefix_tokens, "posenc": c.posenc, "pooling": c.pooling,
            "activation": c.activation, "eps": c.eps, "num_classes": c.num_classes,
            "dtype": self.spec.dtype, "position_table": position_note(c, (grid[0], grid[1])),
            "projection": c.num_classes if self.projects else None, "parts": model_parts(c),
        }
        if c.posenc == "learned":  # how the table meets other grids, and whose way that is
            doc["position_resample"] = c.extra.get("pos_resample") or RESAMPLE_WORDS.get(c.pos_resample, c.pos_resample)
        if self.grid_note:
            doc["native_grid_from"] = self.grid_note
        if self.checkpoint is not None:
            doc["family"] = self.checkpoint.family
            basis = getattr(self.checkpoint, "basis", None)
            if basis is not None:  # the key layout it was read as (the name --family / family= takes), its notes
                doc["layout"] = basis.family.name
                doc["layout_notes"] = list(basis.family.notes)
            doc["ignored_keys"] = list(self.checkpoint.ignored_keys)
            doc["nonfinite_weights"] = dict(getattr(self.checkpoint, "nonfinite", {}))
        return doc

    @keywords()
    def info(self, size: object = None) -> InfoDoc:
        """The `info` document: architecture, family, parameters, GMACs at `size` (default: native), preprocessing."""
        from vitcli.api.images import as_size_text
        from vitcli.core.patches import grid_shape, remainder_note
        from vitcli.io.sizes import parse_hw

        self.require_grid()
        c = self.config
        text = as_size_text(size)
        h, w = parse_hw(text, "--size") if text else c.image_size
        with option_errors("--size"):
            grid = grid_shape(h, w, c.patch_size, c.patch_remainder)
        doc: InfoDoc = {"command": "info", "input": None, "patch_size": c.patch_size, "grid": list(grid),
                        "num_patches": grid[0] * grid[1], "model": self.document(grid), "tensors": {},
                        "size": [h, w], "prefix_tokens": prefix_description(c)}
        if remainder_note(h, w, c.patch_size):  # '384×384 px → 27×27 patches, 6 px unused (the patch conv floors)'
            doc["size_note"] = remainder_note(h, w, c.patch_size)
        if self.preprocess is not None:
            doc["preprocess"] = preprocess_document(self.preprocess)
        if self.checkpoint is not None:
            doc["ignored_summary"] = ignored_summary(self.checkpoint.ignored_keys)
        if self.labels and self.checkpoint is not None:  # labels come with a checkpoint
            first = [self.labels[i] for i in sorted(self.labels)[:3]]
            doc["class_labels"] = {"count": len(self.labels), "from": self.checkpoint.labels_from, "first": first}
        return doc

    # --- images --------------------------------------------------------------------------------

    def image_plan(self, spec: ImageSpec) -> "tuple[ImageSpec, Preprocess | None]":
        """How images reach this model: the checkpoint family's own resize and crop (its `Preprocess`,
        with `resample` as its filter) when neither size nor fit is given, else vitcli's size policy
        at the model's native size unless a size is given. Checked before any image is read."""
        self.require_grid()
        family = self.preprocess
        spec = replace(spec, patch_remainder=self.config.patch_remainder)
        if spec.patch_size is not None and spec.patch_size != self.config.patch_size:
            raise VitcliError("--patch-size", f"{spec.patch_size} differs from the model's patch size "
                              f"{self.config.patch_size}; change the model's (--patch-size with a preset) instead")
        if family is not None and spec.size is None and spec.fit is None:
            if spec.resample is not None:
                family = family.with_changes(interpolation=spec.resample)
            check_spec(spec, self.config.patch_size)
            self._check_family_size(family, spec)
            return spec, family
        if spec.size is None:
            spec = replace(spec, size="{}x{}".format(*self.config.image_size))
        if spec.size == "native" and spec.max_patches is None and self.config.pos_resample == "bilinear":
            spec = replace(spec, max_patches=self.config.grid[0] * self.config.grid[1])  # NaFlex: the table's
        check_spec(spec, self.config.patch_size)
        return spec, None

    def planned_size(self, item: object, spec: ImageSpec) -> tuple[int, int] | None:
        """The [H, W] an image will be fitted to, known before it is decoded (memory checks): the size asked
        for, the checkpoint's fixed size, or (native) the size its file's header declares; None when unknown."""
        from PIL import Image

        from vitcli.io.files import check_readable
        from vitcli.io.sizes import parse_size

        plan, family = self.image_plan(spec)
        if family is not None:
            return (family.size[0], family.size[1]) if family.crop or family.resize_mode == "exact" else None
        fixed = parse_size(plan.size) if plan.size else None
        if fixed is not None or not isinstance(item, str) or item == "-":
            return fixed  # an in-memory image is decoded already; standard input can be read once
        try:
            check_readable(item)
            with Image.open(item) as img:  # the header only: nothing is decoded
                w, h = img.size
        except (OSError, ValueError, Image.DecompressionBombError, VitcliError):
            return None  # the decoding says what is wrong, in its words
        p = self.config.patch_size
        return max(p, h // p * p), max(p, w // p * p)

    def size_blame(self, family: "Preprocess | None" = None) -> str:
        """Who asks for an image size the user did not give, in a memory message: the checkpoint's preprocessing
        (`family`) or the model's native size, not a --size never given."""
        if family is None:
            name = self.config.name if self.checkpoint is None else self.source
            return f"{name}, its native size (--size overrides it)"
        where = family.source.split("(", 1)[-1].split(";")[0].rstrip(")") if "(" in family.source else family.source
        return f"{self.source}, the size in its {where} (--size overrides it)"

    def _check_family_size(self, family: "Preprocess", spec: ImageSpec) -> None:
        """The size the checkpoint's preprocessing resizes to (at least `resize_to`), against the memory limit
        before any image is read (a preprocessor_config.json may ask for 20000×20000)."""
        from vitcli.core.budget import image_bytes, memory_limit, over

        with option_errors("--max-memory"):
            limit = memory_limit(spec.max_memory)
        h, w = family.resize_to
        if family.resize_mode != "patches":
            problem = over(image_bytes((h, w)), limit, f"a {h}×{w} image")
            if problem:
                raise VitcliError(self.size_blame(family), problem, needs="max_memory")

    def normalize_name(self, normalize: str | None) -> str:
        """The normalisation asked for, else the checkpoint family's ('custom' without a preset name), else imagenet."""
        name = normalize or getattr(self.preprocess, "normalize", None) or "imagenet"
        if name not in NORMALIZE_NAMES and not (name == "custom" and self.preprocess is not None):
            raise VitcliError("--normalize", f"'{name}' is not one of {', '.join(NORMALIZE_NAMES)}")
        return name

    def input_tensor(self, pixels: "np.ndarray", normalize: str) -> "torch.Tensor":
        """(H, W, 3) uint8 (or float on x/255's scale) → (1, 3, H, W) float32, normalised ('custom': the
        checkpoint's own mean/std)."""
        import torch

        from vitcli.io.images import NORMALIZE, normalize_mean_std

        family = self.preprocess
        mean, std = (family.mean, family.std) if normalize == "custom" and family is not None else NORMALIZE[normalize]
        return torch.from_numpy(normalize_mean_std(pixels, mean, std))[None]

    def preparer(self, spec: ImageSpec, normalize: str | None):
        """A function (item, name) → FittedImage with its model input in `.data`, safe in decoding threads."""
        spec, family = self.image_plan(spec)
        norm = self.normalize_name(normalize)

        def prepare(item: object, name: str) -> FittedImage:
            fitted = fit_one(item, spec, self.config.patch_size, family, name)
            fitted.data = self.input_tensor(fitted.input, norm)
            return fitted

        return prepare, norm, spec

    def batch_tensor(self, items: list[FittedImage]) -> "torch.Tensor":
        """(b, 3, H, W) on the model's device and dtype."""
        import torch

        param = next(self.module.parameters())
        return torch.cat([p.tensor() for p in items]).to(param.device, param.dtype)

    def _single_document(self, command: str, fitted: FittedImage, grid: tuple[int, int], normalize: str) -> SingleDoc:
        """The JSON keys every single-image model command shares."""
        n = grid[0] * grid[1]
        return {"command": command, "input": fitted.input_document(), "patch_size": self.config.patch_size,
                "grid": list(grid), "num_patches": n, "num_tokens": n + self.config.num_prefix_tokens,
                "normalize": normalize, "model": self.document(grid)}


RESAMPLE_WORDS = {"bicubic": "bicubic, antialiased, as timm", "bilinear": "bilinear, antialiased",
                  "bicubic_plain": "bicubic, no antialias", "bicubic_offset": "bicubic, scale (n + 0.1) / M"}


def position_note(c: "ViTConfig", grid: tuple[int, int]) -> str:
    """How the position table reaches this grid: as stored, resampled (as the family's library does), or from the
    formula."""
    native = "{}×{}".format(*c.grid)
    here = "{}×{}".format(*grid)
    if c.posenc == "none":
        return "none"
    if c.posenc != "learned":
        return f"{c.posenc} for {here}, from the formula"
    if tuple(grid) == tuple(c.grid):
        return f"learned {native}, as stored"
    return f"learned {native} resampled to {here} ({RESAMPLE_WORDS.get(c.pos_resample, c.pos_resample)})"


TEXT_TOWER = re.compile(r"^(transformer\.|token_embedding\.|text_model\.|text_projection|ln_final\.|"
                        r"positional_embedding$|logit_(scale|bias)$|text\.)")


def ignored_summary(keys: list[str]) -> IgnoredSummary:
    """Ignored keys in groups a person can read: the text tower of a CLIP-style file as one count."""
    text = [k for k in keys if TEXT_TOWER.search(k)]
    return {"text_tower": len(text), "other": [k for k in keys if not TEXT_TOWER.search(k)]}


def prefix_description(c: "ViTConfig") -> str:
    """'class + 4 registers' etc."""
    parts = (["class"] if c.class_token else []) + (["distillation"] if c.distilled else [])
    parts += [f"{c.num_registers} registers"] if c.num_registers else []
    return " + ".join(parts) or "none"


def preprocess_document(preprocess: "Preprocess") -> dict[str, JSONValue]:
    """A checkpoint's preprocessing as plain JSON values."""
    from dataclasses import asdict

    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(preprocess).items()}


__all__ = ["NORMALIZE_NAMES", "RESAMPLE_WORDS", "ModelBase", "ModelSpec", "ignored_summary", "position_note",
           "prefix_description", "preprocess_document"]

"""Loading real ViT checkpoints into vitcli's core: the public API of the checkpoints layer.

    loaded = load_checkpoint("vit_tiny.safetensors")          # or .pth/.pt/.bin, a folder,
    loaded.family, loaded.config, loaded.preprocess           # hf-hub:ORG/NAME, timm:NAME
    model = build_model_from_checkpoint(loaded)               # core VisionTransformer, eval mode

`load_checkpoint` reads the file safely (see `read.py`) and its config files once (`config.py`),
recognises the family from key names, maps its keys onto the core's (`families/`), infers the
architecture from tensor shapes (`infer.py`) and checks the result against the core model built
from it: keys left over, keys missing and shapes that do not fit are reported together in one
VitcliError. With `strict=False`, keys left over are listed in `ignored_keys` instead; missing
keys and wrong shapes are always errors, since no faithful model can be built without them. Keys
a vision model never uses (CLIP's text tower, transformers' tanh pooler, DINOv2's mask token,
DINO's projection head) are listed in `ignored_keys` in both modes.

A position table that is neither a square grid nor sized by a config file or `image_size` does
not fail here: `Loaded.native_grid` is "from image", and `fit_native_grid(loaded, (rows, cols))`
resolves it from an image whose grid fits the table exactly; `require_native_grid(loaded)` raises
the one-line error otherwise (building the model calls it).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vitcli.checkpoints.archs import refuse_unbuildable
from vitcli.checkpoints.config import ClassLabel, parse_configs
from vitcli.checkpoints.families import Evidence, Family, Mapped, detect, evidence, map_keys
from vitcli.checkpoints.hub import is_hub_spec, resolve
from vitcli.checkpoints.infer import Inferred, NativeGrid, Overrides, grid_error, infer_config
from vitcli.checkpoints.preprocess import Preprocess
from vitcli.checkpoints.read import read_checkpoint, strip_wrappers
from vitcli.core.config import Activation, Pooling, ViTConfig
from vitcli.errors import VitcliError

if TYPE_CHECKING:  # torch is imported where tensors are made or checked: describing a file needs none
    import torch
    from torch import Tensor

    from vitcli.core.encoder import VisionTransformer

MAX_LISTED = 12  # keys listed per kind in an error message


@dataclass(frozen=True)
class Basis:
    """What the architecture was inferred from (shapes, not tensors), to infer it again for an image grid."""

    family: Family
    evidence: Evidence
    overrides: Overrides
    read_notes: tuple[str, ...]  # the notes before the inference rules


@dataclass
class Loaded:
    """A checkpoint in vitcli's terms: architecture, weights in core key names, preprocessing."""

    spec: str  # what the user passed
    path: str  # the file read
    format: str  # safetensors, torch (weights_only) or torchscript
    family: str  # timm-vit, deit, dino, dinov2(-reg), timm-dinov2(-reg), timm-clip, hf-vit, hf-deit,
    #              hf-clip, hf-dinov2(-reg), torchvision, openai-clip, open_clip
    config: ViTConfig
    state_dict: "dict[str, Tensor]"  # core key → tensor (dtype as stored); ShapeTensors when read shapes_only
    preprocess: Preprocess
    ignored_keys: list[str] = field(default_factory=list)  # source keys not used
    notes: list[str] = field(default_factory=list)  # how things were found and which rules applied
    origin: dict[str, str] = field(default_factory=dict)  # core key → source key(s)
    nonfinite: dict[str, dict[str, int]] = field(default_factory=dict)  # source key → {"nan": n, "inf": m}
    native_grid: NativeGrid = "known"  # "from image": the table alone does not say (config: a 1 × N placeholder)
    grid_candidates: tuple[tuple[int, int], ...] = ()  # (prefix rows, patch rows) the table allows
    basis: Basis | None = field(default=None, repr=False, compare=False)
    labels: tuple[ClassLabel, ...] = ()  # the classifier's labels from the config file, those within its head
    labels_from: str | None = None  # e.g. "config.json id2label"
    projects: bool = False  # the head is the projection into a joint image-text space (embed --stage projected)

    @property
    def num_params(self) -> int:
        return sum(t.numel() for t in self.state_dict.values())


def load_checkpoint(spec: str | Path, strict: bool = True, device: "str | torch.device" = "cpu", *,
                    family: str | None = None, image_size: int | tuple[int, int] | None = None,
                    heads: int | None = None, activation: Activation | None = None, eps: float | None = None,
                    pooling: Pooling | None = None, dim: int | None = None, depth: int | None = None,
                    patch_size: int | None = None, mlp_dim: int | None = None, online: bool = False,
                    shapes_only: bool = False) -> Loaded:
    """Read, recognise, map and check a checkpoint; VitcliError(spec, problem) on anything wrong.

    The keyword overrides are for what weights cannot show: `family` (skip detection), the native
    `image_size` (for a non-square grid without a config file), `heads`, `activation`, `eps` and
    `pooling`; `dim`, `depth`, `patch_size` and `mlp_dim` are shown by the weights and only checked
    (a different value is an error naming the option). A config.json / open_clip_config.json /
    preprocessor_config.json next to the weights (a Hugging Face snapshot or save_pretrained
    folder) is read for these too. `shapes_only` describes the checkpoint from what describes it (a
    safetensors header, a torch file's memory map, config files): `state_dict` holds ShapeTensors, no
    value is read (nor scanned for NaN), and torch is not imported for safetensors files and folders.
    """
    spec = str(spec)
    _native_size(image_size)  # a bad --native-size is refused before anything is read
    raw = read_checkpoint(resolve(spec, online).path if is_hub_spec(spec) else spec,
                          shapes_only)  # with the config files beside it
    return load_state(raw.tensors, raw.configs, spec, strict, device, family=family, image_size=image_size, heads=heads,
                      activation=activation, eps=eps, pooling=pooling, dim=dim, depth=depth, patch_size=patch_size,
                      mlp_dim=mlp_dim, path=raw.path, format=raw.format, read_notes=raw.notes,
                      nested_under=raw.nested_under)


def load_state(state_dict: "Mapping[str, Tensor]", configs: Mapping[str, dict], spec: str = "state dict",
               strict: bool = True, device: "str | torch.device" = "cpu", *, family: str | None = None,
               image_size: int | tuple[int, int] | None = None, heads: int | None = None,
               activation: Activation | None = None, eps: float | None = None, pooling: Pooling | None = None,
               dim: int | None = None, depth: int | None = None, patch_size: int | None = None,
               mlp_dim: int | None = None, path: str = "", format: str = "state dict",
               read_notes: Sequence[str] = (), nested_under: str = "") -> Loaded:
    """`load_checkpoint` on tensors already read: `configs` maps config file names (config.json, …) to their
    parsed JSON, `spec` names the source in messages. Pure: meta tensors work (with device="meta")."""
    raw_path = path or spec
    size = _native_size(image_size)
    files = parse_configs(configs, Path(raw_path).parent if path else "")
    refuse_unbuildable(files, spec)
    tensors, wrapper_notes = strip_wrappers(dict(state_dict))
    notes = [f"format {format}", *read_notes, *wrapper_notes]
    try:
        fam, root = detect(tensors, family, files.architecture)
    except VitcliError as e:
        if e.source == "--family":
            raise
        raise VitcliError(spec, e.problem) from None
    mapped = map_keys(tensors, fam, root, files)
    if root:
        notes.append(f"vision weights under '{root}'")
    overrides = Overrides(family, heads, size, eps, activation, pooling,
                          dim, depth, patch_size, mlp_dim)
    basis = Basis(fam, evidence(mapped, spec, format, nested_under, tensors, files), overrides, tuple(notes))
    from vitcli.checkpoints.parts import name_parts

    unbuilt = name_parts(mapped.leftover)
    inferred = _inferred_and_backed(basis, mapped, spec, unbuilt)
    ignored = list(mapped.ignored)
    _fill_periods(inferred, mapped)
    problems = _check(inferred.config, mapped)
    if mapped.leftover:
        if strict:
            problems.insert(0, _listing("left over (no place in a ViT of this family)", mapped.leftover)
                            + "; use --no-strict to ignore them")
        else:
            ignored += mapped.leftover
        if unbuilt and strict:  # named first: the part, then the keys
            problems.insert(0, "it has a part vitcli cannot build: " + "; ".join(unbuilt))
        elif unbuilt:
            notes.append("ignored a part vitcli cannot build (outputs will differ from the library's): "
                         + "; ".join(unbuilt))
    if problems:
        raise VitcliError(spec, f"{inferred.label} checkpoint does not fit: " + "; ".join(problems))
    state = {k: v.to(device) for k, v in mapped.tensors.items()}
    labels, labels_from, label_notes = head_labels(files.labels, files.labels_from, inferred.config.num_classes)
    return Loaded(spec, raw_path, format, inferred.label, inferred.config, state, inferred.preprocess,
                  sorted(ignored), [*notes, *inferred.notes, *label_notes], mapped.origin,
                  nonfinite_counts(state, mapped.origin), inferred.native_grid, inferred.grid_candidates, basis,
                  labels, labels_from, inferred.projects)


def head_labels(labels: tuple[ClassLabel, ...], source: str | None,
                num_classes: int) -> tuple[tuple[ClassLabel, ...], str | None, list[str]]:
    """The config's labels that name outputs of the head, and a note when some do not (or there is no head)."""
    kept = tuple(label for label in labels if label.index < num_classes)
    if len(kept) == len(labels):
        return kept, source if kept else None, []
    note = (f"{source}: {len(labels) - len(kept)} of {len(labels)} labels name no output of the "
            f"{num_classes}-class head; ignored")
    return kept, source if kept else None, [note]


def _native_size(image_size: object) -> tuple[int, int] | None:
    """`image_size` as [H, W] (N, (H, W) of positive whole numbers), else one VitcliError on --native-size."""
    if image_size is None:
        return None
    pair = (image_size, image_size) if isinstance(image_size, int) else \
        tuple(image_size) if isinstance(image_size, (tuple, list)) else ()
    if len(pair) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair):
        raise VitcliError("--native-size", f"{image_size!r:.60} is not N or (H, W) with positive whole numbers")
    return pair


def _inferred_and_backed(basis: Basis, mapped: Mapped, spec: str, unbuilt: list[str]) -> Inferred:
    """The inferred architecture, checked to be backed by the weights; when it is not, and keys that no
    rule took show a part vitcli does not build, the error names that part (not a parameter count)."""
    inferred = _infer(basis, spec)  # a family's own refusal of a part it knows (rotary.UNBUILT) comes from here
    try:
        _check_backed(inferred.config, mapped, spec)
    except VitcliError:
        if not unbuilt:
            raise
        raise VitcliError(spec, "it has a part vitcli cannot build: " + "; ".join(unbuilt)) from None
    return inferred


def _infer(basis: Basis, spec: str, image_grid: tuple[int, int] | None = None) -> Inferred:
    """infer_config and the core's validation, every failure one VitcliError on `spec` (or an option)."""
    try:
        inferred = infer_config(basis.family, basis.evidence, basis.overrides, image_grid)
        from vitcli.core.validate import validate

        validate(inferred.config)
        return inferred
    except VitcliError as e:
        if e.source.startswith("--"):
            raise
        problem = e.problem if e.source == spec else f"{e.source}: {e.problem}"
        raise VitcliError(spec, problem, e.needs) from None
    except ValueError as e:
        raise VitcliError(spec, f"inferred an impossible architecture: {e}") from None
    except (IndexError, TypeError, ZeroDivisionError) as e:  # e.g. a scalar where a (D, C, P, P) kernel belongs
        raise VitcliError(spec, "tensor shapes do not describe a ViT: the architecture cannot be read from them "
                          f"({type(e).__name__}: {e})") from None


def _check_backed(config: ViTConfig, mapped: Mapped, spec: str) -> None:
    """A checkpoint must hold the weights of the model it describes: its mapped tensors at least half
    the parameters the inferred config needs (a real file holds them all; a few missing keys are
    named by `_check`). Checked before the core model is laid out, even on the meta device."""
    from vitcli.core.presets import formula_params

    held = sum(t.numel() for t in mapped.tensors.values())
    needed = formula_params(config, bound=True)
    if needed > 2 * held + 1_000_000:
        raise VitcliError(spec, f"describes a model of {config.depth:,} blocks of width {config.dim} "
                          f"({needed:,} parameters) but holds only {held:,} values in the keys it maps: "
                          "its keys do not back that model")


ROPE_PERIODS = "position.rope.periods"


def _fill_periods(inferred: Inferred, mapped: Mapped) -> None:
    """RoPE periods the checkpoint does not carry (timm, transformers: non-persistent) from the variant's formula."""
    c = inferred.config
    if c.rope == "none" or ROPE_PERIODS in mapped.tensors:
        return
    from vitcli.core.rope import default_periods

    mapped.tensors[ROPE_PERIODS] = default_periods(c.rope, c.head_dim, c.rope_base)
    mapped.origin[ROPE_PERIODS] = f"(computed: {c.rope} periods, base {c.rope_base:g})"


def fit_native_grid(loaded: Loaded, grid: tuple[int, int]) -> Loaded | None:
    """`loaded` with native grid `grid` (an image's own (rows, cols)) when the table fits it exactly, else None.

    A known grid fits only itself (`loaded` is returned as is); an unresolved table fits a grid
    whose rows × cols equals its patch rows for one of `grid_candidates`."""
    if loaded.native_grid == "known":
        return loaded if loaded.config.grid == tuple(grid) else None
    if loaded.basis is None or not any(grid[0] * grid[1] == n for _, n in loaded.grid_candidates):
        return None
    inferred = _infer(loaded.basis, loaded.spec, (int(grid[0]), int(grid[1])))
    return replace(loaded, family=inferred.label, config=inferred.config, preprocess=inferred.preprocess,
                   notes=[*loaded.basis.read_notes, *inferred.notes], native_grid="known", grid_candidates=())


def require_native_grid(loaded: Loaded) -> Loaded:
    """`loaded` when its native grid is known, else the one-line error asking for the native size."""
    if loaded.native_grid == "known":
        return loaded
    rows = int(loaded.state_dict["pos_embed"].shape[1]) if "pos_embed" in loaded.state_dict else 0
    raise grid_error(loaded.spec, rows, (r for r, _ in loaded.grid_candidates))


def nonfinite_counts(state: "dict[str, Tensor]", origin: dict[str, str]) -> dict[str, dict[str, int]]:
    """NaN and ±Inf counts of each floating tensor that has any, by source key.

    Worth reporting on its own: torch's fused CPU attention turns NaN queries into zeros, so a
    corrupted checkpoint can give finite, wrong outputs.
    """
    found: dict[str, dict[str, int]] = {}
    if all(t.is_meta for t in state.values()):  # shapes only: nothing to scan (and no torch to import)
        return found
    import torch

    for key, t in state.items():
        if t.is_meta or not t.is_floating_point():  # a shape without values (ShapeTensor), or integers
            continue
        if t.element_size() == 1:  # float8: torch has no isfinite for it
            t = t.float()
        if not bool(torch.isfinite(t).all()):
            found[origin.get(key, key)] = {"nan": int(torch.isnan(t).sum()), "inf": int(torch.isinf(t).sum())}
    return found


def _check(config: ViTConfig, mapped: Mapped) -> list[str]:
    """Missing keys and shape clashes between the mapped tensors and the core model of `config`."""
    expected = _core_shapes(config, mapped)
    problems = list(mapped.problems)
    missing = [mapped.expected.get(k, k) for k in expected if k not in mapped.tensors]
    if missing:
        problems.append(_listing("missing", missing))
    extra = [mapped.origin[k] for k in mapped.tensors if k not in expected]
    if extra:
        problems.append(_listing("not usable with the rest (e.g. a second head without a distillation token)", extra))
    shapes = [f"{mapped.origin[k]} is {tuple(v.shape)}, needs {expected[k]}"
              for k, v in mapped.tensors.items() if k in expected and tuple(v.shape) != expected[k]]
    if shapes:
        problems.append(_listing("wrong shape", shapes))
    kinds = [f"{mapped.origin[k]} is {str(v.dtype).removeprefix('torch.')}"
             for k, v in mapped.tensors.items() if k in expected and not v.is_floating_point()]
    if kinds:
        problems.append(_listing("not floating point (weights are float16, bfloat16, float32 or float64)", kinds))
    return problems


def _core_shapes(config: ViTConfig, mapped: Mapped) -> dict[str, tuple[int, ...]]:
    """The core model's key → shape: for shapes alone (describing a file) and a plain ViT, its layout by
    formula (presets.plain_layout, no torch); else the model laid out on the meta device."""
    from vitcli.checkpoints.shapes import ShapeTensor
    from vitcli.core.presets import formula_params, plain_layout

    if all(isinstance(t, ShapeTensor) for t in mapped.tensors.values()) and formula_params(config) is not None:
        return plain_layout(config)
    import torch

    from vitcli.core.encoder import VisionTransformer

    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in VisionTransformer(config).state_dict().items()}


def _listing(what: str, items: list[str]) -> str:
    shown = ", ".join(items[:MAX_LISTED])
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return f"{len(items)} {what}: {shown}{more}"


def build_model_from_checkpoint(checkpoint: "Loaded | str | Path", *, strict: bool = True,
                                device: "str | torch.device" = "cpu", dtype: "torch.dtype | None" = None,
                                **overrides: Any) -> "VisionTransformer":
    """The core VisionTransformer of a checkpoint (a `Loaded` or a spec), weights in place, eval mode.

    Tensors already in `dtype` on `device` are used as they are (no copy of a large checkpoint). A
    table whose native grid is still unknown is the native-size error (see `fit_native_grid`).
    """
    import torch

    from vitcli.core.encoder import VisionTransformer

    dtype = torch.float32 if dtype is None else dtype
    loaded = checkpoint if isinstance(checkpoint, Loaded) else load_checkpoint(checkpoint, strict, device, **overrides)
    require_native_grid(loaded)
    with torch.device("meta"):
        model = VisionTransformer(loaded.config)
    state = {k: v.to(device=device, dtype=dtype) if v.is_floating_point() else v.to(device)
             for k, v in loaded.state_dict.items()}
    model.load_state_dict(state, strict=True, assign=True)  # shares float32 tensors with `loaded` (no copy)
    return model.to(device=device, dtype=dtype).eval()


__all__ = ["Basis", "Loaded", "build_model_from_checkpoint", "fit_native_grid", "load_checkpoint", "load_state",
           "nonfinite_counts",
           "require_native_grid"]

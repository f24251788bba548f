"""The config files found next to the weights, parsed once into one typed, frozen `CheckpointConfig`.

Three files are read (see `read.CONFIG_FILES`), each only for the vision fields vitcli uses:
  config.json               Hugging Face (has `model_type`; CLIP nests the tower under
                            `vision_config`): image_size, num_attention_heads, layer_norm_eps,
                            hidden_act; timm (`save_for_hf`): architecture, global_pool,
                            pretrained_cfg (input_size, crop_pct, mean, std, interpolation,
                            crop_mode), model_args.img_size, label_names / label_descriptions;
                            both: the classifier's labels (transformers: id2label)
  open_clip_config.json     model_cfg.vision_cfg (width, head_width, pool_type,
                            final_ln_after_pool, image_size, timm_model_name, timm_pool),
                            model_cfg.quick_gelu, preprocess_cfg
  preprocessor_config.json  a transformers image processor as written (its class, size, crop_size,
                            resample, mean, std, …); the class's rules fill the rest
                            (`families.transformers.PROCESSOR_CLASSES`)
A field of the wrong type is one VitcliError naming the file and the field; absent fields are None.
"""

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitcli.errors import VitcliError

HW = tuple[int, int]
Floats = tuple[float, ...]


@dataclass(frozen=True)
class TimmPretrained:
    """timm's pretrained_cfg: the eval transform its weights were made for."""

    input_size: HW | None = None
    crop_pct: float | None = None
    mean: Floats | None = None
    std: Floats | None = None
    interpolation: str | None = None
    crop_mode: str | None = None


@dataclass(frozen=True)
class OpenClipVision:
    """open_clip's vision_cfg (and model_cfg.quick_gelu) as far as the tower's shape and rules go."""

    width: int | None = None
    head_width: int = 64
    pool_type: str | None = None
    final_ln_after_pool: bool = False
    image_size: HW | None = None
    quick_gelu: bool = False
    timm_model_name: str | None = None  # a timm tower (ViT-SO400M-14-SigLIP-384: vit_so400m_patch14_siglip_384)
    timm_pool: str | None = None  # that tower's global_pool


@dataclass(frozen=True)
class OpenClipPreprocess:
    """open_clip's preprocess_cfg."""

    mean: Floats | None = None
    std: Floats | None = None
    interpolation: str | None = None
    resize_mode: str | None = None


@dataclass(frozen=True)
class HFProcessor:
    """A transformers image processor's settings in preprocessor_config.json's terms; None: not given
    (transformers then takes the class attribute, as a null in the file does)."""

    type: str = ""  # the class: image_processor_type without 'Fast' / 'Pil', or feature_extractor_type renamed
    mean: Floats | None = None
    std: Floats | None = None
    resample: int | None = None  # PIL filter number
    size: int | HW | None = None  # a legacy integer (its meaning is the class's) or {"height", "width"}
    shortest_edge: int | None = None  # size {"shortest_edge": N}
    crop_size: HW | None = None
    do_center_crop: bool | None = None
    do_resize: bool | None = None
    do_rescale: bool | None = None
    rescale_factor: float | None = None
    do_normalize: bool | None = None
    default_to_square: bool | None = None  # a legacy integer size is H = W (True) or the shortest edge
    patch_size: int | None = None  # Siglip2ImageProcessor (NaFlex)
    max_num_patches: int | None = None  # Siglip2ImageProcessor (NaFlex)
    file: str = ""  # where it was read, for messages


@dataclass(frozen=True)
class ClassLabel:
    """One classifier output's label: its name (transformers' id2label, timm's label_names) and timm's
    description of that name (label_descriptions: an ImageNet synset's words), when given."""

    index: int
    name: str
    description: str | None = None

    @property
    def text(self) -> str:
        """What the tables print: the description when there is one (timm's names are often synsets)."""
        return self.description or self.name


@dataclass(frozen=True)
class CheckpointConfig:
    """Everything vitcli takes from config files, typed; `files` names the ones found."""

    files: tuple[str, ...] = ()
    image_size: HW | None = None  # native [H, W] from the first file that says it
    heads: int | None = None  # Hugging Face num_attention_heads
    layer_norm_eps: float | None = None  # Hugging Face
    hidden_act: str | None = None  # Hugging Face
    architecture: str = ""  # timm's model name, searched for 'quickgelu'
    global_pool: str | None = None  # timm
    timm: TimmPretrained | None = None
    open_clip: OpenClipVision | None = None
    open_clip_preprocess: OpenClipPreprocess | None = None
    processor: HFProcessor | None = None
    labels: tuple[ClassLabel, ...] = ()  # the classifier's labels, by index (config.json id2label / label_names)
    labels_from: str | None = None  # where they were read, e.g. "config.json id2label"


CROP_PCT = (0.1, 2.0)  # timm's crop_pct: 0.875 to 1.15 in its registry; outside this it resizes absurdly
MAX_LN_EPS = 1.0  # a LayerNorm epsilon: 1e-12 to 1e-5 in practice; a large one flattens every token to its bias


class _Fields:
    """Typed reads from one JSON object, each failure one VitcliError naming the file and the field."""

    def __init__(self, data: Mapping[str, Any], where: str, path: str = "") -> None:
        self.data, self.where, self.path = data, where, path

    def _bad(self, key: str, value: Any, what: str) -> VitcliError:
        return VitcliError(self.where, f"{self.path}{key} is {value!r:.60}, expected {what}")

    def sub(self, key: str) -> "_Fields | None":
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self._bad(key, value, "an object")
        return _Fields(value, self.where, f"{self.path}{key}.")

    def integer(self, key: str) -> int | None:
        value = self.data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise self._bad(key, value, "a positive integer")
        return value

    def number(self, key: str, low: float = 0.0, high: float = math.inf) -> float | None:
        """A finite number in (low, high]: NaN and Infinity, which Python's JSON reads, are refused."""
        value = self.data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value) or not low < value <= high):
            raise self._bad(key, value, "a positive number" if (low, high) == (0.0, math.inf)
                            else f"a number above {low:g}, at most {high:g}")
        return None if value is None else float(value)

    def text(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self._bad(key, value, "a string")
        return value

    def flag(self, key: str) -> bool | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, bool):
            raise self._bad(key, value, "true or false")
        return value

    def channels(self, key: str, positive: bool = False) -> Floats | None:
        """Per-channel values: 1 or 3 finite numbers (`positive`: each above 0, as a std divides)."""
        value = self.data.get(key)
        if value is None:
            return None
        ok = isinstance(value, (list, tuple)) and len(value) in (1, 3) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and (v > 0 or not positive)
            for v in value)
        if not ok:
            raise self._bad(key, value, "a list of 3 positive numbers" if positive else "a list of 3 finite numbers")
        return tuple(float(v) for v in value)

    def size(self, key: str) -> HW | None:
        """A size: N, [H, W], [C, H, W] or {"height": H, "width": W}."""
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, dict) and set(value) >= {"height", "width"}:
            value = [value["height"], value["width"]]
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value, value
        if isinstance(value, (list, tuple)) and len(value) in (2, 3) and all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
            return int(value[-2]), int(value[-1])
        raise self._bad(key, value, "a size (N, [H, W] or {height, width})")


def parse_configs(raw: Mapping[str, dict], folder: str | Path = "") -> CheckpointConfig:
    """The one typed view of the config files `raw` (file name → parsed JSON) found in `folder`."""
    def where(name: str) -> str:
        return str(Path(folder) / name) if str(folder) else name

    config = raw.get("config.json") or {}
    hf = _hf_vision(_Fields(config, where("config.json")))
    timm_wrapper = config.get("model_type") == "timm_wrapper"  # transformers' TimmWrapperModel: timm's fields
    timm = _timm(_Fields(config, where("config.json"))) if "model_type" not in config or timm_wrapper else {}
    oc = _open_clip(_Fields(raw.get("open_clip_config.json") or {}, where("open_clip_config.json")))
    processor = _processor(_Fields(raw["preprocessor_config.json"], where("preprocessor_config.json"))) \
        if raw.get("preprocessor_config.json") else None
    sizes = (hf.get("image_size"), timm.get("image_size"), oc.get("image_size"))
    return CheckpointConfig(
        files=tuple(name for name in raw if raw[name]), image_size=next((s for s in sizes if s), None),
        heads=hf.get("heads") or timm.get("heads"), layer_norm_eps=hf.get("layer_norm_eps"),
        hidden_act=hf.get("hidden_act"),
        architecture=timm.get("architecture") or "", global_pool=timm.get("global_pool"), timm=timm.get("pretrained"),
        open_clip=oc.get("vision"), open_clip_preprocess=oc.get("preprocess"), processor=processor,
        **_labels(_Fields(config, where("config.json"))))


def _labels(f: _Fields) -> dict[str, Any]:
    """The classifier's labels: transformers' `id2label` ({"0": name}; its LABEL_0… defaults carry no
    name), or timm's `label_names` (a list, or {index: name}; also under pretrained_cfg, or the legacy
    `labels`) with `label_descriptions` ({name: words})."""
    if "id2label" in f.data:
        found = _indexed(f, "id2label")
        if all(name == f"LABEL_{i}" for i, name in found.items()):
            return {}
        return {"labels": tuple(ClassLabel(i, found[i]) for i in sorted(found)), "labels_from": "config.json id2label"}
    pretrained = f.sub("pretrained_cfg")
    for source, key in ((f, "label_names"), (pretrained, "label_names"), (f, "labels")):
        if source is not None and source.data.get(key) is not None:
            names = _indexed(source, key)
            words = _descriptions(f, pretrained)
            return {"labels": tuple(ClassLabel(i, names[i], words.get(names[i])) for i in sorted(names)),
                    "labels_from": f"config.json {source.path}{key}"}
    return {}


def _indexed(f: _Fields, key: str) -> dict[int, str]:
    """A list of names, or an {index: name} object (indices as JSON strings or numbers), as {index: name}."""
    value = f.data[key]
    items = (list(enumerate(value)) if isinstance(value, list) else list(value.items()) if isinstance(value, dict)
             else None)
    try:
        found = {int(i): name for i, name in items} if items is not None else None
    except (TypeError, ValueError):
        found = None
    if found is None or not all(isinstance(n, str) for n in found.values()) or any(i < 0 for i in found):
        raise f._bad(key, value, "a list of names or an object {index: name}")
    return found


def _descriptions(f: _Fields, pretrained: "_Fields | None") -> dict[str, str]:
    """timm's label_descriptions {name: words}, top level or under pretrained_cfg; {} when absent."""
    for source in (f, pretrained):
        value = source.data.get("label_descriptions") if source is not None else None
        if source is not None and value is not None:
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise source._bad("label_descriptions", value, "an object {name: description}")
            return value
    return {}


def _hf_vision(f: _Fields) -> dict[str, Any]:
    """Hugging Face config.json (it has `model_type`): the vision tower's fields."""
    if "model_type" not in f.data:
        return {}
    f = f.sub("vision_config") or f
    return {"image_size": f.size("image_size"), "heads": f.integer("num_attention_heads"),
            "layer_norm_eps": f.number("layer_norm_eps", 0.0, MAX_LN_EPS), "hidden_act": f.text("hidden_act")}


def _timm(f: _Fields) -> dict[str, Any]:
    """timm's config.json (save_for_hf): name, pooling, pretrained_cfg, model_args.img_size."""
    p = f.sub("pretrained_cfg")
    pretrained = TimmPretrained(p.size("input_size"), p.number("crop_pct", *CROP_PCT), p.channels("mean"),
                                p.channels("std", positive=True),
                                p.text("interpolation"), p.text("crop_mode")) if p else None
    args = f.sub("model_args")
    size = (pretrained.input_size if pretrained else None) or (args.size("img_size") if args else None)
    return {"architecture": f.text("architecture"), "global_pool": f.text("global_pool"), "pretrained": pretrained,
            "image_size": size, "heads": args.integer("num_heads") if args else None}


def _open_clip(f: _Fields) -> dict[str, Any]:
    """open_clip_config.json: the vision tower and the preprocessing."""
    model = f.sub("model_cfg")
    v = (model.sub("vision_cfg") if model else None) or _Fields({}, f.where, "model_cfg.vision_cfg.")
    vision = OpenClipVision(v.integer("width"), v.integer("head_width") or 64, v.text("pool_type"),
                            bool(v.flag("final_ln_after_pool")), v.size("image_size"),
                            bool(model.flag("quick_gelu")), v.text("timm_model_name"),
                            v.text("timm_pool")) if model else None
    p = f.sub("preprocess_cfg")
    preprocess = OpenClipPreprocess(p.channels("mean"), p.channels("std", positive=True), p.text("interpolation"),
                                    p.text("resize_mode")) if p else None
    return {"vision": vision, "preprocess": preprocess, "image_size": vision.image_size if vision else None}


def processor_class(data: Mapping[str, Any]) -> str:
    """The class transformers' AutoImageProcessor reads: image_processor_type without a legacy 'Fast'
    (or a 'Pil' backend suffix), else feature_extractor_type with FeatureExtractor → ImageProcessor."""
    name = data.get("image_processor_type")
    if isinstance(name, str) and name:
        return name.removesuffix("Fast").removesuffix("Pil")
    legacy = data.get("feature_extractor_type")
    return legacy.replace("FeatureExtractor", "ImageProcessor") if isinstance(legacy, str) else ""


def _processor(f: _Fields) -> HFProcessor:
    """preprocessor_config.json: `size` is N (legacy), {"shortest_edge": N} or {"height", "width"}."""
    size = f.data.get("size")
    if isinstance(size, dict) and set(size) - {"height", "width", "shortest_edge"}:
        raise VitcliError(f.where, f"size {size!r:.60} is not one vitcli reads: N, {{\"shortest_edge\": N}} or "
                          "{\"height\": H, \"width\": W}")
    sized = f.sub("size") if isinstance(size, dict) else None  # a legacy integer size has no fields
    shortest = sized.integer("shortest_edge") if sized is not None and "shortest_edge" in sized.data else None
    legacy = isinstance(size, int) and not isinstance(size, bool)
    resample = f.data.get("resample")
    if resample is not None and (isinstance(resample, bool) or not isinstance(resample, int) or not 0 <= resample <= 5):
        raise VitcliError(f.where, f"resample is {resample!r:.60}, expected a PIL filter number (0-5)")
    return HFProcessor(processor_class(f.data), f.channels("image_mean"), f.channels("image_std", positive=True),
                       resample,
                       f.integer("size") if legacy else None if shortest else f.size("size"), shortest,
                       f.size("crop_size"), f.flag("do_center_crop"), f.flag("do_resize"), f.flag("do_rescale"),
                       f.number("rescale_factor"), f.flag("do_normalize"), f.flag("default_to_square"),
                       f.integer("patch_size"), f.integer("max_num_patches"), f.where)


__all__ = ["CheckpointConfig", "ClassLabel", "HFProcessor", "OpenClipPreprocess", "OpenClipVision", "TimmPretrained",
           "parse_configs", "processor_class"]

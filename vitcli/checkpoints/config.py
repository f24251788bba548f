"""The config files found next to the weights, parsed once into one typed, frozen `CheckpointConfig`.

Three files are read (see `read.CONFIG_FILES`), each only for the vision fields vitcli uses:
  config.json               Hugging Face (has `model_type`; CLIP nests the tower under
                            `vision_config`): image_size, num_attention_heads, layer_norm_eps,
                            hidden_act; timm (`save_for_hf`): architecture, global_pool,
                            pretrained_cfg (input_size, crop_pct, mean, std, interpolation,
                            crop_mode), model_args.img_size
  open_clip_config.json     model_cfg.vision_cfg (width, head_width, pool_type,
                            final_ln_after_pool, image_size, timm_model_name, timm_pool),
                            model_cfg.quick_gelu, preprocess_cfg
  preprocessor_config.json  a transformers image processor: size, crop_size, resample, mean, std
A field of the wrong type is one VitcliError naming the file and the field; absent fields are None.
"""

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
    """A transformers preprocessor_config.json: resize (shortest edge or exact H×W), crop, mean/std."""

    type: str = "image processor"
    mean: Floats | None = None
    std: Floats | None = None
    resample: int = 2  # PIL filter number (transformers' default: bilinear)
    shortest_edge: int | None = None
    size: HW | None = None  # exact resize target, when not shortest_edge
    crop_size: HW | None = None
    do_center_crop: bool | None = None


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

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
            raise self._bad(key, value, "a positive number")
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

    def channels(self, key: str) -> Floats | None:
        """Per-channel values: 1 or 3 numbers."""
        value = self.data.get(key)
        if value is None:
            return None
        ok = isinstance(value, (list, tuple)) and len(value) in (1, 3) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not ok:
            raise self._bad(key, value, "a list of 3 numbers")
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
        heads=hf.get("heads") or timm.get("heads"), layer_norm_eps=hf.get("layer_norm_eps"), hidden_act=hf.get("hidden_act"),
        architecture=timm.get("architecture") or "", global_pool=timm.get("global_pool"), timm=timm.get("pretrained"),
        open_clip=oc.get("vision"), open_clip_preprocess=oc.get("preprocess"), processor=processor)


def _hf_vision(f: _Fields) -> dict[str, Any]:
    """Hugging Face config.json (it has `model_type`): the vision tower's fields."""
    if "model_type" not in f.data:
        return {}
    f = f.sub("vision_config") or f
    return {"image_size": f.size("image_size"), "heads": f.integer("num_attention_heads"),
            "layer_norm_eps": f.number("layer_norm_eps"), "hidden_act": f.text("hidden_act")}


def _timm(f: _Fields) -> dict[str, Any]:
    """timm's config.json (save_for_hf): name, pooling, pretrained_cfg, model_args.img_size."""
    p = f.sub("pretrained_cfg")
    pretrained = TimmPretrained(p.size("input_size"), p.number("crop_pct"), p.channels("mean"), p.channels("std"),
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
    preprocess = OpenClipPreprocess(p.channels("mean"), p.channels("std"), p.text("interpolation"),
                                    p.text("resize_mode")) if p else None
    return {"vision": vision, "preprocess": preprocess, "image_size": vision.image_size if vision else None}


def _processor(f: _Fields) -> HFProcessor:
    """preprocessor_config.json: `size` is {"shortest_edge": N}, {"height", "width"} or N."""
    size = f.data.get("size")
    shortest = f.sub("size").integer("shortest_edge") if isinstance(size, dict) and "shortest_edge" in size else None
    resample = f.data.get("resample", 2)
    if isinstance(resample, bool) or not isinstance(resample, int):
        raise VitcliError(f.where, f"resample is {resample!r:.60}, expected a PIL filter number")
    return HFProcessor(f.text("image_processor_type") or "image processor", f.channels("image_mean"),
                       f.channels("image_std"), resample, shortest, None if shortest else f.size("size"),
                       f.size("crop_size"), f.flag("do_center_crop"))


__all__ = ["CheckpointConfig", "HFProcessor", "OpenClipPreprocess", "OpenClipVision", "TimmPretrained",
           "parse_configs"]

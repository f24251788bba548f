"""transformers image processors as the hub's repositories configure them, against vitcli's reading.

Each `preprocessor_config.json` below is the text its hub repository holds (legacy files included).
The reference is what a user gets: `AutoImageProcessor.from_pretrained(folder)(images=photo)`, whose
default in transformers 5 is the torchvision backend (resizing uint8 tensors with torch's kernels;
DINOv3 rescales to floats first). vitcli's model input is made the way every command makes it
(`fit_one` with the checkpoint's `Preprocess`, then `normalize_mean_std`), from the same upright photo.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as hf
from transformers import AutoImageProcessor

from vitcli.api.images import ImageSpec, fit_one
from vitcli.checkpoints.config import parse_configs, processor_class
from vitcli.checkpoints.families.transformers import PROCESSOR_CLASSES, class_preprocess
from vitcli.checkpoints.preprocess import Preprocess
from vitcli.core.config import ViTConfig
from vitcli.errors import VitcliError
from vitcli.io.images import load_image, normalize_mean_std

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
# landscape 300×451, portrait (EXIF-turned) 451×300, landscape 400×600: none square
PHOTOS = ["chelsea.jpg", "chelsea_exif_rotated.jpg", "coffee.jpg"]
TOL = 1e-5

# repository → (preprocessor_config.json as the hub holds it, the model's image size, patch size)
HUB = {
    "openai/clip-vit-large-patch14": (
        '{"crop_size": 224, "do_center_crop": true, "do_normalize": true, "do_resize": true, '
        '"feature_extractor_type": "CLIPFeatureExtractor", "image_mean": [0.48145466, 0.4578275, 0.40821073], '
        '"image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "size": 224}', 224, 14),
    "facebook/dinov3-vitb16-pretrain-lvd1689m": (
        '{"crop_size": null, "data_format": "channels_first", "default_to_square": true, "do_center_crop": null, '
        '"do_convert_rgb": null, "do_normalize": true, "do_rescale": true, "do_resize": true, '
        '"image_mean": [0.485, 0.456, 0.406], "image_processor_type": "DINOv3ViTImageProcessorFast", '
        '"image_std": [0.229, 0.224, 0.225], "resample": 2, "rescale_factor": 0.00392156862745098, '
        '"size": {"height": 224, "width": 224}}', 224, 16),
    "google/siglip2-base-patch16-naflex": (
        '{"do_convert_rgb": null, "do_normalize": true, "do_rescale": true, "do_resize": true, '
        '"image_mean": [0.5, 0.5, 0.5], "image_processor_type": "Siglip2ImageProcessorFast", '
        '"image_std": [0.5, 0.5, 0.5], "max_num_patches": 256, "patch_size": 16, '
        '"processor_class": "Siglip2Processor", '
        '"resample": 2, "rescale_factor": 0.00392156862745098}', 256, 16),
    "google/vit-base-patch16-224": (
        '{"do_normalize": true, "do_resize": true, "image_mean": [0.5, 0.5, 0.5], '
        '"image_processor_type": "ViTImageProcessor", "image_std": [0.5, 0.5, 0.5], "resample": 2, '
        '"size": {"height": 224, "width": 224}}', 224, 16),
    "facebook/dinov2-base": (
        '{"crop_size": {"height": 224, "width": 224}, "do_center_crop": true, "do_convert_rgb": true, '
        '"do_normalize": true, "do_rescale": true, "do_resize": true, "image_mean": [0.485, 0.456, 0.406], '
        '"image_processor_type": "BitImageProcessor", "image_std": [0.229, 0.224, 0.225], "resample": 3, '
        '"rescale_factor": 0.00392156862745098, "size": {"shortest_edge": 256}}', 224, 14),
    "google/siglip-so400m-patch14-384": (
        '{"do_normalize": true, "do_rescale": true, "do_resize": true, "image_mean": [0.5, 0.5, 0.5], '
        '"image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5], '
        '"processor_class": "SiglipProcessor", "resample": 3, "rescale_factor": 0.00392156862745098, '
        '"size": {"height": 384, "width": 384}}', 384, 14),
    "microsoft/beit-base-patch16-224": (
        '{"crop_size": 224, "do_center_crop": false, "do_normalize": true, "do_resize": true, '
        '"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5], "resample": 2, "size": 224, '
        '"feature_extractor_type": "BeitFeatureExtractor"}', 224, 16),
    "apple/aimv2-large-patch14-224": (
        '{"crop_size": {"height": 224, "width": 224}, "do_center_crop": true, "do_convert_rgb": true, '
        '"do_normalize": true, "do_rescale": true, "do_resize": true, '
        '"image_mean": [0.48145466, 0.4578275, 0.40821073], "image_processor_type": "CLIPImageProcessor", '
        '"image_std": [0.26862954, 0.26130258, 0.27577711], "resample": 3, "rescale_factor": 0.00392156862745098, '
        '"size": {"shortest_edge": 224}}', 224, 14),
}


def _folder(tmp_path: Path, repo: str) -> Path:
    folder = tmp_path / repo.replace("/", "--")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "preprocessor_config.json").write_text(HUB[repo][0])
    return folder


def _ours(repo: str) -> Preprocess:
    """vitcli's reading of the repository's file (the function the hf-* families' file rule calls)."""
    text, size, patch = HUB[repo]
    files = parse_configs({"preprocessor_config.json": json.loads(text)})
    return class_preprocess(files.processor, ViTConfig(image_size=(size, size), patch_size=patch))


def _fitted(preprocess: Preprocess, photo: str, patch: int):
    """The photo fitted as every command fits it, and the model input (3, H, W) normalised from it."""
    fitted = fit_one(str(SAMPLES / photo), ImageSpec(), patch, preprocess)
    return fitted, normalize_mean_std(fitted.input, preprocess.mean, preprocess.std)


def _upright(photo: str):
    """The photo as vitcli sees it (EXIF applied, RGB), given to transformers as a PIL image."""
    return load_image(str(SAMPLES / photo)).image


def _patch_rows(chw: np.ndarray, p: int) -> np.ndarray:
    """(3, H, W) → (N, P·P·3), rows of (row, column, channel): Siglip2ImageProcessor's order, by hand."""
    c, h, w = chw.shape
    return chw.reshape(c, h // p, p, w // p, p).transpose(1, 3, 2, 4, 0).reshape((h // p) * (w // p), -1)


def _compare(repo: str, processor, preprocess: Preprocess) -> float:
    """Max |vitcli − transformers| over the photos, each ≤ TOL; NaFlex: the grid is spatial_shapes."""
    patch = HUB[repo][2]
    worst = 0.0
    for photo in PHOTOS:
        out = processor(images=_upright(photo), return_tensors="pt")
        fitted, ours = _fitted(preprocess, photo, patch)
        ref = out["pixel_values"][0].numpy()
        if "spatial_shapes" in out:
            gh, gw = out["spatial_shapes"][0].tolist()
            assert (ours.shape[1] // patch, ours.shape[2] // patch) == (gh, gw), (repo, photo, ours.shape, (gh, gw))
            assert int(out["pixel_attention_mask"][0].sum()) == gh * gw
            ours, ref = _patch_rows(ours, patch), ref[:gh * gw]
        assert ours.shape == ref.shape, (repo, photo, ours.shape, ref.shape)
        d = float(np.abs(ours - ref).max())
        assert d <= TOL, (repo, photo, d)
        worst = max(worst, d)
    return worst


@pytest.mark.parametrize("repo", list(HUB))
def test_default_backend_equals_auto_image_processor(tmp_path, repo) -> None:
    """The default path: torchvision in transformers 5, torch's resize in vitcli (`backend` says it)."""
    processor = AutoImageProcessor.from_pretrained(str(_folder(tmp_path, repo)))
    preprocess = _ours(repo)
    assert processor.backend == "torchvision" and preprocess.backend == "torch"
    assert type(processor).__name__ in preprocess.source and "torchvision" in preprocess.source
    worst = _compare(repo, processor, preprocess)
    print(f"\n{repo}: {type(processor).__name__} ({processor.backend}) max |diff| {worst:.2e}; {preprocess.describe()}")


def _class_of(repo: str):
    """The table row of the class the repository's file names."""
    return PROCESSOR_CLASSES[processor_class(json.loads(HUB[repo][0]))]


@pytest.mark.parametrize("repo", [r for r in HUB if _class_of(r).pil])
def test_pil_backend_equals_auto_image_processor_pil(tmp_path, repo) -> None:
    """The PIL path (backend="pil", the old use_fast=False): Pillow's resize, `backend="pil"` in vitcli."""
    processor = AutoImageProcessor.from_pretrained(str(_folder(tmp_path, repo)), backend="pil")
    assert processor.backend == "pil"
    worst = _compare(repo, processor, _ours(repo).with_changes(backend="pil"))
    print(f"\n{repo}: {type(processor).__name__} max |diff| {worst:.2e}")


@pytest.mark.parametrize("repo", [r for r in HUB if not _class_of(r).rescale_first])
def test_resized_8bit_pixels_are_exact(tmp_path, repo) -> None:
    """Where transformers resizes the uint8 image, vitcli's 8-bit pixels are its pixels exactly
    (the processor asked for no rescale / normalise returns them)."""
    processor = AutoImageProcessor.from_pretrained(str(_folder(tmp_path, repo)), do_rescale=False, do_normalize=False)
    preprocess, patch = _ours(repo), HUB[repo][2]
    for photo in PHOTOS:
        out = processor(images=_upright(photo), return_tensors="pt")
        fitted, _ = _fitted(preprocess, photo, patch)
        ours = fitted.pixels.transpose(2, 0, 1).astype(np.float32)  # (3, H, W)
        ref = out["pixel_values"][0].numpy().astype(np.float32)
        if "spatial_shapes" in out:
            ours, ref = _patch_rows(ours, patch), ref[:len(_patch_rows(ours, patch))]
        assert fitted.values is None and np.array_equal(ours, ref), (repo, photo)


def test_float_resize_of_dinov3_keeps_the_values_unrounded() -> None:
    """DINOv3ViTImageProcessor rescales before resizing: vitcli keeps the float values as the model
    input (8-bit rounding alone would differ by up to half a grey level, 0.5/255/0.224)."""
    preprocess = _ours("facebook/dinov3-vitb16-pretrain-lvd1689m")
    assert preprocess.rescale_first and preprocess.interpolation == "bilinear"
    fitted, _ = _fitted(preprocess, "coffee.jpg", 16)
    assert fitted.values.dtype == np.float32 and fitted.values.shape == (224, 224, 3)
    rounded = np.abs(fitted.pixels / 255.0 - fitted.values)
    assert 0 < rounded.max() <= 0.5 / 255 + 1e-6


def test_legacy_integer_size_is_the_class_rule() -> None:
    """An integer `size`: the shortest edge for CLIPImageProcessor (default_to_square False), H = W for
    ViT / BEiT (True) and for any class when the file sets default_to_square true."""
    def read(**fields) -> Preprocess:
        return class_preprocess(parse_configs({"preprocessor_config.json": fields}).processor,
                                ViTConfig(image_size=(224, 224)))

    clip = read(feature_extractor_type="CLIPFeatureExtractor", size=224, crop_size=224)
    assert (clip.resize_mode, clip.resize_to, clip.crop, clip.size) == ("shortest", (224, 224), True, (224, 224))
    assert (read(image_processor_type="ViTImageProcessor", size=224).resize_mode,
            read(feature_extractor_type="BeitFeatureExtractor", size=224).resize_mode) == ("exact", "exact")
    assert read(image_processor_type="CLIPImageProcessor", size=224, default_to_square=True).resize_mode == "exact"
    assert read(image_processor_type="ViTImageProcessorPil", size=[200, 300]).resize_to == (200, 300)
    unknown = read(image_processor_type="SomeNewImageProcessor", size=224, image_mean=[0.5] * 3, image_std=[0.5] * 3)
    assert unknown.resize_mode == "exact" and "not in vitcli's table" in unknown.source


def _read(fields: dict) -> Preprocess:
    files = parse_configs({"preprocessor_config.json": fields}, "repo")
    return class_preprocess(files.processor, ViTConfig(image_size=(224, 224)))


def test_nulls_are_the_class_values() -> None:
    """A null in the file is the class attribute, as transformers' _set_attributes reads it."""
    p = _read({"image_processor_type": "CLIPImageProcessor", "crop_size": None, "image_mean": None, "resample": None,
               "size": {"shortest_edge": 300}})
    assert (p.size, p.resize_to, p.interpolation, p.normalize) == ((224, 224), (300, 300), "bicubic", "clip")


@pytest.mark.parametrize("fields, problem", [
    ({"image_processor_type": "ViTImageProcessor", "resample": 7}, "PIL filter number"),
    ({"image_processor_type": "ViTImageProcessor", "resample": 4}, "resample 4"),
    ({"image_processor_type": "ViTImageProcessor", "size": {"longest_edge": 5}}, "is not one vitcli reads"),
    ({"image_processor_type": "ViTImageProcessor", "do_rescale": False}, "do_rescale false"),
    ({"image_processor_type": "CLIPImageProcessor", "crop_size": "big"}, "crop_size"),
])
def test_settings_vitcli_does_not_reproduce_are_one_line(fields, problem) -> None:
    with pytest.raises(VitcliError) as e:
        _read(fields)
    assert problem in str(e.value) and "repo" in str(e.value) and "\n" not in str(e.value)


def _attr_size(value) -> tuple:
    """A transformers class attribute size in the table's terms: (size, shortest_edge)."""
    if value is None:
        return None, None
    if "shortest_edge" in value:
        return None, value["shortest_edge"]
    return (value["height"], value["width"]), None


@pytest.mark.parametrize("name", list(PROCESSOR_CLASSES))
def test_class_table_is_the_installed_transformers(name) -> None:
    """Each row of vitcli's table equals the class attributes of transformers' class of that name."""
    cls, row = getattr(hf, name), PROCESSOR_CLASSES[name]
    d = row.defaults
    crop = getattr(cls, "crop_size", None)
    assert (d.resample, d.mean, d.std) == (int(cls.resample), tuple(cls.image_mean), tuple(cls.image_std))
    assert (d.size, d.shortest_edge) == _attr_size(getattr(cls, "size", None))
    assert d.crop_size == (None if crop is None else (crop["height"], crop["width"]))
    assert d.do_center_crop == getattr(cls, "do_center_crop", None)
    assert d.default_to_square == cls.default_to_square
    naflex = (getattr(cls, "patch_size", None), getattr(cls, "max_num_patches", None))
    assert (d.patch_size, d.max_num_patches) == naflex
    assert row.pil == hasattr(hf, name + "Pil")
    assert row.naflex == ("max_num_patches" in getattr(cls.valid_kwargs, "__annotations__", {}))


@torch.no_grad()
def test_siglip2_checkpoint_reads_its_naflex_processor_without_options(tmp_path) -> None:
    """A Siglip2 folder as the hub holds it: vitcli fits each photo within max_num_patches with no
    option given; its grid is the processor's spatial_shapes, its patches the processor's rows, and
    its tokens Siglip2VisionModel's on the processor's output."""
    from vitcli.api import load_model

    from tests.checkpoints.parity import scramble

    conf = hf.Siglip2VisionConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                  patch_size=16, num_patches=256)
    conf._attn_implementation = "eager"
    peer = scramble(hf.Siglip2VisionModel(conf), seed=40).eval()
    repo = "google/siglip2-base-patch16-naflex"
    folder = _folder(tmp_path, repo)
    peer.save_pretrained(folder)
    processor = AutoImageProcessor.from_pretrained(str(folder))
    model = load_model(str(folder))
    assert model.preprocess.resize_mode == "patches" and model.preprocess.max_patches == 256
    for photo in PHOTOS[:2]:
        out = processor(images=_upright(photo), return_tensors="pt")
        gh, gw = out["spatial_shapes"][0].tolist()
        res = model.embed(str(SAMPLES / photo), stage="output")
        assert res.document["grid"] == [gh, gw]
        chw = res.arrays["patches"].reshape(gh * gw, 3, 16, 16)  # vitcli's order inside a patch: (c, y, x)
        hwc = chw.transpose(0, 2, 3, 1).reshape(gh * gw, -1)
        assert np.abs(hwc - out["pixel_values"][0, :gh * gw].numpy()).max() <= TOL
        ref = peer(**out).last_hidden_state[0, :gh * gw]
        assert np.abs(res.arrays["output"] - ref.numpy()).max() <= 1e-4, photo


@torch.no_grad()
def test_clip_legacy_file_gives_transformers_tokens(tmp_path) -> None:
    """openai/clip-vit-large-patch14's legacy file next to a CLIPVisionModel: the shortest edge, not a
    stretch, so the tokens are transformers' on the processor's output."""
    from vitcli.api import load_model

    from tests.checkpoints.parity import scramble

    conf = hf.CLIPVisionConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                               image_size=224, patch_size=14)
    conf._attn_implementation = "eager"
    peer = scramble(hf.CLIPVisionModel(conf), seed=41).eval()
    repo = "openai/clip-vit-large-patch14"
    folder = _folder(tmp_path, repo)
    peer.save_pretrained(folder)
    processor = AutoImageProcessor.from_pretrained(str(folder))
    model = load_model(str(folder))
    assert model.preprocess.resize_mode == "shortest"
    out = processor(images=_upright("coffee.jpg"), return_tensors="pt")
    res = model.embed(str(SAMPLES / "coffee.jpg"), stage="output")
    ref = peer(pixel_values=out["pixel_values"]).last_hidden_state[0]
    assert np.abs(res.arrays["output"] - ref.numpy()).max() <= 1e-4


@torch.no_grad()
def test_dinov3_checkpoint_gives_transformers_tokens_through_the_float_resize(tmp_path) -> None:
    """facebook/dinov3-vitb16's file next to a DINOv3ViTModel: the model input is the unrounded float
    resize, so the tokens are transformers' on its processor's output."""
    from vitcli.api import load_model

    from tests.checkpoints.parity import scramble

    conf = hf.DINOv3ViTConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
                              image_size=224, patch_size=16, num_register_tokens=4)
    conf._attn_implementation = "eager"
    peer = scramble(hf.DINOv3ViTModel(conf), seed=42).eval()
    repo = "facebook/dinov3-vitb16-pretrain-lvd1689m"
    folder = _folder(tmp_path, repo)
    peer.save_pretrained(folder)
    processor = AutoImageProcessor.from_pretrained(str(folder))
    model = load_model(str(folder))
    assert model.preprocess.rescale_first and model.preprocess.backend == "torch"
    out = processor(images=_upright("chelsea.jpg"), return_tensors="pt")
    res = model.embed(str(SAMPLES / "chelsea.jpg"), stage="output")
    ref = peer(pixel_values=out["pixel_values"]).last_hidden_state[0]
    assert np.abs(res.arrays["output"] - ref.numpy()).max() <= 1e-4

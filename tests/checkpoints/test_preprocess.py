"""vitcli's preprocessing of each family against the family's own, end to end from image files.

The peers' pipelines that run on PIL images (timm's create_transform, torchvision's weight
transforms, open_clip's preprocess) resize with the same Pillow filters as vitcli, so the tensors
agree exactly (0.0 measured). transformers 5's default image processors resize torch tensors with
torchvision's kernels: vitcli's Hugging Face families do the same (`backend` 'torch'), and with
`backend` 'pil' match transformers' PIL processors (tests/checkpoints/test_processors.py has the
hub's own processor files).
"""

from pathlib import Path

import numpy as np
import open_clip
import pytest
import timm
import torch
import transformers as hf
from PIL import Image
from safetensors.torch import save_file
from timm.data import create_transform, resolve_data_config
from torchvision.models import ViT_B_16_Weights
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from vitcli.checkpoints.load import load_checkpoint
from vitcli.checkpoints.preprocess import Preprocess
from vitcli.io.images import apply_preprocess, load_image

SAMPLES = Path(__file__).resolve().parents[2] / "sample_images"
PHOTOS = ["chelsea.jpg", "coffee.jpg", "astronaut.jpg", "rocket.jpg"]  # landscape, portrait-free, square, odd sizes
TOL = 1e-2  # normalised units


def _ours(preprocess: Preprocess, name: str) -> np.ndarray:
    return apply_preprocess(preprocess, load_image(str(SAMPLES / name)).pixels)


def _pil(name: str) -> Image.Image:
    return Image.open(SAMPLES / name).convert("RGB")


def _compare(label: str, preprocess: Preprocess, reference, tol: float = TOL) -> float:
    """Max abs difference over the photos, each ≤ tol."""
    worst = 0.0
    for name in PHOTOS:
        ours = _ours(preprocess, name)
        ref = np.asarray(reference(_pil(name)), dtype=np.float32)
        assert ours.shape == ref.shape, (label, name, ours.shape, ref.shape)
        d = np.abs(ours - ref)
        worst = max(worst, float(d.max()))
        assert d.max() <= tol, (label, name, float(d.max()), float(d.mean()))
    print(f"\npreprocess {label}: max abs diff {worst:.2e} ({preprocess.describe()})")
    return worst


def _save(model: torch.nn.Module, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / name)
    return folder / name


@pytest.mark.parametrize("name, kwargs", [
    ("vit_tiny_patch16_224", {}),
    ("deit_tiny_distilled_patch16_224", {}),
    ("vit_small_patch14_reg4_dinov2", {}),
    ("vit_base_patch16_clip_224", {}),
])
def test_timm_create_transform(tmp_path, name, kwargs) -> None:
    model = timm.create_model(name, pretrained=False, depth=1, **kwargs)
    loaded = load_checkpoint(_save(model, tmp_path, "m.safetensors"))
    transform = create_transform(**resolve_data_config({}, model=model))
    assert _compare(f"timm {name}", loaded.preprocess, lambda im: transform(im).numpy()) <= 1e-6


def _hf_pixels(processor):
    return lambda im: processor(images=im, return_tensors="pt")["pixel_values"][0].numpy()


def test_transformers_image_processors(tmp_path) -> None:
    vit = hf.ViTModel(hf.ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64))
    vit.save_pretrained(tmp_path / "vit")
    clip = hf.CLIPVisionModel(hf.CLIPVisionConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=1,
                                                  intermediate_size=64, image_size=224, patch_size=32))
    clip.save_pretrained(tmp_path / "clip")
    dino = hf.Dinov2Model(hf.Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=518,
                                          patch_size=14))
    dino.save_pretrained(tmp_path / "dino")
    dino_processor = dict(size={"shortest_edge": 256}, crop_size={"height": 224, "width": 224},
                          image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])  # facebook/dinov2-*
    cases = [
        ("ViTImageProcessor", "vit", hf.ViTImageProcessorPil(), hf.ViTImageProcessor()),
        ("CLIPImageProcessor", "clip", hf.CLIPImageProcessorPil(), hf.CLIPImageProcessor()),
        ("BitImageProcessor (dinov2)", "dino", hf.BitImageProcessorPil(**dino_processor),
         hf.BitImageProcessor(**dino_processor)),
    ]
    for label, folder, pil_processor, tensor_processor in cases:
        preprocess = load_checkpoint(tmp_path / folder).preprocess
        assert preprocess.source.startswith("transformers") and preprocess.backend == "torch"
        _compare(f"transformers {label} (default torchvision backend)", preprocess, _hf_pixels(tensor_processor),
                 tol=1e-5)
        _compare(f"transformers {label} (PIL backend)", preprocess.with_changes(backend="pil"),
                 _hf_pixels(pil_processor), tol=1e-5)
    # A preprocessor_config.json next to the weights (a hub snapshot) wins over the defaults.
    hf.BitImageProcessorPil(**{**dino_processor, "size": {"shortest_edge": 240}}).save_pretrained(tmp_path / "dino")
    preprocess = load_checkpoint(tmp_path / "dino").preprocess
    assert preprocess.resize_to == (240, 240) and "preprocessor_config.json" in preprocess.source


def test_torchvision_weights_transforms(tmp_path) -> None:
    model = TorchvisionViT(image_size=224, patch_size=16, num_layers=1, num_heads=1, hidden_dim=64, mlp_dim=64)
    loaded = load_checkpoint(_save(model, tmp_path, "tv.safetensors"))
    transform = ViT_B_16_Weights.IMAGENET1K_V1.transforms()
    assert _compare("torchvision ViT_B_16_Weights.IMAGENET1K_V1", loaded.preprocess,
                    lambda im: transform(im).numpy()) <= 1e-6


def test_open_clip_preprocess(tmp_path) -> None:
    cfg = open_clip.get_model_config("ViT-B-32")
    cfg["vision_cfg"] = {**cfg["vision_cfg"], "layers": 1}
    cfg["text_cfg"] = {**cfg["text_cfg"], "layers": 1}
    model = open_clip.CLIP(**cfg)
    loaded = load_checkpoint(_save(model, tmp_path, "open_clip_model.safetensors"))
    transform = open_clip.image_transform(224, is_train=False, mean=open_clip.OPENAI_DATASET_MEAN,
                                          std=open_clip.OPENAI_DATASET_STD)
    assert _compare("open_clip ViT-B-32", loaded.preprocess, lambda im: transform(im).numpy()) <= 1e-6

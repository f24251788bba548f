"""Config files parsed once into CheckpointConfig, load.py's overrides and family forcing, and the
layering: the checkpoints layer never imports the io layer (or Pillow)."""

import json
import subprocess
import sys
from pathlib import Path

import open_clip
import pytest
import timm
import transformers as hf
from safetensors.torch import save_file

from vitcli.checkpoints.config import CheckpointConfig, parse_configs
from vitcli.checkpoints.load import load_checkpoint
from vitcli.errors import VitcliError

ROOT = Path(__file__).resolve().parents[2]


def test_timm_config_json_as_the_peer_wrote_it(tmp_path) -> None:
    from timm.models._hub import save_for_hf

    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=(96, 48), depth=1)
    save_for_hf(model, tmp_path)
    raw = json.loads((tmp_path / "config.json").read_text())
    cfg = parse_configs({"config.json": raw}, tmp_path)
    p = raw["pretrained_cfg"]
    assert cfg.files == ("config.json",) and cfg.architecture == "vit_tiny_patch16_224"
    assert cfg.image_size == tuple(p["input_size"][1:]) == (96, 48)  # save_for_hf records the model's own size
    assert (cfg.timm.crop_pct, cfg.timm.mean, cfg.timm.std, cfg.timm.interpolation) == (
        p["crop_pct"], tuple(p["mean"]), tuple(p["std"]), p["interpolation"])
    assert cfg.heads is None and cfg.open_clip is None and cfg.processor is None


def test_hugging_face_and_open_clip_configs(tmp_path) -> None:
    clip = hf.CLIPConfig(vision_config=dict(hidden_size=64, num_attention_heads=4, image_size=48, patch_size=16,
                                            hidden_act="gelu", layer_norm_eps=1e-6))
    cfg = parse_configs({"config.json": clip.to_dict()})
    assert (cfg.image_size, cfg.heads, cfg.hidden_act, cfg.layer_norm_eps) == ((48, 48), 4, "gelu", 1e-6)
    model_cfg = open_clip.get_model_config("ViT-B-16-quickgelu") or {**open_clip.get_model_config("ViT-B-16"),
                                                                     "quick_gelu": True}
    oc = parse_configs({"open_clip_config.json": {"model_cfg": model_cfg,
                                                  "preprocess_cfg": {"mean": [0.5] * 3, "resize_mode": "squash"}}})
    vision = model_cfg["vision_cfg"]
    assert (oc.open_clip.width, oc.open_clip.quick_gelu, oc.image_size) == (vision["width"], True,
                                                                             (vision["image_size"],) * 2)
    assert oc.open_clip_preprocess.mean == (0.5, 0.5, 0.5) and oc.open_clip_preprocess.resize_mode == "squash"
    assert parse_configs({}) == CheckpointConfig()


@pytest.mark.parametrize("name, content, words", [
    ("config.json", {"model_type": "vit", "num_attention_heads": "twelve"}, "num_attention_heads is 'twelve'"),
    ("config.json", {"pretrained_cfg": {"input_size": [3, "224", 224]}, "architecture": "x"}, "pretrained_cfg.input_size"),
    ("config.json", {"pretrained_cfg": {"mean": "imagenet"}}, "pretrained_cfg.mean is 'imagenet'"),
    ("open_clip_config.json", {"model_cfg": {"vision_cfg": {"width": True}}}, "model_cfg.vision_cfg.width is True"),
    ("preprocessor_config.json", {"size": {"shortest_edge": -1}}, "size.shortest_edge is -1"),
])
def test_a_bad_type_in_a_config_file_is_one_error_naming_the_file(tmp_path, name, content, words) -> None:
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / name).write_text(json.dumps(content))
    with pytest.raises(VitcliError) as e:
        load_checkpoint(tmp_path)
    assert e.value.source == str(tmp_path / name)
    assert words in e.value.problem


def test_family_can_be_forced_and_an_unknown_one_is_named(tmp_path) -> None:
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1)
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    assert load_checkpoint(tmp_path / "m.safetensors", family="timm").family == "timm-vit"
    with pytest.raises(VitcliError, match="do not look like a torchvision checkpoint"):
        load_checkpoint(tmp_path / "m.safetensors", family="torchvision")
    with pytest.raises(VitcliError, match="unknown checkpoint family: use one of clip, hf-clip"):
        load_checkpoint(tmp_path / "m.safetensors", family="siglip")


def test_checkpoints_layer_never_imports_the_io_layer_or_pillow() -> None:
    modules = sorted(f"vitcli.checkpoints.{p.relative_to(ROOT / 'vitcli/checkpoints').with_suffix('')}".replace("/", ".")
                     for p in (ROOT / "vitcli/checkpoints").rglob("*.py"))
    modules = [m.removesuffix(".__init__") for m in modules]
    code = (f"import importlib, sys\nfor m in {modules!r}: importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.startswith(('vitcli.io', 'PIL'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout
    assert len(modules) >= 10  # read, hub, config, infer, preprocess, load, families.{base, timm, …}
    for path in (ROOT / "vitcli/checkpoints").rglob("*.py"):
        assert "vitcli.io" not in path.read_text(), path

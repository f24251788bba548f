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


def test_classifier_labels_from_id2label_and_label_names() -> None:
    """transformers' id2label (its LABEL_i defaults name nothing); timm's label_names as a list or an
    {index: name} object, top level or under pretrained_cfg (legacy `labels` too), with label_descriptions."""
    hf_cfg = hf.ViTConfig(id2label={0: "tabby cat", 1: "lynx"}).to_dict()
    cfg = parse_configs({"config.json": hf_cfg})
    assert [(l.index, l.text) for l in cfg.labels] == [(0, "tabby cat"), (1, "lynx")]
    assert cfg.labels_from == "config.json id2label"
    assert parse_configs({"config.json": hf.ViTConfig().to_dict()}).labels == ()  # LABEL_0, LABEL_1
    timm_cfg = {"architecture": "vit_tiny_patch16_224", "label_names": {"2": "n02123045", "0": "n01440764"},
                "label_descriptions": {"n02123045": "tabby, tabby cat"}}
    cfg = parse_configs({"config.json": timm_cfg})
    assert [(l.index, l.name, l.text) for l in cfg.labels] == [(0, "n01440764", "n01440764"),
                                                                (2, "n02123045", "tabby, tabby cat")]
    legacy = parse_configs({"config.json": {"architecture": "x", "pretrained_cfg": {"label_names": ["a", "b"]}}})
    assert [l.name for l in legacy.labels] == ["a", "b"] and legacy.labels_from == "config.json pretrained_cfg.label_names"
    assert [l.name for l in parse_configs({"config.json": {"architecture": "x", "labels": ["c"]}}).labels] == ["c"]


def test_labels_beyond_the_head_are_ignored_with_a_note(tmp_path) -> None:
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1, num_classes=2)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    (tmp_path / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224",
                                                      "label_names": ["a", "b", "c"]}))
    loaded = load_checkpoint(tmp_path)
    assert [l.name for l in loaded.labels] == ["a", "b"]
    assert any("1 of 3 labels name no output of the 2-class head" in n for n in loaded.notes)


@pytest.mark.parametrize("name, content, words", [
    ("config.json", {"model_type": "vit", "num_attention_heads": "twelve"}, "num_attention_heads is 'twelve'"),
    ("config.json", {"pretrained_cfg": {"input_size": [3, "224", 224]}, "architecture": "x"}, "pretrained_cfg.input_size"),
    ("config.json", {"pretrained_cfg": {"mean": "imagenet"}}, "pretrained_cfg.mean is 'imagenet'"),
    ("open_clip_config.json", {"model_cfg": {"vision_cfg": {"width": True}}}, "model_cfg.vision_cfg.width is True"),
    ("preprocessor_config.json", {"size": {"shortest_edge": -1}}, "size.shortest_edge is -1"),
    ("config.json", {"model_type": "vit", "id2label": {"zero": "cat"}}, "id2label is"),
    ("config.json", {"architecture": "x", "label_names": "cats"}, "label_names is 'cats'"),
    ("config.json", {"architecture": "x", "label_names": ["a"], "label_descriptions": ["b"]}, "label_descriptions is"),
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

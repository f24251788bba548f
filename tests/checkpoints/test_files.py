"""Reading files safely, unwrapping nested checkpoints, and one clear error for keys that do not fit."""

import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.checkpoints.parity import images, scramble
from vitcli.checkpoints.load import Loaded, build_model_from_checkpoint, load_checkpoint
from vitcli.checkpoints.read import read_checkpoint
from vitcli.errors import VitcliError

ROOT = Path(__file__).resolve().parents[2]


class _Evil:
    """Unpickling this would create a folder: the side effect the tests look for."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


@pytest.fixture(scope="module")
def tiny_state() -> dict[str, torch.Tensor]:
    """A small timm ViT's state dict (2 blocks, 32 px, patch 16, D 192)."""
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=4)
    return {k: v.clone() for k, v in scramble(model, 30).state_dict().items()}


def test_pickle_that_would_run_code_is_refused_and_never_runs(tmp_path) -> None:
    marker = tmp_path / "pwned"
    torch.save({"model": {"w": torch.zeros(2)}, "payload": _Evil(marker)}, tmp_path / "evil.pth")
    with pytest.raises(VitcliError) as e:
        load_checkpoint(tmp_path / "evil.pth")
    assert e.value.source == str(tmp_path / "evil.pth")
    assert "refused" in e.value.problem and "mkdir" in e.value.problem and "not executed" in e.value.problem
    assert not marker.exists()
    # The same payload as a plain pickle (not torch's zip format): refused too, nothing runs.
    (tmp_path / "evil.bin").write_bytes(pickle.dumps({"payload": _Evil(marker)}))
    with pytest.raises(VitcliError):
        load_checkpoint(tmp_path / "evil.bin")
    assert not marker.exists()
    # Control: plain unpickling really would have run it.
    pickle.loads((tmp_path / "evil.bin").read_bytes())
    assert marker.is_dir()


def test_torchscript_archive_with_a_code_payload_is_refused(tmp_path) -> None:
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(tmp_path / "evil.pt", "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps(_Evil(marker), protocol=2))
        z.writestr("evil/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("evil/code/__torch__.py", "")
        z.writestr("evil/version", "3\n")
    with pytest.raises(VitcliError, match=r"refused.*TorchScript.*mkdir.*nothing was executed"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not marker.exists()


def test_nested_and_prefixed_state_dicts(tmp_path, tiny_state) -> None:
    wrapped = {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in tiny_state.items()}}
    torch.save(wrapped, tmp_path / "ddp.pth.tar")
    loaded = load_checkpoint(tmp_path / "ddp.pth.tar")
    assert loaded.family == "timm-vit" and loaded.config.depth == 2
    assert any("nested under 'state_dict'" in n for n in loaded.notes)
    assert any("'module.'" in n for n in loaded.notes)
    # DINO's training checkpoint: the teacher's backbone plus its projection head.
    head = {"head.mlp.0.weight": torch.zeros(8, 192), "head.last_layer.weight_g": torch.ones(16, 1)}
    dino = {"teacher": {**{f"backbone.{k}": v for k, v in tiny_state.items() if not k.startswith("head.")}, **head}}
    torch.save(dino, tmp_path / "dino.pth")
    loaded = load_checkpoint(tmp_path / "dino.pth")
    assert loaded.family == "dino" and loaded.config.num_classes == 0
    assert loaded.ignored_keys == sorted(head)
    assert loaded.preprocess.normalize == "imagenet"


def test_legacy_torch_format_and_half_precision(tmp_path, tiny_state) -> None:
    half = {k: v.half() for k, v in tiny_state.items()}
    torch.save(half, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    loaded = load_checkpoint(tmp_path / "legacy.pt")
    assert any("legacy" in n for n in loaded.notes)
    assert loaded.state_dict["blocks.0.attn.qkv.weight"].dtype == torch.float16
    model = build_model_from_checkpoint(loaded)
    assert next(model.parameters()).dtype == torch.float32
    assert torch.equal(model.blocks[1].mlp.fc2.weight, half["blocks.1.mlp.fc2.weight"].float())


def test_left_over_keys_are_listed_or_ignored(tmp_path, tiny_state) -> None:
    extra = {"blocks.0.attn.my_scale.weight": torch.ones(64), "my_adapter.weight": torch.ones(3, 3)}
    save_file({**tiny_state, **extra}, tmp_path / "extra.safetensors")
    with pytest.raises(VitcliError) as e:
        load_checkpoint(tmp_path / "extra.safetensors")
    problem = e.value.problem
    assert "2 left over" in problem and "blocks.0.attn.my_scale.weight" in problem and "my_adapter.weight" in problem
    assert "--no-strict" in problem
    loaded = load_checkpoint(tmp_path / "extra.safetensors", strict=False)
    assert loaded.ignored_keys == sorted(extra)


def test_missing_keys_and_wrong_shapes_in_one_error(tmp_path, tiny_state) -> None:
    broken = dict(tiny_state)
    del broken["blocks.1.mlp.fc2.weight"], broken["blocks.0.norm1.bias"]
    broken["blocks.0.attn.proj.weight"] = torch.zeros(192, 100)
    save_file(broken, tmp_path / "broken.safetensors")
    for strict in (True, False):  # no faithful model without them, whatever the mode
        with pytest.raises(VitcliError) as e:
            load_checkpoint(tmp_path / "broken.safetensors", strict=strict)
        problem = e.value.problem
        assert "2 missing: blocks.0.norm1.bias, blocks.1.mlp.fc2.weight" in problem
        assert "blocks.0.attn.proj.weight is (192, 100), needs (192, 192)" in problem


def test_keys_of_another_layout_name_the_expected_source_keys(tmp_path) -> None:
    import transformers as hf

    model = hf.ViTModel(hf.ViTConfig(hidden_size=64, num_hidden_layers=1, num_attention_heads=2, intermediate_size=96,
                                     image_size=32, patch_size=16), add_pooling_layer=False)
    state = {k: v for k, v in model.state_dict().items() if "v_proj" not in k}
    save_file(state, tmp_path / "hf.safetensors")
    with pytest.raises(VitcliError) as e:
        load_checkpoint(tmp_path / "hf.safetensors", heads=2)
    problem = e.value.problem
    assert "hf-vit checkpoint does not fit" in problem
    assert "layers.0.attention.v_proj.weight" in problem  # what was expected, in the names this file uses
    assert "layers.0.attention.q_proj.weight" in problem  # q and k left without their v


@pytest.mark.parametrize("content, words", [
    (b"", "empty"),
    (b"this is not a checkpoint at all", "not a readable torch checkpoint"),
])
def test_unreadable_files(tmp_path, content, words) -> None:
    (tmp_path / "bad.pth").write_bytes(content)
    with pytest.raises(VitcliError, match=words):
        load_checkpoint(tmp_path / "bad.pth")


def test_not_a_vit_and_no_such_file(tmp_path) -> None:
    save_file({"features.0.weight": torch.zeros(8, 3, 3, 3)}, tmp_path / "cnn.safetensors")
    with pytest.raises(VitcliError, match="not a ViT checkpoint vitcli knows .*features.0.weight"):
        load_checkpoint(tmp_path / "cnn.safetensors")
    with pytest.raises(VitcliError, match="no such file"):
        load_checkpoint(tmp_path / "absent.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(VitcliError, match="not a readable safetensors file"):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_public_api_from_a_spec(tmp_path, tiny_state) -> None:
    save_file(tiny_state, tmp_path / "m.safetensors")
    model = build_model_from_checkpoint(str(tmp_path / "m.safetensors"))
    loaded = load_checkpoint(str(tmp_path / "m.safetensors"))
    assert isinstance(loaded, Loaded) and loaded.config.name == "m"
    assert loaded.num_params == sum(p.numel() for p in model.parameters())
    assert loaded.origin["pos_embed"] == "pos_embed"
    with torch.no_grad():
        out = model(images(1, 32, 32))
    assert out.logits.shape == (1, 4)
    raw = read_checkpoint(tmp_path / "m.safetensors")
    assert raw.format == "safetensors" and set(raw.tensors) == set(tiny_state)


def test_vitcli_never_imports_peer_libraries() -> None:
    peers = ("timm", "transformers", "torchvision", "open_clip")
    for path in (ROOT / "vitcli").rglob("*.py"):
        for line in path.read_text().splitlines():
            words = line.strip().split()
            if words[:1] in (["import"], ["from"]) and len(words) > 1:
                assert words[1].split(".")[0] not in peers, f"{path}: {line}"
    code = ("import sys, vitcli.checkpoints.load as m; "
            f"print([p for p in {peers!r} if p in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"

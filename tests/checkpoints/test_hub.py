"""`hf-hub:` and `timm:` specs resolved offline from a Hugging Face cache folder built here by hand."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.checkpoints.parity import scramble
from vitcli.checkpoints.load import load_checkpoint
from vitcli.errors import VitcliError

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _cache_repo(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """huggingface_hub's layout: models--ORG--NAME/{refs/main, snapshots/<commit>/FILE}."""
    base = cache / ("models--" + repo.replace("/", "--"))
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(COMMIT)
    snapshot = base / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "hub"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return folder


@pytest.fixture(scope="module")
def tiny_bytes(tmp_path_factory) -> bytes:
    model = scramble(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=1), 40)
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    save_file(model.state_dict(), path)
    return path.read_bytes()


def test_hf_hub_spec_from_the_local_cache(cache, tiny_bytes) -> None:
    _cache_repo(cache, "acme/tiny-vit", {"model.safetensors": tiny_bytes})
    loaded = load_checkpoint("hf-hub:acme/tiny-vit")
    assert loaded.family == "timm-vit" and loaded.config.depth == 1
    assert loaded.path.endswith(f"snapshots/{COMMIT}/model.safetensors")
    assert loaded.config.name == "hf-hub:acme/tiny-vit"


def test_timm_spec_finds_the_one_cached_tag_and_its_config(cache, tiny_bytes) -> None:
    config = {"architecture": "vit_tiny_patch16_224", "num_classes": 1000, "global_pool": "token",
              "pretrained_cfg": {"input_size": [3, 32, 32], "interpolation": "bilinear", "crop_pct": 0.95,
                                 "crop_mode": "center", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    _cache_repo(cache, "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k",
                {"model.safetensors": tiny_bytes, "config.json": json.dumps(config).encode()})
    loaded = load_checkpoint("timm:vit_tiny_patch16_224")
    p = loaded.preprocess
    assert (p.crop_pct, p.interpolation, p.normalize, p.resize_to, p.size) == (0.95, "bilinear", "imagenet", (33, 33), (32, 32))
    assert p.source == "timm pretrained_cfg (config.json)"
    assert load_checkpoint("timm:vit_tiny_patch16_224.augreg_in21k_ft_in1k").config.depth == 1


def test_missing_file_says_which_and_how_to_pass_a_local_one(cache, tiny_bytes) -> None:
    _cache_repo(cache, "acme/only-config", {"config.json": b"{}"})
    for spec, repo in (("hf-hub:acme/only-config", "acme/only-config"), ("hf-hub:acme/absent", "acme/absent"),
                       ("timm:vit_absent_patch16_224", "timm/vit_absent_patch16_224")):
        with pytest.raises(VitcliError) as e:
            load_checkpoint(spec)
        assert e.value.source == spec
        problem = e.value.problem
        assert f"model.safetensors, open_clip_model.safetensors, pytorch_model.bin, open_clip_pytorch_model.bin of {repo}" in problem
        assert str(cache) in problem and "HF_HUB_OFFLINE" in problem
        tool = problem.split("download it with `")[1].split()[0]
        assert shutil.which(tool), tool  # the installed huggingface_hub's own command
        assert f"`{tool} download {repo} model.safetensors`" in problem
        assert "--weights path/to/model.safetensors" in problem


def test_without_huggingface_hub_the_cache_is_still_read(cache, tiny_bytes, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails as if not installed
    _cache_repo(cache, "acme/tiny-vit", {"model.safetensors": tiny_bytes})
    assert load_checkpoint("hf-hub:acme/tiny-vit").config.depth == 1
    with pytest.raises(VitcliError, match=r"needs the huggingface_hub package"):
        load_checkpoint("hf-hub:acme/absent", online=True)


def test_snapshots_without_refs_and_short_revisions(cache, tiny_bytes, monkeypatch) -> None:
    monkeypatch.delenv("HF_HUB_OFFLINE")  # even online-allowed, a cached repo never reaches the network
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("asked the hub"))
    snapshot = _cache_repo(cache, "acme/no-refs", {"model.safetensors": tiny_bytes})
    shutil.rmtree(snapshot.parent.parent / "refs")  # a snapshot copied by hand: no refs/ folder
    assert load_checkpoint("hf-hub:acme/no-refs").path.endswith(f"{COMMIT}/model.safetensors")
    assert load_checkpoint(f"hf-hub:acme/no-refs@{COMMIT[:7]}").config.depth == 1  # a short commit hash
    with pytest.raises(VitcliError, match="not asked.*online"):  # Python spells it online=
        load_checkpoint("hf-hub:acme/no-refs@ffffff")  # that revision is not cached: no silent download
    assert load_checkpoint(f"hf-hub:acme/no-refs@{COMMIT}").config.depth == 1


def test_bad_specs(cache) -> None:
    for spec in ("hf-hub:just-a-name", "hf-hub:a/b/c", "timm:"):
        with pytest.raises(VitcliError, match="expected hf-hub:ORG/NAME or timm:NAME"):
            load_checkpoint(spec)


def test_several_cached_timm_tags_must_be_named(cache, tiny_bytes) -> None:
    for tag in ("augreg_in21k", "augreg_in21k_ft_in1k"):
        _cache_repo(cache, f"timm/vit_tiny_patch16_224.{tag}", {"model.safetensors": tiny_bytes})
    with pytest.raises(VitcliError, match=r"several pretrained tags are cached .*augreg_in21k, .*name one"):
        load_checkpoint("timm:vit_tiny_patch16_224")
    assert torch.is_tensor(load_checkpoint("timm:vit_tiny_patch16_224.augreg_in21k").state_dict["pos_embed"])


def test_no_network_is_one_quick_line_without_retries(cache, monkeypatch, capfd) -> None:
    """Nothing cached and HF_HUB_OFFLINE unset: one probe of the hub, which cannot be reached in this
    sandbox's loopback-only world (HF_ENDPOINT points at a closed local port), then the error."""
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("retried past the probe"))
    with pytest.raises(VitcliError, match="the hub is unreachable .*`hf download acme/absent model.safetensors`"):
        load_checkpoint("hf-hub:acme/absent")
    assert "Retrying" not in capfd.readouterr().err

"""The table and JSON say what was done: table resampling, dtype, formula tables, snapshot names, usage."""

import json

import pytest

from tests.conftest import SAMPLES, run_cli

CAT = SAMPLES / "chelsea.jpg"


def test_resampled_table_and_dtype_are_reported():
    r = run_cli("embed", CAT, "--model", "vit-ti16", "--depth", "1", "--size", "384", "--dtype", "bfloat16", "--json")
    model = json.loads(r.stdout)["model"]
    assert model["position_table"] == "learned 14×14 resampled to 24×24 (bicubic, antialiased, as timm)"
    assert model["dtype"] == "bfloat16"
    r = run_cli("embed", CAT, "--model", "vit-ti16", "--depth", "1", "--size", "384", "--dtype", "bfloat16")
    text = r.stdout.decode()
    assert "resampled to 24×24" in text and "bfloat16" in text


def test_fixed_tables_come_from_the_formula():
    doc = json.loads(run_cli("posenc", "--kind", "sincos1d", "--json").stdout)
    assert doc["source"] == "the formula (sincos1d)"
    doc = json.loads(run_cli("posenc", "--json").stdout)  # learned: the seeded table
    assert doc["source"] == "random weights (seed 0)"


def test_a_cache_snapshot_is_named_after_its_repository(tmp_path):
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    snapshot = tmp_path / "hub" / "models--someorg--tiny-vit" / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, depth=1)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(snapshot / "model.safetensors"))
    doc = json.loads(run_cli("info", "--weights", snapshot, "--json").stdout)
    assert doc["model"]["name"] == "someorg/tiny-vit"


def test_patchify_with_an_image_and_unpatchify_is_a_usage_error(tmp_path):
    r = run_cli("patchify", CAT, "--unpatchify", tmp_path / "p.npy", "-o", tmp_path / "x.png")
    assert r.returncode == 2 and b"ignored" in r.stderr and not (tmp_path / "x.png").exists()

"""`vitcli explain` end to end: the written map equals the API's, JSON keys, many images with an
index, overlays, and one clean line (nothing written) for each bad target or layer."""

import json

import numpy as np
import pytest
import timm
from safetensors.torch import save_file

from tests.checkpoints.parity import scramble
from tests.conftest import assert_clean_error, run_cli, sampled

TINY = ["--model", "vit-ti16", "--depth", "2", "--size", "64"]


@pytest.fixture
def image(random_rgb):
    return random_rgb(80, 96, seed=1)[0]


def test_map_json_and_overlay(tmp_path, image) -> None:
    out, png = tmp_path / "map.npy", tmp_path / "why.png"
    r = run_cli("explain", image, *TINY, "--target", "class:3", "-o", out, "--overlay", png, "--json")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    ex = doc["explain"]
    assert (ex["method"], ex["target"], ex["class"]) == ("grad-rollout", "class:3", 3)
    assert isinstance(ex["score"], float)
    m = np.load(out)
    assert m.shape == (4, 4) and m.dtype == np.float32 and doc["grid"] == [4, 4]
    top = ex["top_patches"]
    assert len(top) == 5 and top[0]["value"] == pytest.approx(float(m.max()))
    assert m[top[0]["row"], top[0]["col"]] == m.max()
    assert [t["value"] for t in top] == sorted((t["value"] for t in top), reverse=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"



def test_all_methods_and_table(tmp_path, image) -> None:
    out, png = tmp_path / "all.npy", tmp_path / "all.png"
    r = run_cli("explain", image, *TINY, "--method", "all", "-o", out, "--overlay", png)
    assert r.returncode == 0, r.stderr.decode()
    text = r.stdout.decode()
    for word in ("grad-rollout", "attn-grad", "gradcam", "rollout", "strongest patches"):
        assert word in text
    assert np.load(out).shape == (4, 4, 4)
    assert png.exists()


@pytest.mark.slow  # about 16 s; attend's many-images test stays quick
def test_many_images_stream_with_index(tmp_path, random_rgb) -> None:
    for i in range(3):
        random_rgb(64, 64, seed=i, name=f"im{i}.png")
    out = tmp_path / "maps.npy"
    r = run_cli("explain", tmp_path, *TINY, "--method", "gradcam", "--batch-size", "2", "-o", out, "--json")
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    maps = np.load(out)
    assert maps.shape == (3, 4, 4)
    lines = [json.loads(x) for x in (tmp_path / "maps.index.jsonl").read_text().splitlines()]
    assert [x["path"].endswith(f"im{i}.png") for i, x in enumerate(lines)] == [True] * 3
    assert [x["explain"]["score"] for x in lines] == [x["score"] for x in doc["explain"]["images"]]
    for i in range(3):  # each row is the image run alone
        alone = tmp_path / f"alone{i}.npy"
        assert run_cli("explain", tmp_path / f"im{i}.png", *TINY, "--method", "gradcam", "-o", alone, "-q").returncode == 0
        np.testing.assert_allclose(maps[i], np.load(alone), rtol=1e-4, atol=1e-7)


@pytest.mark.slow  # about 14 s
def test_image_target_on_a_headless_model(tmp_path, image, random_rgb) -> None:
    model = scramble(timm.create_model("vit_small_patch14_reg4_dinov2", pretrained=False, img_size=56, depth=2), 1)
    weights = tmp_path / "dino.safetensors"
    save_file(model.state_dict(), weights)
    other = random_rgb(70, 70, seed=5, name="other.png")[0]
    r = run_cli("explain", image, "--weights", weights, "--size", "56", "--target", f"image:{other}", "--json")
    assert r.returncode == 0, r.stderr.decode()
    ex = json.loads(r.stdout)["explain"]
    assert "class" not in ex and -1 <= ex["score"] <= 1
    line = assert_clean_error(run_cli("explain", image, "--weights", weights, "--size", "56"), "--target", "no head")
    assert "image:OTHER" in line and "patch:R,C" in line


@sampled("args, words", keep=2, cases=[
    (["--target", "class:1000"], ["--target", "class 1000", "1000 classes"]),
    (["--target", "image:/no/such/file.png"], ["/no/such/file.png"]),
    (["--target", "patch:4,0"], ["--target", "patch 4,0", "4x4"]),
    (["--target", "patch:0,9", "--method", "gradcam"], ["--target", "outside"]),
    (["--method", "gradcam", "--layer", "2"], ["--layer", "2 blocks"]),
    (["--start-layer", "5"], ["--start-layer"]),
    (["--discard-ratio", "1.5", "--method", "attn-grad"], ["--discard-ratio"]),
    (["--target", "nope"], ["--target", "top, class:N"]),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, image, args, words) -> None:
    out, png = tmp_path / "map.npy", tmp_path / "why.png"
    assert_clean_error(run_cli("explain", image, *TINY, *args, "-o", out, "--overlay", png), *words)
    assert not out.exists() and not png.exists()
    assert list(tmp_path.iterdir()) == [image]

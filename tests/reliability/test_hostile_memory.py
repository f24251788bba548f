"""Memory before it is spent, for every pass: explain's image:OTHER, view's tabs and their float64 check,
a checkpoint's preprocessing size. Each refusal: one line naming what drives the cost, exit 1, and a
peak growth far below what the refused work would take (measured per case, /proc/self/clear_refs).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reliability.corpus import bomb_png
from tests.reliability.helpers import assert_one_line, run_capped, save_tiny_hf_vit

TINY = ["--model", "vit-ti16", "--dim", "64", "--depth", "2", "--heads", "2"]
REFUSED_GROWTH = 300 << 20  # a refusal allocates nothing large (lazy imports aside)


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "small.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    return path


def test_explain_checks_image_other_before_decoding_it(image: Path, tmp_path: Path) -> None:
    cases = []
    for side in (3000, 4500, 6000, 9000):  # headers only: each file is 100 bytes
        other = tmp_path / f"other{side}.png"
        other.write_bytes(bomb_png(side, side))
        for method in ("grad-rollout", "gradcam"):
            cases.append(["explain", image, *TINY, "--size", "native", "--target", f"image:{other}", "--method",
                          method, "--max-memory", "200M", "-o", tmp_path / "map.npy"])
    for result in run_capped(cases, tmp_path):
        assert_one_line(result, "--target image:", "--max-memory", growth=REFUSED_GROWTH)
    assert not (tmp_path / "map.npy").exists()


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    """A tiny transformers ViT saved by the peer (config.json, preprocessor_config.json, weights)."""
    return save_tiny_hf_vit(tmp_path_factory.mktemp("hf") / "vit")


SIZES = {"20000 square": {"size": {"height": 20000, "width": 20000}},
         "8000 x 30000": {"size": {"height": 8000, "width": 30000}},
         "shortest edge": {"size": {"shortest_edge": 20000}, "crop_size": {"height": 20000, "width": 20000},
                           "do_center_crop": True},
         "legacy int": {"size": 16000}}


def test_a_preprocessing_size_over_the_limit_names_the_config_not_size(hf_folder: Path, image: Path,
                                                                      tmp_path: Path) -> None:
    cases = []
    for i, (name, changes) in enumerate(SIZES.items()):
        folder = tmp_path / f"m{i}"
        shutil.copytree(hf_folder, folder)
        doc = json.loads((folder / "preprocessor_config.json").read_text())
        (folder / "preprocessor_config.json").write_text(json.dumps({**doc, **changes}))
        for command in (["embed"], ["attend"], ["explain", "--target", "patch:0,0"], ["figures", "norms"]):
            cases.append([*command, image, "--weights", folder, "--max-memory", "1G", "-o", tmp_path / "out.npy"])
        cases.append(["view", image, "--weights", folder, "--max-memory", "1G", "-o", tmp_path / "page.html"])
    for result in run_capped(cases, tmp_path):
        line = assert_one_line(result, "preprocessor_config.json", "--size overrides it", "--max-memory",
                               growth=REFUSED_GROWTH)
        assert not line.startswith("vitcli: error: --size"), line
    assert not (tmp_path / "out.npy").exists() and not (tmp_path / "page.html").exists()


@pytest.mark.slow  # about 11 s
def test_view_budgets_its_tabs_and_float64_check(image: Path, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (640, 640, 3), dtype=np.uint8)).save(big)
    model = ["--model", "vit-ti16", "--depth", "4"]
    page = tmp_path / "page.html"
    cases = [(["view", big, *model, "--size", "native", "--max-memory", "300M", "-o", page], "--layers"),
             (["view", big, *model, "--size", "native", "--layers", "0", "--max-memory", "120M", "-o", page],
              str(big)),
             (["view", big, *model, "--size", "640", "--layers", "0", "--max-memory", "120M", "-o", page], "--size"),
             (["view", *[image] * 60, *model, "--size", "320", "--layers", "0", "--max-memory", "150M", "-o", page],
              "IMAGE")]
    for result, (_, blame) in zip(run_capped([c for c, _ in cases], tmp_path), cases):
        line = assert_one_line(result, "--max-memory")
        assert line.startswith(f"vitcli: error: {blame}"), line
    assert not page.exists()


def test_a_size_never_given_is_not_blamed_on_size(image: Path, tmp_path: Path) -> None:
    [native, given] = run_capped([["embed", image, *TINY, "--max-memory", "1M", "-o", tmp_path / "e.npy"],
                                  ["embed", image, *TINY, "--size", "224", "--max-memory", "1M", "-o",
                                   tmp_path / "e.npy"]], tmp_path)
    assert assert_one_line(native, "vit-ti16, its native size (--size overrides it)")
    assert assert_one_line(given, "--size:")

"""Parsers of small strings and odd shapes: each is one line, or works.

Generated: numbers in other scripts' digits, signs, underscores and exponents in every option that
takes a whole number (--target class:N and patch:R,C, --layer, --head, --query, --size); grids of
one row or one column through every command that draws a map; float8 weights; JSON nested deeper
than Python's stack; timm's crop_pct far outside what any checkpoint holds.
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reliability.helpers import assert_one_line, run_capped

TINY = ["--model", "vit-ti16", "--dim", "64", "--depth", "2", "--heads", "2"]
# Not ASCII whole numbers, though int() or str.isdigit() take some of them.
NUMBERS = ["\u00b2", "\u0663", "\uff11", "\u07c0", "--5", "+5", "1_0", "5.0", "1e3", "0x1", "", " ", "-", "NaN", "5 5"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("img")
    out = {}
    for name, (h, w) in {"square": (32, 32), "row": (16, 1600), "column": (1600, 16)}.items():
        out[name] = folder / f"{name}.png"
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(out[name])
    return out


@pytest.mark.slow  # about 11 s; a one-column grid in every command stays quick
def test_whole_numbers_are_ascii_digits_in_every_option(images: dict[str, Path], tmp_path: Path) -> None:
    square = images["square"]
    base = [square, *TINY, "--size", "32"]
    cases: list[tuple[list, str]] = []
    for text in NUMBERS:
        cases += [(["explain", *base, "--target", f"class:{text}", "-o", tmp_path / "e.npy"], "--target"),
                  (["explain", *base, "--target", f"patch:{text},1", "-o", tmp_path / "e.npy"], "--target"),
                  (["explain", *base, "--target", f"patch:1,{text}", "-o", tmp_path / "e.npy"], "--target"),
                  (["attend", *base, "--layer", text, "--json"], "--layer"),
                  (["attend", *base, "--head", text, "--json"], "--head"),
                  (["attend", *base, "--query", f"{text},0", "--json"], "--query"),
                  (["embed", square, *TINY, "--size", f"{text}x32", "--json"], "--size")]
        if text.strip() and text not in ("-", "--5", "+5"):  # these read as an option or as a negative class
            cases.append((["explain", *base, "--target", text, "-o", tmp_path / "e.npy"], "--target"))
    results = run_capped([c for c, _ in cases], tmp_path)
    for result, (_, option) in zip(results, cases):
        assert result["code"] in (1, 2), (result["args"], result["code"], result["stderr"])
        if result["code"] == 1:
            assert_one_line(result, option)
        else:  # a usage error of the shell's parser (an empty value): its own box, still no traceback
            assert "Traceback" not in result["stderr"] and "internal error" not in result["stderr"]
    assert not (tmp_path / "e.npy").exists()


COMMANDS = [["attend"], ["attend", "--distance", "DIST"], ["attend", "--rollout", "ROLL"], ["explain"], ["explain", "--method", "gradcam"],
            ["explain", "--method", "attn-grad"], ["embed"], ["figures", "similar", "--patch", "0,3"],
            ["figures", "norms"], ["figures", "pca"]]


@pytest.mark.parametrize("shape", [pytest.param("row", marks=pytest.mark.slow), "column"])  # a row: about 19 s
def test_grids_of_one_row_or_column_work_in_every_command(images: dict[str, Path], tmp_path: Path, shape: str) -> None:
    image = images[shape]
    cases = [[*cmd[:1 if cmd[0] != "figures" else 2], image, *TINY, "--size", "native",
              *cmd[1 if cmd[0] != "figures" else 2:]] for cmd in COMMANDS]
    for c in cases:
        if c[0] == "figures" and c[1] == "similar":
            c[c.index("0,3")] = "0,3" if shape == "row" else "3,0"
        for i, a in enumerate(c):
            c[i] = tmp_path / f"{a.lower()}.npy" if a in ("DIST", "ROLL") else a
    cases.append(["view", image, *TINY, "--size", "native", "-o", tmp_path / "page.html"])
    for result in run_capped(cases, tmp_path, seconds=60):
        assert result["code"] == 0, (result["args"], result["stderr"])
        assert "Traceback" not in result["stderr"]


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory) -> Path:
    """A tiny timm ViT written by timm's own save_for_hf (config.json with pretrained_cfg, weights)."""
    timm = pytest.importorskip("timm")
    from timm.models._hub import save_for_hf

    folder = tmp_path_factory.mktemp("timm") / "vit"
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, embed_dim=64, num_heads=2)
    save_for_hf(model, folder)
    return folder


@pytest.mark.slow  # about 11 s
def test_float8_weights_deep_json_and_absurd_crop_pct(timm_folder: Path, images: dict[str, Path],
                                                      tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    state = torch.load(timm_folder / "pytorch_model.bin", weights_only=True)
    f8 = {dtype: tmp_path / f"{dtype}.safetensors" for dtype in ("float8_e4m3fn", "float8_e5m2")}
    for dtype, path in f8.items():
        save_file({k: v.to(getattr(torch, dtype)) for k, v in state.items()}, path)
    deep = tmp_path / "deep.safetensors"
    header = ("[" * 50_000 + "]" * 50_000).encode()
    deep.write_bytes(len(header).to_bytes(8, "little") + header)
    crops = {}
    for value in ["1e-9", "1e9", "0", "NaN", "-1"]:
        folder = tmp_path / f"crop{value}"
        shutil.copytree(timm_folder, folder)
        doc = json.loads((folder / "config.json").read_text())
        doc["pretrained_cfg"]["crop_pct"] = "@@"
        (folder / "config.json").write_text(json.dumps(doc).replace('"@@"', value))
        crops[value] = folder
    nested = tmp_path / "nested"
    shutil.copytree(timm_folder, nested)
    (nested / "preprocessor_config.json").write_text("{\"a\":" * 50_000 + "1" + "}" * 50_000)
    square = images["square"]
    works = [*([c, square, "--weights", p, "--json"] for p in f8.values() for c in ("embed", "attend")),
             ["view", square, "--weights", f8["float8_e4m3fn"], "-o", tmp_path / "f8.html"],
             ["info", "--weights", nested]]
    refused = [(["info", "--weights", deep], str(deep), "not JSON"),
               *((["embed", square, "--weights", p, "--json"], "crop_pct", "config.json") for p in crops.values())]
    results = run_capped([*works, *(c for c, *_ in refused)], tmp_path)
    for result in results[:len(works)]:
        assert result["code"] == 0, (result["args"], result["stderr"])
    for result, (_, *words) in zip(results[len(works):], refused):
        assert_one_line(result, *words)

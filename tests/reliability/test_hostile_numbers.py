"""Non-finite numbers: --json is strict JSON (NaN and ±Infinity as null), NaN weights are one line in
`view` and a warning elsewhere, and a config's NaN, Infinity, zero or absurd numbers are refused in one line.
"""

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.reliability.helpers import assert_one_line, run_capped, save_tiny_hf_vit
from vitcli.cli.report import finite

NON_FINITE = ["NaN", "Infinity", "-Infinity"]


def strict(text: str) -> object:
    """Parse as a strict JSON parser does: NaN, Infinity and -Infinity are errors."""
    def refuse(name: str) -> object:
        raise ValueError(f"bare {name} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_finite_turns_every_non_finite_value_into_null() -> None:
    rng = np.random.default_rng(0)
    specials = [math.nan, math.inf, -math.inf, np.float32("nan"), np.float64("-inf"), np.float16("inf")]
    for seed in range(50):
        values = rng.normal(size=6)
        picked = rng.choice(len(specials), 3, replace=False)
        array = values.astype(np.float32)
        array[picked] = np.nan
        doc = {"a": [specials[int(i)] for i in picked], "b": {"c": (float(values[0]), specials[seed % 6])},
               "arr": array, "s": np.float32(values[1]), "n": np.int64(seed), "ok": True, "t": "NaN"}
        out = finite(doc)
        assert strict(json.dumps(out, allow_nan=False)) == out
        assert out["a"] == [None] * 3 and out["b"]["c"][1] is None and out["t"] == "NaN"
        assert [v is None for v in out["arr"]] == list(np.isnan(array))
        assert out["s"] == float(np.float32(values[1])) and out["n"] == seed and out["ok"] is True


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory) -> Path:
    """A tiny transformers ViT saved by the peer (config.json, preprocessor_config.json, weights)."""
    return save_tiny_hf_vit(tmp_path_factory.mktemp("hf") / "vit")


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("img") / "noise.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
    return path


def _edited(folder: Path, where: Path, file: str, key: str, raw: str) -> Path:
    """A copy of `folder` whose `file` has `key` set to the JSON text `raw` (NaN and Infinity as Python writes them)."""
    shutil.copytree(folder, where)
    doc = json.loads((where / file).read_text())
    doc[key] = "@@"
    (where / file).write_text(json.dumps(doc).replace('"@@"', raw))
    return where


CONFIG_CASES = {  # (file, key) → JSON texts each of which must be refused
    ("config.json", "layer_norm_eps"): [*NON_FINITE, "0", "-1e-6", "1e30"],
    ("preprocessor_config.json", "image_std"): [f"[{v}, 0.5, 0.5]" for v in [*NON_FINITE, "0", "-0.5"]],
    ("preprocessor_config.json", "image_mean"): [f"[0.5, {v}, 0.5]" for v in NON_FINITE],
    ("preprocessor_config.json", "rescale_factor"): [*NON_FINITE, "0"],
}


def test_non_finite_or_zero_config_numbers_are_one_line(hf_folder: Path, image: Path, tmp_path: Path) -> None:
    cases, expect = [], []
    for (file, key), values in CONFIG_CASES.items():
        for i, raw in enumerate(values):
            folder = _edited(hf_folder, tmp_path / f"{key}-{i}", file, key, raw)
            for command in (["info", "--weights", folder], ["embed", image, "--weights", folder, "--json"]):
                cases.append(command)
                expect.append((file, key))
    assert len(cases) > 30
    for result, (file, key) in zip(run_capped(cases, tmp_path), expect):
        assert_one_line(result, file, key)


@pytest.mark.slow  # about 9 s; non-finite config numbers stay quick
def test_nan_weights_json_is_strict_and_view_is_one_line(hf_folder: Path, image: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "nan"
    shutil.copytree(hf_folder, folder)
    state = load_file(folder / "model.safetensors")
    rng = np.random.default_rng(1)
    for key in sorted(state)[::3]:  # a third of the tensors hold a NaN, an inf or a -inf somewhere
        flat = state[key].view(-1)
        flat[int(rng.integers(flat.numel()))] = float(rng.choice([np.nan, np.inf, -np.inf]))
    save_file(state, folder / "model.safetensors")
    commands = [*([c, image, "--weights", folder, "--json"] for c in ("embed", "attend")),
                ["posenc", "--weights", folder, "--json"]]
    page = tmp_path / "page.html"
    results = run_capped([*commands, ["view", image, "--weights", folder, "-o", page]], tmp_path)
    for command, result in zip(commands, results[:-1]):
        assert result["code"] in (0, 1) and "internal error" not in result["stderr"], result
        if result["code"] == 0:
            doc = strict(result["stdout"])
            assert isinstance(doc, dict)
            if command[0] != "posenc":  # posenc describes a table, not a model: no model document
                assert doc["model"]["nonfinite_weights"], doc["model"]  # the document names the damaged tensors
    assert any('"min": null' in r["stdout"] for r in results[:-1])  # the NaN reached a statistic, as null
    assert_one_line(results[-1], str(folder), "NaN or infinite")
    assert not page.exists()

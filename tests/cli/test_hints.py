"""Messages that name the way forward (issue 27): `-r` for images in sub-folders, the preset list for an
unknown model, and a refusal of `--model` with `--weights` (one of them would be silently ignored)."""

import shutil

from tests.conftest import SAMPLES, assert_clean_error, run_cli
from vitcli.core.presets import PRESETS


def test_folder_with_images_only_in_subfolders_hints_recursive(tmp_path):
    for sub in ("a", "b/c"):
        (tmp_path / "imgs" / sub).mkdir(parents=True)
        shutil.copy(SAMPLES / "chelsea.jpg", tmp_path / "imgs" / sub / "x.jpg")
    line = assert_clean_error(run_cli("patchify", tmp_path / "imgs"), "no image files found", "add -r")
    assert "hold 2" in line, line  # the two images below, counted


def test_empty_folder_gives_no_recursive_hint(tmp_path):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    line = assert_clean_error(run_cli("patchify", tmp_path / "empty"), "no image files found")
    assert "add -r" not in line


def test_unknown_model_lists_the_presets():
    line = assert_clean_error(run_cli("info", "--model", "vit-x16"), "vit-x16")
    for name in PRESETS:
        assert name in line, (name, line)


def test_model_and_weights_together_are_refused(tmp_path):
    line = assert_clean_error(run_cli("info", "--model", "vit-b16", "--weights", tmp_path / "x.safetensors"),
                              "--model", "--weights", code=2)
    assert "vit-b16" in line


def test_default_model_is_still_vit_b16():
    r = run_cli("info", "--json")
    import json

    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"]["dim"] == 768


def test_info_json_names_parameters_as_the_table_does():
    """`parameters` as the table row says, `params` kept as an alias; both 12·(4D² + 2·D·M) + … for ViT-B/16."""
    import json

    table = run_cli("info").stdout.decode()
    doc = json.loads(run_cli("info", "--json").stdout)["model"]
    assert "parameters" in table and "86,567,656" in table
    assert doc["parameters"] == doc["params"] == 86_567_656  # timm's vit_base_patch16_224 with its 1000-class head

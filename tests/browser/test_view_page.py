"""`vitcli view` pages in a real browser: the maps equal `vitcli attend` / `figures similar` / the
peer's position table within 1e-3, keys move the selection, nothing is fetched, screenshots.

The model is a DINOv2-with-registers-like timm ViT (class token + 4 registers, LayerScale, no
position rows for the prefix), tiny, every weight scrambled, saved as safetensors; the image is
non-square (3 × 5 patches of 14 px).
"""

import os

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from tests.browser.chromium import missing, run_page
from tests.checkpoints.parity import scramble
from tests.conftest import ROOT, SAMPLES, run_cli

# CI sets VITCLI_REQUIRE_BROWSER=1: there a missing browser fails the tests instead of skipping them
REQUIRED = os.environ.get("VITCLI_REQUIRE_BROWSER") == "1"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(missing() is not None and not REQUIRED, reason=str(missing()))]
TOL = 1e-3
SIZE = ["--heads", "4", "--native-size", "42x70", "--size", "42x70", "--fit", "resize", "--normalize", "imagenet"]
FIGURES = ROOT / "docs" / "figures"


@pytest.fixture(scope="module")
def reg_model(tmp_path_factory):
    """(weights path, image path, the timm model) for a tiny vit_small_patch14_reg4_dinov2-style ViT."""
    d = tmp_path_factory.mktemp("view")
    model = timm.models.vision_transformer.VisionTransformer(
        img_size=(42, 70), patch_size=14, embed_dim=64, depth=2, num_heads=4, reg_tokens=4, no_embed_class=True,
        init_values=1e-5, num_classes=0)
    scramble(model, seed=3)
    save_file(model.state_dict(), d / "reg4.safetensors")
    pixels = (np.random.default_rng(0).random((42, 70, 3)) * 255).astype(np.uint8)
    Image.fromarray(pixels).save(d / "wide.png")
    return d / "reg4.safetensors", d / "wide.png", model


@pytest.fixture(scope="module")
def page(reg_model, tmp_path_factory):
    weights, img, _ = reg_model
    out = tmp_path_factory.mktemp("page") / "wide.html"
    r = run_cli("view", img, "--weights", weights, *SIZE, "-o", out)
    assert r.returncode == 0, r.stderr.decode()
    assert "MB" in r.stdout.decode()  # the command says the file size
    return out


def _attend(tmp_path, reg_model, layer, head, query, *extra):
    weights, img, _ = reg_model
    npy = tmp_path / f"a_{layer}_{head}_{query}.npy"
    r = run_cli("attend", img, "--weights", weights, *SIZE, "--layer", layer, "--head", head, "--query", query,
                "-o", npy, *extra)
    assert r.returncode == 0, r.stderr.decode()
    return np.load(npy)


CASES = [  # (page selection, attend's --layer --head --query)
    ({"layer": 0, "head": 1, "query": "cls"}, ("0", "1", "cls")),
    ({"layer": 1, "head": 3, "query": 3}, ("1", "3", "3")),  # register 2
    ({"layer": 1, "head": "mean", "query": [2, 4]}, ("1", "mean", "2,4")),
    ({"layer": 0, "head": "max", "query": [0, 1]}, ("0", "max", "0,1")),
    ({"layer": -1, "head": "min", "query": 1}, ("-1", "min", "1")),  # register 0
]


@pytest.mark.slow  # about 55 s (every map of a registers model); the probe page stays quick
def test_maps_equal_attend_similar_and_the_position_table(page, reg_model, tmp_path):
    steps = []
    for sel, _ in CASES:
        steps += [{"eval": f"window.vitcli.select({_js(sel)})"}, {"eval": "window.vitcli.maps()"}]
    report = run_page(page, steps)
    assert report["page_errors"] == [] and report["console_errors"] == []
    weights, img, model = reg_model
    prefix = 5
    for i, (sel, (layer, head, query)) in enumerate(CASES):
        maps = report["results"][2 * i + 1]
        expected = _attend(tmp_path, reg_model, layer, head, query)[0, 0, 0, prefix:]  # (15,)
        assert len(maps["attention"]) == 15
        assert np.abs(np.array(maps["attention"]) - expected).max() <= TOL, (sel, maps["attention"], expected)
        if isinstance(sel["query"], list):  # patch queries: similarity as `figures similar`, posenc from timm's table
            r, c = sel["query"]
            npy = tmp_path / f"s{i}.npy"
            done = run_cli("figures", "similar", img, "--weights", weights, *SIZE, "--patch", f"{r},{c}",
                           "--layer", layer, "-o", npy)
            assert done.returncode == 0, done.stderr.decode()
            assert np.abs(np.array(maps["similarity"]) - np.load(npy).ravel()).max() <= TOL
            table = model.pos_embed.detach()[0].double().numpy()  # (15, D): no prefix rows
            unit = table / np.linalg.norm(table, axis=1, keepdims=True)
            assert np.abs(np.array(maps["posenc"]) - unit @ unit[r * 5 + c]).max() <= TOL
    rollout = tmp_path / "roll.npy"
    _attend(tmp_path, reg_model, "-1", "mean", "cls", "--rollout", rollout)
    check = run_page(page, [{"eval": "window.vitcli.select({query: 'cls'})"}, {"eval": "window.vitcli.maps().rollout"}])
    assert np.abs(np.array(check["results"][1]) - np.load(rollout)[0, prefix:]).max() <= TOL


def _js(sel: dict) -> str:
    import json

    return json.dumps(sel)


def test_keys_move_the_selection_and_nothing_is_fetched(page, tmp_path):
    """The screenshot goes to a temporary folder; VITCLI_DOC_FIGURES=1 refreshes the README's figure."""
    figures = FIGURES if os.environ.get("VITCLI_DOC_FIGURES") == "1" else tmp_path
    figures.mkdir(parents=True, exist_ok=True)
    steps = [{"eval": "window.vitcli.select({layer: 0, head: 0, query: [1, 1]})"}, {"key": "ArrowRight"},
             {"key": "ArrowDown"}, {"key": "ArrowLeft"}, {"key": "ArrowUp"}, {"key": "ArrowUp"}, {"key": "ArrowUp"},
             {"key": "]"}, {"key": "="}, {"mouse": [5, 5]}, {"click": [5, 5]}, {"mouse": [200, 100]},
             {"eval": "window.vitcli.select({layer: 1, head: 'mean', query: 3})"},
             {"screenshot": str(figures / "view_registers.png")}]
    report = run_page(page, steps)
    names = [s["name"] for s in report["results"][1:7]]
    assert names == ["patch (1, 2)", "patch (2, 2)", "patch (2, 1)", "patch (1, 1)", "patch (0, 1)", "patch (0, 1)"]
    assert report["results"][7]["layer"] == 1 and report["results"][8]["head"] == 1
    assert report["results"][9]["name"] == "patch (0, 0)"  # hover picks
    assert report["results"][11]["name"] == "patch (0, 0)" and report["results"][11]["locked"]  # click locks
    assert report["results"][12]["name"] == "reg2"
    assert report["requests"] == [page.resolve().as_uri()]
    assert report["page_errors"] == []


def test_bad_selections_throw_one_clear_error(page):
    steps = [{"eval": "(() => { try { window.vitcli.select({query: [9, 9]}); } catch (e) { return e.message; } })()"},
             {"eval": "(() => { try { window.vitcli.select({head: 'sum'}); } catch (e) { return e.message; } })()"}]
    report = run_page(page, steps)
    assert "outside the 3x5 grid" in report["results"][0]
    assert "mean, max or min" in report["results"][1]


def test_a_model_without_class_token_refuses_cls(tmp_path):
    out = tmp_path / "nocls.html"
    r = run_cli("view", SAMPLES / "coffee.jpg", "--model", "vit-ti16", "--depth", "2", "--no-cls", "--size", "64x96", "-o", out)
    assert r.returncode == 0, r.stderr.decode()
    report = run_page(out, [{"eval": "(() => { try { window.vitcli.select({query: 'cls'}); } catch (e) { return e.message; } })()"}])
    assert report["ready"]["name"] == "patch (2, 3)"  # the centre patch, as attend's default
    assert "no class token" in report["results"][0] and report["page_errors"] == []


def test_a_probe_model_page_with_an_explained_patch(tmp_path):
    """SigLIP-style (no class token, attention-pool probe, no head): the page is written with the rollout of
    every token and --explain --target patch:R,C, and draws without an error."""
    siglip = scramble(timm.create_model("vit_base_patch16_siglip_224", img_size=(42, 70), patch_size=14, embed_dim=64,
                                        depth=2, num_heads=4, num_classes=0))
    save_file(siglip.state_dict(), tmp_path / "siglip.safetensors")
    out = tmp_path / "siglip.html"
    r = run_cli("view", SAMPLES / "coffee.jpg", "--weights", tmp_path / "siglip.safetensors", *SIZE, "--explain",
                "--target", "patch:1,2", "-o", out)
    assert r.returncode == 0, r.stderr.decode()
    report = run_page(out, [{"eval": "window.vitcli.select({query: [1, 3]})"},
                            {"eval": "document.getElementById('explain-title').textContent"}])
    assert report["results"][0]["name"] == "patch (1, 3)" and report["results"][1].startswith("grad-rollout, patch:1,2")
    assert report["page_errors"] == []


@pytest.mark.slow
def test_screenshots_for_the_readme(tmp_path):
    """Chelsea on a small ViT-S/16 preset (random weights), two tabs, into docs/figures/."""
    out = tmp_path / "two.html"
    r = run_cli("view", SAMPLES / "chelsea.jpg", SAMPLES / "astronaut.jpg", "--model", "vit-s16", "--depth", "6",
                "-o", out)
    assert r.returncode == 0, r.stderr.decode()
    FIGURES.mkdir(parents=True, exist_ok=True)
    report = run_page(out, [{"eval": "window.vitcli.select({layer: 2, head: 'mean', query: [6, 8]})"},
                            {"screenshot": str(FIGURES / "view_chelsea.png")},
                            {"eval": "window.vitcli.select({tab: 1, layer: 5, head: 3, query: 'cls'})"},
                            {"screenshot": str(FIGURES / "view_astronaut.png")}])
    assert report["results"][2]["name"] == "cls" and report["page_errors"] == []
    assert (FIGURES / "view_chelsea.png").stat().st_size > 10_000


def test_layout_is_stable_on_hover_ticks_are_round_and_the_legend_fits(page):
    """Nothing moves when the first hover and a click fill captions, bars and the lock note; the charts'
    y ticks are multiples of 1, 2, 2.5 or 5 × 10^k; the norms legend lies inside its chart; the fused
    rows' entropy in the heads table is at most ln T (the max row is no distribution: row / sum)."""
    boxes = ("Array.from(document.querySelectorAll('#controls, .row, figure.panel, figcaption, canvas, #lock'))"
             ".map(e => { const r = e.getBoundingClientRect(); return [e.id, r.x, r.y, r.width, r.height]; })")
    heads = "Array.from(document.querySelectorAll('#heads tbody tr')).map(r => Array.from(r.cells).map(c => c.textContent))"
    report = run_page(page, [{"eval": boxes}, {"mouse": [20, 20]}, {"eval": boxes}, {"click": [30, 30]},
                             {"eval": boxes}, {"eval": "window.vitcli.axes()"}, {"eval": heads},
                             {"eval": "window.vitcli.data.depth"}])
    first, hovered, clicked, axes, rows = (report["results"][i] for i in (0, 2, 4, 5, 6))
    assert first == hovered == clicked
    for chart, labels in axes["ticks"].items():
        values = [float(t) for t in labels]
        step = values[1] - values[0]
        mantissa = step / 10 ** np.floor(np.log10(step))
        assert values[0] == 0 and any(np.isclose(mantissa, m) for m in (1, 2, 2.5, 5)), (chart, labels)
        assert np.allclose(np.diff(values), step), (chart, labels)
    left, right, width = axes["legend"]["norms"]
    assert 0 <= left < right <= width
    tokens = 5 * 3 + 1 + 4  # a 3×5 grid, class token, 4 registers
    entropies = {r[0]: float(r[1]) for r in rows}
    assert set(entropies) >= {"mean", "max", "min"} and max(entropies.values()) <= np.log(tokens) + 1e-9, entropies
    assert report["page_errors"] == []

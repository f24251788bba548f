"""`vitcli view` without a browser: the file, its document, storage choice and errors."""

import json
import re
from importlib import resources

import numpy as np
import pytest

import vitcli.api as api
from tests.conftest import SAMPLES, assert_clean_error, run_cli
from vitcli.api.view import ROW_TOLERANCE, attention_layer

TINY = ["--model", "vit-ti16", "--depth", "2", "--size", "48x80"]


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_page_is_one_file_with_its_data(tmp_path) -> None:
    out = tmp_path / "p.html"
    r = run_cli("view", SAMPLES / "chelsea.jpg", SAMPLES / "coffee.jpg", *TINY, "--layers", "1", "--json", "-o", out)
    assert r.returncode == 0, r.stderr.decode()
    doc = json.loads(r.stdout)
    text = out.read_text()
    assert doc["size_bytes"] == out.stat().st_size and doc["layers"] == [1] and doc["max_map_error"] <= ROW_TOLERANCE
    assert [s["layers"] for s in doc["storage"]] == [{"1": "qk"}, {"1": "qk"}]
    data = json.loads(re.search(r'<script type="application/json" id="vitcli-data">(.*?)</script>', text, re.S).group(1))
    assert [t["grid"] for t in data["tabs"]] == [[3, 5], [3, 5]] and data["layers"] == [1]
    assert data["tabs"][0]["attention"][0]["q"]["shape"] == [3, 16, 64]  # (heads, tokens, head dim)


def test_template_asks_for_nothing_outside_the_file() -> None:
    """No URL, no external script, style, font or image; a CSP that forbids any fetch."""
    for name in ("page.html", "page.css", "page.js"):
        text = resources.files("vitcli.view").joinpath(name).read_text()
        assert not re.search(r"https?:|//cdn|<link|src=|@import|url\(|fetch\(|XMLHttpRequest|import\(", text), name
    assert "default-src 'none'" in resources.files("vitcli.view").joinpath("page.html").read_text()


def test_rows_are_stored_when_half_q_k_would_miss_attend() -> None:
    """Large logits (trained models can have them): float16 Q·K drifts past the tolerance → rows."""
    rng = np.random.default_rng(0)
    q, k = rng.normal(0, 6, (2, 10, 64)), rng.normal(0, 6, (2, 10, 64))
    w = _softmax(np.einsum("htd,hsd->hts", q, k) / 8)
    stored, err = attention_layer(w, q, k, 1 / 8)
    assert stored["kind"] == "rows" and err <= 2.5e-4
    small = attention_layer(_softmax(np.einsum("htd,hsd->hts", q / 6, k / 6) / 8), q / 6, k / 6, 1 / 8)
    assert small[0]["kind"] == "qk" and small[1] <= ROW_TOLERANCE


def test_api_result_and_to_other(tmp_path) -> None:
    model = api.load_model("vit-ti16", depth=2, seed=1)
    res = model.view([str(SAMPLES / "chelsea.jpg")], output=str(tmp_path / "v.html"), layers="-1",
                     to=str(SAMPLES / "rocket.jpg"))
    assert res.path.endswith("v.html") and res.size == (tmp_path / "v.html").stat().st_size
    assert res.document["layers"] == [1] and res.document["to"].endswith("rocket.jpg")


@pytest.mark.parametrize("args, words, code", [
    (["--explain", "--target", "5000"], ["--target", "class 5000 is outside"], 1),
    (["--target", "3"], ["--target", "--explain"], 2),  # ignored without --explain: a usage error
    (["--layers", "7"], ["--layers", "7"], 1),
])
def test_bad_options_one_line_nothing_written(tmp_path, args, words, code) -> None:
    out = tmp_path / "x.html"
    assert_clean_error(run_cli("view", SAMPLES / "chelsea.jpg", *TINY, *args, "-o", out), *words, code=code)
    assert list(tmp_path.iterdir()) == []


def test_explain_panel_holds_the_grad_rollout_map(tmp_path) -> None:
    model = api.load_model("vit-ti16", depth=2, seed=1)
    panel = model._view_explain(str(SAMPLES / "chelsea.jpg"), 3)
    expected = model.explain(str(SAMPLES / "chelsea.jpg"), target="class:3").maps  # (rows, cols)
    assert panel["target"] == "class:3"
    assert np.allclose(np.frombuffer(panel["map"]["data"], np.float32), expected.reshape(-1), rtol=1e-6, atol=1e-9)


def test_missing_image_names_it_and_writes_nothing(tmp_path) -> None:
    assert_clean_error(run_cli("view", tmp_path / "nope.jpg", *TINY, "-o", tmp_path / "x.html"), "nope.jpg")
    assert list(tmp_path.iterdir()) == []

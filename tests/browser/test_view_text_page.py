"""`vitcli view --text` in a real browser: a panel per prompt, its caption the prompt as text (a hostile
prompt stays text and runs nothing), its map the LeGrad map embedded, nothing fetched."""

import base64
import json
import os
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from tests.browser.chromium import missing, run_page
from tests.conftest import run_cli
from tests.text.peers import open_clip_bpe, open_clip_model, save_open_clip

REQUIRED = os.environ.get("VITCLI_REQUIRE_BROWSER") == "1"
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(missing() is not None and not REQUIRED, reason=str(missing()))]
PROMPTS = ["<!--<script>alert(1)</script>", "</script><script>window.pwned = 1</script>", "a dog & a \u2028cat"]


@pytest.mark.slow
def test_text_panels_show_each_prompt_as_text(tmp_path) -> None:
    """The screenshot goes to a temporary folder (VITCLI_SCREENSHOTS=DIR keeps it there to look at)."""
    peer, cfg = open_clip_model(False, 43)
    folder = save_open_clip(tmp_path / "clip", peer, cfg)
    shutil.copy(open_clip_bpe(), folder)
    for i, name in enumerate(("w.png", "v.png")):
        Image.fromarray(np.random.default_rng(6 + i).integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(tmp_path / name)
    out = tmp_path / "text.html"
    args = [a for p in PROMPTS for a in ("--text", p)]
    r = run_cli("view", tmp_path / "w.png", tmp_path / "v.png", "--weights", folder, "--layers", "1", "--json", *args, "-o", out)
    assert r.returncode == 0, r.stderr.decode()
    shots = os.environ.get("VITCLI_SCREENSHOTS") or str(tmp_path)
    report = run_page(out, [
        {"eval": "window.vitcli.textPanels()"},
        {"eval": "[...document.querySelectorAll('#text-panels figure')].map((f) => [f.hidden, f.offsetWidth > 0,"
                 " f.querySelector('figcaption').children.length])"},
        {"eval": "[document.scripts.length, typeof window.pwned, document.getElementById('text-panels').hidden]"},
        {"screenshot": os.path.join(shots, "view_text.png")},
        {"eval": "window.vitcli.select({tab: 1}) && window.vitcli.textPanels()"},
    ], viewport=(1400, 900))
    assert report["page_errors"] == [] and report["console_errors"] == [] and report["requests"] == [out.as_uri()]
    panels, figures, page = report["results"][:3]
    data = _page_data(out)
    assert [p["prompt"] for p in panels] == PROMPTS
    for p, embedded in zip(panels, data["tabs"][0]["text"]["panels"]):
        assert f"“{p['prompt']}”" in p["caption"] and f"p = {embedded['prob']:.4f} (softmax over 3 prompts)" in p["caption"]
        expected = np.frombuffer(base64.b64decode(embedded["map"]["data"]), np.float32)
        assert np.array_equal(np.array(p["map"], np.float32), expected)
    assert figures == [[False, True, 0]] * 3  # shown, laid out, the caption one text node
    assert page == [2, "undefined", False]  # the page's two scripts alone; nothing the prompts hold ran
    second = [np.frombuffer(base64.b64decode(p["map"]["data"]), np.float32) for p in data["tabs"][1]["text"]["panels"]]
    assert all(np.array_equal(np.array(p["map"], np.float32), m) for p, m in zip(report["results"][4], second))
    assert not all(np.array_equal(np.array(p["map"], np.float32), m) for p, m in zip(panels, second))  # redrawn


def _page_data(page) -> dict:
    """The page's embedded JSON data."""
    text = page.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="vitcli-data">(.*?)</script>', text, re.DOTALL).group(1))

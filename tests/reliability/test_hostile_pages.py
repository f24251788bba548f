"""The `vitcli view` page is a document built from untrusted names.

Generated names (HTML comment and script openers and closers, tags with handlers, entities, CDATA,
U+2028/9, quotes) are given as the image's file name, the --to image's name and the --weights path;
each page must open in Chromium (inside `unshare -n`), become ready without errors, run no injected
script, and hold each name as the exact string it was given.
"""

import itertools
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.browser.chromium import missing, run_page
from tests.reliability.helpers import run_capped

REQUIRED = os.environ.get("VITCLI_REQUIRE_BROWSER") == "1"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(missing() is not None and not REQUIRED, reason=str(missing()))]

# Each fragment tries to end the data block, open a script, or change how the HTML parser reads what follows.
PAYLOADS = ["</script><script>window.__pwned=1</script>", "<!--<script>", "<script>window.__pwned=2</script>-->",
            "<img src=x onerror=window.__pwned=3>", "]]><svg onload=window.__pwned=4>", "&lt;&amp;&#60;",
            "\u2028\u2029'\"`${x}", "</SCRIPT ><!--", "<style></style><!--<script></script>"]
FLAGS = "window.__pwned === undefined && document.scripts.length === 2 && !document.querySelector('img, svg, body style')"


def hostile_path(root: Path, payload: str, suffix: str, i: int) -> Path:
    """A file whose path holds `payload` (a '/' in it becomes a folder boundary, as a path allows)."""
    parts = [p for p in f"n{i}{payload}{suffix}".split("/") if p]
    path = root.joinpath(*parts[:-1], f"{parts[-1]}") if len(parts) > 1 else root / parts[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> bytes:
    """The bytes of a tiny timm ViT's safetensors file (32 px, patch 16, D 64, depth 2), scrambled."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save

    from tests.checkpoints.parity import scramble

    model = timm.models.vision_transformer.VisionTransformer(img_size=32, patch_size=16, embed_dim=64, depth=2,
                                                             num_heads=2, num_classes=0)
    scramble(model, seed=1)
    return save(model.state_dict())


@pytest.mark.slow  # about 15 s in chromium; the browser tests' pages stay quick
def test_hostile_names_stay_strings_in_a_page_that_runs(weights: bytes, tmp_path: Path) -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    roles = itertools.cycle(["image", "to", "weights"])
    pages, names = [], []
    triples = [PAYLOADS[i:i + 3] for i in range(0, len(PAYLOADS), 3)]
    for k, triple in enumerate(triples):
        image, other, checkpoint = (hostile_path(tmp_path / f"p{k}" / next(roles), text, ext, k)
                                    for text, ext in zip(triple, (".png", ".png", ".safetensors")))
        Image.fromarray(pixels).save(image, format="PNG")
        Image.fromarray(pixels[::-1]).save(other, format="PNG")
        checkpoint.write_bytes(weights)
        page = tmp_path / f"page{k}.html"
        pages.append(["view", image, "--to", other, "--weights", checkpoint, "--size", "32", "-o", page])
        names.append((page, [str(image), str(other), str(checkpoint)]))
    for result in run_capped(pages, tmp_path, seconds=60):
        assert result["code"] == 0, result["stderr"]
    for page, expected in names:
        data = "JSON.stringify(JSON.parse(document.getElementById('vitcli-data').textContent))"
        report = run_page(page, [{"eval": FLAGS}, {"eval": data}])
        assert report["ready"], report
        assert report["page_errors"] == [] and report["console_errors"] == [], report
        assert report["results"][0] is True, "an injected element or script appeared"
        text = report["results"][1]
        for name in expected:  # each name is in the data exactly as given (a JSON string's text)
            assert json.dumps(name, ensure_ascii=False)[1:-1] in text, name

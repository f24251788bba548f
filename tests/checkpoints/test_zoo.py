"""The zoo test: the most used ViT checkpoints give their own library's numbers, as their hubs lay them out.

Each checkpoint of `tests/checkpoints/zoo.py` is rebuilt at its real architecture (depth cut to two
blocks, weights scrambled) and saved as its repository holds it; vitcli loads it with no overrides,
as a folder and as `hf-hub:ORG/NAME` from a local Hugging Face cache (torchvision and torch.hub
files, which live on no hub, as a folder and as the file), and runs its own family preprocessing
through the public API (`load_model`, `embed`, `attend`) on real non-square photos: a landscape one
through the folder, a portrait one (turned by its EXIF tag) through the second route. The peer runs
its own preprocessing and forward pass on the same photos (transformers: `AutoImageProcessor`'s
default, which in transformers 5 is the torchvision backend). Final tokens, pooled embedding, the
CLIP-style projection where the peer has one, and every block's attention must agree within 1e-4.
Each case prints its numbers per route and how long building, the peer and vitcli took.
"""

import gc
import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import vitcli
from tests.checkpoints.parity import TOL
from tests.checkpoints.zoo import QUICK, Case, Reference, cases

ROOT = Path(__file__).resolve().parents[2]
# One photo per loading route, in route order (both routes read the same bytes; each orientation is seen once).
PHOTOS = [ROOT / "sample_images" / "coffee.jpg",  # 600 wide × 400 high
          ROOT / "sample_images" / "chelsea_exif_rotated.jpg"]  # 300 wide × 451 high once its EXIF turn is applied
COMMIT = "5f8c2a7d0e9b4c1a3f6e8d2b7c9a0e1f4d3b5a6c"
CASES = cases()


def peer_image(path: Path) -> Image.Image:
    """The photo as a peer's user passes it: upright (EXIF applied), RGB."""
    with Image.open(path) as image:
        return ImageOps.exif_transpose(image).convert("RGB")


def cache_snapshot(folder: Path, cache: Path, repo: str) -> None:
    """huggingface_hub's cache layout: models--ORG--NAME/refs/main and snapshots/<commit>/FILES (hard links)."""
    base = cache / ("models--" + repo.replace("/", "--"))
    snapshot = base / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text(COMMIT)
    for file in folder.iterdir():
        os.link(file, snapshot / file.name)


def vitcli_run(model: "vitcli.Model", photo: Path) -> dict[str, np.ndarray]:
    """vitcli's public API with the checkpoint family's own preprocessing: every stage and every block's attention."""
    arrays = dict(model.embed(str(photo)).arrays)  # output (T, D), pooled (D,), projected (K,) where the model has them
    arrays["attention"] = model.attend(str(photo), layer="all", head="all", query="all").weights  # (L, H, T, T)
    return arrays


def _diff(ours: np.ndarray | None, ref: torch.Tensor) -> float | str:
    """Max abs difference, or why there is none."""
    if ours is None:
        return "missing in vitcli"
    ref = ref.float().numpy()
    if ours.shape != ref.shape:
        return f"shape {tuple(ours.shape)} vs peer {tuple(ref.shape)}"
    return float(np.abs(ours.astype(np.float64) - ref).max())


def compare(ours: dict[str, np.ndarray], ref: Reference) -> dict[str, float | str]:
    """Every quantity the peer has against vitcli's: tokens, pooled, projected, attention (worst block)."""
    result: dict[str, float | str] = {"tokens": _diff(ours.get("output"), ref.tokens)}
    if ref.pooled is not None:
        result["pooled"] = _diff(ours.get("pooled"), ref.pooled)
    if ref.projected is not None:
        result["projected"] = _diff(ours.get("projected"), ref.projected)
    attention = ours["attention"]
    if len(attention) != len(ref.attention):
        result["attention"] = f"{len(attention)} blocks vs peer {len(ref.attention)}"
    else:
        per_block = [_diff(a, r) for a, r in zip(attention, ref.attention)]
        bad = [d for d in per_block if isinstance(d, str)]
        result["attention"] = bad[0] if bad else max(per_block)
    return result


def failed(result: dict[str, float | str]) -> bool:
    return any(isinstance(v, str) or not v <= TOL for v in result.values())


def show(result: dict[str, float | str]) -> str:
    return ", ".join(f"{k} {v:.1e}" if isinstance(v, float) else f"{k}: {v}" for k, v in result.items())


def routes(case: Case, folder: Path) -> dict[str, str]:
    """The specs vitcli loads the checkpoint by: its folder, and hf-hub:ORG/NAME or the file itself."""
    second = {"hub": f"hf-hub:{case.repo}"} if case.repo else {"file": str(folder / case.file)}
    return {"folder": str(folder), **second}


def test_the_quick_sample_has_every_library_of_the_zoo() -> None:
    """Sampling for the quick run drops checkpoints, never a library (a layout and a peer pipeline)."""
    assert {c.library for c in CASES if c.quick} == {c.library for c in CASES}
    assert {c.name for c in CASES if c.quick} == QUICK  # no name in the sample that is not a case


@pytest.mark.parametrize("case", [pytest.param(c, marks=() if c.quick else pytest.mark.slow) for c in CASES],
                         ids=[c.name for c in CASES])
def test_zoo_checkpoint_matches_its_library(case: Case, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    folder = tmp_path / case.name.replace("/", "--")
    folder.mkdir()
    start = time.perf_counter()
    peer = case.build(folder)
    built = time.perf_counter()
    references = [peer(peer_image(photo)) for photo in PHOTOS]
    del peer
    gc.collect()
    peered = time.perf_counter()
    if case.repo:
        cache_snapshot(folder, cache, case.repo)
    report, problems = [], []
    for (route, spec), photo, reference in zip(routes(case, folder).items(), PHOTOS, references):
        try:
            result = compare(vitcli_run(vitcli.load_model(spec), photo), reference)
        except Exception as e:  # a refusal or a crash is this route's result, reported with the other route's
            result = {"error": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"}
        report.append(f"  {route:6} {photo.name:24} {show(result)}")
        if failed(result):
            problems.append(f"{route}: {show(result)}")
        gc.collect()
    done = time.perf_counter()
    print(f"\nzoo {case.name} (build {built - start:.1f}s, peer {peered - built:.1f}s, vitcli {done - peered:.1f}s)\n"
          + "\n".join(report))
    assert not problems, f"{case.name}: " + "; ".join(problems)

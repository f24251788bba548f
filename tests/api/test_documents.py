"""Every command's JSON document (`to_json()`) matches its TypedDict in vitcli/api/documents.py (issue 24).

Each command runs on a tiny model (2 blocks) and its document is checked against the TypedDict's own
declaration, read at run time (`__required_keys__`, `__optional_keys__`, `typing.get_type_hints`): every
required key present, no key the TypedDict does not declare, every value of its declared type, nested
TypedDicts and lists included. A key added to a builder but not to its TypedDict (or the other way round)
fails here, as a misspelt read fails mypy in the CLI.
"""

import json
import shutil
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typing_extensions import is_typeddict

import vitcli
from tests.conftest import SAMPLES
from vitcli.api import documents as d
from vitcli.api.compare import compare_features
from vitcli.api.patchify import patchify, unpatchify
from vitcli.api.posenc import posenc
from vitcli.api.rope import rope_posenc

CAT, COFFEE = str(SAMPLES / "chelsea.jpg"), str(SAMPLES / "coffee.jpg")
SMALL = dict(dim=64, depth=2, heads=2)  # a 2-block ViT-Ti/16
TINY = dict(size=64, fit="crop")  # 4 × 4 patches


# --- the checker --------------------------------------------------------------------------------


def _resolve(hint: object) -> object:
    """A forward reference inside an alias ("JSONValue") → the type it names in vitcli.api.documents."""
    if isinstance(hint, typing.ForwardRef):
        return getattr(d, hint.__forward_arg__)
    if isinstance(hint, str):
        return getattr(d, hint)
    return hint


def problems(value: object, hint: object, where: str = "doc") -> list[str]:
    """Where `value` departs from the type `hint` (a TypedDict, a union, a Literal, a container or a scalar)."""
    hint = _resolve(hint)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if is_typeddict(hint):
        return _typeddict_problems(value, hint, where)
    if origin in (typing.Union, types.UnionType):
        found = [problems(value, a, where) for a in args]
        return [] if any(not f for f in found) else [f"{where}: {value!r:.60} is none of {hint}"]
    if origin is typing.Literal:
        return [] if value in args else [f"{where}: {value!r} is not one of {args}"]
    if origin in (list, Sequence):
        if not isinstance(value, (list, tuple)):
            return [f"{where}: {type(value).__name__} is not a list"]
        return [p for i, v in enumerate(value) for p in problems(v, args[0], f"{where}[{i}]")]
    if origin in (dict, Mapping):
        if not isinstance(value, dict):
            return [f"{where}: {type(value).__name__} is not an object"]
        bad = [f"{where}: key {k!r} is not a string" for k in value if not isinstance(k, str)]
        return bad + [p for k, v in value.items() for p in problems(v, args[1], f"{where}.{k}")]
    return _scalar_problems(value, hint, where)


def _scalar_problems(value: object, hint: object, where: str) -> list[str]:
    """JSON's scalars: a float may be written as an int; a bool is no int."""
    if hint is type(None):
        ok = value is None
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint in (str, bool, bytes):
        ok = isinstance(value, hint)  # type: ignore[arg-type]  # one of the three classes
    else:
        raise TypeError(f"{where}: the checker does not know {hint}")
    return [] if ok else [f"{where}: {value!r:.60} ({type(value).__name__}) is not {hint}"]


def _typeddict_problems(value: object, td: type, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: {type(value).__name__} is not a {td.__name__}"]
    hints = typing.get_type_hints(td)
    required, optional = set(td.__required_keys__), set(td.__optional_keys__)  # type: ignore[attr-defined]
    assert required | optional == set(hints)
    found = [f"{where}: {td.__name__} requires {k!r}" for k in sorted(required - set(value))]
    found += [f"{where}: {k!r} is not declared in {td.__name__}" for k in value if k not in hints]
    return found + [p for k, v in value.items() if k in hints for p in problems(v, hints[k], f"{where}.{k}")]


def check(doc: object, td: type) -> None:
    """The document matches the TypedDict, and is JSON (what --json prints)."""
    assert problems(doc, td) == []
    json.dumps(doc, allow_nan=True)


def test_the_checker_finds_drift() -> None:
    """A missing key, an undeclared key, a wrong type deep inside and a wrong Literal are each reported."""
    good = {"layer": 0, "head": "mean", "entropy": 1.0, "max_weight": 0.5, "max_patch": [1, 2], "cls_weight": None,
            "mean_distance": 3}
    assert problems(good, d.HeadRow) == []
    assert problems({k: v for k, v in good.items() if k != "entropy"}, d.HeadRow) == ["doc: HeadRow requires 'entropy'"]
    assert problems({**good, "extra": 1}, d.HeadRow) == ["doc: 'extra' is not declared in HeadRow"]
    assert problems({**good, "max_patch": [1, "2"]}, d.HeadRow)[0].startswith("doc.max_patch[1]")
    assert problems({**good, "layer": True}, d.HeadRow)  # a bool is no int
    assert problems({"text": "a", "tokens": 3, "truncated": False, "norm": 1.5}, d.PromptRow) == []
    assert problems({"command": "info"}, d.InfoDoc)  # required keys missing
    assert problems("rope", d.RelbiasDoc.__annotations__["kind"])  # Literal["relative-bias"]
    assert problems({"a": [1, {"b": None}], "c": 2.5}, d.JSONValue) == []
    assert problems({"a": {1, 2}}, d.JSONValue)  # a set is no JSON value


# --- one tiny model, its commands ---------------------------------------------------------------


@pytest.fixture(scope="module")
def model():
    return vitcli.load_model("vit-ti16", seed=3, **SMALL)


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    """ROOT/CLASS/… with two classes of six 32 × 32 images."""
    root = tmp_path_factory.mktemp("probe")
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / label / f"{i}.png")
    return root


def test_patchify_documents(tmp_path) -> None:
    one = patchify(CAT, **TINY, output=str(tmp_path / "p.npy"), grid_png=str(tmp_path / "g.png"))
    check(one.to_json(), d.PatchifyDoc)
    check(patchify([CAT, COFFEE], **TINY).to_json(), d.PatchifyBatchDoc)
    check(unpatchify(str(tmp_path / "p.npy"), output=str(tmp_path / "back.png")).to_json(), d.UnpatchifyDoc)


def test_embed_documents(model, tmp_path) -> None:
    check(model.embed(CAT, output=str(tmp_path / "z0.npy"), **TINY).to_json(), d.EmbedDoc)
    check(model.embed([CAT, COFFEE], stage="pooled", **TINY).to_json(), d.EmbedBatchDoc)
    pytest.importorskip("pyarrow")
    table = model.embed([CAT, COFFEE], stage="layers", tokens="mean", output=str(tmp_path / "f.parquet"), **TINY)
    check(table.to_json(), d.EmbedBatchDoc)


def test_posenc_documents(model) -> None:
    check(posenc(model, positions="0,3", resample="3x3").to_json(), d.PosencDoc)
    check(posenc("vit-ti16", kind="sincos2d", **SMALL).to_json(), d.PosencDoc)
    check(rope_posenc(dim=16, grid=(3, 4), variant="eva").to_json(), d.RopeDoc)


def test_attend_documents(model, tmp_path) -> None:
    one = model.attend(CAT, layer="all", query="cls", rollout=True, distance=True, masks=True, cosine=True,
                       save_qkv=str(tmp_path / "qkv.npz"), **TINY)
    check(one.to_json(), d.AttendDoc)
    assert {"rollout", "masks", "mean_distance", "qkv_note"} <= set(one.to_json())  # the optional keys, checked
    check(model.attend(CAT, query="2,1", head="mean", **TINY).to_json(), d.AttendDoc)
    check(model.attend([CAT, COFFEE], distance=True, **TINY).to_json(), d.AttendBatchDoc)


def test_explain_documents(model) -> None:
    check(model.explain(CAT, method="all", **TINY).to_json(), d.ExplainDoc)
    check(model.explain(CAT, target="class:3", **TINY).to_json(), d.ExplainDoc)
    check(model.explain([CAT, COFFEE], method="rollout", **TINY).to_json(), d.ExplainBatchDoc)


def test_figure_documents(model) -> None:
    check(model.filters(count=4).to_json(), d.FiltersDoc)
    check(model.pca([CAT, COFFEE], foreground_threshold=0.3, **TINY).to_json(), d.PcaDoc)
    check(model.similar(CAT, to=COFFEE, patch=(1, 2), **TINY).to_json(), d.SimilarDoc)
    norms = model.norms(CAT, **TINY)
    check(norms.to_json(), d.NormsDoc)
    assert all(problems(t, d.ShownTable) == [] for t in norms.shown_tables())


def test_view_info_compare_probe_documents(model, labelled, tmp_path) -> None:
    check(model.view(CAT, output=str(tmp_path / "page.html"), layers="-1", explain=True, **TINY).to_json(), d.ViewDoc)
    check(model.info(), d.InfoDoc)
    check(model.info(size=(80, 48)), d.InfoDoc)
    images = [str(p) for p in sorted(labelled.rglob("*.png"))]
    check(model.compare(images, metric="cka,mutual-knn", topk=2, **TINY).to_json(), d.CompareDoc)
    check(model.probe(str(labelled), size=32, k=3).to_json(), d.ProbeDoc)
    pytest.importorskip("pyarrow")
    model.embed(images, stage="layers", tokens="mean", output=str(tmp_path / "a.parquet"), **TINY)
    check(compare_features(str(tmp_path / "a.parquet"), topk=2).to_json(), d.CompareFeaturesDoc)


# --- checkpoints: a relative position bias, a text tower ----------------------------------------


def test_checkpoint_documents(tmp_path) -> None:
    """A BEiT file (relative bias: posenc's bias document, info's ignored keys) built with timm, scrambled."""
    timm = pytest.importorskip("timm")
    from safetensors.torch import save_file

    from tests.checkpoints.parity import scramble

    beit = scramble(timm.create_model("beit_base_patch16_224", img_size=(48, 48), embed_dim=64, depth=2, num_heads=4,
                                      num_classes=0))
    path = tmp_path / "beit_base_patch16_224.safetensors"
    save_file({**beit.state_dict(), "unused.extra": beit.cls_token.detach().clone()}, path)
    check(posenc(str(path), heads=4, layer=1, patch="0,2", strict=False).to_json(), d.RelbiasDoc)
    check(vitcli.load_model(str(path), heads=4, strict=False).info(), d.InfoDoc)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """open_clip's CLIP with 2-block towers (tests/text/peers.py), saved as its hub lays it out."""
    pytest.importorskip("open_clip")
    from tests.text.peers import open_clip_bpe, open_clip_model, save_open_clip

    net, cfg = open_clip_model(False, 11)
    folder = save_open_clip(tmp_path_factory.mktemp("clip"), net, cfg)
    shutil.copy(open_clip_bpe(), folder)
    return vitcli.load_model(str(folder), device="cpu")


def test_text_documents(clip, tmp_path) -> None:
    check(clip.embed_text(["a cat", "a dog " * 60]).to_json(), d.TextEmbedDoc)
    check(clip.classify(CAT, labels=["a cat", "a dog"]).to_json(), d.ClassifyDoc)
    check(clip.classify([CAT, COFFEE], labels=["a cat", "a dog"]).to_json(), d.ClassifyDoc)
    check(clip.similar(CAT, text="a cat").to_json(), d.SimilarTextDoc)
    page = clip.view(CAT, output=str(tmp_path / "page.html"), layers="-1", text=["a cat", "a dog"])
    check(page.to_json(), d.ViewDoc)
    assert "text" in page.to_json()

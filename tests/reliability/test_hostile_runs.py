"""Run folders are input: `--resume` reads manifest.json, inputs.tsv and the shards as hostile files.

Generated cases: every run file swapped for a FIFO, a link to /dev/zero or a huge sparse file; every
field of a real manifest given values of the wrong type, out of range or naming files outside the
folder. Each case: exit 1 within its time cap and memory cap, one line, nothing in the folder changed.
"""

import copy
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import sampled
from tests.reliability.helpers import assert_one_line, run_capped

pytest.importorskip("pyarrow")

TINY = ["--model", "vit-ti16", "--dim", "64", "--depth", "2", "--heads", "2", "--seed", "3", "--size", "32"]


def run_args(inputs: Path, out: Path, *extra: str) -> list[str]:
    return ["embed", str(inputs), *TINY, "--output-dir", str(out), "--format", "parquet", "--shard-size", "2", *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[Path, Path]:
    """(inputs, run folder): a finished 3-shard run over 5 small PNGs."""
    root = tmp_path_factory.mktemp("run")
    inputs = root / "in"
    inputs.mkdir()
    for i in range(5):
        pixels = np.random.default_rng(i).integers(0, 256, (40, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(inputs / f"i{i}.png")
    [done] = run_capped([run_args(inputs, root / "run", "-q")], root)
    assert done["code"] == 0, done["stderr"]
    return inputs, root / "run"


def _leaves(doc: object, path: tuple = ()) -> Iterator[tuple[tuple, object]]:
    """(key path, value) of every leaf of a JSON document (empty containers count as leaves)."""
    if isinstance(doc, dict) and doc:
        for k, v in doc.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(doc, list) and doc:
        for i, v in enumerate(doc):
            yield from _leaves(v, (*path, i))
    else:
        yield path, doc


def _wrong_values(value: object) -> list[object]:
    """Values of another type than `value`, plus out-of-range numbers for an int."""
    others: list[object] = [None, "x", 1.5, [], {"a": 1}, True]
    if isinstance(value, int) and not isinstance(value, bool):
        others += [-1, 10 ** 12]
    return [v for v in others if type(v) is not type(value)]


def _set(doc: dict, path: tuple, value: object) -> dict:
    out = copy.deepcopy(doc)
    node = out
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return out


def manifest_mutations(doc: dict) -> dict[str, object]:
    """name → a manifest this version must refuse (generated from every leaf, plus named shapes)."""
    cases: dict[str, object] = {}
    for path, value in _leaves(doc):
        if path[:1] in (("options",), ("command",)):
            continue  # options are compared, not trusted: a changed value is the 'same options' line
        for wrong in _wrong_values(value):
            cases[f"{'.'.join(map(str, path))}={json.dumps(wrong)}"] = _set(doc, path, wrong)
    shard = doc["shards"]["0"]
    for key in ["999999999999", "-1", "\u00b2", "01", "3", " 1"]:
        cases[f"shard key {key!r}"] = _set(doc, ("shards",), {**doc["shards"], key: shard})
    for name in ["../../../etc/passwd", "/etc/passwd", "part-00001.parquet", "img_emb/img_emb_0.npy"]:
        cases[f"shard file {name}"] = _set(doc, ("shards", "0", "files"), {name: "0" * 64})
    cases["count 10^12"] = _set(doc, ("inputs", "count"), 10 ** 12)
    cases["count other"] = _set(doc, ("inputs", "count"), 4)
    cases["options a list"] = _set(doc, ("options",), [1])
    cases["options nested"] = _set(doc, ("options", "--stage"), {"a": [1]})
    cases["command a list"] = _set(doc, ("command",), [1])
    cases["command nested"] = _set(doc, ("command", "model"), {"a": [1]})
    cases["command list of numbers"] = _set(doc, ("command", "images"), [1, 2])
    cases["skipped too many"] = _set(doc, ("shards", "0", "skipped"), [{"file": "x"}] * 3)
    cases["not an object"] = [doc]
    cases["deeply nested"] = "[" * 100_000 + "]" * 100_000
    cases["not utf-8"] = b"\xff\xfe{}"
    return cases


def _copy(folder: Path, where: Path) -> Path:
    shutil.copytree(folder, where, symlinks=True)
    return where


def _snapshot(folder: Path) -> dict[str, object]:
    """Every entry of a folder: a file's bytes (its size when large), a link's target, or 'special'."""
    def state(p: Path) -> object:
        if p.is_symlink():
            return os.readlink(p)
        if p.is_file():
            return p.stat().st_size if p.stat().st_size > 1 << 20 else p.read_bytes()
        return "special" if not p.is_dir() else "folder"

    return {str(p.relative_to(folder)): state(p) for p in sorted(folder.rglob("*"))}


def test_every_manifest_field_out_of_type_or_range_is_one_line(finished, tmp_path: Path) -> None:
    inputs, run = finished
    doc = json.loads((run / "manifest.json").read_text())
    mutations = manifest_mutations(doc)
    assert len(mutations) > 60
    cases, folders = [], []
    for i, (name, value) in enumerate(mutations.items()):
        folder = _copy(run, tmp_path / f"r{i}")
        data = value if isinstance(value, bytes) else (value if isinstance(value, str) else json.dumps(value)).encode()
        (folder / "manifest.json").write_bytes(data)
        cases.append(run_args(inputs, folder, "--resume"))
        folders.append((name, folder, _snapshot(folder)))
    for result, (name, folder, before) in zip(run_capped(cases, tmp_path), folders):
        assert_one_line(result, "manifest.json")
        assert _snapshot(folder) == before, name


def _specials(tmp_path: Path) -> dict[str, object]:
    """name → how to replace a file: a FIFO, a link to /dev/zero, a huge sparse file."""
    def fifo(p: Path) -> None:
        p.unlink()
        os.mkfifo(p)

    def zero(p: Path) -> None:
        p.unlink()
        p.symlink_to("/dev/zero")

    def sparse(p: Path) -> None:
        with open(p, "r+b") as f:
            f.truncate(6 << 30)

    return {"fifo": fifo, "/dev/zero": zero, "6 GiB sparse": sparse}


@sampled("target", ["manifest.json", "inputs.tsv", "part-00001.parquet"])
def test_run_files_that_are_fifos_devices_or_huge_are_refused_unread(finished, tmp_path: Path, target: str) -> None:
    inputs, run = finished
    cases, expect = [], []
    for kind, replace in _specials(tmp_path).items():
        if target == "part-00001.parquet" and kind == "6 GiB sparse":
            continue  # a large shard is hashed in 1 MiB steps (memory bounded); its time is its size
        folder = _copy(run, tmp_path / f"{kind.strip('/').replace(' ', '_')}")
        replace(folder / target)
        source = inputs
        if target == "inputs.tsv":  # the recorded list is read only to say what changed
            source = _copy(inputs, tmp_path / f"in-{folder.name}")
            (source / "i9.png").write_bytes((inputs / "i0.png").read_bytes())
            manifest = json.loads((folder / "manifest.json").read_text())
            manifest["command"]["images"] = [str(source)]  # the same IMAGE argument, changed contents
            (folder / "manifest.json").write_text(json.dumps(manifest))
        cases.append(run_args(source, folder, "--resume"))
        expect.append((kind, folder, _snapshot(folder)))
    for result, (kind, folder, before) in zip(run_capped(cases, tmp_path, seconds=15), expect):
        words = ["inputs changed", target] if target == "inputs.tsv" else [target]
        line = assert_one_line(result, *words)
        assert any(w in line for w in ("FIFO", "device", "holds")), (kind, line)
        assert _snapshot(folder) == before, kind

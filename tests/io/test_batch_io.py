"""Streaming batch outputs: one .npy with its index, or one file per image; all or nothing."""

import json

import numpy as np
import pytest

from vitcli.errors import VitcliError
from vitcli.io.batch import index_path, open_sink, output_names


def lines(path):
    return [json.loads(line) for line in open(path)]


def test_rows_stream_into_one_array_with_index(tmp_path):
    out = tmp_path / "emb.npy"
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((3, 4, 5)).astype(np.float32), rng.standard_normal((2, 4, 5)).astype(np.float32)
    with open_sink(str(out), None, ["p0", "p1", "p2", "p3", "p4"]) as sink:
        sink.add(a, [{"path": f"p{i}"} for i in range(3)])
        assert not out.exists()  # nothing in place before the end
        sink.add(b, [{"path": f"p{i}"} for i in range(3, 5)])
    assert np.array_equal(np.load(out), np.concatenate([a, b]))
    assert index_path(str(out)) == str(tmp_path / "emb.index.jsonl")
    assert lines(tmp_path / "emb.index.jsonl") == [{"path": f"p{i}", "row": i} for i in range(5)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["emb.index.jsonl", "emb.npy"]


def test_skipped_images_shrink_the_array_and_stay_in_the_index(tmp_path):
    out = tmp_path / "x.npy"
    rows = np.arange(2 * 3, dtype=np.uint8).reshape(2, 3)
    with open_sink(str(out), None, ["a", "b", "c"] * 40) as sink:  # room for 120 rows, 2 written
        sink.add(rows[:1], [{"path": "a"}])
        sink.skip({"path": "b", "error": "damaged"})
        sink.add(rows[1:], [{"path": "c"}])
    loaded = np.load(out)
    assert loaded.shape == (2, 3) and np.array_equal(loaded, rows)
    assert out.stat().st_size == 128 + rows.nbytes  # header (64-byte aligned) + data, no slack
    assert [e["row"] for e in lines(tmp_path / "x.index.jsonl")] == [0, None, 1]


def test_failure_inside_leaves_the_previous_file(tmp_path):
    out = tmp_path / "x.npy"
    np.save(out, np.array([7]))
    with pytest.raises(RuntimeError):
        with open_sink(str(out), None, ["a", "b"]) as sink:
            sink.add(np.zeros((1, 3)), [{"path": "a"}])
            raise RuntimeError("interrupted")
    assert np.load(out).tolist() == [7]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]  # temporary files removed


def test_rows_of_another_shape_are_refused(tmp_path):
    with pytest.raises(VitcliError, match="one array needs one size"):
        with open_sink(str(tmp_path / "x.npy"), None, ["a", "b"]) as sink:
            sink.add(np.zeros((1, 196, 8)), [{"path": "a"}])
            sink.add(np.zeros((1, 216, 8)), [{"path": "b"}])
    assert list(tmp_path.iterdir()) == []


def test_nothing_processed_is_an_error(tmp_path):
    with pytest.raises(VitcliError, match="nothing written"):
        with open_sink(str(tmp_path / "x.npy"), None, ["a"]) as sink:
            sink.skip({"path": "a", "error": "bad"})
    assert list(tmp_path.iterdir()) == []


def test_output_dir_one_file_each_mirroring_folders(tmp_path):
    paths = [str(tmp_path / "in/a.jpg"), str(tmp_path / "in/sub/b.png")]
    dest = tmp_path / "out"
    with open_sink(None, str(dest), paths) as sink:
        sink.add(np.ones((2, 4)), [{"path": p} for p in paths])
        assert not (dest / "a.npy").exists()
    assert np.array_equal(np.load(dest / "a.npy"), np.ones(4))
    assert np.array_equal(np.load(dest / "sub/b.npy"), np.ones(4))
    assert [e["file"] for e in lines(dest / "index.jsonl")] == ["a.npy", "sub/b.npy"]
    assert sorted(p.name for p in dest.iterdir()) == ["a.npy", "index.jsonl", "sub"]  # staging folder gone


def test_output_dir_aborted_leaves_nothing(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        with open_sink(None, str(dest), ["a.png"]) as sink:
            sink.add(np.ones((1, 2)), [{"path": "a.png"}])
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # no folder made, no staging folder left beside it


def test_names_collide_and_options_conflict(tmp_path):
    with pytest.raises(VitcliError, match="would write a.npy"):
        output_names(["x/a.jpg", "x/a.png"])
    with pytest.raises(VitcliError, match="not both"):
        with open_sink("x.npy", str(tmp_path), ["a"]):
            pass
    with pytest.raises(VitcliError, match="standard output"):
        with open_sink("-", None, ["a", "b"]):
            pass

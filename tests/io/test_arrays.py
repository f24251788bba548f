"""Atomic outputs: a file is replaced whole or not at all; devices are written in place."""

import os

import numpy as np
import pytest

from vitcli.errors import VitcliError
from vitcli.io.arrays import load_npy, save_npy
from vitcli.io.atomic import atomic_file


def test_save_and_load_round_trip(tmp_path):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_npy(str(tmp_path / "a.npy"), a)
    assert (load_npy(str(tmp_path / "a.npy")) == a).all()
    assert [p.name for p in tmp_path.iterdir()] == ["a.npy"]


def test_failure_midway_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "out.npy"
    target.write_bytes(b"old contents")
    with pytest.raises(RuntimeError):
        with atomic_file(str(target)) as f:
            f.write(b"half of the new")
            raise RuntimeError("interrupted")
    assert target.read_bytes() == b"old contents"
    assert [p.name for p in tmp_path.iterdir()] == ["out.npy"]


def test_new_file_gets_normal_permissions(tmp_path):
    save_npy(str(tmp_path / "a.npy"), np.zeros(2))
    mode = (tmp_path / "a.npy").stat().st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_full_device_is_a_clean_error():
    with pytest.raises(VitcliError, match="No space left"):
        save_npy("/dev/full", np.zeros(100_000))


def test_output_paths_that_cannot_be(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(VitcliError, match="does not exist"):
        save_npy(str(tmp_path / "nope" / "a.npy"), np.zeros(2))
    with pytest.raises(VitcliError, match="not a folder"):
        save_npy(str(tmp_path / "file.txt" / "a.npy"), np.zeros(2))
    with pytest.raises(VitcliError, match="directory"):
        save_npy(str(tmp_path), np.zeros(2))


def test_load_npy_refuses_pickles(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(VitcliError, match="not a readable"):
        load_npy(str(tmp_path / "obj.npy"))

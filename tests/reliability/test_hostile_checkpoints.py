"""Hostile and damaged checkpoints through the real CLI: code never runs, damage is one clean line,
NaNs are flagged, and a large file is not read into memory twice."""

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from tests.conftest import assert_clean_error, run_cli
from tests.reliability.corpus import ROOT, SAMPLES
from tests.reliability.helpers import run_batch

IMAGE = str(SAMPLES / "chelsea.jpg")


class _Payload:
    """Unpickling this runs a shell command that creates `marker`: the side effect the tests look for."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _tiny_state() -> dict[str, torch.Tensor]:
    """A timm ViT-Ti state dict at 32 px with 2 blocks (random weights)."""
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=0)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _torchscript_zip(path: Path, payload: bytes) -> None:
    """A TorchScript-shaped archive (data.pkl, constants.pkl, code/) whose data.pkl is `payload`."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", payload)
        z.writestr("archive/constants.pkl", pickle.dumps(()))
        z.writestr("archive/code/__torch__.py", "")
        z.writestr("archive/version", "3\n")


def _damaged_safetensors(good: bytes) -> dict[str, bytes]:
    """Ways to break a safetensors file: its header length, its JSON, its offsets, dtypes, shapes, data."""
    n = int.from_bytes(good[:8], "little")
    header, data = good[8 : 8 + n], good[8 + n :]
    first_f32 = header.index(b'"F32"')
    first_offsets = header.index(b'"data_offsets":[') + len(b'"data_offsets":[')

    def with_header(h: bytes) -> bytes:
        return len(h).to_bytes(8, "little") + h + data

    return {
        "header length huge": (2**40).to_bytes(8, "little") + good[8:],
        "header length short": (n // 2).to_bytes(8, "little") + good[8:],
        "header not json": good[:8] + b"\x00" * n + data,
        "header not an object": with_header(b"[1, 2, 3]"),
        "unknown dtype": with_header(header[:first_f32] + b'"Q32"' + header[first_f32 + 5 :]),
        "offsets outside": with_header(header[:first_offsets] + b"99999999," + header[header.index(b",", first_offsets) + 1 :]),
        "data truncated": good[: 8 + n + len(data) // 2],
        "only the length": good[:8],
    }


NAN_EXPECTED = {"blocks.0.attn.qkv.weight": {"nan": 5, "inf": 0}, "pos_embed": {"nan": 3, "inf": 0},
                "blocks.1.mlp.fc1.bias": {"nan": 0, "inf": 1}}


def _evil_files(folder: Path, marker: Path) -> list[Path]:
    """The same code-running payload as a torch zip, a legacy torch file, a plain pickle and TorchScript."""
    state = {"model": _tiny_state(), "args": _Payload(marker)}
    torch.save(state, folder / "evil.pth")
    torch.save(state, folder / "evil_legacy.pt", _use_new_zipfile_serialization=False)
    (folder / "evil.bin").write_bytes(pickle.dumps(state))
    _torchscript_zip(folder / "evil_script.pt", pickle.dumps({"w": _Payload(marker)}))
    return [folder / n for n in ("evil.pth", "evil_legacy.pt", "evil.bin", "evil_script.pt")]


def _damaged_files(folder: Path) -> dict[str, Path]:
    save_file(_tiny_state(), folder / "good.safetensors")
    files = {}
    for i, (name, data) in enumerate(_damaged_safetensors((folder / "good.safetensors").read_bytes()).items()):
        files[name] = folder / f"bad{i}.safetensors"
        files[name].write_bytes(data)
    return files


def _nan_file(folder: Path) -> Path:
    state = _tiny_state()
    state["blocks.0.attn.qkv.weight"][0, :5] = float("nan")  # hidden by the fused attention kernel
    state["pos_embed"][0, 2, :3] = float("nan")  # row 2 = patch 1: reaches Z0 directly
    state["blocks.1.mlp.fc1.bias"][7] = float("inf")
    save_file(state, folder / "nan.safetensors")
    return folder / "nan.safetensors"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict:
    """Every hostile file, and the CLI's answers to them from one batched subprocess."""
    folder = tmp_path_factory.mktemp("hostile")
    marker = folder / "marker"
    evil, damaged, nan = _evil_files(folder, marker), _damaged_files(folder), str(_nan_file(folder))
    cases = [["embed", IMAGE, "--weights", p, "-o", folder / "out.npy"] for p in evil]
    cases += [["info", "--weights", p] for p in damaged.values()]
    cases += [["info", "--weights", nan, "--json", "--check-values"], ["info", "--weights", nan, "--check-values"],
              ["embed", IMAGE, "--weights", nan, "--json", "-o", folder / "z0.npy"], ["embed", IMAGE, "--weights", nan]]
    results = run_batch(cases, folder)
    return {"folder": folder, "marker": marker, "evil": list(zip(evil, results[: len(evil)])),
            "damaged": dict(zip(damaged, zip(damaged.values(), results[len(evil) : len(evil) + len(damaged)]))),
            "nan": results[len(evil) + len(damaged) :]}


def test_pickles_that_would_run_code_are_refused_and_never_run(hostile: dict) -> None:
    folder, marker = hostile["folder"], hostile["marker"]
    # the key case in its own process, as a user runs it
    assert_clean_error(run_cli("info", "--weights", folder / "evil.pth"), str(folder / "evil.pth"), "refused")
    for path, result in hostile["evil"]:
        assert_clean_error(result, str(path), "refused")
    assert not marker.exists()
    assert not (folder / "out.npy").exists()
    pickle.loads((folder / "evil.bin").read_bytes())  # control: plain unpickling does run it
    assert marker.exists()
    marker.unlink()


def test_damaged_safetensors_are_one_clean_line(hostile: dict) -> None:
    for name, (path, result) in hostile["damaged"].items():
        line = assert_clean_error(result, str(path))
        assert "safetensors" in line or "truncated" in line, (name, line)


def test_nan_weights_are_loaded_and_flagged(hostile: dict) -> None:
    info_json, info_table, embed_json, embed_table = hostile["nan"]
    assert all(r.returncode == 0 for r in (info_json, info_table, embed_json, embed_table))
    assert json.loads(info_json.stdout)["model"]["nonfinite_weights"] == NAN_EXPECTED
    doc = json.loads(embed_json.stdout)
    assert doc["model"]["nonfinite_weights"] == NAN_EXPECTED
    z0 = np.load(hostile["folder"] / "z0.npy")  # (T, D) = (5, 192)
    assert doc["tensors"]["input"]["nan"] == int(np.isnan(z0).sum()) == 3
    for table in (info_table.stdout.decode(), embed_table.stdout.decode()):
        assert "NaN / Inf in weights" in table and "8 NaN, 1 Inf in 3 tensors" in table
    assert "3 NaN" in embed_table.stdout.decode()  # the Z0 row of the stages table


@pytest.mark.slow  # about 11 s
def test_a_large_checkpoint_is_not_read_into_memory_twice(tmp_path: Path) -> None:
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to measure peak RSS")
    save_file(_tiny_state(), tmp_path / "tiny.safetensors")
    big = timm.create_model("vit_base_patch16_224", pretrained=False)  # random ViT-B/16, 86.6 M parameters
    save_file({k: v.contiguous() for k, v in big.state_dict().items()}, tmp_path / "vit_b.safetensors")
    del big
    size = (tmp_path / "vit_b.safetensors").stat().st_size  # ≈ 346 MB
    warmup = ["embed", IMAGE, "--weights", str(tmp_path / "tiny.safetensors"), "--json"]
    measured = ["embed", IMAGE, "--weights", str(tmp_path / "vit_b.safetensors"), "--json"]
    (tmp_path / "warmup.json").write_text(json.dumps(warmup))
    (tmp_path / "measured.json").write_text(json.dumps(measured))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "tests.reliability.peak_rss", tmp_path / "warmup.json",
                           tmp_path / "measured.json"], capture_output=True, env=env, cwd=ROOT, timeout=300)
    report = json.loads(done.stderr.decode().strip().splitlines()[-1])
    assert report["codes"] == [0, 0], done.stderr.decode()
    # one copy of the weights (memory-mapped pages count once) plus activations; twice would be ≥ 2×
    assert report["growth"] < 1.4 * size, (report["growth"] / 2**20, size / 2**20)


def _edited(state: dict[str, torch.Tensor], key: str, value: torch.Tensor) -> dict[str, torch.Tensor]:
    return {**state, key: value}


@pytest.mark.parametrize("key, value, words", [
    ("blocks.0.attn.proj.weight", lambda t: t.to(torch.int64), "not floating point"),
    ("pos_embed", lambda t: t.bool(), "not floating point"),
    ("blocks.0.mlp.fc1.weight", lambda t: torch.tensor(1.0), "wrong shape: blocks.0.mlp.fc1.weight is ()"),
    ("pos_embed", lambda t: t.flatten(), "tensor shapes do not describe a ViT"),
])
def test_weights_of_the_wrong_kind_are_one_clean_error(tmp_path: Path, key: str, value, words: str) -> None:
    """Found by fuzzing state dicts: integer weights and a scalar or flat tensor where a matrix belongs
    used to fail inside torch's load_state_dict or the shape inference (IndexError)."""
    from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint
    from vitcli.errors import VitcliError

    state = _tiny_state()
    save_file(_edited(state, key, value(state[key]).contiguous()), tmp_path / "w.safetensors")
    with pytest.raises(VitcliError, match=words) as e:
        build_model_from_checkpoint(load_checkpoint(tmp_path / "w.safetensors"))
    assert e.value.source == str(tmp_path / "w.safetensors")

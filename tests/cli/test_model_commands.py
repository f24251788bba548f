"""`embed`, `posenc` and `info` end to end: shapes, formula values, determinism, JSON, errors."""

import io
import json
import math

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SAMPLES, assert_clean_error, run_cli, sampled

CAT = SAMPLES / "chelsea.jpg"
SMALL = ("--model", "vit-ti16", "--depth", "2")  # quick: 2 blocks of ViT-Ti/16


def npy(stdout: bytes) -> np.ndarray:
    return np.load(io.BytesIO(stdout))


def test_embed_pipe_gives_z0_of_vit_b16():
    r = run_cli("embed", CAT, "-o", "-")
    assert r.returncode == 0, r.stderr
    assert npy(r.stdout).shape == (197, 768)


@sampled(
    "stage, shape",
    [("patches", (196, 768)), ("tokens", (196, 192)), ("input", (197, 192)), ("output", (197, 192)), ("pooled", (192,))],
    keep=2,
)
def test_embed_stage_shapes(stage, shape):
    r = run_cli("embed", CAT, *SMALL, "--stage", stage, "-o", "-", "-q")
    assert npy(r.stdout).shape == shape


def test_embed_non_square_and_no_cls():
    r = run_cli("embed", CAT, *SMALL, "--size", "160x224", "--no-cls", "-o", "-", "--stage", "input", "-q")
    assert npy(r.stdout).shape == (10 * 14, 192)


@pytest.mark.slow  # about 12 s
def test_embed_same_seed_is_bit_identical_and_other_seed_differs():
    a = npy(run_cli("embed", CAT, *SMALL, "--stage", "output", "-o", "-", "-q").stdout)
    b = npy(run_cli("embed", CAT, *SMALL, "--stage", "output", "-o", "-", "-q").stdout)
    c = npy(run_cli("embed", CAT, *SMALL, "--stage", "output", "-o", "-", "-q", "--seed", "1").stdout)
    assert a.tobytes() == b.tobytes()
    assert not np.array_equal(a, c)


@pytest.mark.slow  # about 9 s
def test_embed_linear_equals_conv():
    a = npy(run_cli("embed", CAT, *SMALL, "--stage", "tokens", "--impl", "conv", "-o", "-", "-q").stdout)
    b = npy(run_cli("embed", CAT, *SMALL, "--stage", "tokens", "--impl", "linear", "-o", "-", "-q").stdout)
    assert np.abs(a - b).max() <= 1e-5


def test_embed_patches_stage_is_patchify_normalised():
    emb = npy(run_cli("embed", CAT, *SMALL, "--stage", "patches", "-o", "-", "-q").stdout)
    pat = npy(run_cli("patchify", CAT, "--normalize", "imagenet", "-o", "-", "-q").stdout)
    assert np.array_equal(emb, pat)


def test_embed_input_is_tokens_plus_cls_plus_positions(tmp_path):
    """Z0 = [x_cls; x_p·E] + E_pos, checked with the sin-cos table computed here from the formula."""
    tokens = npy(run_cli("embed", CAT, *SMALL, "--posenc", "sincos1d", "--stage", "tokens", "-o", "-", "-q").stdout)
    z0 = npy(run_cli("embed", CAT, *SMALL, "--posenc", "sincos1d", "--stage", "input", "-o", "-", "-q").stdout)
    d = tokens.shape[1]
    pos = np.arange(197)[:, None]
    i = np.arange(d // 2)[None, :]
    angle = pos / 10000 ** (2 * i / d)
    table = np.empty((197, d))
    table[:, 0::2], table[:, 1::2] = np.sin(angle), np.cos(angle)
    assert np.abs(z0[1:] - (tokens + table[1:])).max() < 1e-5
    cls = z0[0] - table[0]  # the class token itself: N(0, 1/D) init
    assert 0.5 / math.sqrt(d) < cls.std() < 2 / math.sqrt(d)


def test_embed_json_has_model_and_tokens():
    doc = json.loads(run_cli("embed", CAT, "--json").stdout)
    assert doc["command"] == "embed" and doc["num_tokens"] == 197
    m = doc["model"]
    assert (m["name"], m["dim"], m["depth"], m["heads"], m["patch_size"]) == ("vit-b16", 768, 12, 12, 16)
    assert m["params"] == 86_567_656
    assert {"patches", "tokens", "input", "output", "pooled"} <= set(doc["tensors"])
    assert {"path", "original_size", "size", "fit"} <= set(doc["input"])


def test_posenc_worked_example():
    doc = json.loads(run_cli("posenc", "--kind", "sincos1d", "--dim", "4", "--grid", "4x4", "--positions", "0:3", "--json").stdout)
    rows = [p["values"] for p in doc["positions"]]
    expected = [[0, 1, 0, 1], [0.8415, 0.5403, 0.0100, 1.0000], [0.9093, -0.4161, 0.0200, 0.9998]]
    assert np.round(rows, 4).tolist() == expected
    r = run_cli("posenc", "--kind", "sincos1d", "--dim", "4", "--grid", "4x4", "--positions", "0:3")
    table = r.stdout.decode()
    for text in ("0.8415", "0.5403", "0.0100", "1.0000", "-0.4161", "0.9998"):
        assert text in table


def test_posenc_sincos2d_matches_mae_layout():
    """MAE: first half encodes the column (x), second half the row (y), each [sin | cos]."""
    r = run_cli("posenc", "--kind", "sincos2d", "--dim", "8", "--grid", "2x3", "-o", "-", "-q")
    table = npy(r.stdout)
    assert table.shape == (7, 8) and not table[0].any()
    omega = 1 / 10000 ** (np.arange(2) / 2)  # D/4 = 2 frequencies
    for k in range(6):
        y, x = divmod(k, 3)
        expected = np.concatenate([np.sin(x * omega), np.cos(x * omega), np.sin(y * omega), np.cos(y * omega)])
        assert np.allclose(table[1 + k], expected, atol=1e-12)


@pytest.mark.slow  # about 15 s; test_memory_bounds' learned table stays quick
def test_posenc_learned_is_the_table_embed_adds():
    table = npy(run_cli("posenc", *SMALL, "-o", "-", "-q").stdout)
    with_cls = npy(run_cli("embed", CAT, *SMALL, "--stage", "tokens", "-o", "-", "-q").stdout)
    z0 = npy(run_cli("embed", CAT, *SMALL, "--stage", "input", "-o", "-", "-q").stdout)
    assert table.shape == (197, 192)
    assert np.abs(z0[1:] - with_cls - table[1:]).max() < 1e-5


def test_posenc_resample_and_similarity(tmp_path):
    png = tmp_path / "sim.png"
    r = run_cli("posenc", "--kind", "sincos2d", "--grid", "4x6", "--resample", "6x4", "--similarity", png, "-o", "-")
    assert r.returncode == 0, r.stderr
    assert npy(r.stdout).shape == (1 + 24, 768)
    img = np.asarray(Image.open(png).convert("RGB"))
    assert img.shape[0] > 200 and img.shape[1] > 200 and img.std() > 20


@pytest.mark.slow  # about 8 s; test_posenc_resample_and_similarity stays quick
def test_posenc_same_grid_resample_is_identity():
    a = npy(run_cli("posenc", *SMALL, "-o", "-", "-q").stdout)
    b = npy(run_cli("posenc", *SMALL, "--resample", "14x14", "-o", "-", "-q").stdout)
    assert np.array_equal(a, b)


def test_info_numbers():
    doc = json.loads(run_cli("info", "--json").stdout)
    m = doc["model"]
    assert m["params"] == 86_567_656 and abs(m["gmacs"] - 17.6) < 0.1
    assert doc["grid"] == [14, 14] and m["num_tokens"] == 197 and m["head_dim"] == 64 and m["mlp_dim"] == 3072


@sampled(
    "args, words",
    [
        (("posenc", "--dim", "10", "--heads", "3"), ("10", "heads")),
        (("posenc", "--kind", "sincos1d", "--dim", "7", "--heads", "7"), ("even",)),
        (("posenc", "--grid", "0x5"), ("--grid",)),
        (("info", "--model", "vit-zz"), ("vit-zz",)),
        (("embed", str(CAT), "--device", "cuda"), ("--device", "cuda")),
        (("embed", str(CAT), "--dtype", "float8"), ("--dtype",)),
    ],
    keep=2,
)
def test_model_errors_are_one_line(args, words):
    assert_clean_error(run_cli(*args), *words)


def test_half_precision_on_cpu_warns():
    r = run_cli("embed", CAT, *SMALL, "--dtype", "bfloat16", "-o", "-")
    assert r.returncode == 0 and b"bfloat16" in r.stderr and b"slower" in r.stderr
    assert npy(r.stdout).dtype == np.float32  # written as float32 for portability

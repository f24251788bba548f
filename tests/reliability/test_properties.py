"""Properties over random sizes, patch sizes, dims, heads, orders and dtypes (hypothesis, in-process).

Each property is checked against an independent statement of it: index arithmetic for patches,
timm's resample_abs_pos_embed for resampled position tables,
F.conv2d for the embedding, a float64 softmax for attention, Python's `math` for sin-cos, and
numpy on the written `.npy` for the JSON statistics. Example counts are bounded and fixed
(derandomized) so the run is quick and repeatable.
"""

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from vitcli.cli import app
from vitcli.core.attention import Attention
from vitcli.core.embedding import PatchEmbed
from vitcli.core.patches import patchify, unpatchify
from vitcli.core.posenc import resample_pos_table, sincos1d_table
from vitcli.core.reference import attention_rollout

FAST = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
orders = st.sampled_from(["chw", "hwc"])
grids = st.tuples(st.integers(1, 5), st.integers(1, 5))
FLOAT_TOL = {torch.float64: 1e-10, torch.float32: 2e-5}


def _randn(shape: tuple[int, ...], seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(dtype)


# ---- patches ----------------------------------------------------------------------------------

@FAST
@given(lead=st.lists(st.integers(1, 3), max_size=2), c=st.integers(1, 4), p=st.integers(1, 6), grid=grids,
       order=orders, dtype=st.sampled_from(["uint8", "int16", "float32", "float64", "torch16", "torchbf16"]),
       seed=st.integers(0, 2**16))
def test_patchify_then_unpatchify_is_the_identity(lead, c, p, grid, order, dtype, seed) -> None:
    shape = (*lead, c, grid[0] * p, grid[1] * p)
    rng = np.random.default_rng(seed)
    if dtype.startswith("torch"):
        image = _randn(shape, seed, torch.float16 if dtype == "torch16" else torch.bfloat16)
    else:
        image = (rng.integers(0, 255, shape) if dtype[0] in "ui" else rng.standard_normal(shape)).astype(dtype)
    patches = patchify(image, p, order)  # (..., N, P·P·C)
    assert tuple(patches.shape) == (*lead, grid[0] * grid[1], p * p * c)
    back = unpatchify(patches, grid, c, order)
    assert back.dtype == image.dtype and tuple(back.shape) == shape
    assert (back == image).all()
    # one value, located by the documented index formula (patch k at row k // cols, col k % cols)
    k, y, x, ch = (int(v) for v in rng.integers(0, [grid[0] * grid[1], p, p, c]))
    inner = ch * p * p + y * p + x if order == "chw" else (y * p + x) * c + ch
    pixel = image[(0,) * len(lead) + (ch, (k // grid[1]) * p + y, (k % grid[1]) * p + x)]
    assert patches[(0,) * len(lead) + (k, inner)] == pixel


# ---- patch embedding --------------------------------------------------------------------------

@torch.no_grad()
@FAST
@given(b=st.integers(1, 2), c=st.integers(1, 4), p=st.integers(1, 6), d=st.integers(1, 24), grid=grids,
       order=orders, dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16))
def test_conv_embedding_equals_linear_embedding(b, c, p, d, grid, order, dtype, seed) -> None:
    embed = PatchEmbed(p, c, d).to(dtype)
    embed.proj.weight.copy_(_randn(tuple(embed.proj.weight.shape), seed, dtype))
    embed.proj.bias.copy_(_randn((d,), seed + 1, dtype))
    images = _randn((b, c, grid[0] * p, grid[1] * p), seed + 2, dtype)
    expected = F.conv2d(images, embed.proj.weight, embed.proj.bias, stride=p).flatten(2).transpose(1, 2)
    conv, linear = embed(images, "conv"), embed(images, "linear", order)  # (B, N, D)
    scale = FLOAT_TOL[dtype] * math.sqrt(c * p * p)
    torch.testing.assert_close(conv, expected, rtol=0, atol=scale)
    torch.testing.assert_close(linear, conv, rtol=0, atol=scale)


# ---- attention --------------------------------------------------------------------------------

def _attention(heads: int, head_dim: int, seed: int, dtype: torch.dtype) -> Attention:
    m = Attention(heads * head_dim, heads).to(dtype)
    for i, param in enumerate(m.parameters()):
        scale = param.shape[-1] ** -0.5 if param.ndim == 2 else 0.1
        param.copy_(_randn(tuple(param.shape), seed + i, dtype) * scale)
    return m


@torch.no_grad()
@FAST
@given(b=st.integers(1, 2), t=st.integers(1, 40), heads=st.integers(1, 6), head_dim=st.integers(1, 16),
       dtype=st.sampled_from([torch.float32, torch.float64]), seed=st.integers(0, 2**16))
def test_attention_rows_sum_to_one_and_explicit_equals_sdpa(b, t, heads, head_dim, dtype, seed) -> None:
    m = _attention(heads, head_dim, seed, dtype)
    x = _randn((b, t, heads * head_dim), seed + 100, dtype)
    fast, _ = m(x)
    slow, detail = m(x, return_weights=True)
    w = detail.weights  # (B, H, T, T)
    assert w.shape == (b, heads, t, t) and (w >= 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(b, heads, t, dtype=dtype), rtol=0, atol=FLOAT_TOL[dtype] * 10)
    q, k, _ = (z.double() for z in m.split_heads(x))  # independent float64 softmax
    logits = q @ k.transpose(-2, -1) / math.sqrt(head_dim)
    reference = torch.exp(logits - logits.amax(-1, keepdim=True))
    reference = reference / reference.sum(-1, keepdim=True)
    torch.testing.assert_close(w.double(), reference, rtol=0, atol=FLOAT_TOL[dtype] * 50)
    torch.testing.assert_close(fast, slow, rtol=0, atol=FLOAT_TOL[dtype] * 50)


@FAST
@given(b=st.integers(1, 2), layers=st.integers(1, 4), heads=st.integers(1, 4), t=st.integers(1, 20),
       fusion=st.sampled_from(["mean", "max", "min"]), ratio=st.sampled_from([0.0, 0.1, 0.5, 0.9]),
       scope=st.sampled_from(["row", "matrix"]), start=st.integers(0, 3), peaked=st.booleans(),
       seed=st.integers(0, 2**16))
def test_rollout_rows_sum_to_one(b, layers, heads, t, fusion, ratio, scope, start, peaked, seed) -> None:
    logits = [_randn((b, heads, t, t), seed + i) * (30.0 if peaked else 1.0) for i in range(layers)]
    attentions = [torch.softmax(z, dim=-1) for z in logits]  # (B, H, T, T) per layer
    start = min(start, layers - 1)
    rollout = attention_rollout(attentions, fusion, ratio, scope, start)  # (B, T, T)
    assert rollout.shape == (b, t, t) and torch.isfinite(rollout).all() and (rollout >= 0).all()
    torch.testing.assert_close(rollout.sum(-1), torch.ones(b, t, dtype=rollout.dtype), rtol=0, atol=1e-12)


# ---- position encodings -----------------------------------------------------------------------

@FAST
@given(lead=st.lists(st.integers(1, 2), max_size=1), src=grids, dst=grids, prefix=st.integers(0, 5),
       dim=st.integers(1, 16), dtype=st.sampled_from([torch.float16, torch.bfloat16, torch.float32, torch.float64]),
       antialias=st.booleans(), seed=st.integers(0, 2**16))
def test_resampling_a_table_equals_timm(lead, src, dst, prefix, dim, dtype, antialias, seed) -> None:
    """Any grid to any grid (the same one included) as timm's resample_abs_pos_embed does it, one
    table at a time; prefix rows untouched, dtype kept."""
    from timm.layers import resample_abs_pos_embed

    table = _randn((*lead, prefix + src[0] * src[1], dim), seed, dtype)
    out = resample_pos_table(table, src, dst, prefix, antialias=antialias)
    assert out.dtype == dtype and out.shape == (*lead, prefix + dst[0] * dst[1], dim)
    assert torch.equal(out[..., :prefix, :], table[..., :prefix, :])
    tables = table.reshape(-1, *table.shape[-2:])
    for i, one in enumerate(out.reshape(-1, *out.shape[-2:])):
        theirs = resample_abs_pos_embed(tables[i : i + 1], new_size=list(dst), old_size=list(src),
                                        num_prefix_tokens=prefix, antialias=antialias)[0]
        if dtype in (torch.float32, torch.float64):
            assert (one.double() - theirs.double()).abs().max().item() <= 1e-6
        else:  # both interpolate in float32 and round to the half type: the same values
            assert torch.equal(one, theirs)


def _pe(pos: int, channel: int, dim: int) -> float:
    """PE(pos, 2i) = sin(pos / 10000^(2i/D)), PE(pos, 2i+1) = cos(pos / 10000^(2i/D)), in float64."""
    angle = pos / 10000.0 ** ((channel - channel % 2) / dim)
    return math.sin(angle) if channel % 2 == 0 else math.cos(angle)


@FAST
@given(grid=st.tuples(st.integers(1, 12), st.integers(1, 12)), half=st.integers(1, 48), prefix=st.integers(0, 4))
def test_sincos1d_equals_the_formula_in_float64(grid, half, prefix) -> None:
    dim = 2 * half
    table = sincos1d_table(grid, dim, prefix)  # (prefix + N, D) float64
    n = prefix + grid[0] * grid[1]
    expected = np.array([[_pe(pos, ch, dim) for ch in range(dim)] for pos in range(n)])
    assert table.dtype == torch.float64 and table.shape == (n, dim)
    np.testing.assert_allclose(table.numpy(), expected, rtol=0, atol=1e-12)


# ---- JSON statistics against numpy on the written .npy ---------------------------------------

def _numpy_stats(array: np.ndarray) -> dict:
    a = array.astype(np.float64)
    return {"shape": list(array.shape), "dtype": str(array.dtype), "min": a.min(), "max": a.max(),
            "mean": a.mean(), "std": a.std()}


def _assert_stats_equal(reported: dict, array: np.ndarray) -> None:
    expected = _numpy_stats(array)
    assert reported["shape"] == expected["shape"] and reported["dtype"] == expected["dtype"]
    for key in ("min", "max", "mean", "std"):
        assert reported[key] == pytest.approx(expected[key], rel=1e-9, abs=1e-9), key


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> str:
    """A random-noise RGB PNG, 70 × 90."""
    path = tmp_path_factory.mktemp("props") / "noise.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 256, (70, 90, 3), dtype=np.uint8)).save(path)
    return str(path)


@settings(max_examples=15, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(p=st.integers(2, 16), cells=st.tuples(st.integers(1, 6), st.integers(1, 6)), order=orders,
       normalize=st.sampled_from(["raw", "none", "imagenet", "clip"]), fit=st.sampled_from(["crop", "resize", "pad"]))
def test_patchify_json_stats_equal_numpy_on_the_written_npy(photo, tmp_path, p, cells, order, normalize, fit) -> None:
    out = tmp_path / "patches.npy"
    size = f"{cells[0] * p}x{cells[1] * p}"
    result = CliRunner().invoke(app, ["patchify", photo, "-p", str(p), "--size", size, "--order", order,
                                      "--normalize", normalize, "--fit", fit, "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    array = np.load(out)
    assert array.shape == (cells[0] * cells[1], p * p * 3)
    _assert_stats_equal(doc["tensors"]["patches"], array)


@settings(max_examples=10, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(["sincos1d", "sincos2d", "learned", "none"]), grid=grids, quarter=st.integers(1, 8))
def test_posenc_json_stats_equal_numpy_on_the_written_npy(tmp_path, kind, grid, quarter) -> None:
    out = tmp_path / "table.npy"
    result = CliRunner().invoke(app, ["posenc", "--kind", kind, "--grid", f"{grid[0]}x{grid[1]}", "--dim",
                                      str(4 * quarter), "--heads", "1", "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    array = np.load(out)
    assert array.shape == (1 + grid[0] * grid[1], 4 * quarter)
    _assert_stats_equal(json.loads(result.stdout)["tensors"]["pos_embed"], array)


@settings(max_examples=6, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stage=st.sampled_from(["patches", "tokens", "input", "output", "pooled"]), cells=grids,
       posenc=st.sampled_from(["learned", "sincos2d", "none"]), impl=st.sampled_from(["conv", "linear"]))
def test_embed_json_stats_equal_numpy_on_the_written_npy(photo, tmp_path, stage, cells, posenc, impl) -> None:
    out = tmp_path / "stage.npy"
    result = CliRunner().invoke(app, ["embed", photo, "--model", "vit-ti16", "--dim", "32", "--depth", "1",
                                      "--heads", "2", "-p", "8", "--size", f"{cells[0] * 8}x{cells[1] * 8}",
                                      "--posenc", posenc, "--impl", impl, "--stage", stage, "--json", "-o", str(out)])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    _assert_stats_equal(doc["tensors"][stage], np.load(out))

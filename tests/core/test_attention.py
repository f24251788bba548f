"""Attention: explicit = fused = torch's MultiheadAttention; weights are a softmax; query rows are exact."""

import pytest
import torch
from torch import nn

from vitcli.core.attention import Attention, resolve_indices


def _attention(dim: int = 48, heads: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32) -> Attention:
    """An Attention with weights of std 1/sqrt(fan_in) and small biases."""
    g = torch.Generator().manual_seed(seed)
    m = Attention(dim, heads).to(dtype)
    with torch.no_grad():
        for p in m.parameters():
            scale = p.shape[-1] ** -0.5 if p.ndim == 2 else 0.1
            p.copy_(torch.randn(p.shape, generator=g) * scale)
    return m


def _tokens(b: int, t: int, d: int, dtype: torch.dtype = torch.float32, seed: int = 1) -> torch.Tensor:
    """LayerNorm-like tokens: unit scale per channel."""
    return torch.randn(b, t, d, generator=torch.Generator().manual_seed(seed)).to(dtype)


@torch.no_grad()
def test_explicit_equals_sdpa_and_rows_sum_to_one() -> None:
    m, x = _attention(), _tokens(2, 37, 48)
    fast, none = m(x)
    slow, detail = m(x, return_weights=True)
    assert none is None and fast.shape == slow.shape == x.shape
    assert (fast - slow).abs().max().item() <= 1e-5
    assert detail.weights.shape == (2, 4, 37, 37)
    assert all(t.shape == (2, 4, 37, 12) for t in (detail.q, detail.k, detail.v))
    assert (detail.weights >= 0).all()
    torch.testing.assert_close(detail.weights.sum(-1), torch.ones(2, 4, 37), rtol=0, atol=1e-6)


@torch.no_grad()
def test_matches_torch_multihead_attention() -> None:
    m, x = _attention(dim=32, heads=8, seed=2), _tokens(3, 11, 32)
    peer = nn.MultiheadAttention(32, 8, batch_first=True)
    peer.in_proj_weight.copy_(m.qkv.weight)
    peer.in_proj_bias.copy_(m.qkv.bias)
    peer.out_proj.weight.copy_(m.proj.weight)
    peer.out_proj.bias.copy_(m.proj.bias)
    y_peer, a_peer = peer(x, x, x, need_weights=True, average_attn_weights=False)
    y, detail = m(x, return_weights=True)
    assert (y - y_peer).abs().max().item() <= 1e-5
    assert (detail.weights - a_peer).abs().max().item() <= 1e-6


@torch.no_grad()
def test_by_hand_in_float64() -> None:
    m, x = _attention(dim=8, heads=2, seed=3, dtype=torch.float64), _tokens(1, 5, 8, torch.float64)
    w, b = m.qkv.weight, m.qkv.bias
    q, k, v = (x[0] @ w[i * 8:(i + 1) * 8].T + b[i * 8:(i + 1) * 8] for i in range(3))  # (T, D) each
    head = 1
    qh, kh, vh = (t[:, head * 4:(head + 1) * 4] for t in (q, k, v))
    logits = qh @ kh.T / 2.0  # sqrt(d_k) = sqrt(4)
    expected = torch.exp(logits) / torch.exp(logits).sum(1, keepdim=True)
    _, detail = m(x, return_weights=True)
    torch.testing.assert_close(detail.weights[0, head], expected, rtol=0, atol=1e-12)
    torch.testing.assert_close(detail.v[0, head], vh, rtol=0, atol=1e-12)


@torch.no_grad()
def test_query_rows_equal_the_full_matrix_rows() -> None:
    m, x = _attention(), _tokens(2, 50, 48)
    _, full = m(x, return_weights=True)
    y, part = m(x, return_weights=True, queries=[0, 7, -1])
    assert part.weights.shape == (2, 4, 3, 50)
    assert (part.weights - full.weights[:, :, [0, 7, 49]]).abs().max().item() <= 1e-6
    assert (y - m(x)[0]).abs().max().item() == 0.0  # Y still comes from the fused kernel


@torch.no_grad()
def test_query_path_never_builds_the_token_matrix() -> None:
    m, x = _attention(dim=32, heads=2), _tokens(1, 2048, 32)
    full_matrix = 2 * 2048 * 2048 * 4  # bytes of (B, H, T, T) float32
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        m(x, return_weights=True, queries=[0])
    biggest = max(e.cpu_memory_usage for e in prof.key_averages())
    assert biggest < full_matrix / 8, biggest


def test_indices_and_errors() -> None:
    assert resolve_indices([0, -1, 3], 4) == [0, 3, 3]
    with pytest.raises(ValueError, match="token 5 is out of range"):
        resolve_indices([5], 5)
    with pytest.raises(ValueError, match="not divisible"):
        Attention(10, 3)


@torch.no_grad()
def test_weights_filled_in_row_blocks_equal_one_softmax(monkeypatch) -> None:
    from vitcli.core import attention

    attn = Attention(32, 4).eval()
    x = torch.randn(2, 23, 32, generator=torch.Generator().manual_seed(3))
    q, k, _ = attn.split_heads(x)
    expected = torch.softmax(q @ k.transpose(-2, -1) / 8**0.5, dim=-1)  # (2, 4, 23, 23), d_k = 8
    monkeypatch.setattr(attention, "WEIGHTS_BLOCK", 2 * 4 * 23 * 5)  # 5 query rows a block: 5 blocks
    blocked = attn.weights(q, k)
    torch.testing.assert_close(blocked, expected, rtol=0, atol=1e-6)
    y, detail = attn(x, return_weights=True)
    torch.testing.assert_close(y, attn(x)[0], rtol=0, atol=1e-5)  # explicit (blocked) = SDPA


@torch.no_grad()
def test_score_bias_and_mask_enter_every_path() -> None:
    m, x = _attention(dim=16, heads=2, seed=4, dtype=torch.float64), _tokens(2, 9, 16, torch.float64)
    bias = torch.randn(2, 2, 9, 9, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    bias[:, :, :, 3] = float("-inf")  # key 3 masked for every query
    q, k, v = m.split_heads(x)
    expected = torch.softmax(q @ k.transpose(-2, -1) / 8**0.5 + bias, dim=-1)  # d_k = 8
    y, full = m(x, return_weights=True, bias=bias)
    torch.testing.assert_close(full.weights, expected, rtol=0, atol=1e-12)
    assert (full.weights[..., 3] == 0).all()
    torch.testing.assert_close(y, m.merge(expected @ v), rtol=0, atol=1e-12)  # Y = A·V with the bias
    torch.testing.assert_close(m(x, bias=bias)[0], y, rtol=0, atol=0)  # the fast path: the same bits
    _, rows = m(x, return_weights=True, queries=[-1, 2], bias=bias)
    torch.testing.assert_close(rows.weights, expected[:, :, [8, 2]], rtol=0, atol=1e-12)
    shared = torch.zeros(1, 1, 1, 9, dtype=torch.float64)  # one row for every query, broadcast
    shared[..., 0] = float("-inf")
    _, one = m(x, return_weights=True, queries=[4], bias=shared)
    assert (one.weights[..., 0] == 0).all()
    assert torch.allclose(one.weights.sum(-1), torch.ones(2, 2, 1, dtype=torch.float64))


@torch.no_grad()
def test_rotation_turns_q_and_k_before_the_scores(monkeypatch) -> None:
    from vitcli.core import attention

    m, x = _attention(dim=16, heads=2, seed=6), _tokens(1, 12, 16)
    swap = lambda q, k: (k, q)  # noqa: E731 - any map of (Q, K) shows where it is applied
    q, k, v = m.split_heads(x)
    y, detail = m(x, return_weights=True, rotate=swap)
    assert torch.equal(detail.q, k) and torch.equal(detail.k, q) and torch.equal(detail.v, v)
    expected = torch.softmax(k @ q.transpose(-2, -1) / 8**0.5, dim=-1)
    torch.testing.assert_close(detail.weights, expected, rtol=0, atol=1e-6)
    monkeypatch.setattr(attention, "WEIGHTS_BLOCK", 2 * 12 * 5)  # row blocks see the rotation too
    torch.testing.assert_close(m(x, return_weights=True, rotate=swap)[1].weights, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(y, m(x, rotate=swap)[0], rtol=0, atol=0)


@torch.no_grad()
def test_block_prefix_rows_equal_the_full_block_rows_with_a_per_image_bias() -> None:
    from vitcli.core.block import Block
    from vitcli.core.config import ViTConfig

    config = ViTConfig(dim=16, heads=2, mlp_dim=32, depth=1)
    block = Block(config).double()
    for p in block.parameters():
        p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=torch.float64) * 0.3)
    x = _tokens(3, 10, 16, torch.float64)
    bias = torch.randn(3, 1, 10, 10, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    qkv = block.qkv(x)
    full, _ = block.finish(x, qkv, bias=bias)
    torch.testing.assert_close(block.prefix_rows(x, qkv, 2, bias), full[:, :2], rtol=0, atol=1e-12)

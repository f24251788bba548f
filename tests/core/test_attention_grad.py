"""The tiled attention backward against autograd on the textbook formula, and the forward's log-sum-exp.

Expected values: torch autograd through softmax(scale·Q·Kᵀ + bias)·V written out in full (float64), not the
code under test; the reader's rows against mean_h (A ⊙ ∂y/∂A)⁺ formed from that autograd's own A and ∂y/∂A.
"""

import pytest
import torch

import vitcli.core.attention_grad as tiles
from vitcli.core.attention import Attention


def textbook(q, k, v, bias, scale):
    """Y, A per head (float64) with autograd: A = softmax(scale·QKᵀ + bias), Y = A·V."""
    scores = scale * q @ k.transpose(-2, -1)
    a = torch.softmax(scores if bias is None else scores + bias, dim=-1)
    return a @ v, a


def inputs(b, h, t, d, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(b, h, t, d, generator=g, dtype=torch.float64) for _ in range(4)]


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("bias_shape", [None, (1, 3, 23, 23), (2, 1, 1, 23)])
def test_tiles_give_autograds_gradients_and_the_readers_rows(monkeypatch, torch_threads, threads, bias_shape) -> None:
    """Uneven tiles (5 rows × 7 columns over T = 23), two images, 3 heads, a score bias broadcast three ways:
    ∂y/∂Q, ∂y/∂K, ∂y/∂V equal autograd's, and every row block the reader sees equals mean_h (A ⊙ ∂y/∂A)⁺."""
    monkeypatch.setattr(tiles, "TILE_ROWS", 5)
    monkeypatch.setattr(tiles, "TILE_COLS", 7)
    torch_threads(threads)
    b, h, t, d = 2, 3, 23, 8
    scale = d**-0.5
    q, k, v, grad_y = inputs(b, h, t, d, 1)
    bias = None if bias_shape is None else torch.randn(*bias_shape, dtype=torch.float64)
    leaves = [x.clone().requires_grad_() for x in (q, k, v)]
    y, a = textbook(*leaves, bias, scale)
    a.retain_grad()
    y.backward(grad_y)
    want_rows = (a.detach() * a.grad).clamp_min(0).mean(dim=1)  # (B, T, T)
    lse = torch.logsumexp(scale * q @ k.transpose(-2, -1) + (0 if bias is None else bias), dim=-1)  # (B, H, T)

    seen: dict[int, torch.Tensor] = {}
    dq, dk, dv = tiles.attention_backward(q, k, v, bias, y.detach(), lse, grad_y, scale,
                                          lambda s, e, rows: seen.__setitem__(s, rows[:, :e - s].clone()))
    for got, leaf in zip((dq, dk, dv), leaves, strict=True):
        torch.testing.assert_close(got, leaf.grad, rtol=1e-10, atol=1e-12)
    assert sorted(seen) == [0, 5, 10, 15, 20]
    for s, rows in seen.items():
        torch.testing.assert_close(rows, want_rows[:, s:s + rows.shape[1]], rtol=1e-10, atol=1e-12)


def test_without_inputs_only_the_readers_rows_are_formed() -> None:
    """The lowest block read: the reader still sees every row, and no gradient is returned."""
    b, h, t, d = 1, 2, 9, 4
    q, k, v, grad_y = inputs(b, h, t, d, 2)
    y, _ = textbook(q, k, v, None, 0.5)
    lse = torch.logsumexp(0.5 * q @ k.transpose(-2, -1), dim=-1)
    seen: list[int] = []
    dq, dk, dv = tiles.attention_backward(q, k, v, None, y, lse, grad_y, 0.5, lambda s, e, rows: seen.append(e - s),
                                          inputs=False)
    assert sum(seen) == t and dq.numel() == dk.numel() == dv.numel() == 0


@pytest.mark.parametrize("fused", [True, False])
def test_mix_lse_gives_mix_and_the_scores_log_sum_exp(monkeypatch, fused) -> None:
    """SDPA's fused CPU kernel (and, without it, the scores' row blocks) give `mix`'s output bit for bit and
    logsumexp(scale·QKᵀ + bias) per query row, with a relative-position-like bias."""
    attn = Attention(32, 4)
    g = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 4, 50, 8, generator=g) for _ in range(3))
    bias = torch.randn(1, 4, 50, 50, generator=g)
    refused: list[bool] = []
    if not fused:
        def refuse(*args, **kwargs):
            refused.append(True)
            raise RuntimeError("no fused kernel here")
        monkeypatch.setattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", refuse)
    y, lse = attn.mix_lse(q, k, v, bias)
    assert refused == ([] if fused else [True])
    want, _ = attn.mix(q, k, v, bias=bias)
    assert torch.equal(y, want)
    scores = (q.double() @ k.double().transpose(-2, -1)) * attn.scale + bias.double()
    torch.testing.assert_close(lse.double(), torch.logsumexp(scores, dim=-1), rtol=1e-5, atol=1e-5)


def test_the_budget_counts_the_blocks_the_code_uses() -> None:
    """budget.py (no torch import) keeps its own copies of the tile sizes, the thread cap and the weights' row
    block: they must be the ones the code runs with."""
    from vitcli.core import attention, budget

    assert (budget.TILE_ROWS, budget.TILE_COLS, budget.MAX_WORKERS) == (tiles.TILE_ROWS, tiles.TILE_COLS,
                                                                         tiles.MAX_WORKERS)
    assert budget.WEIGHTS_BLOCK == attention.WEIGHTS_BLOCK

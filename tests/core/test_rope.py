"""RoPE properties: rotation keeps norms, axial scores depend only on relative position, weights equal SDPA."""

import math

import pytest
import torch

from vitcli.core.capture import Capture
from vitcli.core.config import ViTConfig
from vitcli.core.presets import build_model
from vitcli.core.rope import Rope, default_periods, kernel, rope_angles


@pytest.mark.parametrize("kind", ["dinov3", "eva"])
def test_rotation_keeps_norms_and_leaves_prefix_rows(kind) -> None:
    rope = Rope(kind, 16, 100.0 if kind == "dinov3" else 10000.0, num_prefix=2, ref_grid=(4, 4) if kind == "eva" else None)
    q, k = torch.randn(2, 3, 2 + 12, 16, dtype=torch.float64), torch.randn(2, 3, 2 + 12, 16, dtype=torch.float64)
    rq, rk = rope.rotation((3, 4))(q, k)
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1)) and torch.allclose(rk.norm(dim=-1), k.norm(dim=-1))
    assert torch.equal(rq[:, :, :2], q[:, :, :2]) and not torch.allclose(rq[:, :, 2:], q[:, :, 2:])


@pytest.mark.parametrize("kind", ["dinov3", "eva"])
def test_score_depends_only_on_relative_position(kind) -> None:
    """⟨R(p)q, R(p')k⟩ is the same for every pair of patches with the same offset (fixed q, k)."""
    grid, rope = (4, 5), Rope(kind, 8, 100.0, num_prefix=0)
    q, k = torch.randn(1, 1, 1, 8, dtype=torch.float64), torch.randn(1, 1, 1, 8, dtype=torch.float64)
    n = grid[0] * grid[1]
    rq, rk = rope.rotation(grid)(q.expand(1, 1, n, 8), k.expand(1, 1, n, 8))
    scores = (rq @ rk.transpose(-1, -2))[0, 0]  # (N, N)
    by_offset: dict[tuple[int, int], list[float]] = {}
    for i in range(n):
        for j in range(n):
            off = (j // grid[1] - i // grid[1], j % grid[1] - i % grid[1])
            by_offset.setdefault(off, []).append(float(scores[i, j]))
    assert all(max(v) - min(v) < 1e-5 for v in by_offset.values())  # angles are float32


def test_dinov3_angles_by_hand() -> None:
    """Patch (0, 0) of a 2×4 grid: row coord 2·0.25 − 1 = −0.5, column 2·0.125 − 1 = −0.75; periods 100^(2i/4)."""
    periods = default_periods("dinov3", 8, 100.0)
    assert torch.allclose(periods, torch.tensor([1.0, 10.0]))
    theta = rope_angles("dinov3", (2, 4), periods)[0]
    expected = torch.tensor([-0.5 * 2 * math.pi, -0.5 * 2 * math.pi / 10, -0.75 * 2 * math.pi, -0.75 * 2 * math.pi / 10])
    assert torch.allclose(theta, expected)


def test_kernel_diagonal_is_one_and_symmetric() -> None:
    k = kernel("dinov3", (3, 3), default_periods("dinov3", 16, 100.0))
    assert torch.allclose(k.diagonal(), torch.ones(9, dtype=torch.float64)) and torch.allclose(k, k.T)


def test_explicit_weights_equal_sdpa_output_with_rope_and_qk_norm() -> None:
    c = ViTConfig(dim=64, depth=2, heads=4, mlp_dim=96, image_size=(48, 80), num_registers=2, posenc="none",
                  pos_prefix_rows=0, rope="dinov3", rope_base=100.0, qk_norm=True, mlp="swiglu", num_classes=0)
    model = build_model(c, seed=1)
    with torch.no_grad():
        for name, p in model.named_parameters():  # no norm at 1, no bias at 0
            if p.dim() == 1:
                p.add_(0.2 * torch.randn(p.shape))
        x = torch.randn(1, 3, 48, 80)
        out = model(x, Capture(attention=[0], qkv=True, blocks=[0]))
        q, k, v = out.qkv[0]
        w = out.attentions[0]
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        assert (w @ v - y).abs().max() < 1e-5 and torch.allclose(w.sum(-1), torch.ones_like(w.sum(-1)))

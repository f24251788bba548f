"""Relative position bias and the attention-pool probe: properties checked against the formula and timm."""

import timm.models.beit as timm_beit
import torch

from vitcli.core.capture import Capture
from vitcli.core.config import ViTConfig
from vitcli.core.parts import model_parts
from vitcli.core.presets import build_model
from vitcli.core.relpos import relative_position_index, table_rows

SMALL = dict(dim=64, depth=2, heads=4, mlp_dim=128, image_size=(32, 48))


def test_index_equals_timm_for_non_square_grids() -> None:
    for grid in [(2, 3), (3, 2), (4, 4), (1, 5)]:
        assert torch.equal(relative_position_index(grid), timm_beit.gen_relative_position_index(grid))
        assert table_rows(grid) == (2 * grid[0] - 1) * (2 * grid[1] - 1) + 3


@torch.no_grad()
def test_zero_bias_table_equals_plain_attention() -> None:
    """A relative bias of zeros adds nothing: same tokens and weights as the model without the part."""
    for kind in ("layer", "shared"):
        biased = build_model(ViTConfig(**SMALL, rel_pos_bias=kind), seed=3)  # tables start at zero
        plain = build_model(ViTConfig(**SMALL), seed=3)
        x = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
        a, b = (m(x, Capture(attention=[0, 1])) for m in (biased, plain))
        assert torch.allclose(a.output, b.output, atol=1e-6)
        assert all(torch.allclose(a.attentions[i], b.attentions[i], atol=1e-7) for i in (0, 1))


@torch.no_grad()
def test_bias_enters_the_softmax_by_hand() -> None:
    """Layer 0's weights equal softmax(QKᵀ/√d + B[index]) computed by hand from Q, K and the table."""
    model = build_model(ViTConfig(**SMALL, rel_pos_bias="layer"), seed=4)
    table = model.blocks[0].rel_pos_bias.relative_position_bias_table
    table.copy_(torch.randn(table.shape, generator=torch.Generator().manual_seed(1)))
    out = model(torch.randn(1, 3, 32, 48), Capture(attention=[0], qkv=True))
    q, k, _ = out.qkv[0]
    index = relative_position_index((2, 3))
    bias = table[index].permute(2, 0, 1)[None]  # (1, H, T, T)
    expected = torch.softmax(q @ k.transpose(-2, -1) / 4.0 + bias, dim=-1)  # head dim 16
    assert torch.allclose(out.attentions[0], expected, atol=1e-6)


@torch.no_grad()
def test_probe_weights_are_its_softmax_and_rows_sum_to_one() -> None:
    model = build_model(ViTConfig(**SMALL, class_token=False, pos_prefix_rows=0, pooling="map"), seed=5)
    out = model(torch.randn(2, 3, 32, 48), Capture(pool_attention=True))
    w = out.pool_attention
    assert w.shape == (2, 4, 1, 6) and torch.allclose(w.sum(-1), torch.ones(2, 4, 1))
    p = model.attn_pool
    q = p.q(p.latent).reshape(1, 4, 1, 16)
    k = p.kv(out.output)[..., :64].reshape(2, 6, 4, 16).transpose(1, 2)
    assert torch.allclose(w, torch.softmax(q @ k.transpose(-2, -1) / 4.0, dim=-1), atol=1e-6)
    assert {k for k in model.state_dict() if k.startswith("attn_pool.")} >= {"attn_pool.latent", "attn_pool.q.weight",
                                                                            "attn_pool.kv.weight", "attn_pool.mlp.fc1.weight"}


def test_model_parts_names_the_new_parts() -> None:
    parts = model_parts(ViTConfig(**SMALL, class_token=False, pos_prefix_rows=0, pooling="map", norm="rmsnorm",
                                  mlp="swiglu", activation="silu"))
    assert parts["pooling"].startswith("attention-pool") and parts["norm"] == "RMSNorm" and parts["mlp"] == "SwiGLU (silu)"
    beit = model_parts(ViTConfig(**SMALL, posenc="none", rel_pos_bias="shared"))
    assert beit["position"] == "relative position bias (shared)"

"""Rows do not depend on torch's thread count (a Ray actor runs fewer threads than the local backend)."""

import pytest
import torch

from vitcli.core.capture import Capture
from vitcli.core.presets import build_model, get_preset, override


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@torch.no_grad()
@pytest.mark.parametrize("pooling", ["cls", "map"])
@pytest.mark.parametrize("final", ["pooled", "tokens"])
def test_pooled_and_tokens_have_the_same_bits_on_one_and_two_threads(threads, final: str, pooling: str) -> None:
    config = override(get_preset("vit-ti16"), dim=64, depth=2, heads=2)
    if pooling == "map":  # the attention-pool probe (SigLIP): one query row over all tokens
        config = config.with_changes(pooling="map", class_token=False, pos_prefix_rows=0, pool_heads=2,
                                     pool_mlp_dim=128)
    model = build_model(config, seed=5)
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))  # 197 tokens
    outs = []
    for n in (1, 2):
        torch.set_num_threads(n)
        outs.append(model(x, Capture(final=final)))
    assert torch.equal(outs[0].pooled, outs[1].pooled)
    if final == "tokens":
        assert torch.equal(outs[0].output, outs[1].output)

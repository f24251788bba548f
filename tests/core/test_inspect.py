"""inspect_attention against the full weights of every layer: selection, fusion, distance, rollout,
class-token rows, cosine and Q, K, V; and no block after the last layer it needs."""

import torch

from tests.checkpoints.parity import scramble
from tests.core.test_encoder import _Calls, _images
from vitcli.core.analysis import cosine_similarity_matrix, fuse_heads
from vitcli.core.capture import Capture
from vitcli.core.config import ViTConfig
from vitcli.core.inspect import RolloutSpec, inspect_attention
from vitcli.core.presets import build_model
from vitcli.core.reference import attention_rollout, mean_attention_distance
from vitcli.core.select import HeadSelection

CONFIG = ViTConfig(name="tiny", image_size=(24, 40), patch_size=8, dim=32, depth=3, heads=4, mlp_dim=64,
                   num_registers=1, num_classes=0)  # grid 3x5, 2 prefix tokens, T = 17


def _model() -> torch.nn.Module:
    return scramble(build_model(CONFIG), 3)


@torch.no_grad()
def test_selected_weights_distance_and_class_rows_equal_the_full_matrices() -> None:
    model, x = _model(), _images(2, 24, 40)
    full = model(x, Capture(attention=range(3))).attentions  # layer → (B, H, T, T)
    report = inspect_attention(model, x, [0, 2], HeadSelection([1, 3]), None, distance_layers=[0, 1, 2])
    assert report.layers == [0, 2] and report.weights.shape == (2, 2, 2, 17, 17)
    torch.testing.assert_close(report.weights, torch.stack([full[0], full[2]], 1)[:, :, [1, 3]], rtol=0, atol=1e-6)
    for layer in range(3):
        expected = mean_attention_distance(full[layer], (3, 5), 8, 2)  # (B, H) pixels
        torch.testing.assert_close(report.distance[layer], expected, rtol=0, atol=1e-9)
        torch.testing.assert_close(report.cls_rows[layer], full[layer][:, :, 0], rtol=0, atol=1e-6)
    assert report.grid == (3, 5) and report.num_prefix == 2


@torch.no_grad()
def test_query_rows_fusion_rollout_cosine_and_qkv() -> None:
    model, x = _model(), _images(1, 24, 40)
    out = model(x, Capture(attention=range(3), qkv=True))
    report = inspect_attention(model, x, [1], HeadSelection([0, 1, 2, 3], "max"), [0, 9],
                               rollout=RolloutSpec("mean", start_layer=1), keep_qkv=True, cosine=True)
    assert report.weights.shape == (1, 1, 1, 2, 17)  # layers, fused heads, queries, tokens
    torch.testing.assert_close(report.weights[:, 0, 0], fuse_heads(out.attentions[1], "max")[:, [0, 9]], rtol=0, atol=1e-6)
    expected = attention_rollout([out.attentions[i] for i in range(3)], "mean", start_layer=1)
    torch.testing.assert_close(report.rollout, expected, rtol=0, atol=1e-9)
    q, k, v = out.qkv[1]
    cos = cosine_similarity_matrix(q[:, :, [0, 9]], k).amax(dim=1)  # fused like the weights
    torch.testing.assert_close(report.cosine[:, 0, 0], cos, rtol=0, atol=1e-6)
    assert [t.shape for t in report.qkv] == [(1, 1, 4, 17, 8)] * 3
    torch.testing.assert_close(report.qkv[2][:, 0], v, rtol=0, atol=0)


@torch.no_grad()
def test_no_block_runs_after_the_last_layer_needed() -> None:
    model, x = _model(), _images(1, 24, 40)
    calls = _Calls(model)
    inspect_attention(model, x, [0], HeadSelection([0]), [0])  # distance of the selected layer only
    assert calls.ran() == [0]
    inspect_attention(model, x, [0], HeadSelection([0]), [0], distance_layers=[0, 1])
    assert calls.ran() == [0, 1]
    inspect_attention(model, x, [0], HeadSelection([0]), [0], rollout=RolloutSpec())  # rollout needs every layer
    assert calls.ran() == [0, 1, 2]


@torch.no_grad()
def test_a_joined_capture_gives_both_passes_bits_in_one() -> None:
    """view's pass: attend's selection joined with norms' block outputs and attention rows equals the two
    separate passes bit for bit, runs every block once, and the row reducer equals queries=[0]'s weights."""
    from vitcli.core.inspect import attention_row_reducer

    model, x = _model(), _images(1, 24, 40)
    norms = Capture(inputs=False, blocks=[0, 1, 2], reduce=[0, 1, 2], reducer=attention_row_reducer("cls", 2),
                    queries=[0], final="none")
    alone = inspect_attention(model, x, [1], HeadSelection([0, 1, 2, 3]), None, [0, 1, 2], keep_qkv=True)
    rows = model(x, Capture(inputs=False, blocks=[0, 1, 2], attention=[0, 1, 2], queries=[0], final="none"))
    calls = _Calls(model)
    both = inspect_attention(model, x, [1], HeadSelection([0, 1, 2, 3]), None, [0, 1, 2], keep_qkv=True, also=norms)
    assert calls.ran() == [0, 1, 2]  # each block once
    assert torch.equal(both.weights, alone.weights) and all(torch.equal(a, b) for a, b in zip(both.qkv, alone.qkv, strict=True))
    for layer in range(3):
        assert torch.equal(both.distance[layer], alone.distance[layer])
        assert torch.equal(both.output.blocks[layer], rows.blocks[layer])
        assert torch.equal(both.output.reduced[layer]["row"], rows.attentions[layer][:, :, 0])  # (B, H, T)
    mean = attention_row_reducer("mean", 2)  # the patch rows' mean, against the full matrix
    full = model(x, Capture(attention=[2])).attentions[2]  # (B, H, T, T)
    out = model(x, Capture(inputs=False, reduce=[2], reducer=mean, queries=[0], final="none"))
    torch.testing.assert_close(out.reduced[2]["row"], full[:, :, 2:].double().mean(-2), rtol=0, atol=1e-9)


def test_join_refuses_what_one_pass_cannot_keep_twice() -> None:
    import pytest

    keep = Capture(reduce=[0], reducer=lambda i, attn, detail: {"row": i})
    with pytest.raises(ValueError, match="no attention weights"):
        Capture().join(Capture(attention=[0]))
    with pytest.raises(ValueError, match="non-negative"):
        Capture().join(Capture(reduce=[-1], reducer=keep.reducer))
    joined = keep.join(Capture(reduce=[0, 1], reducer=lambda i, attn, detail: {"other": -i}, final="pooled"))
    assert joined.final == "tokens" and list(joined.reduce) == [0, 1]
    assert joined.reducer(0, None, None) == {"row": 0, "other": 0} and joined.reducer(1, None, None) == {"other": -1}
    with pytest.raises(ValueError, match="same summary"):
        keep.join(keep).reducer(0, None, None)
    assert Capture(final="none").join(Capture(final="pooled")).final == "pooled"

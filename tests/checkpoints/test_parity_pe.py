"""timm's Perception Encoder (vit_pe_core_*) against timm's own forward pass: RoPE attention (xy
indexing, grid offset 1, reference grid), norm_pre, class token and the 8-head attention-pool probe.

Tiny models (depth 2, width 64, 4 block heads) with every parameter scrambled, saved as safetensors
and loaded by vitcli; the peer's attention is its own softmax output (fused_attn off), the probe's
is recomputed from timm's AttentionPoolLatent modules (latent, q, kv) on the tokens it was given.
"""

import timm
import torch
from safetensors.torch import save_file

from tests.checkpoints.parity import TimmAttention, check, diff, images, scramble
from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint
from vitcli.core.capture import Capture

TINY = dict(embed_dim=64, depth=2, num_heads=4)


class TimmProbe:
    """timm's attention-pool weights (B, H, 1, T): its own latent, q and kv on the tokens it received."""

    def __init__(self, pool) -> None:
        self.pool, self.inputs = pool, []
        pool.fused_attn = False
        pool.register_forward_pre_hook(lambda mod, args: self.inputs.append(args[0].detach()))

    @torch.no_grad()
    def weights(self) -> torch.Tensor:
        p, x = self.pool, self.inputs[-1]
        b, t, _ = x.shape
        q = p.q(p.latent.expand(b, -1, -1)).reshape(b, p.latent_len, p.num_heads, p.head_dim).transpose(1, 2)
        k = p.kv(x).reshape(b, t, 2, p.num_heads, p.head_dim).permute(2, 0, 3, 1, 4)[0]
        return ((q * p.scale) @ k.transpose(-2, -1)).softmax(-1)


def _parity(tmp_path, size: tuple[int, int], image: tuple[int, int], **kwargs):
    model = scramble(timm.create_model("vit_pe_core_tiny_patch16_384", pretrained=False, img_size=size,
                                       **TINY, **kwargs))
    attn, probe = TimmAttention(model), TimmProbe(model.attn_pool)
    path = tmp_path / "vit_pe_core_tiny_patch16_384.safetensors"
    save_file(model.state_dict(), path)
    x = images(2, *image)
    loaded = load_checkpoint(path, heads=4, image_size=size)
    core = build_model_from_checkpoint(loaded)
    with torch.no_grad():
        out = core(x, Capture(attention=range(loaded.config.depth), final="tokens", pool_attention=True))
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        logits = model.head(pooled)
    pairs = {"features": (out.output, feats), "pooled": (out.pooled, pooled), "probe": (out.pool_attention, probe.weights())}
    if out.logits is not None:
        pairs["logits"] = (out.logits, logits)
    check("timm-pe", pairs, out.attentions, attn.weights)
    return loaded


def test_pe_core_native_non_square(tmp_path) -> None:
    """A 3×5 native grid with timm's reference grid equal to it, as every PE model has (384/16 = 24 = ref 24)."""
    loaded = _parity(tmp_path, (48, 80), (48, 80), ref_feat_shape=(3, 5), num_classes=7)
    c = loaded.config
    assert loaded.family == "timm-pe"
    assert (c.rope, c.rope_offset, c.rope_xy, c.pooling, c.pool_heads, c.pool_mlp_dim) == ("eva", 1.0, True, "map", 8, 256)
    assert c.pre_norm and c.class_token and not c.layer_scale and c.eps == 1e-5 and c.num_classes == 7


def test_pe_core_reference_grid_at_another_size(tmp_path) -> None:
    """timm with dynamic_img_size on a 4×4-native model fed a 3×5 image: RoPE coords scaled onto the 4×4 grid."""
    loaded = _parity(tmp_path, (64, 64), (48, 80), ref_feat_shape=(4, 4), dynamic_img_size=True, num_classes=0)
    assert loaded.config.rope_ref_grid == (4, 4)

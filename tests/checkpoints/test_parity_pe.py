"""timm's Perception Encoder against timm's own forward pass: vit_pe_core_* (RoPE attention with xy
indexing, grid offset 1, reference grid; norm_pre, class token, the 8-head attention-pool probe), the
gigantic core (no class token: offset 0), vit_pe_spatial_* / vit_pe_lang_* (no final norm, no pool:
timm's patch mean; the gigantic ones with LayerScale).

Tiny models (depth 2, width 64, 4 block heads) with every parameter scrambled, saved as safetensors
and loaded by vitcli; the peer's attention is its own softmax output (fused_attn off), the probe's
is recomputed from timm's AttentionPoolLatent modules (latent, q, kv) on the tokens it was given.
"""

import pytest
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


def _parity(tmp_path, size: tuple[int, int], image: tuple[int, int], arch: str = "vit_pe_core_tiny_patch16_384",
            file: str | None = None, **kwargs):
    model = scramble(timm.create_model(arch, pretrained=False, img_size=size, **TINY, **kwargs))
    attn = TimmAttention(model)
    probe = TimmProbe(model.attn_pool) if model.attn_pool is not None else None
    path = tmp_path / f"{file or arch}.safetensors"
    save_file(model.state_dict(), path)
    x = images(2, *image)
    loaded = load_checkpoint(path, heads=4, image_size=size)
    core = build_model_from_checkpoint(loaded)
    with torch.no_grad():
        out = core(x, Capture(attention=range(loaded.config.depth), final="tokens", pool_attention=True))
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
        logits = model.head(pooled)
    pairs = {"features": (out.output, feats), "pooled": (out.pooled, pooled)}
    if probe is not None:
        pairs["probe"] = (out.pool_attention, probe.weights())
    if out.logits is not None:
        pairs["logits"] = (out.logits, logits)
    check(arch, pairs, out.attentions, attn.weights)
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


def test_pe_core_gigantic_without_class_token(tmp_path) -> None:
    """The gigantic core: no class token (RoPE grid offset 0, no prefix), norm_pre + the probe (not SigLIP)."""
    loaded = _parity(tmp_path, (48, 80), (48, 80), arch="vit_pe_core_gigantic_patch14_448", patch_size=16,
                     mlp_ratio=4.0, ref_feat_shape=(3, 5), num_classes=6)
    c = loaded.config
    assert loaded.family == "timm-pe"
    assert (c.class_token, c.rope_offset, c.rope_ref_grid, c.pooling, c.pool_heads, c.num_classes) == \
        (False, 0.0, (3, 5), "map", 8, 6)


@pytest.mark.parametrize("arch,offset", [("vit_pe_spatial_tiny_patch16_512", 1.0),
                                         ("vit_pe_spatial_gigantic_patch14_448", 0.0)])
def test_pe_spatial_no_final_norm(tmp_path, arch, offset) -> None:
    """vit_pe_spatial_*: norm_pre, no final norm, no pool (timm's avg: the patch mean); the gigantic one has
    no class token and LayerScale (gamma_1 / gamma_2, scrambled)."""
    loaded = _parity(tmp_path, (48, 80), (48, 80), arch=arch, patch_size=16, mlp_ratio=4.0, ref_feat_shape=(3, 5))
    c = loaded.config
    assert loaded.family == "timm-pe-spatial"
    assert (c.rope, c.rope_offset, c.rope_xy, c.rope_ref_grid, c.pooling) == ("eva", offset, True, (3, 5), "mean")
    assert c.pre_norm and not c.final_norm and not c.fc_norm and c.layer_scale == (offset == 0.0)
    assert c.class_token == (offset == 1.0) and c.eps == 1e-5 and c.num_classes == 0
    assert any("norm_pre without a final norm" in n for n in loaded.notes)


def test_pe_spatial_at_another_size_and_lang_label(tmp_path) -> None:
    """dynamic_img_size: a 4x4-native spatial model on a 3x5 image (RoPE on the 4x4 reference grid);
    a file named vit_pe_lang_* is labelled timm-pe-lang (the same layout)."""
    loaded = _parity(tmp_path, (64, 64), (48, 80), arch="vit_pe_lang_large_patch14_448", patch_size=16,
                     ref_feat_shape=(4, 4), dynamic_img_size=True)
    assert (loaded.family, loaded.config.rope_ref_grid, loaded.config.layer_scale) == ("timm-pe-lang", (4, 4), True)


def _spatial_file(tmp_path):
    model = scramble(timm.create_model("vit_pe_spatial_tiny_patch16_512", pretrained=False, img_size=64, **TINY))
    save_file(model.state_dict(), tmp_path / "bare.safetensors")
    return model


def test_pe_spatial_config_json_confirms_or_overrides(tmp_path) -> None:
    """timm's save_for_hf folder (config.json: architecture, pretrained_cfg) loads as PE spatial with its
    preprocessing; the same keys under a config.json naming a CLIP tower are read as that (no RoPE)."""
    import json

    from timm.models._hub import save_for_hf

    model = _spatial_file(tmp_path)
    save_for_hf(model, tmp_path / "snap")
    loaded = load_checkpoint(tmp_path / "snap", heads=4)
    assert (loaded.family, loaded.config.rope, loaded.config.grid) == ("timm-pe-spatial", "eva", (4, 4))
    assert loaded.preprocess.source == "timm pretrained_cfg (config.json)" and loaded.preprocess.crop_pct == 1.0
    config = json.loads((tmp_path / "snap" / "config.json").read_text())
    assert config["architecture"] == "vit_pe_spatial_tiny_patch16_512"
    config["architecture"] = "vit_base_patch16_clip_224"
    (tmp_path / "snap" / "config.json").write_text(json.dumps(config))
    other = load_checkpoint(tmp_path / "snap", heads=4)
    assert (other.family, other.config.rope, other.basis.family.name) == ("timm-clip", "none", "timm")


def test_pe_spatial_family_override(tmp_path) -> None:
    """--family / family=: a bare file with PE spatial's keys read as a plain timm ViT; the model document
    names the layout it was read as, and its note says how it was recognised."""
    from vitcli.api import load_model
    from vitcli.errors import VitcliError

    _spatial_file(tmp_path)
    pe = load_model(str(tmp_path / "bare.safetensors"), heads=4)
    doc = pe.document(pe.config.grid)
    assert (doc["family"], doc["layout"]) == ("timm-pe-spatial", "timm-pe-spatial")
    assert "norm_pre without a final norm" in doc["layout_notes"][0]
    plain = load_model(str(tmp_path / "bare.safetensors"), heads=4, family="timm")
    assert (plain.checkpoint.family, plain.config.rope, plain.document(plain.config.grid)["layout"]) == \
        ("timm-clip", "none", "timm")
    with pytest.raises(VitcliError) as e:
        load_model(str(tmp_path / "bare.safetensors"), family="pe")
    assert e.value.source == "--family" and "timm-pe-spatial" in e.value.problem
    with pytest.raises(VitcliError, match="use it with spec="):
        load_model("vit-ti16", family="timm")

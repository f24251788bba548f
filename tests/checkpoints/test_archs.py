"""What a repository names, looked up (vitcli.checkpoints.archs): timm architecture names with pretrained tags,
unknown names falling back to the shape rules (and saying so), explicit options winning, torchvision file names.

Expected values come from the peers' own modules (timm built on the meta device, torchvision's builders)."""

import pytest
import torch

from vitcli.checkpoints.archs import timm_facts
from vitcli.checkpoints.load import load_state

timm = pytest.importorskip("timm")


def _meta(arch: str, **kwargs) -> torch.nn.Module:
    with torch.device("meta"):
        return timm.create_model(arch, pretrained=False, **kwargs)


def test_a_pretrained_tag_names_its_architecture() -> None:
    model = _meta("vit_so400m_patch16_siglip_256")
    facts = timm_facts("vit_so400m_patch16_siglip_256.v2_webli")
    assert facts is not None and facts.source == "timm architecture vit_so400m_patch16_siglip_256"
    assert facts.heads == model.blocks[0].attn.num_heads == 16
    assert type(model.blocks[0].mlp.act).__name__ == "GELUTanh" and facts.activation == "gelu_tanh"
    assert facts.eps == model.blocks[0].norm1.eps and facts.pooling == "map"
    assert facts.pool_heads is None and model.attn_pool.num_heads == 16  # the pool's heads follow the blocks'
    pe = _meta("vit_pe_core_gigantic_patch14_448")
    assert timm_facts("vit_pe_core_gigantic_patch14_448").pool_heads == pe.attn_pool.num_heads == 8


def _load(model: torch.nn.Module, architecture: str, spec: str = "model.safetensors", **overrides):
    config = {"architecture": architecture, "num_classes": model.num_classes,
              "pretrained_cfg": {"input_size": list(model.pretrained_cfg["input_size"])}}
    return load_state(model.state_dict(), {"config.json": config}, spec, device="meta", **overrides)


def test_an_unknown_architecture_falls_back_to_the_shape_rules_and_says_it_guessed() -> None:
    model = _meta("vit_pe_core_gigantic_patch14_448", depth=1)
    unknown = _load(model, "my_own_pe_variant")
    assert unknown.config.heads == 1536 // 64 != model.blocks[0].attn.num_heads
    assert "heads 24 (guessed: 64-wide heads; pass --heads)" in unknown.notes
    known = _load(model, "vit_pe_core_gigantic_patch14_448.fb")
    assert known.config.heads == model.blocks[0].attn.num_heads == 16


def test_given_values_win_over_the_architecture() -> None:
    model = _meta("vit_so400m_patch16_siglip_256", depth=1)
    loaded = _load(model, "vit_so400m_patch16_siglip_256", heads=8, activation="gelu", eps=1e-5)
    c = loaded.config
    assert (c.heads, c.activation, c.eps) == (8, "gelu", 1e-5)
    assert "heads 8 (given)" in loaded.notes and "activation gelu (given)" in loaded.notes


def test_an_architecture_vitcli_cannot_build_is_one_line_at_load() -> None:
    model = _meta("vit_small_patch16_rope_mixed_224", depth=1)
    from vitcli.errors import VitcliError

    with pytest.raises(VitcliError) as e:
        _load(model, "vit_small_patch16_rope_mixed_224")
    assert "rotary embedding (RotaryEmbeddingMixed)" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("file, builder", [("vit_h_14_swag-80465313.pth", "vit_h_14"),
                                           ("vit_b_16-c867db91.pth", "vit_b_16"), ("vit_l_16-852ce7e3.pth", "vit_l_16")])
def test_torchvision_file_names_give_their_builders_heads(file: str, builder: str) -> None:
    from torchvision.models import vision_transformer as tv

    with torch.device("meta"):
        full = getattr(tv, builder)()
        model = tv.VisionTransformer(full.image_size, full.patch_size, 2, full.encoder.layers[0].num_heads,
                                     full.hidden_dim, full.mlp_dim)
    loaded = load_state(model.state_dict(), {}, file, device="meta")
    heads = full.encoder.layers[0].num_heads
    assert loaded.config.heads == heads
    assert f"heads {heads} (torchvision architecture {builder})" in loaded.notes

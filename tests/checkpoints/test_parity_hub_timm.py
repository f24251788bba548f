"""timm checkpoints as the hub holds them: weights + a config.json naming the architecture, no model arguments.

Each model is built at its real width, heads, patch and image size, with depth cut to two blocks
and every parameter scrambled, saved by timm's `save_for_hf` (model.safetensors + config.json),
and config.json stripped of `model_args` as the hub's files are. vitcli is given nothing else (no
heads, no activation): what the weights cannot show comes from the architecture config.json names,
and the result must match timm's own forward pass. These three were wrong before the table: PE
gigantic (16 heads; 64-wide heads would make 24), AIMv2-L (8; 16 guessed), SigLIP so400m/16 at 256
(tanh-approximated GELU).
"""

import json
from pathlib import Path

import pytest
import torch

from tests.checkpoints.parity import TimmAttention, check, images, scramble
from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint
from vitcli.core.capture import Capture

timm = pytest.importorskip("timm")


def save_as_hub(model: torch.nn.Module, folder: Path) -> Path:
    """timm's save_for_hf, then config.json without model_args (the hub's config.json carries none)."""
    from timm.models._hub import save_for_hf

    save_for_hf(model, folder, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config.pop("model_args", None)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.mark.parametrize("arch, heads, activation", [
    pytest.param("vit_pe_core_gigantic_patch14_448", 16, "gelu", marks=pytest.mark.slow),  # about 10 s
    ("aimv2_large_patch14_224", 8, "silu"),
    ("vit_so400m_patch16_siglip_256", 16, "gelu_tanh"),
])
def test_hub_layout_matches_timm(tmp_path: Path, arch: str, heads: int, activation: str) -> None:
    model = scramble(timm.create_model(arch, pretrained=False, depth=2))
    block = model.blocks[0]
    assert block.attn.num_heads == heads  # the peer's own heads, independent of vitcli's table
    attn = TimmAttention(model)
    folder = save_as_hub(model, tmp_path / arch)
    size = model.pretrained_cfg["input_size"][1:]
    x = images(1, *size)
    loaded = load_checkpoint(folder)
    core = build_model_from_checkpoint(loaded)
    with torch.no_grad():
        out = core(x, Capture(attention=range(loaded.config.depth), final="tokens"))
        feats = model.forward_features(x)
        pooled = model.forward_head(feats, pre_logits=True)
    c = loaded.config
    assert (c.heads, c.activation, c.depth, c.dim) == (heads, activation, 2, model.embed_dim)
    assert f"heads {heads} (timm architecture {arch})" in loaded.notes
    check(f"{arch} (hub layout)", {"features": (out.output, feats), "pooled": (out.pooled, pooled)},
          out.attentions, attn.weights)


@pytest.mark.slow  # about 12 s; open_clip stays quick in test_cli_weights.py and the zoo
def test_open_clip_timm_tower_matches_timm(tmp_path: Path) -> None:
    """open_clip PE-Core-bigG-14-448: a timm vit_pe_core_gigantic_patch14_448 tower under `visual.trunk.` beside the
    text tower, built as open_clip's TimmModel builds it (timm_pool map, no extra projection: the trunk's own head
    to embed_dim); heads from the tower's timm_model_name, not from 64-wide heads (24)."""
    import open_clip

    cfg = open_clip.get_model_config("PE-Core-bigG-14-448")
    vision = cfg["vision_cfg"]
    trunk = scramble(timm.create_model(vision["timm_model_name"], pretrained=False, num_classes=cfg["embed_dim"],
                                       global_pool=vision["timm_pool"], depth=2))
    attn = TimmAttention(trunk)
    state = {f"visual.trunk.{k}": v for k, v in trunk.state_dict().items()}
    state |= {"text.token_embedding.weight": torch.zeros(8, 4), "logit_scale": torch.ones(())}  # text tower keys
    folder = tmp_path / "pe-core-bigg"
    folder.mkdir()
    torch.save(state, folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    x = images(1, *trunk.pretrained_cfg["input_size"][1:])
    loaded = load_checkpoint(folder)
    core = build_model_from_checkpoint(loaded)
    with torch.no_grad():
        out = core(x, Capture(attention=range(loaded.config.depth), final="tokens"))
        feats = trunk.forward_features(x)
        projected = trunk.forward_head(feats)  # pool and the head to embed_dim, as trunk(x)
    assert loaded.config.heads == trunk.blocks[0].attn.num_heads == 16
    assert "heads 16 (timm architecture vit_pe_core_gigantic_patch14_448)" in loaded.notes
    assert "text.token_embedding.weight" in loaded.ignored_keys
    check("open_clip PE-Core-bigG-14-448 (timm tower)", {"features": (out.output, feats),
                                                          "projected": (out.logits, projected)},
          out.attentions, attn.weights)

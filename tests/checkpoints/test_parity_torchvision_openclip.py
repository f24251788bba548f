"""torchvision VisionTransformer, open_clip ViT-B-32 and OpenAI CLIP (TorchScript) visual towers."""

import warnings

import open_clip
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer as TorchvisionViT

from tests.checkpoints.parity import MHAAttention, check, core_run, images, scramble
from vitcli.checkpoints.read import read_checkpoint


def test_torchvision_vision_transformer(tmp_path) -> None:
    model = scramble(TorchvisionViT(image_size=64, patch_size=16, num_layers=2, num_heads=2, hidden_dim=128,
                                    mlp_dim=256, num_classes=10), seed=20)
    torch.save(model.state_dict(), tmp_path / "vit_small_tv.pth")
    attn = MHAAttention([layer.self_attention for layer in model.encoder.layers])
    tokens = []
    model.encoder.register_forward_hook(lambda mod, inp, out: tokens.append(out))  # after encoder.ln
    x = images(2, 64, 64, seed=20)
    loaded, out = core_run(tmp_path / "vit_small_tv.pth", x)
    c = loaded.config
    assert loaded.family == "torchvision"
    assert (c.heads, c.eps, c.activation, c.num_classes, c.grid) == (2, 1e-6, "gelu", 10, (4, 4))
    with torch.no_grad():
        logits = model(x)
    check("torchvision VisionTransformer", {"features": (out.output, tokens[0]), "logits": (out.logits, logits)},
          out.attentions, attn.weights())


def _open_clip_b32(layers: int, quick_gelu: bool, seed: int) -> open_clip.CLIP:
    """open_clip's ViT-B-32 config with fewer blocks (vision width 768, 12 heads, patch 32, 224 px)."""
    cfg = open_clip.get_model_config("ViT-B-32")
    cfg["vision_cfg"] = {**cfg["vision_cfg"], "layers": layers}
    cfg["text_cfg"] = {**cfg["text_cfg"], "layers": 1}
    return scramble(open_clip.CLIP(**cfg, quick_gelu=quick_gelu), seed)


def _open_clip_reference(visual: nn.Module, x: torch.Tensor):
    attn = MHAAttention([block.attn for block in visual.transformer.resblocks])
    tokens = []
    hook = visual.ln_post.register_forward_hook(lambda mod, inp, out: tokens.append(out))
    with torch.no_grad():
        projected = visual(x)
    hook.remove()
    return projected, tokens[0], attn.weights()


def test_open_clip_vit_b_32_full_clip_state_dict(tmp_path) -> None:
    model = _open_clip_b32(layers=3, quick_gelu=False, seed=21)
    torch.save(model.state_dict(), tmp_path / "open_clip_pytorch_model.bin")
    x = images(1, 224, 224, seed=21)
    loaded, out = core_run(tmp_path / "open_clip_pytorch_model.bin", x)
    c = loaded.config
    assert loaded.family == "open_clip"
    assert (c.patch_size, c.dim, c.heads, c.depth, c.activation, c.eps, c.num_classes, c.head_bias) == (
        32, 768, 12, 3, "gelu", 1e-5, 512, False)
    assert "token_embedding.weight" in loaded.ignored_keys and "logit_scale" in loaded.ignored_keys
    assert not any(k.startswith("visual.") for k in loaded.ignored_keys)
    projected, tokens, weights = _open_clip_reference(model.visual, x)
    check("open_clip ViT-B-32 (3 blocks)", {"features": (out.output, tokens), "projection": (out.logits, projected)},
          out.attentions, weights)


class _OpenAIStyle(nn.Module):
    """An OpenAI-CLIP-like TorchScript root: the visual tower plus OpenAI's integer entries."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.register_buffer("input_resolution", torch.tensor(224))
        self.register_buffer("context_length", torch.tensor(77))
        self.register_buffer("vocab_size", torch.tensor(49408))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def test_openai_clip_torchscript_archive_quickgelu(tmp_path) -> None:
    model = _open_clip_b32(layers=2, quick_gelu=True, seed=22)
    x = images(1, 224, 224, seed=22)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(_OpenAIStyle(model.visual).eval(), x, check_trace=False)
        traced.save(str(tmp_path / "ViT-B-32.pt"))
        reference_state = torch.jit.load(str(tmp_path / "ViT-B-32.pt"), map_location="cpu").state_dict()
    raw = read_checkpoint(tmp_path / "ViT-B-32.pt")  # our reader: no torch.jit.load, same tensors
    assert raw.format == "torchscript" and set(raw.tensors) == set(reference_state)
    assert all(torch.equal(raw.tensors[k], v) for k, v in reference_state.items())
    loaded, out = core_run(tmp_path / "ViT-B-32.pt", x)
    assert loaded.family == "openai-clip" and loaded.config.activation == "quick_gelu"
    assert loaded.ignored_keys == ["context_length", "input_resolution", "vocab_size"]
    projected, tokens, weights = _open_clip_reference(model.visual, x)
    check("OpenAI CLIP TorchScript ViT-B-32 (2 blocks, QuickGELU)",
          {"features": (out.output, tokens), "projection": (out.logits, projected)}, out.attentions, weights)

"""One forward path: explain runs the encoder's own blocks, with the encoder's rotation and score biases.

On every attention kind vitcli builds (plain, per-layer and shared relative position bias, RoPE with
registers, RoPE with SwiGLU, qk-norm, the attention-pool probe), on non-square images:
  - explain's block inputs are the encoder's block outputs;
  - explain's rollout is attend's rollout (the class row; without a class token the probe's row, or the patch
    rows' mean);
  - rollout, grad-rollout, attn-grad and gradcam equal the formulas applied to the PEER's own explicit
    softmax attention A, ∂y/∂A and norm1's output with its gradient, taken by autograd in the peer;
  - every place that recomputes attention rows from Q, K (attend's rollout and mean distance on chosen
    queries, explain's row blocks) gives the encoder's weights.
Peers are scrambled tiny models (depth 2-3, width 64, 4 heads) saved in their own format and loaded by vitcli.
"""

from dataclasses import dataclass
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
import transformers as hf
from safetensors.torch import save_file
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from tests.checkpoints.parity import images, scramble
from tests.core.test_explain import close, reference_map
from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint
from vitcli.core.capture import Capture
from vitcli.core.encoder import VisionTransformer
from vitcli.core.explain import Target, block_inputs, explain, pooled_embedding
from vitcli.core.inspect import RolloutSpec, inspect_attention
from vitcli.core.select import HeadSelection

TINY = dict(embed_dim=64, depth=3, num_heads=4)


class KeepSoftmax(TorchFunctionMode):
    """Keeps every self-attention softmax output (…, T, T) the peer computes, with its gradient retained."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[Tensor] = []
        self.probe: Tensor | None = None  # (B, H, 1, T): an attention-pool probe's softmax, when there is one

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func in (Tensor.softmax, torch.softmax, F.softmax) and out.shape[-1] == out.shape[-2]:
            if out.requires_grad:
                out.retain_grad()
            self.kept.append(out)
        elif func in (Tensor.softmax, torch.softmax, F.softmax) and out.shape[-2] == 1:
            self.probe = out.detach()
        return out


@dataclass
class Peer:
    """A peer model with its explicit attention on, how it pools, and each block's norm1 (Grad-CAM's layer)."""

    model: nn.Module
    features: object  # x → (1, T, D) final tokens
    pooled: object  # final tokens → (1, D)
    logits: object  # final tokens → (1, classes) or None
    norms: list[nn.Module]
    prefix: int
    class_token: bool


def timm_peer(name: str, size: tuple[int, int], seed: int, **kw) -> tuple[Peer, dict]:
    model = scramble(timm.create_model(name, pretrained=False, img_size=size, **{**TINY, **kw}), seed)
    for block in model.blocks:
        block.attn.fused_attn = False
    pool = getattr(model, "attn_pool", None)
    if pool is not None:
        pool.fused_attn = False
    head = (lambda f: model.forward_head(f)) if model.num_classes else None
    peer = Peer(model, model.forward_features, lambda f: model.forward_head(f, pre_logits=True), head,
                [b.norm1 for b in model.blocks], model.num_prefix_tokens, getattr(model, "cls_token", None) is not None)
    return peer, {"heads": 4, "image_size": size}


def save_timm(peer: Peer, tmp_path: Path) -> Path:
    path = tmp_path / "peer.safetensors"
    save_file(peer.model.state_dict(), path)
    return path


def hf_beit_shared(size: tuple[int, int], seed: int) -> Peer:
    """transformers BeitModel with the shared relative position bias (use_shared_relative_position_bias)."""
    conf = hf.BeitConfig(hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128, patch_size=16,
                         image_size=list(size), use_relative_position_bias=False, use_shared_relative_position_bias=True,
                         use_mean_pooling=False, layer_scale_init_value=0.1)
    conf._attn_implementation = "eager"
    model = scramble(hf.BeitModel(conf, add_pooling_layer=True), seed)
    return Peer(model, lambda x: model(pixel_values=x).last_hidden_state,
                lambda f: model.pooler(f), None, [layer.layernorm_before for layer in model.layers], 1, True)


def peer_run(peer: Peer, x: Tensor, kind: str, arg, layer: int) -> tuple[list[tuple[Tensor, Tensor]], Tensor, Tensor]:
    """The peer's y on x with autograd: each layer's (A, ∂y/∂A) (H, T, T), and norm1's output F and ∂y/∂F at `layer`."""
    kept: dict[str, Tensor] = {}

    def hook(module, inputs, output):
        output.retain_grad()
        kept["f"] = output

    handle = peer.norms[layer].register_forward_hook(hook)
    with torch.enable_grad(), KeepSoftmax() as soft:
        feats = peer.features(x)  # (1, T, D)
        pooled = peer.pooled(feats)  # (1, D)
        if kind == "top":
            logits = peer.logits(feats)
            y = logits[0, logits[0].argmax()]
        elif kind == "class":
            y = peer.logits(feats)[0, arg]
        elif kind == "image":
            y = F.cosine_similarity(pooled[0], arg, dim=0)
        else:
            r, c, cols = arg
            y = F.cosine_similarity(feats[0, peer.prefix + r * cols + c], pooled[0], dim=0)
        y.backward()
    handle.remove()
    pairs = [(a[0].detach().double(), a.grad[0].double()) for a in soft.kept]
    probe = None if soft.probe is None else soft.probe[0, :, 0].double().mean(0)  # (T,) the probe's row, heads' mean
    return pairs, kept["f"][0].detach().double(), kept["f"].grad[0].double(), probe


def reference_gradcam(f: Tensor, g: Tensor, prefix: int) -> Tensor:
    """Grad-CAM on tokens: ReLU(Σ_k mean_patches(∂y/∂F)_k · F_k) over the patch rows (N,)."""
    f, g = f[prefix:], g[prefix:]
    return torch.relu((f * g.mean(0, keepdim=True)).sum(-1))


def attend_rollout_row(model: VisionTransformer, x: Tensor) -> Tensor:
    """attend --rollout's row: the class token's (attend --query cls), else the probe's or the patch rows' mean."""
    c = model.config
    pooled = None if c.class_token else "probe" if c.pooling == "map" else "mean"
    report = inspect_attention(model, x, [c.depth - 1], HeadSelection(list(range(c.heads)), None),
                               [0] if c.class_token else None, rollout=RolloutSpec(), pooled=pooled)
    return report.rollout_row[0][c.num_prefix_tokens:]


CASES = {
    # id: (peer builder, size, target kind, Grad-CAM layer)
    "vit": (lambda s: timm_peer("vit_tiny_patch16_224", s, 1, num_classes=7), (32, 48), "top", -1),
    "beitv2-layer-bias": (lambda s: timm_peer("beitv2_base_patch16_224", s, 2, num_classes=7), (32, 48), "top", -1),
    "beit-shared-bias": (lambda s: timm_peer("beit_base_patch16_224", s, 8, num_classes=0, use_shared_rel_pos_bias=True,
                                             use_rel_pos_bias=False, use_abs_pos_emb=True, global_pool="token"),
                         (32, 48), "image", 1),
    # square: transformers' BEiT reads a non-square grid's bias through a transposed reshape, so its own
    # numbers there are not BEiT's (0.18 off timm's and vitcli's tokens on 2×3); see test_parity_modern.py
    "hf-beit-shared-bias": (lambda s: (hf_beit_shared(s, 3), {}), (48, 48), "image", 1),
    "dinov3-rope-registers": (lambda s: timm_peer("vit_small_patch16_dinov3_qkvb", s, 4, num_classes=0), (48, 80),
                              "patch", -1),
    "eva02-rope-swiglu": (lambda s: timm_peer("eva02_tiny_patch14_224", s, 5, num_classes=5), (56, 84), "class", 1),
    "qk-norm": (lambda s: timm_peer("vit_tiny_patch16_224", s, 6, num_classes=7, qk_norm=True), (32, 48), "top", 0),
    "siglip-probe": (lambda s: timm_peer("vit_base_patch16_siglip_224", s, 7, num_classes=0), (32, 48), "image", -1),
}


def load(peer: Peer, load_kw: dict, tmp_path: Path) -> VisionTransformer:
    if isinstance(peer.model, hf.BeitModel):
        peer.model.save_pretrained(tmp_path / "hf")
        return build_model_from_checkpoint(load_checkpoint(tmp_path / "hf", heads=4))
    return build_model_from_checkpoint(load_checkpoint(save_timm(peer, tmp_path), **load_kw))


@pytest.mark.parametrize("case", list(CASES))
def test_explain_runs_the_encoders_blocks_and_matches_the_peer(tmp_path, case) -> None:
    build, size, kind, layer = CASES[case]
    peer, load_kw = build(size)
    model = load(peer, load_kw, tmp_path)
    c = model.config
    grid = (size[0] // c.patch_size, size[1] // c.patch_size)
    assert (grid[0] != grid[1] or case.startswith("hf-")) and c.depth == 3
    x = images(1, *size, seed=11)

    # explain's block inputs are the encoder's block outputs (bit for bit: the same pass)
    xs, _ = block_inputs(model, x)
    with torch.no_grad():
        out = model(x, Capture(inputs=False, blocks=range(c.depth)))
    for i in range(c.depth):
        assert torch.equal(xs[i + 1], out.blocks[i]), i
    heads: list[torch.Tensor] = []  # the pass that also keeps each block's A·V (the row-product methods')
    xs_heads, _ = block_inputs(model, x, heads)
    assert len(heads) == c.depth and all(torch.equal(a, b) for a, b in zip(xs_heads, xs, strict=True))

    if kind == "image":
        other = images(1, *size, seed=12)
        with torch.no_grad():
            arg = peer.pooled(peer.features(other))[0]
        target = Target("image", other=pooled_embedding(model, other))
    elif kind == "patch":
        arg, target = (1, 2, grid[1]), Target("patch", (1, 2))
    elif kind == "class":
        arg, target = 3, Target("class", 3)
    else:
        arg, target = None, Target("top")
    pairs, f, g, probe = peer_run(peer, x, kind, arg, layer)
    assert len(pairs) == c.depth

    rollout = explain(model, x, "rollout", target).maps[0]
    errs = {"rollout vs attend": close(rollout, attend_rollout_row(model, x).reshape(grid))}
    for method in ("rollout", "grad-rollout", "attn-grad"):
        ours = explain(model, x, method, target, discard_ratio=0.2 if method == "attn-grad" else 0.0).maps[0]
        ratio = 0.2 if method == "attn-grad" else 0.0
        ref = reference_map(pairs, method, c.num_prefix_tokens, c.class_token, 0, ratio, probe)
        errs[method] = close(ours, ref.reshape(grid))
    ours = explain(model, x, "gradcam", target, layer=layer).maps[0]
    ref = reference_gradcam(f, g, c.num_prefix_tokens).reshape(grid)
    assert ref.max() > 0  # a map that is not all ReLU'd away
    errs["gradcam"] = close(ours, ref)
    print(f"\n{case}: " + ", ".join(f"{k} {v:.1e}" for k, v in errs.items()))


@pytest.mark.parametrize("case", ["beitv2-layer-bias", "beit-shared-bias", "dinov3-rope-registers"])
def test_rows_recomputed_from_q_k_are_the_encoders_weights(tmp_path, case) -> None:
    """attend on chosen queries recomputes rows from Q, K and the layer's bias (class rows, mean distance,
    rollout): they equal the encoder's own full weights, i.e. what attend keeps with every query."""
    build, size, _, _ = CASES[case]
    peer, load_kw = build(size)
    model = load(peer, load_kw, tmp_path)
    c = model.config
    x = images(2, *size, seed=13)
    every, heads = list(range(c.depth)), HeadSelection(list(range(c.heads)), None)
    full = inspect_attention(model, x, every, heads, None, every, rollout=RolloutSpec())
    rows = inspect_attention(model, x, every, heads, [c.num_prefix_tokens + 1], every, rollout=RolloutSpec())
    with torch.no_grad():
        out = model(x, Capture(inputs=False, attention=every, qkv=True, final="none"))
        terms = model.attention_terms(full.grid)
        recomputed = [model.blocks[i].attn.rows(*out.qkv[i][:2], terms[i][1], 2, 5) for i in every]  # (B, H, 3, T)
    for i in every:
        assert torch.allclose(recomputed[i], out.attentions[i][:, :, 2:5], atol=1e-6, rtol=0)
        assert torch.allclose(rows.cls_rows[i], full.weights[:, i, :, 0], atol=1e-6, rtol=0)
        assert torch.allclose(rows.distance[i], full.distance[i], atol=1e-9, rtol=1e-6)
    assert torch.allclose(rows.rollout, full.rollout, atol=1e-9, rtol=0)


def test_probe_weights_are_its_forward(tmp_path) -> None:
    """The attention-pool probe's weights, recomputed apart from its SDPA forward, give that forward's A·V."""
    build, size, _, _ = CASES["siglip-probe"]
    peer, load_kw = build(size)
    model = load(peer, load_kw, tmp_path)
    with torch.no_grad():
        final = model(images(2, *size, seed=14)).output  # (B, T, D)
        pool = model.attn_pool
        q, k, v, bias = pool.attend(final)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B, H, 1, d)
        assert torch.allclose(pool.weights(final) @ v, y, atol=1e-6, rtol=0)


@pytest.mark.parametrize("case, kind", [("vit", "qk"), ("beitv2-layer-bias", "rows")])
def test_page_rows_are_checked_against_the_encoders(tmp_path, case, kind) -> None:
    """view's page computes softmax(scale·q·Kᵀ) from float16 Q, K with no bias: stored as Q, K only where that
    gives the encoder's weights back (plain ViT), as rows where a relative position bias enters the scores."""
    from vitcli.api.view import ROW_TOLERANCE, attention_layer

    build, size, _, _ = CASES[case]
    peer, load_kw = build(size)
    model = load(peer, load_kw, tmp_path)
    with torch.no_grad():
        out = model(images(1, *size, seed=15), Capture(inputs=False, attention=[1], qkv=True, final="none"))
    q, k, _ = (t[0].double().numpy() for t in out.qkv[1])
    stored, err = attention_layer(out.attentions[1][0].double().numpy(), q, k, model.blocks[1].attn.scale)
    assert stored["kind"] == kind and err <= ROW_TOLERANCE


def test_api_explain_rollout_is_attends_on_beit(tmp_path) -> None:
    """Through the API as users call it: Model.explain(method="rollout") = Model.attend(rollout=True)'s class row
    on a per-layer relative bias model (5% of the map's maximum apart before the one forward path)."""
    import numpy as np

    from vitcli.api import load_model

    peer, _ = CASES["beitv2-layer-bias"][0]((32, 48))
    model = load_model(str(save_timm(peer, tmp_path)), heads=4, native_size=(32, 48))
    pixels = np.random.default_rng(0).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    ours = model.explain(pixels, method="rollout").maps  # (2, 3)
    row = model.attend(pixels, rollout=True).rollout[0, 1:].reshape(ours.shape)
    assert np.abs(ours - row).max() <= 1e-6 * np.abs(row).max()

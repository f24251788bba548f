"""explain --method legrad, and text targets (cos with an embedding in the joint image-text space).

  - legrad equals legrad-torch's own LeWrapper (installed with --no-deps: it pins open_clip <= 2.23) on the same
    scrambled open_clip models, a CLIP tower (class token, ln_post, proj) and a SigLIP tower (open_clip's TimmModel:
    attention-pool probe, no projection), at the token grid: legrad-torch's bilinear upsampling to pixels is
    replaced by the identity, so its min-max runs on the grid as ours does;
  - on non-square images (where legrad-torch's `int(sqrt(N))` cannot reshape) legrad equals LeGrad's formula
    written here with autograd on the peer's explicit attention: a CLIP tower and a timm SigLIP tower;
  - Target("text") with grad-rollout, attn-grad, rollout and gradcam equals the explain tests' references
    (tests/core/test_explain.py, test_one_path.py) on A, ∂y/∂A and ln_1's output taken by autograd in the peer.
Text embeddings come from open_clip's own `encode_text` on the same scrambled model (random token ids).
"""

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import open_clip
import open_clip.timm_model as open_clip_timm
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

from tests.checkpoints.parity import images, scramble
from tests.core.test_explain import close, reference_map
from tests.core.test_one_path import reference_gradcam
from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint
from vitcli.core.encoder import VisionTransformer
from vitcli.core.explain import Target, explain

TOL = 1e-4  # the bound after min-max
TEXT = {"context_length": 8, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1}


@dataclass
class Pair:
    """A scrambled open_clip model, vitcli's core model of its image tower, and one text embedding (E,)."""

    peer: Any  # open_clip.CLIP
    core: VisionTransformer
    text: Tensor


def text_embedding(model: Any, seed: int) -> Tensor:
    """open_clip's own encode_text of random token ids (unnormalised): (E,)."""
    ids = torch.randint(1, TEXT["vocab_size"], (1, TEXT["context_length"]), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.encode_text(ids)[0]


def clip_pair(tmp: Path, size: tuple[int, int], seed: int) -> Pair:
    """open_clip CLIP: depth 2, width 64, 4 heads, patch 16, joint space 32; its full state dict loaded by vitcli."""
    vision = {"image_size": size, "layers": 2, "width": 64, "head_width": 16, "patch_size": 16}
    model = scramble(open_clip.CLIP(embed_dim=32, vision_cfg=vision, text_cfg=TEXT), seed)
    torch.save(model.state_dict(), tmp / "open_clip_pytorch_model.bin")
    size_kw: dict[str, Any] = {"image_size": size} if size[0] != size[1] else {}
    loaded = load_checkpoint(tmp / "open_clip_pytorch_model.bin", heads=4, **size_kw)
    assert loaded.family == "open_clip" and loaded.projects
    return Pair(model, build_model_from_checkpoint(loaded), text_embedding(model, seed))


def siglip_pair(tmp: Path, seed: int) -> Pair:
    """open_clip's SigLIP layout: a TimmModel tower (vit_base_patch16_siglip_224 cut to depth 2, width 64, 64 px;
    timm_pool map, timm_proj none) beside a bidirectional text tower; the tower's `visual.trunk.` weights loaded."""
    create = timm.create_model
    open_clip_timm.timm = SimpleNamespace(create_model=lambda name, **kw: create(name, **kw, depth=2, embed_dim=64,
                                                                                 num_heads=4, img_size=64))
    try:
        vision = {"image_size": 64, "timm_model_name": "vit_base_patch16_siglip_224", "timm_pool": "map", "timm_proj": "none"}
        model = open_clip.CLIP(embed_dim=64, vision_cfg=vision,
                               text_cfg={**TEXT, "no_causal_mask": True, "pool_type": "last", "proj_bias": True})
    finally:
        open_clip_timm.timm = timm
    model = scramble(model, seed)
    trunk = {k[len("visual.trunk."):]: v for k, v in model.state_dict().items() if k.startswith("visual.trunk.")}
    save_file(trunk, tmp / "siglip.safetensors")
    core = build_model_from_checkpoint(load_checkpoint(tmp / "siglip.safetensors", heads=4))
    assert core.attn_pool is not None and not core.config.class_token
    return Pair(model, core, text_embedding(model, seed))


@pytest.fixture(scope="module")
def clip_square(tmp_path_factory) -> Pair:
    return clip_pair(tmp_path_factory.mktemp("clip_square"), (64, 64), 1)


@pytest.fixture(scope="module")
def clip_wide(tmp_path_factory) -> Pair:
    return clip_pair(tmp_path_factory.mktemp("clip_wide"), (48, 80), 2)


# --- legrad-torch -------------------------------------------------------------------------------------------


class NoUpsample:
    """torch.nn.functional for legrad-torch's module, with `interpolate` the identity: its maps stay on the grid."""

    def __getattr__(self, name: str):
        return getattr(F, name)

    @staticmethod
    def interpolate(t: Tensor, **kwargs) -> Tensor:
        return t


def legrad_torch(model: Any, x: Tensor, embedding: Tensor, layer_index: int, monkeypatch) -> Tensor:
    """legrad-torch's LeWrapper map (rows, cols) at the token grid. open_clip 3 runs its blocks batch first, and
    legrad-torch's hooked forward hands them (T, B, D) with its attention read sequence first: the tower's
    nn.MultiheadAttention layers are set to sequence-first so the blocks it does not hook read that layout too."""
    if os.environ.get("VITCLI_REQUIRE_LEGRAD"):  # CI (.ci/run): fail rather than skip
        import legrad
    else:
        legrad = pytest.importorskip("legrad")  # pip install --no-deps legrad-torch==1.1 einops
    monkeypatch.setattr(legrad.wrapper, "F", NoUpsample())
    model = copy.deepcopy(model)
    if hasattr(model.visual, "transformer"):
        for block in model.visual.transformer.resblocks:
            block.attn.batch_first = False
    wrapped = legrad.LeWrapper(model, layer_index=layer_index)
    text = F.normalize(embedding[None], dim=-1)  # (1, E), as legrad-torch's examples pass it
    if hasattr(model.visual, "trunk"):
        out = wrapped.compute_legrad_siglip(text, x, apply_correction=False)  # its correction needs a tokenizer download
    else:
        out = wrapped.compute_legrad_clip(text, x)
    return out[0, 0].detach()  # (rows, cols)


@pytest.mark.parametrize("layer_index", [-2, -1])
def test_legrad_equals_legrad_torch_on_open_clip(clip_square, monkeypatch, layer_index) -> None:
    """CLIP tower, a text embedding and another image's projected embedding: LeGrad's default start (the last two
    blocks, here every block) and the last block alone."""
    p = clip_square
    x, other = images(1, 64, 64, seed=3), images(1, 64, 64, seed=4)
    with torch.no_grad():
        image_embedding = p.peer.encode_image(other)[0]  # (E,) in the joint space
    start = p.core.config.depth + layer_index
    for embedding in (p.text, image_embedding):
        ref = legrad_torch(p.peer, x, embedding, layer_index, monkeypatch)
        ours = explain(p.core, x, "legrad", Target("text", other=embedding), start_layer=start)
        assert ours.maps.shape == (1, 4, 4) and ours.maps.min() == 0 and ours.maps.max() == 1
        err = (ours.maps[0].double() - ref.double()).abs().max().item()
        print(f"\nlegrad vs legrad-torch, CLIP, layer_index {layer_index}: {err:.1e}")
        assert err <= TOL and ref.std() > 0.1
        with torch.no_grad():
            y = F.cosine_similarity(p.peer.encode_image(x), embedding[None])[0]
        assert abs(ours.score[0].item() - y.item()) <= 1e-5  # the score is the model's own cos


def test_legrad_equals_legrad_torch_on_a_siglip_tower(tmp_path, monkeypatch) -> None:
    """The attention-pool tower: the probe on each layer's raw output, its row's gradient (no correction)."""
    p = siglip_pair(tmp_path, 5)
    x = images(1, 64, 64, seed=6)
    ref = legrad_torch(p.peer, x, p.text, -2, monkeypatch)
    ours = explain(p.core, x, "legrad", Target("text", other=p.text))
    assert ours.maps.shape == (1, 4, 4)
    err = (ours.maps[0].double() - ref.double()).abs().max().item()
    print(f"\nlegrad vs legrad-torch, SigLIP: {err:.1e}")
    assert err <= TOL and ref.std() > 0.1


# --- the formula by autograd, non-square ---------------------------------------------------------------------


def explicit_clip(model: Any) -> tuple[Any, list[Any], list[Tensor], list[Any]]:
    """A copy of an open_clip CLIP whose blocks compute softmax attention explicitly (batch first), keeping each
    block's A (B, H, T, T) and output (B, T, D) and ln_1's output (B, T, D) for autograd."""
    model = copy.deepcopy(model)
    kept: list[Any] = []  # A with its .grad
    outputs: list[Tensor] = []
    normed: list[Any] = []  # ln_1's output with its .grad

    def keep_normed(module: nn.Module, inputs: tuple, out: Tensor) -> None:
        if out.requires_grad:
            out.retain_grad()
        normed.append(out)

    for block in model.visual.transformer.resblocks:
        mha = block.attn

        def attention(q_x, k_x=None, v_x=None, attn_mask=None, mha=mha):
            b, t, d = q_x.shape
            h = mha.num_heads
            q, k, v = F.linear(q_x, mha.in_proj_weight, mha.in_proj_bias).reshape(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
            a = torch.softmax((q * (d // h) ** -0.5) @ k.transpose(-2, -1), dim=-1)  # (B, H, T, T)
            if a.requires_grad:
                a.retain_grad()
            kept.append(a)
            return mha.out_proj((a @ v).transpose(1, 2).reshape(b, t, d))

        block.attention = attention
        block.register_forward_hook(lambda m, i, o: outputs.append(o))
        block.ln_1.register_forward_hook(keep_normed)
    return model, kept, outputs, normed


def reference_legrad(kept: list[Tensor], ys: list[Tensor], start: int, prefix: int, grid: tuple[int, int]) -> Tensor:
    """LeGrad: Σ_{l ≥ start} mean over heads and query rows of (∂y_l/∂A_l)⁺, prefix columns dropped, min-max."""
    rows = []
    for a, y in zip(kept[start:], ys[start:]):
        (g,) = torch.autograd.grad(y, a, retain_graph=True)  # (1, H, Q, T)
        rows.append(g[0].double().clamp(min=0).mean(0).mean(0)[prefix:])
    total = torch.stack(rows).sum(0).reshape(grid)
    return (total - total.min()) / (total.max() - total.min())


@pytest.mark.parametrize("start", [0, 1])
def test_legrad_on_a_non_square_clip_equals_the_formula(clip_wide, start) -> None:
    """48×80 (3×5 patches). text: cos of ln_post(mean of ALL tokens)·proj with the text; class:3: that feature's
    logit 3 (here the projection's output 3); image: cos of ln_post(mean) with the other image's pooled embedding
    ln_post(class token) (before the projection, as image: compares pooled embeddings); patch:1,2: cos of
    ln_post(that patch) with ln_post(mean)."""
    p = clip_wide
    x = images(1, 48, 80, seed=7)
    other_peer, _, other_outputs, _ = explicit_clip(p.peer)
    with torch.no_grad():
        other_peer.visual(images(1, 48, 80, seed=8))
        other = other_peer.visual.ln_post(other_outputs[-1][0, 0])  # (D,) the other image's pooled embedding
    peer, kept, outputs, _ = explicit_clip(p.peer)
    visual = peer.visual
    with torch.enable_grad():
        visual(x)
        feats = [visual.ln_post(o.mean(dim=1))[0] for o in outputs]  # (D,) each: ln_post of the mean of ALL tokens
        ys = {"text": [F.cosine_similarity(f @ visual.proj, p.text, dim=0) for f in feats],
              "class": [(f @ visual.proj)[3] for f in feats],
              "image": [F.cosine_similarity(f, other, dim=0) for f in feats],
              "patch": [F.cosine_similarity(visual.ln_post(o[0, 1 + 1 * 5 + 2]), f, dim=0) for o, f in zip(outputs, feats)]}
        cases = {"text": Target("text", other=p.text), "class": Target("class", 3), "image": Target("image", other=other),
                 "patch": Target("patch", (1, 2))}
        for kind, target in cases.items():
            ours = explain(p.core, x, "legrad", target, start_layer=start)
            assert ours.maps.shape == (1, 3, 5)
            ref = reference_legrad(kept, ys[kind], start, 1, (3, 5))
            err = (ours.maps[0].double() - ref).abs().max().item()
            print(f"\nlegrad vs the formula, CLIP 3×5, {kind}, start {start}: {err:.1e}")
            assert err <= TOL and ref.std() > 0.1, kind


def explicit_probe(pool: Any, x: Tensor) -> tuple[Tensor, Tensor]:
    """timm's AttentionPoolLatent written out: the pooled embedding (B, D) and the probe's A (B, H, 1, T)."""
    b, t, d = x.shape
    h = pool.num_heads
    q = pool.q(pool.latent).reshape(1, 1, h, d // h).transpose(1, 2)  # (1, H, 1, d)
    k, v = pool.kv(x).reshape(b, t, 2, h, d // h).permute(2, 0, 3, 1, 4)  # (B, H, T, d) each
    a = torch.softmax((q * (d // h) ** -0.5) @ k.transpose(-2, -1), dim=-1)  # (B, H, 1, T)
    y = pool.proj((a @ v).transpose(1, 2).reshape(b, 1, d))
    return (y + pool.mlp(pool.norm(y)))[:, 0], a


def test_legrad_on_a_non_square_siglip_equals_the_formula(tmp_path) -> None:
    """timm SigLIP at 32×48: each layer's raw output through the probe (no final norm); ∂y/∂A of the probe's row."""
    trunk: Any = scramble(timm.create_model("vit_base_patch16_siglip_224", pretrained=False, img_size=(32, 48), depth=2,
                                       embed_dim=64, num_heads=4, num_classes=0), 8)
    save_file(trunk.state_dict(), tmp_path / "siglip.safetensors")
    core = build_model_from_checkpoint(load_checkpoint(tmp_path / "siglip.safetensors", heads=4, image_size=(32, 48)))
    x = images(1, 32, 48, seed=9)
    other = torch.randn(64, generator=torch.Generator().manual_seed(10))  # any (E,) in SigLIP's joint space
    outputs: list[Tensor] = []
    for block in trunk.blocks:
        block.register_forward_hook(lambda m, i, o: outputs.append(o))
    with torch.enable_grad():
        final = trunk.forward_features(x)
        pooled, _ = explicit_probe(trunk.attn_pool, final)
        assert torch.allclose(pooled, trunk.forward_head(final), atol=1e-5)  # the written-out probe is timm's
        probes = [explicit_probe(trunk.attn_pool, o) for o in outputs]
        ys = [F.cosine_similarity(e, other[None])[0] for e, _ in probes]
        ours = explain(core, x, "legrad", Target("text", other=other))
        assert ours.maps.shape == (1, 2, 3)
        ref = reference_legrad([a for _, a in probes], ys, 0, 0, (2, 3))
    err = (ours.maps[0].double() - ref).abs().max().item()
    print(f"\nlegrad vs the formula, SigLIP 2×3: {err:.1e}")
    assert err <= TOL and ref.std() > 0.1


# --- text targets with the other methods ---------------------------------------------------------------------


def test_text_target_with_every_other_method_equals_the_references(clip_wide) -> None:
    """y = cos(encode_image(x), text): grad-rollout, attn-grad (discard 0.2), rollout and gradcam (last block)."""
    p = clip_wide
    x = images(1, 48, 80, seed=11)
    peer, kept, _, normed = explicit_clip(p.peer)
    with torch.enable_grad():
        y = F.cosine_similarity(peer.encode_image(x)[0], p.text, dim=0)
        y.backward()
    pairs = [(a[0].detach().double(), a.grad[0].double()) for a in kept]
    target = Target("text", other=p.text)
    for method in ("grad-rollout", "attn-grad", "rollout"):
        ratio = 0.2 if method == "attn-grad" else 0.0
        ours = explain(p.core, x, method, target, discard_ratio=ratio)
        assert abs(ours.score[0].item() - y.item()) <= 1e-5
        close(ours.maps[0], reference_map(pairs, method, 1, True, 0, ratio).reshape(3, 5))
    ours = explain(p.core, x, "gradcam", target, layer=-1)
    ref = reference_gradcam(normed[-1][0].detach().double(), normed[-1].grad[0].double(), 1).reshape(3, 5)
    assert ref.max() > 0
    close(ours.maps[0], ref)


def test_a_text_embedding_of_the_wrong_length_is_refused(clip_wide) -> None:
    with pytest.raises(ValueError, match="text target's embedding has 7 values and this image's has 32"):
        explain(clip_wide.core, images(1, 48, 80, seed=12), "legrad", Target("text", other=torch.ones(7)))

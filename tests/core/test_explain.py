"""explain's maps against references built from the peer's own forward pass (timm, explicit softmax
attention, A and ∂y/∂A by autograd), and against pytorch-grad-cam on the same timm model."""

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from tests.checkpoints.parity import images, scramble
from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint
from vitcli.core.explain import Target, explain, pooled_embedding

TOL = 1e-5


def peer(name: str, seed: int, **kwargs):
    """A scrambled timm model whose attention keeps A with its gradient (fused path off)."""
    model = scramble(timm.create_model(name, pretrained=False, **kwargs), seed)
    kept: list[torch.Tensor] = []

    def hook(module, inputs, output):
        if output.requires_grad:
            output.retain_grad()
            kept.append(output)

    for block in model.blocks:
        block.attn.fused_attn = False
        block.attn.attn_drop.register_forward_hook(hook)
    return model, kept


def core(model, tmp_path, **load_kw):
    save_file(model.state_dict(), tmp_path / "m.safetensors")
    return build_model_from_checkpoint(load_checkpoint(tmp_path / "m.safetensors", **load_kw))


def peer_target(model, x, kind, arg=None):
    """y of the peer, with autograd: the top / class logit, cos with another pooled embedding, or patch·pooled."""
    feats = model.forward_features(x)  # (1, T, D)
    pooled = model.forward_head(feats, pre_logits=True)  # (1, D)
    if kind in ("top", "class"):
        logits = model.forward_head(feats)
        return logits[0, logits[0].argmax() if kind == "top" else arg]
    if kind == "image":
        return F.cosine_similarity(pooled[0], arg, dim=0)
    r, c, prefix, cols = arg
    return F.cosine_similarity(feats[0, prefix + r * cols + c], pooled[0], dim=0)


def peer_grads(model, kept, x, kind, arg=None):
    """Every layer's A and ∂y/∂A (H, T, T) from the peer's explicit attention."""
    kept.clear()
    with torch.enable_grad():
        y = peer_target(model, x, kind, arg)
        y.backward()
    return [(a[0].detach().double(), a.grad[0].double()) for a in kept]


def reference_discard(m, ratio):
    """Zero the `ratio` smallest entries of (T, T), never the diagonal (written out, not vitcli's)."""
    if ratio == 0:
        return m
    t = m.shape[-1]
    ranked = m.clone()
    ranked[range(t), range(t)] = float("inf")
    drop = ranked.flatten().argsort()[:int(t * t * ratio)]
    out = m.flatten().clone()
    out[drop] = 0
    return out.reshape(t, t)


def reference_map(pairs, method, prefix, cls, start=0, ratio=0.0, row=None):
    """The issue's formulas applied to the peer's A and ∂y/∂A; R's class row (or mean patch row, or `row`·R:
    the attention-pool probe's row (T,) for a model that pools with one)."""
    t = pairs[0][0].shape[-1]
    r = torch.eye(t, dtype=torch.float64)
    for a, g in pairs[start:]:
        if method == "grad-rollout":
            r = r + (g * a).clamp(min=0).mean(0) @ r
            continue
        fused = (a * g).clamp(min=0).mean(0) if method == "attn-grad" else a.mean(0)
        hat = 0.5 * reference_discard(fused, ratio) + 0.5 * torch.eye(t, dtype=torch.float64)
        r = (hat / hat.sum(-1, keepdim=True)) @ r
    row = row @ r if row is not None else r[0] if cls else r[prefix:].mean(0)
    return row[prefix:]


def close(ours, ref):
    ours, ref = torch.as_tensor(ours).double().flatten(), ref.flatten()
    scale = ref.abs().max()
    err = ((ours - ref).abs().max() / scale).item()
    assert err <= TOL, err
    return err


CASES = [
    # name, kwargs, size, target kind
    ("vit_tiny_patch16_224", dict(img_size=64, depth=3), (64, 64), "top"),
    ("vit_tiny_patch16_224", dict(img_size=(48, 80), depth=2), (48, 80), "class"),
    ("vit_small_patch14_reg4_dinov2", dict(img_size=56, depth=2), (56, 56), "image"),
    ("vit_base_patch16_clip_224", dict(img_size=48, depth=2, num_classes=512, embed_dim=192, num_heads=3), (48, 48), "image"),
    ("vit_tiny_patch16_224", dict(img_size=64, depth=2, class_token=False, global_pool="avg"), (64, 64), "patch"),
]


@pytest.mark.parametrize("name, kwargs, size, kind", CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
@pytest.mark.parametrize("method", ["grad-rollout", "attn-grad", "rollout"])
def test_gradient_rollouts_equal_the_formulas_on_the_peer(tmp_path, name, kwargs, size, kind, method) -> None:
    model, kept = peer(name, 3, **kwargs)
    load_kw = {"image_size": size} if size[0] != size[1] else {}
    ours_model = core(model, tmp_path, **load_kw)
    c = ours_model.config
    x = images(1, *size, seed=4)
    grid = (size[0] // c.patch_size, size[1] // c.patch_size)
    prefix = c.num_prefix_tokens
    if kind == "image":
        other = images(1, *size, seed=9)
        with torch.no_grad():
            arg = model.forward_head(model.forward_features(other), pre_logits=True)[0]
        target = Target("image", other=pooled_embedding(ours_model, other))
    elif kind == "patch":
        arg, target = (1, 2, prefix, grid[1]), Target("patch", (1, 2))
    elif kind == "class":
        arg, target = 7, Target("class", 7)
    else:
        arg, target = None, Target("top")
    pairs = peer_grads(model, kept, x, kind, arg)
    assert len(pairs) == c.depth
    ratio = 0.3 if method == "attn-grad" else 0.0
    ours = explain(ours_model, x, method, target, start_layer=0, discard_ratio=ratio)
    assert ours.maps.shape == (1, *grid)
    close(ours.maps[0], reference_map(pairs, method, prefix, c.class_token, 0, ratio).reshape(grid))
    if method == "grad-rollout":  # a later start layer
        ours = explain(ours_model, x, method, target, start_layer=1)
        close(ours.maps[0], reference_map(pairs, method, prefix, c.class_token, 1).reshape(grid))
    if method == "attn-grad":  # without discard: r·Â taken row block by row block, Ā never whole
        ours = explain(ours_model, x, method, target)
        close(ours.maps[0], reference_map(pairs, method, prefix, c.class_token).reshape(grid))


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("method", ["grad-rollout", "attn-grad"])
def test_row_blocks_give_the_full_matrix_product(tmp_path, monkeypatch, torch_threads, method, threads) -> None:
    """Uneven tiles (6 query rows × 7 key columns, T = 5 prefix + 15 patches = 20 → rows 6, 6, 6, 2 and columns
    7, 7, 6; 3×5 grid, registers), on one thread or with the row blocks dealt out to two: the row vector r propagated
    block by block through the layers (r ← r + r·Ā, or r·Â) equals the full-matrix product of the formulas on the
    peer's own A and ∂y/∂A, for a class target and a patch target."""
    import vitcli.core.attention_grad as tiles

    model, kept = peer("vit_small_patch14_reg4_dinov2", 7, img_size=(42, 70), depth=3, num_classes=10)
    ours_model = core(model, tmp_path, image_size=(42, 70))
    c = ours_model.config
    grid, prefix = (3, 5), c.num_prefix_tokens
    assert (prefix, c.depth) == (5, 3)
    monkeypatch.setattr(tiles, "TILE_ROWS", 6)  # 4 row blocks, the last one 2 rows
    monkeypatch.setattr(tiles, "TILE_COLS", 7)  # 3 column tiles, the last one 6 columns
    torch_threads(threads)  # the backward deals row blocks out to torch's threads
    x = images(1, 42, 70, seed=8)
    targets = [("class", 4, Target("class", 4)), ("patch", (2, 3, prefix, grid[1]), Target("patch", (2, 3)))]
    for kind, arg, target in targets:
        pairs = peer_grads(model, kept, x, kind, arg)
        ours = explain(ours_model, x, method, target)
        close(ours.maps[0], reference_map(pairs, method, prefix, c.class_token).reshape(grid))
        if method == "grad-rollout":
            ours = explain(ours_model, x, method, target, start_layer=2)
            close(ours.maps[0], reference_map(pairs, method, prefix, c.class_token, 2).reshape(grid))


def grad_cam_peer(model, x, layer, grid, prefix, klass=None):
    """pytorch-grad-cam's GradCAM on block `layer`'s norm1 with its ViT reshape_transform, before its resize."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def reshape_transform(tensor):  # the package's ViT recipe, with the true grid and prefix
        out = tensor[:, prefix:, :].reshape(tensor.size(0), grid[0], grid[1], tensor.size(2))
        return out.transpose(2, 3).transpose(1, 2)

    cam = GradCAM(model=model, target_layers=[model.blocks[layer].norm1], reshape_transform=reshape_transform)
    raw: list[np.ndarray] = []
    own = cam.get_cam_image
    cam.get_cam_image = lambda *a, **k: raw.append(own(*a, **k)) or raw[-1]
    cam(input_tensor=x, targets=None if klass is None else [ClassifierOutputTarget(klass)])
    return np.maximum(raw[0][0], 0)  # (rows, cols)


def minmax(m):
    m = torch.as_tensor(np.asarray(m)).double()
    return (m - m.min()) / (m.max() - m.min())


@pytest.mark.parametrize("name, kwargs, size, layer, klass", [
    ("vit_tiny_patch16_224", dict(img_size=64, depth=3), (64, 64), -1, None),
    ("vit_tiny_patch16_224", dict(img_size=(48, 80), depth=2), (48, 80), 0, 5),
    ("vit_small_patch14_reg4_dinov2", dict(img_size=56, depth=2, num_classes=10), (56, 56), -1, None),
])
def test_gradcam_equals_pytorch_grad_cam(tmp_path, name, kwargs, size, layer, klass) -> None:
    model = scramble(timm.create_model(name, pretrained=False, **kwargs), 5)
    ours_model = core(model, tmp_path, **({"image_size": size} if size[0] != size[1] else {}))
    c = ours_model.config
    grid = (size[0] // c.patch_size, size[1] // c.patch_size)
    x = images(1, *size, seed=6)
    ref = grad_cam_peer(model, x, layer, grid, c.num_prefix_tokens, klass)
    ours = explain(ours_model, x, "gradcam", Target("top") if klass is None else Target("class", klass), layer=layer)
    assert ours.maps.shape == (1, *grid)
    assert (minmax(ours.maps[0]) - minmax(ref)).abs().max().item() <= TOL

"""The architecture from shapes: a pure function, overrides spoken in the caller's language, and
position tables whose grid the weights alone do not tell.

Expected numbers come from timm's own models (forward_features with the fused path off) or are
computed by hand from the sizes the peer was built with.
"""

import copy

import open_clip
import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.models.vision_transformer import VisionTransformer as TimmViT

from tests.checkpoints.parity import images
from vitcli.checkpoints.config import parse_configs
from vitcli.checkpoints.families import CLIP, detect, evidence, map_keys
from vitcli.checkpoints.infer import Overrides, infer_config
from vitcli.checkpoints.load import build_model_from_checkpoint, fit_native_grid, load_checkpoint, require_native_grid
from vitcli.errors import VitcliError


@torch.no_grad()
def _scrambled(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """No default init left: matrices N(0, 1/fan_in), LayerNorm weights 1 + 0.1·N, biases and tokens random."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=g)
        if p.dim() >= 2:
            p.copy_(r * (p.shape[-1] ** -0.5 if p.dim() == 3 else p[0].numel() ** -0.5))
        elif name.endswith("weight"):
            p.copy_(1 + 0.1 * r)
        else:
            p.copy_(0.1 * r)
    for block in getattr(model, "blocks", []):
        block.attn.fused_attn = False
    return model.eval()


def _same_as_timm(model: torch.nn.Module, loaded, x: torch.Tensor) -> float:
    core = build_model_from_checkpoint(loaded)
    with torch.no_grad():
        ours, theirs = core(x).output, model.forward_features(x)
    assert ours.shape == theirs.shape
    return (ours - theirs).abs().max().item()


@pytest.fixture(scope="module")
def four_heads(tmp_path_factory):
    """A bare timm state dict, 4 heads of width 24 (D = 96: not a multiple of 64), every parameter scrambled."""
    model = _scrambled(TimmViT(img_size=32, patch_size=8, embed_dim=96, depth=2, num_heads=4, mlp_ratio=2.0,
                               num_classes=0), seed=1)
    path = tmp_path_factory.mktemp("heads") / "w.safetensors"
    save_file(model.state_dict(), path)
    return model, path


def test_heads_override_loads_a_96_wide_model_that_equals_timm(four_heads) -> None:
    model, path = four_heads
    loaded = load_checkpoint(path, heads=4)
    assert (loaded.config.heads, loaded.config.head_dim) == (4, 24)
    assert "heads 4 (given)" in loaded.notes
    assert _same_as_timm(model, loaded, images(2, 32, 32, seed=3)) <= 1e-4


def test_without_heads_the_error_names_the_override_in_each_front_ends_spelling(four_heads) -> None:
    _, path = four_heads
    with pytest.raises(VitcliError) as e:
        load_checkpoint(path)
    assert e.value.source == str(path) and e.value.needs == "heads"
    assert "cannot tell the number of heads of a 96-wide model" in str(e.value)
    assert "heads=N" in str(e.value) and "--heads N" in e.value.render(cli=True)
    with pytest.raises(VitcliError, match="5 heads do not divide") as e:
        load_checkpoint(path, heads=5)
    assert e.value.source == "--heads"


@pytest.mark.parametrize("given, source, words", [
    ({"dim": 512}, "--dim", "512 contradicts the checkpoint's weights, which are 96 wide"),
    ({"depth": 3}, "--depth", "3 contradicts the checkpoint's weights, which have 2 blocks"),
    ({"patch_size": 16}, "--patch-size", "16 contradicts the checkpoint's weights, whose patches are 8x8"),
    ({"mlp_dim": 384}, "--mlp-dim", "384 contradicts the checkpoint's weights, whose MLP is 192 wide"),
])
def test_sizes_the_weights_show_are_only_checked(four_heads, given, source, words) -> None:
    _, path = four_heads
    with pytest.raises(VitcliError) as e:
        load_checkpoint(path, heads=4, **given)
    assert (e.value.source, e.value.problem) == (source, words)
    assert e.value.render(cli=True) == f"{source}: {words}"
    assert str(e.value) == f"{source[2:].replace('-', '_')}: {words}"


def test_sizes_equal_to_the_weights_are_fine(four_heads) -> None:
    _, path = four_heads
    loaded = load_checkpoint(path, heads=4, dim=96, depth=2, patch_size=8, mlp_dim=192)  # 96 · mlp_ratio 2
    assert (loaded.config.dim, loaded.config.depth, loaded.config.patch_size, loaded.config.mlp_dim) == (96, 2, 8, 192)


def test_overrides_of_what_weights_cannot_show_are_noted(four_heads) -> None:
    _, path = four_heads
    loaded = load_checkpoint(path, heads=4, eps=1e-5, activation="quick_gelu", pooling="mean", image_size=32)
    c = loaded.config
    assert (c.eps, c.activation, c.pooling, c.image_size) == (1e-5, "quick_gelu", "mean", (32, 32))
    for note in ("LayerNorm eps 1e-05 (given)", "activation quick_gelu (given)", "pooling mean (given)",
                 "native size 32x32 (given)"):
        assert note in loaded.notes


def _open_clip_visual():
    cfg = open_clip.get_model_config("ViT-B-32")
    vision = {**cfg["vision_cfg"], "layers": 1, "width": 128, "image_size": 64, "final_ln_after_pool": True}
    torch.manual_seed(0)
    return {f"visual.{k}": v for k, v in open_clip.CLIP(**{**cfg, "vision_cfg": vision}).visual.state_dict().items()}, vision


def test_infer_is_pure_and_the_open_clip_rename_happens_in_the_mapping() -> None:
    state, vision = _open_clip_visual()
    files = parse_configs({"open_clip_config.json": {"model_cfg": {"vision_cfg": vision}}})
    source = dict(state)
    mapped = map_keys(state, CLIP, "visual.", files)
    assert state.keys() == source.keys() and all(state[k] is source[k] for k in state)
    # ln_post applied after pooling is the core's fc_norm (open_clip: final_ln_after_pool)
    assert "fc_norm.weight" in mapped.tensors and "norm.weight" not in mapped.tensors
    assert mapped.origin["fc_norm.weight"] == "visual.ln_post.weight"
    ev = evidence(mapped, "m.safetensors", "safetensors", files=files, all_keys=state)
    shapes, tensors = copy.deepcopy(dict(ev.shapes)), dict(mapped.tensors)
    first, second = infer_config(CLIP, ev, Overrides()), infer_config(CLIP, ev, Overrides())
    assert first == second and first.config.fc_norm and not first.config.final_norm
    assert dict(ev.shapes) == shapes and mapped.tensors == tensors and set(mapped.origin) == set(tensors)
    # without the config file ln_post stays the final norm
    plain = map_keys(state, CLIP, "visual.")
    assert "norm.weight" in plain.tensors and "fc_norm.weight" not in plain.tensors


@pytest.fixture(scope="module")
def wide(tmp_path_factory):
    """timm ViT at 64x112 (grid 4x7): its table has 1 + 28 = 29 rows, no square reading."""
    model = _scrambled(timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=(64, 112), depth=2), 2)
    path = tmp_path_factory.mktemp("wide") / "wide.safetensors"
    save_file(model.state_dict(), path)
    return model, path


def test_non_square_table_loads_unresolved_and_an_image_grid_that_fits_resolves_it(wide) -> None:
    model, path = wide
    loaded = load_checkpoint(path)
    assert loaded.native_grid == "from image"
    assert set(loaded.grid_candidates) == {(1, 28), (0, 29)}  # (prefix rows, patch rows)
    assert fit_native_grid(loaded, (5, 5)) is None and fit_native_grid(loaded, (3, 9)) is None
    resolved = fit_native_grid(loaded, (4, 7))
    assert resolved is not None and resolved.native_grid == "known" and resolved.grid_candidates == ()
    c = resolved.config
    assert (c.grid, c.image_size, c.pos_prefix_rows) == ((4, 7), (64, 112), 1)
    assert any("native grid 4x7 (from the image" in n for n in resolved.notes)
    assert loaded.native_grid == "from image"  # the original is left as it was
    assert _same_as_timm(model, resolved, images(1, 64, 112, seed=4)) <= 1e-4
    # its preprocessing is timm's eval transform (the peer's crop_pct, mean, std) at the resolved size:
    # resize to floor(64 / 0.9) x floor(112 / 0.9) = 71x124, centre-crop 64x112
    from timm.data import resolve_data_config

    data = resolve_data_config({}, model=model)
    p = resolved.preprocess
    assert (p.size, p.resize_to, p.crop_pct, p.mean, p.std) == ((64, 112), (71, 124), data["crop_pct"], data["mean"],
                                                                 data["std"])


def test_unresolved_table_is_one_line_asking_for_the_native_size(wide) -> None:
    _, path = wide
    loaded = load_checkpoint(path)
    for call in (lambda: require_native_grid(loaded), lambda: build_model_from_checkpoint(loaded)):
        with pytest.raises(VitcliError) as e:
            call()
        assert e.value.source == str(path) and e.value.needs == "native_size"
        assert e.value.problem == ("the position table has 29 rows: not 0 or 1 prefix rows plus a square grid; "
                                   "pass {needs}")
        assert "pass native_size=(H, W)" in str(e.value) and "pass --native-size HxW" in e.value.render(cli=True)
    assert require_native_grid(fit_native_grid(loaded, (4, 7))).config.grid == (4, 7)


def test_a_native_size_that_does_not_fit_the_table_is_refused(wide) -> None:
    _, path = wide
    with pytest.raises(VitcliError, match=r"64x64 \(4x4 patches\) does not fit the checkpoint's position table of 29"):
        load_checkpoint(path, image_size=64)
    # timm's patch conv floors: 60x112 is a 3x7 grid (not the table's), 70x120 a 4x7 grid with 6 and 8 px unused
    with pytest.raises(VitcliError, match=r"60x112 \(3x7 patches\) does not fit the checkpoint's position table") as e:
        load_checkpoint(path, image_size=(60, 112))
    assert e.value.source == "--native-size"
    floored = load_checkpoint(path, image_size=(70, 120)).config
    assert (floored.image_size, floored.grid, floored.patch_remainder) == ((70, 120), (4, 7), "floor")
    with pytest.raises(VitcliError, match="image size 12x120 is smaller than the patch size 16") as e:
        load_checkpoint(path, image_size=(12, 120))
    assert e.value.source == "--native-size"


def test_ambiguous_table_with_two_square_readings_is_resolved_by_the_image(tmp_path) -> None:
    """cls + 4 registers, all with position rows, on a 2x2 grid: 9 rows read as 5 + 2x2 or 0 + 3x3."""
    model = _scrambled(TimmViT(img_size=28, patch_size=14, embed_dim=64, depth=1, num_heads=1, reg_tokens=4,
                               no_embed_class=False, num_classes=0), seed=5)
    assert model.pos_embed.shape[1] == 9
    save_file(model.state_dict(), tmp_path / "reg.safetensors")
    loaded = load_checkpoint(tmp_path / "reg.safetensors")
    assert loaded.native_grid == "from image"
    with pytest.raises(VitcliError, match="9 rows: 0 or 5 prefix rows plus a square grid both fit"):
        require_native_grid(loaded)
    resolved = fit_native_grid(loaded, (2, 2))
    assert (resolved.config.grid, resolved.config.pos_prefix_rows, resolved.config.num_registers) == ((2, 2), 5, 4)
    assert _same_as_timm(model, resolved, images(2, 28, 28, seed=6)) <= 1e-4


def test_square_tables_are_known_at_once(tmp_path) -> None:
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=48, depth=1)
    save_file(model.state_dict(), tmp_path / "sq.safetensors")
    loaded = load_checkpoint(tmp_path / "sq.safetensors")
    assert (loaded.native_grid, loaded.grid_candidates, loaded.config.grid) == ("known", (), (3, 3))
    assert fit_native_grid(loaded, (3, 3)) is loaded and fit_native_grid(loaded, (2, 4)) is None


def test_detect_and_infer_directly_on_a_state_dict() -> None:
    """The pure functions without files: timm's own sizes come back."""
    model = timm.create_model("deit_tiny_distilled_patch16_224", pretrained=False, img_size=64, depth=3)
    state = model.state_dict()
    fam, root = detect(state)
    ev = evidence(map_keys(state, fam, root), "deit.pth", "torch (weights_only)", all_keys=state)
    out = infer_config(fam, ev)
    c = out.config
    assert out.label == "deit"
    assert (c.dim, c.depth, c.heads, c.mlp_dim, c.patch_size, c.grid) == (192, 3, 3, 768, 16, (4, 4))
    assert (c.distilled, c.pos_prefix_rows, c.num_classes) == (True, 2, model.num_classes)

"""Image sizes and grids as each library handles them: a native size that is not a multiple of the patch
(SigLIP so400m: 384 px, P = 14, a 27×27 grid with 6 px unused), each library's own resizing of the position
table at other grids (transformers, the DINO / DINOv2 repositories), and DINOv2's giant with its packed SwiGLU.

Expected values come from the peers' own forward passes and preprocessing, or (for the DINOv2 repository,
which is not installed) from its interpolation written here from its code: bicubic, no antialias, torch's
scale factor (n + 0.1) / M per axis.
"""

import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import transformers as hf
from PIL import Image

from tests.checkpoints.parity import check, core_run, diff, images, scramble
from vitcli.checkpoints.load import build_model_from_checkpoint, load_checkpoint
from vitcli.core.capture import Capture

PHOTO = Path(__file__).resolve().parents[2] / "sample_images" / "chelsea.jpg"  # 300×451
TOL = 1e-4
SO400M = dict(hidden_size=1152, intermediate_size=4304, num_attention_heads=16, num_hidden_layers=2, patch_size=14,
              image_size=384)


def _eager(config):
    config._attn_implementation = "eager"
    return config


def _photo_tokens(path: Path, **load_kw) -> tuple[object, dict]:
    """vitcli's API on the photo: its own preprocessing of the checkpoint family, every stage."""
    from vitcli.api import load_model

    res = load_model(str(path), **load_kw).embed(str(PHOTO))
    return res, res.arrays


# --- A / D: a native size that is not a multiple of the patch --------------------------------------------------


def test_timm_so400m_384_floors_to_27x27_through_timms_own_transform(tmp_path) -> None:
    """timm vit_so400m_patch14_siglip_384 (depth 2), saved as the hub holds it: config.json with the
    architecture and pretrained_cfg, no model_args. timm's transform gives 384×384; its conv floors."""
    import timm
    from timm.data import create_transform, resolve_model_data_config
    from timm.models._hub import save_for_hf

    model = scramble(timm.create_model("vit_so400m_patch14_siglip_384", pretrained=False, depth=2), seed=40)
    save_for_hf(model, tmp_path / "so400m", safe_serialization=True)
    config = json.loads((tmp_path / "so400m" / "config.json").read_text())
    config.pop("model_args")  # the hub's config.json has none
    (tmp_path / "so400m" / "config.json").write_text(json.dumps(config))
    x = create_transform(**resolve_model_data_config(model))(Image.open(PHOTO).convert("RGB"))[None]
    assert tuple(x.shape[-2:]) == (384, 384)
    with torch.no_grad():
        tokens = model.forward_features(x)  # (1, 729, D)
        pooled = model.forward_head(tokens)
    res, arrays = _photo_tokens(tmp_path / "so400m")
    c = res.document["model"]
    assert (c["native_size"], c["native_grid"], c["grid"]) == ([384, 384], [27, 27], [27, 27])
    assert res.document["input"]["size"] == [378, 378] and "6 px unused" in res.document["input"]["resize"]
    result = {"tokens": diff(torch.from_numpy(arrays["output"]), tokens[0]),
              "pooled": diff(torch.from_numpy(arrays["pooled"]), pooled[0])}
    print(f"\nparity timm so400m 384 (floored 27x27) on the photo: {result}")
    assert max(result.values()) <= TOL, result


@pytest.mark.slow  # an SO400M (about 8 s); timm's floor to 27×27 stays quick
def test_transformers_siglip_so400m_384_floors_like_its_conv(tmp_path) -> None:
    """SiglipVisionModel at the real so400m shape (2 layers), save_pretrained + the hub's processor file."""
    model = scramble(hf.SiglipVisionModel(_eager(hf.SiglipVisionConfig(**SO400M))), seed=41)
    model.save_pretrained(tmp_path / "siglip")
    (tmp_path / "siglip" / "preprocessor_config.json").write_text(json.dumps({
        "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5],
        "processor_class": "SiglipProcessor", "resample": 3, "rescale_factor": 1 / 255,
        "size": {"height": 384, "width": 384}}))
    loaded = load_checkpoint(tmp_path / "siglip")
    c = loaded.config
    assert (c.image_size, c.grid, c.patch_remainder, c.pos_resample) == ((384, 384), (27, 27), "floor", "bicubic_plain")
    assert any("384×384 px → 27×27 patches, 6 px unused" in n for n in loaded.notes)
    from vitcli.io.images import apply_preprocess, load_image

    x = torch.from_numpy(apply_preprocess(loaded.preprocess, load_image(str(PHOTO)).pixels))[None]  # (1, 3, 384, 384)
    assert tuple(x.shape[-2:]) == (384, 384)
    with torch.no_grad():
        ref = model(pixel_values=x, output_attentions=True)
        out = build_model_from_checkpoint(loaded)(x, Capture(attention=range(2)))  # the core floors the 384 input
    check("transformers SiglipVisionModel so400m 384 (same 384 tensor)",
          {"tokens": (out.output, ref.last_hidden_state), "pooled": (out.pooled, ref.pooler_output)},
          out.attentions, list(ref.attentions))
    res, arrays = _photo_tokens(tmp_path / "siglip")  # the API: the processor's 384, the conv's 378
    assert res.document["input"]["size"] == [378, 378]
    assert diff(torch.from_numpy(arrays["output"]), ref.last_hidden_state[0]) <= TOL
    assert diff(torch.from_numpy(arrays["pooled"]), ref.pooler_output[0]) <= TOL


@pytest.mark.slow  # CLI runs on SO400M checkpoints (about 15 s)
def test_info_shows_the_floor_and_native_size_validation_is_one_line(tmp_path) -> None:
    from tests.conftest import assert_clean_error, run_cli

    conf = dict(SO400M, hidden_size=64, intermediate_size=96, num_attention_heads=2, num_hidden_layers=1)
    scramble(hf.SiglipVisionModel(hf.SiglipVisionConfig(**conf)), seed=42).save_pretrained(tmp_path / "s")
    ok = run_cli("info", "--weights", str(tmp_path / "s"))
    assert ok.returncode == 0, ok.stderr
    assert "patch grid │ 384×384 px → 27×27 patches, 6 px unused" in " ".join((ok.stdout + ok.stderr).decode().split())
    for size in ("378x378", "380x390"):  # floored to the table's 27×27
        assert run_cli("info", "--weights", str(tmp_path / "s"), "--native-size", size).returncode == 0
    assert_clean_error(run_cli("info", "--weights", str(tmp_path / "s"), "--native-size", "13x13"),
                       "--native-size", "smaller than the patch size 14")
    assert_clean_error(run_cli("info", "--weights", str(tmp_path / "s"), "--native-size", "400x400"),
                       "--native-size", "does not fit")
    from vitcli.api import load_model
    from vitcli.errors import VitcliError

    for bad in ((384,), "abc", 3.5, True, (0, 384), [384, "384"]):
        with pytest.raises(VitcliError, match="native"):
            load_model(str(tmp_path / "s"), native_size=bad)


def test_presets_keep_refusing_sizes_that_are_not_multiples(tmp_path) -> None:
    """vitcli's own random models have no library conv to follow: --size must stay a multiple of P."""
    from vitcli.api import load_model
    from vitcli.api.images import load_images
    from vitcli.errors import VitcliError

    Image.open(PHOTO).save(tmp_path / "p.png")
    with pytest.raises(VitcliError, match="not a multiple of the patch size 16"):
        load_model("vit-ti16").embed(load_images(str(tmp_path / "p.png"), size=230))


# --- B: each library's table resampling at non-native grids -----------------------------------------------------


def _vitcli_as_timm(loaded, x: torch.Tensor) -> torch.Tensor:
    """vitcli's tokens with timm's resampling instead of the family's (shows the test can fail)."""
    from dataclasses import replace

    timm_like = replace(loaded, config=loaded.config.with_changes(pos_resample="bicubic"))
    with torch.no_grad():
        return build_model_from_checkpoint(timm_like)(x).output


@pytest.mark.parametrize("size", [(224, 224), (224, 308)])
def test_transformers_dinov2_518_at_224_interpolates_as_transformers(tmp_path, size) -> None:
    """Dinov2Model (native 518 → 37×37) at 224 and 224×308: bicubic to the size, no antialias, float32."""
    config = _eager(hf.Dinov2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=518,
                                    patch_size=14))
    model = scramble(hf.Dinov2Model(config), seed=43)
    model.save_pretrained(tmp_path / "d")
    x = images(1, *size, seed=43)
    loaded, out = core_run(tmp_path / "d", x)
    assert (loaded.config.grid, out.grid, loaded.config.pos_resample) == ((37, 37), (16, size[1] // 14), "bicubic_plain")
    with torch.no_grad():
        ref = model(pixel_values=x, output_attentions=True)
    check(f"transformers Dinov2Model 518 → {size}", {"tokens": (out.output, ref.last_hidden_state),
                                                    "pooled": (out.pooled, ref.pooler_output)},
          out.attentions, list(ref.attentions))
    assert diff(_vitcli_as_timm(loaded, x), ref.last_hidden_state) > 1e-3  # timm's antialiased resampling differs


def test_transformers_dinov2_with_registers_interpolates_antialiased(tmp_path) -> None:
    config = _eager(hf.Dinov2WithRegistersConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                                                 image_size=518, patch_size=14, num_register_tokens=4))
    model = scramble(hf.Dinov2WithRegistersModel(config), seed=44)
    model.save_pretrained(tmp_path / "d")
    x = images(1, 224, 308, seed=44)
    loaded, out = core_run(tmp_path / "d", x)
    assert loaded.config.pos_resample == "bicubic"
    with torch.no_grad():
        ref = model(pixel_values=x, output_attentions=True)
    check("transformers Dinov2WithRegisters 518 → 224x308", {"tokens": (out.output, ref.last_hidden_state)},
          out.attentions, list(ref.attentions))


@pytest.mark.parametrize("cls, cfg, fields, pooled", [
    (hf.ViTModel, hf.ViTConfig, dict(intermediate_size=128), None),
    (hf.CLIPVisionModel, hf.CLIPVisionConfig, dict(intermediate_size=128), "pooler_output"),
    (hf.SiglipVisionModel, hf.SiglipVisionConfig, dict(intermediate_size=128), "pooler_output"),
])
def test_transformers_interpolate_pos_encoding(tmp_path, cls, cfg, fields, pooled) -> None:
    """ViT / CLIP / SigLIP refuse another size unless interpolate_pos_encoding=True: vitcli does what that does."""
    config = _eager(cfg(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=224, patch_size=16,
                        **fields))
    model = scramble(cls(config), seed=45)
    model.save_pretrained(tmp_path / "m")
    x = images(1, 160, 288, seed=45)
    loaded, out = core_run(tmp_path / "m", x)
    assert loaded.config.pos_resample == "bicubic_plain" and out.grid == (10, 18)
    with torch.no_grad():
        ref = model(pixel_values=x, output_attentions=True, interpolate_pos_encoding=True)
    pairs = {"tokens": (out.output, ref.last_hidden_state)}
    if pooled:
        pairs["pooled"] = (out.pooled, getattr(ref, pooled))
    check(f"transformers {cls.__name__} 224 → 160x288 (interpolate_pos_encoding)", pairs, out.attentions,
          list(ref.attentions))


def _upstream_dinov2_table(pos_embed: torch.Tensor, rows: int, cols: int, offset: float, antialias: bool) -> torch.Tensor:
    """facebookresearch/dinov2's interpolate_pos_encoding (read from its code): a square M×M table, bicubic in
    float32, scale factor ((rows + offset) / M, (cols + offset) / M) when offset, else the size (rows, cols)."""
    cls_row, cells = pos_embed[:, :1].float(), pos_embed[:, 1:].float()
    m, dim = math.isqrt(cells.shape[1]), cells.shape[-1]
    kwargs = dict(scale_factor=((rows + offset) / m, (cols + offset) / m)) if offset else dict(size=(rows, cols))
    grid = F.interpolate(cells.reshape(1, m, m, dim).permute(0, 3, 1, 2), mode="bicubic", antialias=antialias, **kwargs)
    assert tuple(grid.shape[-2:]) == (rows, cols)
    return torch.cat([cls_row, grid.permute(0, 2, 3, 1).reshape(1, rows * cols, dim)], dim=1)


def _upstream_names(sd: dict, depth: int) -> dict:
    """transformers Dinov2(WithRegisters) keys → the DINOv2 repository's names."""
    names = {"embeddings.cls_token": "cls_token", "embeddings.mask_token": "mask_token",
             "embeddings.register_tokens": "register_tokens", "embeddings.position_embeddings": "pos_embed",
             "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
             "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
             "layernorm.weight": "norm.weight", "layernorm.bias": "norm.bias"}
    out = {new: sd[old] for old, new in names.items() if old in sd}
    for i in range(depth):
        hf_block, block = f"encoder.layer.{i}.", f"blocks.{i}."
        for part in ("weight", "bias"):
            out[block + f"attn.qkv.{part}"] = torch.cat([sd[hf_block + f"attention.{n}_proj.{part}"] for n in "qkv"])
            out[block + f"attn.proj.{part}"] = sd[hf_block + f"attention.o_proj.{part}"]
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
                out[block + f"{name}.{part}"] = sd[hf_block + f"{name}.{part}"]
        out[block + "ls1.gamma"] = sd[hf_block + "layer_scale1.lambda1"]
        out[block + "ls2.gamma"] = sd[hf_block + "layer_scale2.lambda1"]
    return out


@pytest.mark.parametrize("registers, offset, antialias, name", [
    (0, 0.1, False, "dinov2_vits14_pretrain.pth"),  # dinov2_vit*14: interpolate_offset 0.1, no antialias
    (4, 0.0, True, "dinov2_vits14_reg4_pretrain.pth"),  # *_reg: offset 0, antialias
])
def test_dinov2_hub_layout_interpolates_as_upstream(tmp_path, registers, offset, antialias, name) -> None:
    """The DINOv2 repository's files at 224×308 (native 518): the upstream table, in the transformers model
    of the same architecture (its interpolation replaced by the upstream one written above)."""
    cls, cfg = (hf.Dinov2WithRegistersModel, hf.Dinov2WithRegistersConfig) if registers else (hf.Dinov2Model, hf.Dinov2Config)
    extra = {"num_register_tokens": registers} if registers else {}
    model = scramble(cls(_eager(cfg(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=518,
                                    patch_size=14, **extra))), seed=46)
    torch.save(_upstream_names(model.state_dict(), 2), tmp_path / name)
    x = images(1, 224, 308, seed=46)
    loaded, out = core_run(tmp_path / name, x, heads=2)
    assert loaded.family == ("dinov2-reg" if registers else "dinov2")
    emb = model.embeddings
    emb.interpolate_pos_encoding = lambda e, h, w: _upstream_dinov2_table(emb.position_embeddings, h // 14, w // 14,
                                                                          offset, antialias)
    with torch.no_grad():
        ref = model(pixel_values=x, output_attentions=True)
    check(f"DINOv2 repository layout {name} 518 → 224x308", {"tokens": (out.output, ref.last_hidden_state)},
          out.attentions, list(ref.attentions))
    if offset:
        assert diff(_vitcli_as_timm(loaded, x), ref.last_hidden_state) > 1e-3  # the offset matters


@torch.no_grad()
def test_dino_repository_checkpoint_interpolates_with_the_offset(tmp_path) -> None:
    """facebookresearch/dino's files (a teacher's backbone.*): its interpolate_pos_encoding (bicubic, scale factor
    (n + 0.1) / M), written above; the rest is timm's ViT, whose blocks are DINO's."""
    import timm

    model = scramble(timm.create_model("vit_small_patch16_224", pretrained=False, depth=2, num_classes=0,
                                       embed_dim=64, num_heads=2), seed=48)
    torch.save({"teacher": {f"backbone.{k}": v for k, v in model.state_dict().items()}}, tmp_path / "dino.pth")
    x = images(1, 160, 288, seed=48)
    loaded, out = core_run(tmp_path / "dino.pth", x, heads=2)
    assert (loaded.family, loaded.config.pos_resample, out.grid) == ("dino", "bicubic_offset", (10, 18))
    tokens = F.conv2d(x, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=16)  # (1, D, 10, 18)
    tokens = torch.cat([model.cls_token, tokens.flatten(2).transpose(1, 2)], dim=1)
    tokens = tokens + _upstream_dinov2_table(model.pos_embed, 10, 18, 0.1, False)
    for block in model.blocks:
        tokens = block(tokens)
    ref = model.norm(tokens)
    result = diff(out.output, ref)
    print(f"\nparity DINO repository layout 224 → 160x288: tokens {result:.2e}")
    assert result <= TOL
    assert diff(_vitcli_as_timm(loaded, x), ref) > 1e-3


# --- C: the DINOv2 repository's giant: packed SwiGLU (mlp.w12 / mlp.w3) -----------------------------------------


def _upstream_eval(image: Image.Image) -> torch.Tensor:
    """dinov2's make_classification_eval_transform: resize 256 bicubic, centre-crop 224, ImageNet mean/std."""
    from torchvision import transforms

    return transforms.Compose([
        transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC), transforms.CenterCrop(224),
        transforms.ToTensor(), transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])(image)[None]


@pytest.mark.parametrize("registers", [0, pytest.param(4, marks=pytest.mark.slow)])  # a ViT-g: about 6 s each
def test_dinov2_giant_hub_file_with_packed_swiglu(tmp_path, registers) -> None:
    """timm's vit_giant_patch14_dinov2 (SwiGLUPacked, depth 2) renamed to the upstream giant's keys; the
    reference is the upstream forward written here: the conv, the class token (registers after it), the
    upstream table interpolation, timm's blocks (the upstream block's maths) and the final norm."""
    import timm

    arch = "vit_giant_patch14_reg4_dinov2" if registers else "vit_giant_patch14_dinov2"
    model = scramble(timm.create_model(arch, pretrained=False, depth=2, num_classes=0), seed=47)
    d = 1536
    hidden = (int(4 * d * 2 / 3) + 7) // 8 * 8  # upstream SwiGLUFFNFused's hidden width
    assert tuple(model.blocks[0].mlp.fc1.weight.shape) == (2 * hidden, d)
    sd = {k.replace("mlp.fc1.", "mlp.w12.").replace("mlp.fc2.", "mlp.w3.").replace("reg_token", "register_tokens"): v
          for k, v in model.state_dict().items()}
    sd["mask_token"] = torch.zeros(1, d)
    if registers:  # timm's reg4 port has no class row (no_embed_class); upstream's table always has one
        sd["pos_embed"] = torch.cat([torch.randn(1, 1, d, generator=torch.Generator().manual_seed(47)) * d**-0.5,
                                     sd["pos_embed"]], dim=1)  # (1, 1 + 37·37, D)
    name = f"dinov2_vitg14{'_reg4' if registers else ''}_pretrain.pth"
    torch.save(sd, tmp_path / name)
    res, arrays = _photo_tokens(tmp_path / name)
    c = res.document["model"]
    assert (c["dim"], c["heads"], c["mlp_dim"], c["native_grid"], c["grid"]) == (d, 24, hidden, [37, 37], [16, 16])
    assert c["parts"]["mlp"] == "SwiGLU (packed fc1) (silu)" and c["parts"]["layer_scale"] == "yes"
    x = _upstream_eval(Image.open(PHOTO).convert("RGB"))  # (1, 3, 224, 224)

    @torch.no_grad()
    def upstream(offset: float, antialias: bool) -> torch.Tensor:
        tokens = F.conv2d(x, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=14)  # (1, D, 16, 16)
        tokens = torch.cat([model.cls_token, tokens.flatten(2).transpose(1, 2)], dim=1)  # (1, 1 + 256, D)
        tokens = tokens + _upstream_dinov2_table(sd["pos_embed"], 16, 16, offset, antialias)
        if registers:
            tokens = torch.cat([tokens[:, :1], model.reg_token, tokens[:, 1:]], dim=1)
        for block in model.blocks:
            tokens = block(tokens)
        return model.norm(tokens)[0]  # (T, D)

    ours = torch.from_numpy(arrays["output"])
    result = {"tokens": diff(ours, upstream(*((0.0, True) if registers else (0.1, False))))}
    print(f"\nparity DINOv2 giant hub layout ({name}) on the photo at 224: {result}")
    assert result["tokens"] <= TOL, result
    assert diff(ours, upstream(*((0.1, False) if registers else (0.0, True)))) > 1e-3  # the other variant's table


def test_an_unknown_mlp_layout_is_named(tmp_path) -> None:
    """A timm-layout file whose MLP is w1 / w2 / w3 (unpacked SwiGLU) or whose attention has a tensor the core
    has no place for: the error names the part, not a parameter count."""
    from safetensors.torch import save_file

    from vitcli.errors import VitcliError

    d = 64
    base = {"cls_token": torch.zeros(1, 1, d), "pos_embed": torch.zeros(1, 17, d),
            "patch_embed.proj.weight": torch.zeros(d, 3, 4, 4), "patch_embed.proj.bias": torch.zeros(d),
            "norm.weight": torch.ones(d), "norm.bias": torch.zeros(d)}
    block = {"norm1.weight": torch.ones(d), "norm1.bias": torch.zeros(d), "norm2.weight": torch.ones(d),
             "norm2.bias": torch.zeros(d), "attn.qkv.weight": torch.zeros(3 * d, d), "attn.qkv.bias": torch.zeros(3 * d),
             "attn.proj.weight": torch.zeros(d, d), "attn.proj.bias": torch.zeros(d)}
    unpacked = {"mlp.w1.weight": torch.zeros(64, d), "mlp.w2.weight": torch.zeros(64, d), "mlp.w3.weight": torch.zeros(d, 64)}
    save_file({**base, **{f"blocks.0.{k}": v for k, v in {**block, **unpacked}.items()}}, tmp_path / "w.safetensors")
    with pytest.raises(VitcliError, match=r"part vitcli cannot build: a SwiGLU MLP .*blocks\.0\.mlp\.w1\.weight") as e:
        load_checkpoint(tmp_path / "w.safetensors")
    assert "parameters" not in e.value.problem
    sinks = {**block, "attn.sinks": torch.zeros(2), "mlp.fc1.weight": torch.zeros(64, d),
             "mlp.fc2.weight": torch.zeros(d, 64)}  # attention sinks: a part of attention the core lacks
    save_file({**base, **{f"blocks.0.{k}": v for k, v in sinks.items()}}, tmp_path / "a.safetensors")
    with pytest.raises(VitcliError, match=r"part vitcli cannot build: an attention layout vitcli does not know "
                                          r"\(blocks\.0\.attn\.sinks\)"):
        load_checkpoint(tmp_path / "a.safetensors")

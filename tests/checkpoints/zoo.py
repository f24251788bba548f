"""The zoo: the most used ViT checkpoints, rebuilt as their repositories hold them, with their peer's pipeline.

One `Case` per checkpoint. Its builder makes the peer library's own model at the checkpoint's real
architecture (width, heads, patch, image size, registers, pooling, activation; only the depth is cut
to `DEPTH` blocks), scrambles every weight (`parity.scramble`), and saves it in a folder exactly as the
hub repository (or download server) holds it:

  timm          `save_for_hf`: model.safetensors + config.json with `architecture` and `pretrained_cfg`
                (the pretrained tag inside it), without the `model_args` the installed timm adds for a
                model built with depth=2 (the hub's files have none);
  transformers  `save_pretrained` of the class the repository uses + the repository's own
                preprocessor_config.json text (legacy feature-extractor files included);
  open_clip     open_clip_pytorch_model.bin + open_clip_config.json (open_clip's ViT-H-14 model config
                with the depth cut, the repository's preprocess_cfg);
  torchvision   the state dict under torchvision's own file name;
  torch.hub     facebookresearch/dinov2 state dicts with the upstream key names.

The builder returns the peer's reference: a function from a Pillow image to the peer's OWN
preprocessing and forward pass (timm `create_transform(resolve_model_data_config)`, transformers
`AutoImageProcessor.from_pretrained(folder)`, open_clip `create_model_and_transforms`, torchvision's
weights transforms, upstream DINOv2's eval transform and position-table interpolation).
"""

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from tests.checkpoints.parity import MHAAttention, TimmAttention, scramble

DEPTH = 2  # every checkpoint's blocks cut to this many; everything else as the repository has it


@dataclass
class Reference:
    """What the peer computes for one image (no batch axis)."""

    tokens: Tensor  # (T, D) the peer's final token sequence
    pooled: Tensor | None  # (D,) its image embedding before any projection or classifier
    projected: Tensor | None  # (K,) CLIP-style image embedding in the joint space, where the peer has one
    attention: list[Tensor]  # per block (heads, T, T)


Peer = Callable[[Image.Image], Reference]


@dataclass(frozen=True)
class Case:
    """One checkpoint of the zoo: where it lives and how to rebuild it (folder → the peer's pipeline)."""

    name: str  # the test id: ORG/NAME on the hub, or the file's name for torchvision / torch.hub
    repo: str | None  # hub repository ORG/NAME (loaded as hf-hub:ORG/NAME); None: not a hub repository
    build: Callable[[Path], Peer]
    file: str | None = None  # the one file a non-hub checkpoint is, loaded by its path
    library: str = "timm"  # the peer library whose layout and pipeline the case follows

    @property
    def quick(self) -> bool:
        """Whether the quick run (`pytest -m "not slow"`) keeps this case: one per library, see QUICK."""
        return self.name in QUICK


def _first(batch: Tensor | None) -> Tensor | None:
    return None if batch is None else batch[0].detach()


# ---------------------------------------------------------------------------------------------- timm


def _save_timm(model: nn.Module, folder: Path) -> None:
    """timm's own `save_for_hf`, then `model_args` dropped: hub configs name the architecture only."""
    from timm.models import save_for_hf

    save_for_hf(model, str(folder), safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config.pop("model_args", None)
    (folder / "config.json").write_text(json.dumps(config, indent=2))


def _build_timm(name: str, seed: int, folder: Path) -> Peer:
    import timm
    from timm.data import create_transform, resolve_model_data_config

    model = scramble(timm.create_model(name, pretrained=False, depth=DEPTH), seed)
    _save_timm(model, folder)
    transform = create_transform(**resolve_model_data_config(model))
    attn = TimmAttention(model)
    projects = model.num_classes > 0 and _timm_projection(name)

    @torch.no_grad()
    def reference(image: Image.Image) -> Reference:
        attn.weights.clear()
        x = transform(image)[None]  # (1, 3, H, W)
        feats = model.forward_features(x)  # (1, T, D)
        pooled = model.forward_head(feats, pre_logits=True)  # (1, D)
        projected = model.forward_head(feats) if projects else None  # (1, K)
        return Reference(feats[0], _first(pooled), _first(projected), [w[0] for w in attn.weights])

    return reference


def _timm_projection(name: str) -> bool:
    """timm heads that are CLIP-style projections into the image-text space (OpenAI CLIP, PE core)."""
    return name.endswith(".openai") or name.startswith("vit_pe_core_")


def timm_case(name: str, seed: int) -> Case:
    """`timm/NAME.TAG` on the hub."""
    return Case(f"timm/{name}", f"timm/{name}", lambda folder: _build_timm(name, seed, folder))


# -------------------------------------------------------------------------------------- transformers


@dataclass(frozen=True)
class HF:
    """A transformers repository: its model class, config, preprocessor file and the peer's forward."""

    repo: str
    model_class: str  # a transformers class name, e.g. "SiglipModel"
    config: Callable[[], object]  # the repository's config at DEPTH blocks
    preprocessor: dict  # the repository's preprocessor_config.json, as its file has it
    forward: Callable[[nn.Module, dict], Reference]  # peer forward on the processor's outputs


def _attentions(out) -> list[Tensor]:
    return [a[0].detach() for a in out.attentions]


def _tower(model: nn.Module, inputs: dict) -> Reference:
    """A vision model's own output: last_hidden_state, pooler_output (Dinov2, DINOv3, AIMv2, SigLIP)."""
    out = model(**inputs, output_attentions=True)
    return Reference(out.last_hidden_state[0], _first(out.pooler_output), None, _attentions(out))


def _siglip(model: nn.Module, inputs: dict) -> Reference:
    """SiglipModel.get_image_features is the vision tower's pooler_output: no projection."""
    return _tower(model.vision_model, inputs)


def _clip(model: nn.Module, inputs: dict) -> Reference:
    """CLIPModel.get_image_features: visual_projection(pooler_output)."""
    out = model.vision_model(**inputs, output_attentions=True)
    projected = model.visual_projection(out.pooler_output)  # (1, projection_dim)
    return Reference(out.last_hidden_state[0], _first(out.pooler_output), _first(projected), _attentions(out))


def _siglip2(model: nn.Module, inputs: dict) -> Reference:
    """Siglip2Model's tower on the processor's NaFlex patches; padding rows and columns dropped."""
    mask = inputs["pixel_attention_mask"]  # (1, max_num_patches)
    out = model.vision_model(pixel_values=inputs["pixel_values"], pixel_attention_mask=mask,
                             spatial_shapes=inputs["spatial_shapes"], output_attentions=True)
    n = int(mask[0].sum())
    return Reference(out.last_hidden_state[0, :n], _first(out.pooler_output), None,
                     [a[0, :, :n, :n].detach() for a in out.attentions])


def _classifier(base: str) -> Callable[[nn.Module, dict], Reference]:
    """*ForImageClassification: the base model's output, taken by a hook during the classifier's own forward."""

    def forward(model: nn.Module, inputs: dict) -> Reference:
        seen = []
        hook = getattr(model, base).register_forward_hook(lambda mod, args, out: seen.append(out))
        model(**inputs, output_attentions=True)
        hook.remove()
        out = seen[0]
        tokens = out.last_hidden_state  # (1, T, D)
        pooled = out.pooler_output if getattr(out, "pooler_output", None) is not None else tokens[:, 0]
        return Reference(tokens[0], _first(pooled), None, _attentions(out))

    return forward


def _imagenet_labels() -> dict[int, str]:
    """The 1000 ImageNet class names the repositories' id2label hold."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return {i: info.index_to_description(i) for i in range(info.num_classes())}


def _build_hf(spec: HF, seed: int, folder: Path) -> Peer:
    import transformers
    from transformers import AutoImageProcessor

    cls = getattr(transformers, spec.model_class)
    model = scramble(cls._from_config(spec.config(), attn_implementation="eager"), seed)
    model.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(spec.preprocessor, indent=2))
    processor = AutoImageProcessor.from_pretrained(str(folder))

    @torch.no_grad()
    def reference(image: Image.Image) -> Reference:
        return spec.forward(model, dict(processor(images=image, return_tensors="pt")))

    return reference


def hf_case(spec: HF, seed: int) -> Case:
    return Case(spec.repo, spec.repo, lambda folder: _build_hf(spec, seed, folder), library="transformers")


def _siglip_so400m():
    from transformers import SiglipConfig

    width = dict(hidden_size=1152, intermediate_size=4304, num_attention_heads=16, num_hidden_layers=DEPTH)
    return SiglipConfig(vision_config=dict(**width, patch_size=14, image_size=384),
                        text_config=dict(**width, vocab_size=32000, max_position_embeddings=64))


def _clip_large():
    from transformers import CLIPConfig

    return CLIPConfig(vision_config=dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                                         num_hidden_layers=DEPTH, patch_size=14, image_size=224, projection_dim=768),
                      text_config=dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12,
                                       num_hidden_layers=DEPTH, projection_dim=768), projection_dim=768)


def _dinov2_base():
    from transformers import Dinov2Config

    return Dinov2Config(hidden_size=768, num_attention_heads=12, num_hidden_layers=DEPTH, patch_size=14, image_size=518)


def _siglip2_naflex():
    from transformers import Siglip2Config

    # the text tower's 256,000-row Gemma vocabulary cut to 32,000 (vitcli reads none of it; 0.8 GB less to write)
    return Siglip2Config(vision_config=dict(num_hidden_layers=DEPTH, num_patches=256, patch_size=16),
                         text_config=dict(num_hidden_layers=DEPTH, vocab_size=32000))


def _dinov3_vitb16():
    from transformers import DINOv3ViTConfig

    return DINOv3ViTConfig(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=DEPTH,
                           patch_size=16, num_register_tokens=4, layer_norm_eps=1e-5, key_bias=False,
                           rope_theta=100.0, layerscale_value=1.0)


def _vit_base():
    from transformers import ViTConfig

    labels = _imagenet_labels()
    return ViTConfig(num_hidden_layers=DEPTH, id2label=labels, label2id={v: k for k, v in labels.items()})


def _beit_base():
    from transformers import BeitConfig

    labels = _imagenet_labels()
    return BeitConfig(num_hidden_layers=DEPTH, use_relative_position_bias=True, use_shared_relative_position_bias=False,
                      use_absolute_position_embeddings=False, use_mean_pooling=True, layer_scale_init_value=0.1,
                      id2label=labels, label2id={v: k for k, v in labels.items()})


def _aimv2_large():
    from transformers import Aimv2VisionConfig

    return Aimv2VisionConfig(hidden_size=1024, intermediate_size=2816, num_attention_heads=8, num_hidden_layers=DEPTH,
                             patch_size=14, image_size=224, qkv_bias=False, mlp_bias=False, rms_norm_eps=1e-5)


CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
RESCALE = 0.00392156862745098

HF_REPOS = [
    HF("google/siglip-so400m-patch14-384", "SiglipModel", _siglip_so400m,
       {"do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5],
        "image_processor_type": "SiglipImageProcessor", "image_std": [0.5, 0.5, 0.5], "processor_class": "SiglipProcessor",
        "resample": 3, "rescale_factor": RESCALE, "size": {"height": 384, "width": 384}}, _siglip),
    HF("openai/clip-vit-large-patch14", "CLIPModel", _clip_large,
       {"crop_size": 224, "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": CLIP_MEAN, "image_std": CLIP_STD,
        "resample": 3, "size": 224}, _clip),
    HF("facebook/dinov2-base", "Dinov2Model", _dinov2_base,
       {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True,
        "do_rescale": True, "do_resize": True, "image_mean": IMAGENET_MEAN, "image_processor_type": "BitImageProcessor",
        "image_std": IMAGENET_STD, "resample": 3, "rescale_factor": RESCALE, "size": {"shortest_edge": 256}}, _tower),
    HF("google/siglip2-base-patch16-naflex", "Siglip2Model", _siglip2_naflex,
       {"do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_processor_type": "Siglip2ImageProcessorFast", "image_std": [0.5, 0.5, 0.5],
        "max_num_patches": 256, "patch_size": 16, "processor_class": "Siglip2Processor", "resample": 2,
        "rescale_factor": RESCALE}, _siglip2),
    HF("facebook/dinov3-vitb16-pretrain-lvd1689m", "DINOv3ViTModel", _dinov3_vitb16,
       {"crop_size": None, "data_format": "channels_first", "default_to_square": True, "do_center_crop": None,
        "do_convert_rgb": None, "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": IMAGENET_MEAN,
        "image_processor_type": "DINOv3ViTImageProcessorFast", "image_std": IMAGENET_STD, "resample": 2,
        "rescale_factor": RESCALE, "size": {"height": 224, "width": 224}}, _tower),
    HF("google/vit-base-patch16-224", "ViTForImageClassification", _vit_base,
       {"do_normalize": True, "do_resize": True, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "resample": 2, "size": 224, "feature_extractor_type": "ViTFeatureExtractor"}, _classifier("vit")),
    HF("microsoft/beit-base-patch16-224", "BeitForImageClassification", _beit_base,
       {"crop_size": 224, "do_center_crop": False, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "BeitFeatureExtractor", "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "reduce_labels": False, "resample": 2, "size": 224}, _classifier("beit")),
    HF("apple/aimv2-large-patch14-224", "Aimv2VisionModel", _aimv2_large,
       {"crop_size": {"height": 224, "width": 224}, "do_center_crop": True, "do_convert_rgb": True, "do_normalize": True,
        "do_rescale": True, "do_resize": True, "image_mean": CLIP_MEAN, "image_processor_type": "CLIPImageProcessor",
        "image_std": CLIP_STD, "resample": 3, "rescale_factor": RESCALE, "size": {"shortest_edge": 224}}, _tower),
]


# ------------------------------------------------------------------------------------------ open_clip


def _build_open_clip(model_name: str, seed: int, folder: Path) -> Peer:
    """open_clip's own config for `model_name` (blocks cut), its weights file, loaded back by open_clip."""
    import open_clip

    cfg = open_clip.get_model_config(model_name)
    cfg["vision_cfg"] = {**cfg["vision_cfg"], "layers": DEPTH}
    cfg["text_cfg"] = {**cfg["text_cfg"], "layers": DEPTH}
    torch.save(scramble(open_clip.CLIP(**cfg), seed).state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps(
        {"model_cfg": cfg, "preprocess_cfg": {"mean": CLIP_MEAN, "std": CLIP_STD}}, indent=2))
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    visual = model.eval().visual
    attn = MHAAttention([block.attn for block in visual.transformer.resblocks])
    tokens: list[Tensor] = []
    visual.ln_post.register_forward_hook(lambda mod, args, out: tokens.append(out))  # every token, normed

    @torch.no_grad()
    def reference(image: Image.Image) -> Reference:
        tokens.clear()
        attn.inputs.clear()
        projected = visual(preprocess(image)[None])  # (1, embed_dim)
        return Reference(tokens[0][0], tokens[0][0, 0], projected[0], [w[0] for w in attn.weights()])

    return reference


# ---------------------------------------------------------------------------------------- torchvision


def _build_torchvision_vit_h14(seed: int, folder: Path) -> Peer:
    """vit_h_14 with the SWAG end-to-end weights' architecture: 518 px, 1280 wide, 16 heads, 1000 classes."""
    from torchvision.models import ViT_H_14_Weights

    return _build_torchvision(ViT_H_14_Weights.IMAGENET1K_SWAG_E2E_V1, 14, 16, 1280, seed, folder)


def _build_torchvision_vit_b16(seed: int, folder: Path) -> Peer:
    """vit_b_16 with the IMAGENET1K_V1 weights' architecture: 224 px, 768 wide, 12 heads, 1000 classes."""
    from torchvision.models import ViT_B_16_Weights

    return _build_torchvision(ViT_B_16_Weights.IMAGENET1K_V1, 16, 12, 768, seed, folder)


def _build_torchvision(weights, patch: int, heads: int, width: int, seed: int, folder: Path) -> Peer:
    """torchvision's VisionTransformer at the architecture of `weights` (its size, its classes; MLP 4× wide),
    saved under the weights' own file name, with the weights' own transforms as the peer's preprocessing."""
    from torchvision.models.vision_transformer import VisionTransformer

    size = weights.meta["min_size"][0]  # the only size the weights' model takes
    model = scramble(VisionTransformer(image_size=size, patch_size=patch, num_layers=DEPTH, num_heads=heads,
                                       hidden_dim=width, mlp_dim=4 * width,
                                       num_classes=len(weights.meta["categories"])), seed)
    torch.save(model.state_dict(), folder / Path(weights.url).name)
    transform = weights.transforms()
    attn = MHAAttention([layer.self_attention for layer in model.encoder.layers])
    tokens: list[Tensor] = []
    model.encoder.register_forward_hook(lambda mod, args, out: tokens.append(out))  # after encoder.ln

    @torch.no_grad()
    def reference(image: Image.Image) -> Reference:
        tokens.clear()
        attn.inputs.clear()
        model(transform(image)[None])
        return Reference(tokens[0][0], tokens[0][0, 0], None, [w[0] for w in attn.weights()])

    return reference


# ---------------------------------------------------------------------- torch.hub facebookresearch/dinov2


def upstream_dinov2_pos(pos_embed: Tensor, rows: int, cols: int, registers: bool = False) -> Tensor:
    """facebookresearch/dinov2 `interpolate_pos_encoding` with the hub models' settings (hub/backbones.py):
    without registers offset 0.1 and no antialias, the M×M patch table resized bicubically with scale
    factors ((rows + 0.1)/M, (cols + 0.1)/M), so the output has floor(M · (rows + 0.1)/M) = rows rows but
    samples at positions set by that scale, not by rows/M; the `_reg` models: offset 0 and antialias, i.e.
    bicubic to size (rows, cols). The class row is kept. (1, 1 + M², D) → (1, 1 + rows·cols, D)."""
    n = pos_embed.shape[1] - 1
    m = math.isqrt(n)
    assert m * m == n
    if (rows, cols) == (m, m):
        return pos_embed
    table = pos_embed[:, 1:].float().reshape(1, m, m, -1).permute(0, 3, 1, 2)  # (1, D, M, M)
    if registers:
        table = F.interpolate(table, size=(rows, cols), mode="bicubic", antialias=True)  # (1, D, rows, cols)
    else:
        table = F.interpolate(table, scale_factor=((rows + 0.1) / m, (cols + 0.1) / m), mode="bicubic",
                              antialias=False)  # (1, D, rows, cols)
    assert table.shape[-2:] == (rows, cols)
    return torch.cat([pos_embed[:, :1], table.permute(0, 2, 3, 1).reshape(1, rows * cols, -1)], dim=1)


def upstream_dinov2_transform():
    """dinov2/data/transforms.py `make_classification_eval_transform`: Resize(256, bicubic), CenterCrop(224)."""
    from torchvision import transforms

    return transforms.Compose([transforms.Resize(256, interpolation=transforms.InterpolationMode.BICUBIC),
                               transforms.CenterCrop(224), transforms.ToTensor(),
                               transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def _upstream_state_dict(model: nn.Module, seed: int) -> dict[str, Tensor]:
    """timm's DINOv2 weights under upstream's names: `register_tokens`, a class row in `pos_embed`,
    `mask_token`, `ls1.gamma`; the giant's packed SwiGLU `mlp.fc1`/`fc2` as `mlp.w12`/`mlp.w3`."""
    from timm.layers import GluMlp

    g = torch.Generator().manual_seed(seed)
    sd = dict(model.state_dict())
    d = sd["cls_token"].shape[-1]
    out = {"mask_token": torch.randn(1, d, generator=g) * d ** -0.5}
    pos = sd.pop("pos_embed")
    if pos.shape[1] == model.patch_embed.num_patches:  # timm's no_embed_class table: upstream has a class row
        pos = torch.cat([torch.randn(1, 1, d, generator=g) * d ** -0.5, pos], dim=1)
    out["pos_embed"] = pos
    if "reg_token" in sd:
        out["register_tokens"] = sd.pop("reg_token")
    swiglu = isinstance(model.blocks[0].mlp, GluMlp)
    for key, value in sd.items():
        if swiglu:
            key = key.replace(".mlp.fc1.", ".mlp.w12.").replace(".mlp.fc2.", ".mlp.w3.")
        out[key] = value
    return out


def _build_dinov2_hub(timm_name: str, file: str, seed: int, folder: Path) -> Peer:
    """The torch.hub file, and upstream's forward written with the timm blocks that hold the same weights."""
    import timm

    model = scramble(timm.create_model(timm_name, pretrained=False, depth=DEPTH), seed)
    sd = _upstream_state_dict(model, seed + 1000)
    if "mlp.w12.weight" in "".join(sd):  # upstream SwiGLUFFNFused: hidden = (int(4·D·2/3) + 7) // 8 · 8
        d = sd["cls_token"].shape[-1]
        assert sd["blocks.0.mlp.w3.weight"].shape[1] == (int(4 * d * 2 / 3) + 7) // 8 * 8
    torch.save(sd, folder / file)
    transform = upstream_dinov2_transform()
    attn = TimmAttention(model)
    patch = model.patch_embed.patch_size[0]

    @torch.no_grad()
    def reference(image: Image.Image) -> Reference:
        attn.weights.clear()
        x = transform(image)[None]  # (1, 3, H, W)
        rows, cols = x.shape[-2] // patch, x.shape[-1] // patch
        t = F.conv2d(x, sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"], stride=patch)  # (1, D, rows, cols)
        t = torch.cat([sd["cls_token"], t.flatten(2).transpose(1, 2)], dim=1)  # (1, 1+N, D)
        t = t + upstream_dinov2_pos(sd["pos_embed"], rows, cols, "register_tokens" in sd)
        if "register_tokens" in sd:  # registers after the class token, without positions
            t = torch.cat([t[:, :1], sd["register_tokens"], t[:, 1:]], dim=1)  # (1, 1+R+N, D)
        for block in model.blocks:
            t = block(t)
        t = model.norm(t)
        return Reference(t[0], t[0, 0], None, [w[0] for w in attn.weights])

    return reference


def dinov2_hub_case(timm_name: str, file: str, seed: int) -> Case:
    return Case(f"torch.hub/{file}", None, lambda folder: _build_dinov2_hub(timm_name, file, seed, folder), file,
                "torch.hub")


# ---------------------------------------------------------------------------------------------- the zoo

TIMM = ["vit_so400m_patch14_siglip_384.webli", "vit_so400m_patch16_siglip_256.v2_webli",
        "vit_pe_core_gigantic_patch14_448.fb", "aimv2_large_patch14_224.apple_pt",
        "vit_base_patch16_224.augreg2_in21k_ft_in1k", "vit_small_patch14_reg4_dinov2.lvd142m",
        "vit_base_patch16_siglip_224.webli", "vit_base_patch16_siglip_224.v2_webli",
        "vit_large_patch14_clip_224.openai", "eva02_large_patch14_448.mim_in22k_ft_in22k_in1k",
        "vit_large_patch16_dinov3.lvd1689m", "vit_pe_core_large_patch14_336.fb",
        "beitv2_base_patch16_224.in1k_ft_in22k_in1k", "deit3_base_patch16_224.fb_in1k"]


# The quick run's sample: one checkpoint of each library (the smallest that still has its library's layout);
# the whole zoo runs under the `slow` marker (CI). test_zoo checks that every library is in the sample.
QUICK = frozenset({"timm/vit_small_patch14_reg4_dinov2.lvd142m", "google/vit-base-patch16-224",
                   "laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "torchvision/vit_b_16-c867db91.pth",
                   "torch.hub/dinov2_vits14_reg4_pretrain.pth"})


def cases() -> list[Case]:
    """Every checkpoint of the zoo, each with a seed of its own."""
    out = [timm_case(name, 100 + i) for i, name in enumerate(TIMM)]
    out += [hf_case(spec, 200 + i) for i, spec in enumerate(HF_REPOS)]
    out.append(Case("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", "laion/CLIP-ViT-H-14-laion2B-s32B-b79K",
                    lambda folder: _build_open_clip("ViT-H-14", 300, folder), library="open_clip"))
    out.append(Case("torchvision/vit_h_14_swag-80465313.pth", None,
                    lambda folder: _build_torchvision_vit_h14(301, folder), "vit_h_14_swag-80465313.pth",
                    "torchvision"))
    out.append(Case("torchvision/vit_b_16-c867db91.pth", None, lambda folder: _build_torchvision_vit_b16(304, folder),
                    "vit_b_16-c867db91.pth", "torchvision"))
    out.append(dinov2_hub_case("vit_small_patch14_reg4_dinov2", "dinov2_vits14_reg4_pretrain.pth", 302))
    out.append(dinov2_hub_case("vit_giant_patch14_dinov2", "dinov2_vitg14_pretrain.pth", 303))
    return out

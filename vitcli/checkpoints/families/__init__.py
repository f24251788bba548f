"""One data module per library: its key table, its variants, its quirks and its preprocessing.

  base.py          Family, Rule, Variant, Evidence; detect and map_keys (no family-specific code)
  timm.py          timm's layout (timm, DeiT, DINO, DINOv2, MAE repositories)
  transformers.py  Hugging Face ViT / DeiT, CLIP, DINOv2
  torchvision.py   torchvision's VisionTransformer
  clip.py          OpenAI CLIP / open_clip visual towers
  rotary.py        RoPE families: timm Eva layout (DINOv3 ports, EVA-02, Perception Encoder core and
                   spatial), DINOv3ViTModel, dinov3 state dicts

A new family is a `Family` value in its library's module and one entry in `FAMILIES`.

Activation cannot be read from weights. A timm architecture that config.json (or an open_clip
timm tower) names takes its own from timm's table (`archs.py`). Otherwise the rules (each noted
by `info`): timm and open_clip use
exact GELU unless the model name says `quickgelu` (timm `vit_*_clip_quickgelu_*`, open_clip
`*-quickgelu`) or open_clip_config.json sets `quick_gelu`; OpenAI CLIP files (TorchScript
archives, or state dicts carrying OpenAI's `input_resolution` / `context_length` / `vocab_size`)
use QuickGELU; Hugging Face models follow config.json's `hidden_act`, else the config class
default (ViT, DINOv2: gelu; CLIP: quick_gelu); torchvision uses exact GELU. An explicit
`activation=` always wins.
"""

from collections.abc import Iterable

from vitcli.checkpoints.families.base import Evidence, Family, Mapped, Rule, Variant, evidence, map_keys
from vitcli.checkpoints.families.base import detect as _detect
from vitcli.checkpoints.families.beit import HF_BEIT, TIMM_BEIT
from vitcli.checkpoints.families.clip import CLIP
from vitcli.checkpoints.families.rotary import DINOV3, HF_DINOV3, TIMM_EVA, TIMM_PE, TIMM_PE_SPATIAL
from vitcli.checkpoints.families.siglip import HF_AIMV2, HF_SIGLIP
from vitcli.checkpoints.families.timm import TIMM, TIMM_NAFLEX
from vitcli.checkpoints.families.torchvision import TORCHVISION
from vitcli.checkpoints.families.transformers import HF_CLIP, HF_DINOV2, HF_VIT

# Detection order: the most specific markers first (CLIP's text tower also has `transformer.`).
# DINOv3's own files share timm's block names, so they come before TIMM (marked by storage_tokens);
# BEiT's layouts carry ViT's and timm's keys too, so they come before those.
# BEiT (relative position bias tables) before timm's Eva layout, which shares its q_bias / v_bias / gamma_1.
# PE before Eva and timm: PE spatial shares Eva's gamma_1 and timm CLIP's norm_pre (it lacks their final norm).
FAMILIES: tuple[Family, ...] = (CLIP, HF_CLIP, HF_SIGLIP, HF_AIMV2, HF_BEIT, HF_DINOV2, HF_VIT, TORCHVISION, TIMM_BEIT,
                                TIMM_NAFLEX, DINOV3, HF_DINOV3, TIMM_PE, TIMM_PE_SPATIAL, TIMM_EVA, TIMM)
FAMILY_NAMES = {f.name: f for f in FAMILIES}


def detect(keys: Iterable[str], family: str | None = None, architecture: str = "") -> tuple[Family, str]:
    """The known family whose markers all match the keys (and that timm's config.json `architecture`
    allows), and its root; `family` forces one."""
    return _detect(keys, FAMILIES, family, architecture)


__all__ = ["CLIP", "DINOV3", "FAMILIES", "FAMILY_NAMES", "HF_AIMV2", "HF_BEIT", "HF_CLIP", "HF_DINOV2", "HF_DINOV3",
           "HF_SIGLIP", "HF_VIT", "TIMM", "TIMM_BEIT", "TIMM_EVA", "TIMM_NAFLEX", "TIMM_PE", "TIMM_PE_SPATIAL",
           "TORCHVISION", "Evidence",
           "Family", "Mapped", "Rule", "Variant", "detect", "evidence", "map_keys"]

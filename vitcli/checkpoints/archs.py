"""What a checkpoint's repository names, looked up: the facts of a known architecture that weights cannot show.

A timm `config.json` names its `architecture` (a pretrained tag such as `.v2_webli` dropped), an
open_clip tower names its timm model (`vision_cfg.timm_model_name`) or its head width, and a
torchvision file is named after its architecture (`vit_h_14_swag-80465313.pth`). `lookup(ev)`
turns the first of these into one `ArchFacts`: heads, activation, norm eps, pooling, RoPE settings,
the attention pool's heads, and why vitcli cannot build the architecture when it cannot.

timm's facts come from `data/timm_archs.json`, written by `scripts/gen_timm_archs.py` from timm's
model registry (and checked against the installed timm by tests/checkpoints/test_timm_registry.py).
"""

import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

from vitcli.checkpoints.config import CheckpointConfig
from vitcli.checkpoints.families.base import Evidence
from vitcli.errors import VitcliError

# torchvision's ViT builders (torchvision.models.vision_transformer): heads by architecture
TORCHVISION_HEADS = {"vit_b_16": 12, "vit_b_32": 12, "vit_l_16": 16, "vit_l_32": 16, "vit_h_14": 16}
TORCHVISION_FILE = re.compile(r"^(vit_[bhl]_\d+)(?:_[a-z0-9_]+)?-[0-9a-f]{8}$")  # vit_h_14_swag-80465313

POOLING = {"token": "cls", "avg": "mean", "map": "map", "": "none"}  # timm global_pool → vitcli's pooling
BLOCKS = ("Block", "EvaBlock")  # timm block classes vitcli's block reproduces (pre-norm, one attention, one MLP)
MODELS = ("VisionTransformer", "VisionTransformerDistilled", "Eva", "Beit", "NaFlexVit")
ROPES = ("eva", "dinov3")
ATTENTIONS = ("Attention", "EvaAttention", "AttentionRope")
EMBEDS = ("PatchEmbed", "NaFlexEmbeds")
ACTIVATIONS = ("gelu", "gelu_tanh", "quick_gelu", "silu")


@dataclass(frozen=True)
class ArchFacts:
    """What a named architecture fixes; None where the source does not say."""

    source: str  # e.g. "timm architecture vit_pe_core_gigantic_patch14_448"
    heads: int | None = None
    activation: str | None = None
    eps: float | None = None
    pooling: str | None = None  # vitcli's: cls, mean, map, none
    rope: dict[str, Any] = field(default_factory=dict)  # ViTConfig changes (rope, rope_base, …); {} when unknown
    pool_heads: int | None = None  # the attention pool's heads when not the blocks' (PE: 8)
    unsupported: str = ""  # what of the architecture vitcli cannot build


@cache
def timm_table() -> dict[str, Any]:
    """The checked-in table of timm's ViT-family architectures (see scripts/gen_timm_archs.py)."""
    text = resources.files("vitcli.checkpoints").joinpath("data/timm_archs.json").read_text()
    return json.loads(text)


def timm_arch(name: str) -> str:
    """timm's architecture of a model name: `vit_so400m_patch16_siglip_256.v2_webli` → without the tag."""
    return name.removeprefix("timm/").split(".", 1)[0]


def timm_facts(name: str, pool: str | None = None) -> ArchFacts | None:
    """The table's facts of timm architecture `name` (None when unknown); `pool` is a global_pool the file sets."""
    arch = timm_arch(name)
    row = timm_table()["architectures"].get(arch)
    if row is None:
        return None
    pool = row["global_pool"] if pool is None else pool
    rope = row["rope"]
    changes = {"rope": "none"} if rope is None else {
        "rope": rope["kind"], "rope_base": rope["base"], "rope_offset": rope["offset"], "rope_xy": rope["xy"],
        "rope_ref_grid": tuple(rope["ref_grid"]) if rope["ref_grid"] else None}
    return ArchFacts(f"timm architecture {arch}", row["heads"], row["activation"], row["eps"], POOLING.get(pool),
                     changes, row["pool_heads"], _unsupported(row, pool))


def _unsupported(row: dict[str, Any], pool: str) -> str:
    """What of a timm architecture vitcli's core cannot build, or ''."""
    rope = row["rope"]["kind"] if row["rope"] else None
    checks = ((row["model_class"] in MODELS, f"its model class {row['model_class']}"),
              (row["block_class"] in BLOCKS, f"its blocks ({row['block_class']})"),
              (row["attn_class"] in ATTENTIONS, f"its attention ({row['attn_class']})"),
              (row["qk_norm"] in (None, "layernorm"), f"its qk-norm ({row['qk_norm']})"),
              (row["kv_heads"] == row["heads"], f"grouped-query attention ({row['kv_heads']} key/value heads)"),
              (row["patch_embed_class"] in EMBEDS, f"its patch embedding ({row['patch_embed_class']})"),
              (row["pos_embed"] in ("learned", "none"), f"its {row['pos_embed']} position embedding"),
              (rope is None or rope in ROPES, f"its rotary embedding ({rope})"),
              (row["activation"] in ACTIVATIONS, f"its activation {row['activation']}"),
              (row["norm"] in ("layernorm", "rmsnorm"), f"its norm {row['norm']}"),
              (pool in POOLING, f"its pooling (global_pool {pool!r})"))
    return next((what for ok, what in checks if not ok), "")


def open_clip_facts(ev: Evidence) -> ArchFacts | None:
    """An open_clip tower: its timm model's facts, or heads from `head_width` when the width is the weights'."""
    oc = ev.files.open_clip
    if oc is None:
        return None
    if oc.timm_model_name:
        return timm_facts(oc.timm_model_name, oc.timm_pool)
    dim = ev.shapes.get("patch_embed.proj.weight", (0,))[0]
    if oc.width == dim and dim % oc.head_width == 0:
        return ArchFacts(f"open_clip_config.json head_width {oc.head_width}", heads=oc.width // oc.head_width)
    return None


def torchvision_facts(ev: Evidence) -> ArchFacts | None:
    """A torchvision weights file named after its builder (`vit_b_16-c867db91.pth`): that builder's heads."""
    found = TORCHVISION_FILE.match(ev.model_name)
    heads = TORCHVISION_HEADS.get(found.group(1)) if found else None
    return ArchFacts(f"torchvision architecture {found.group(1)}", heads=heads) if found and heads else None


def refuse_unbuildable(files: CheckpointConfig, source: str) -> None:
    """One VitcliError when the timm architecture a config names is one vitcli cannot build (before keys are read)."""
    oc = files.open_clip
    name, pool = (files.architecture, files.global_pool) if files.architecture else \
        (oc.timm_model_name, oc.timm_pool) if oc and oc.timm_model_name else ("", None)
    found = timm_facts(name, pool) if name else None
    if found and found.unsupported:
        raise VitcliError(source, f"{found.source}: vitcli cannot build {found.unsupported} yet")


def lookup(ev: Evidence) -> ArchFacts | None:
    """The facts of the architecture the checkpoint's repository names: timm config.json, open_clip, file name."""
    if ev.files.architecture:
        found = timm_facts(ev.files.architecture, ev.files.global_pool)
        if found:
            return found
    return open_clip_facts(ev) or torchvision_facts(ev)


__all__ = ["ArchFacts", "lookup", "refuse_unbuildable", "timm_arch", "timm_facts", "timm_table"]

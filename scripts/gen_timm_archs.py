"""Write vitcli/checkpoints/data/timm_archs.json: what timm's ViT-family architectures fix that no tensor shows.

A timm `config.json` on the hub names the architecture and carries no model arguments, and the
weights do not show heads, the activation variant, norm eps, RoPE settings or pooling. This script
builds every ViT-family architecture of the installed timm on the meta device (no memory, no
weights) and reads those facts from the built modules, so vitcli looks them up by name.

    python scripts/gen_timm_archs.py            # rewrite the table
    python scripts/gen_timm_archs.py --check    # exit 1 when the checked-in table differs

`arch_facts(model)` and `registry_names()` are imported by tests/checkpoints/test_timm_registry.py.
"""

import argparse
import fnmatch
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

TABLE = Path(__file__).resolve().parents[1] / "vitcli" / "checkpoints" / "data" / "timm_archs.json"
PATTERNS = ("vit_*", "eva*", "deit*", "beit*", "aimv2*", "vit_pe_*", "*siglip*", "*dinov3*", "*dinov2*", "naflexvit_*")
ACTIVATIONS = ("gelu", "gelu_tanh", "quick_gelu", "silu")
INIT_OPS = {"uniform_", "normal_", "erfinv_", "mul_", "add_", "clamp_", "zero_", "zeros_", "fill_", "copy_", "div_",
            "trunc_normal_", "ones_", "constant_", "sub_", "exp_", "log_"}


def registry_names() -> list[str]:
    """Every ViT-family architecture name in the installed timm's registry."""
    import timm

    return sorted({n for n in timm.list_models() if any(fnmatch.fnmatch(n, p) for p in PATTERNS)})


class _SkipInit(TorchFunctionMode):
    """In-place weight initialisation on meta tensors is a no-op (it changes no shape, and costs most of a build)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        name = getattr(func, "__name__", "")
        if name in INIT_OPS and args and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return args[0]
        return func(*args, **(kwargs or {}))


@contextmanager
def fast_meta() -> Iterator[None]:
    """Build modules on the meta device, skipping their weight initialisation."""
    with torch.device("meta"), _SkipInit():
        yield


def build_meta(name: str, **kwargs: Any) -> nn.Module:
    """timm's architecture `name` on the meta device (shapes only)."""
    import timm

    with fast_meta():
        return timm.create_model(name, pretrained=False, **kwargs)


def activation_name(act: nn.Module | None) -> str:
    """vitcli's name of a timm MLP activation module (its class; GELU's approximate flag)."""
    kind = type(act).__name__
    if kind == "GELU":
        return "gelu_tanh" if getattr(act, "approximate", "none") == "tanh" else "gelu"
    return {"GELUTanh": "gelu_tanh", "QuickGELU": "quick_gelu", "SiLU": "silu"}.get(kind, kind)


def norm_name(norm: nn.Module) -> str:
    """layernorm, rmsnorm, or the class name of another norm."""
    kind = type(norm).__name__
    names = {"LayerNorm": "layernorm", "LayerNorm2d": "layernorm", "RmsNorm": "rmsnorm", "RMSNorm": "rmsnorm"}
    return names.get(kind, kind)


def rope_facts(model: nn.Module) -> dict[str, Any] | None:
    """The rotary embedding's settings as vitcli's config names them (kind eva / dinov3, else the class)."""
    rope = getattr(model, "rope", None)
    if rope is None:
        return None
    kind = type(rope).__name__
    interleaved = not getattr(rope, "rotate_half", False)
    if kind == "RotaryEmbeddingCat" and interleaved and not getattr(rope, "in_pixels", False):
        kind = "eva"
    elif kind == "RotaryEmbeddingDinoV3" and not interleaved:
        kind = "dinov3"
    ref = getattr(rope, "ref_feat_shape", None)
    return {"kind": kind, "base": float(rope.temperature), "ref_grid": list(ref) if ref else None,
            "offset": float(getattr(rope, "grid_offset", 0.0) or 0.0),
            "xy": getattr(rope, "grid_indexing", "ij") == "xy"}


def _layer_scale(block: nn.Module) -> bool:
    """LayerScale modules (ls1) or BEiT / Eva gamma_1 parameters."""
    return type(getattr(block, "ls1", None)).__name__ == "LayerScale" or getattr(block, "gamma_1", None) is not None


def _attentions(model: nn.Module) -> list[nn.Module]:
    """The first attention module of every block (blocks may differ: Sapiens2's grouped-query middle blocks)."""
    return [next(m for m in block.modules() if hasattr(m, "num_heads")) for block in model.blocks]


def _pool_heads(pool: nn.Module | None, heads: int) -> int | None:
    """The attention pool's heads when fixed apart from the blocks' (PE: 8), else None (they follow the blocks')."""
    found = getattr(pool, "num_heads", None)
    return int(found) if found is not None and found != heads else None


def _pos_embed_kind(model: nn.Module, embed: nn.Module | None) -> str:
    """learned (a table), none, or NaFlex's other kinds (factorized)."""
    kind = getattr(embed, "pos_embed_type", None)
    if kind:
        return str(kind)
    return "learned" if getattr(model, "pos_embed", None) is not None else "none"


def arch_facts(model: nn.Module) -> dict[str, Any]:
    """What a built timm ViT-family model fixes that its state dict does not show."""
    block = model.blocks[0]
    attn = next(m for m in block.modules() if hasattr(m, "num_heads"))
    act = next((m for m in block.modules() if activation_name(m) in ACTIVATIONS), None)
    norm = next(m for m in block.modules() if hasattr(m, "eps"))
    pool = getattr(model, "attn_pool", None)
    size = getattr(getattr(model, "patch_embed", None), "img_size", None) or getattr(model.pretrained_cfg, "get",
                                                                                      lambda k: None)("input_size")
    embed = getattr(model, "patch_embed", None) or getattr(model, "embeds", None)
    return {
        "model_class": type(model).__name__,
        "block_class": type(block).__name__,
        "attn_class": type(attn).__name__,
        "patch_embed_class": type(embed).__name__,
        "pos_embed": _pos_embed_kind(model, embed),
        "heads": int(attn.num_heads),
        "kv_heads": min(int(getattr(a, "num_kv_heads", None) or a.num_heads) for a in _attentions(model)),
        "qk_norm": None if type(getattr(attn, "q_norm", nn.Identity())).__name__ == "Identity" else norm_name(attn.q_norm),
        "activation": activation_name(act),
        "norm": norm_name(norm),
        "eps": float(norm.eps),
        "global_pool": str(getattr(model, "global_pool", "")),
        "img_size": list(size)[-2:] if size else None,
        "dynamic_img_size": bool(getattr(model, "dynamic_img_size", False)),
        "class_token": getattr(model, "cls_token", None) is not None,
        "no_embed_class": bool(getattr(model, "no_embed_class", False)),
        "registers": int(getattr(model, "num_reg_tokens", 0) or 0),
        "layer_scale": _layer_scale(block),
        "rope": rope_facts(model),
        "pool_heads": _pool_heads(pool, int(attn.num_heads)),
    }


def generate(names: list[str] | None = None, build: Callable[[str], nn.Module] = build_meta) -> dict[str, Any]:
    """The table: timm's version and, per architecture, its facts (`build` makes the meta model of a name)."""
    import timm

    archs = {}
    for name in names if names is not None else registry_names():
        archs[name] = arch_facts(build(name))
    return {"timm_version": timm.__version__, "generated_by": "scripts/gen_timm_archs.py", "architectures": archs}


def dump(table: dict[str, Any]) -> str:
    """The table as the checked-in text: one architecture a line, keys sorted."""
    lines = [f'  "{k}": {json.dumps(v)},' for k, v in table.items() if k != "architectures"]
    rows = [f'    {json.dumps(n)}: {json.dumps(f, sort_keys=True)}' for n, f in sorted(table["architectures"].items())]
    return "{\n" + "\n".join(lines) + '\n  "architectures": {\n' + ",\n".join(rows) + "\n  }\n}\n"


def main(argv: list[str] | None = None) -> int:
    """Write the table, or with --check compare it with the checked-in one."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the checked-in table instead of writing")
    args = parser.parse_args(argv)
    text = dump(generate())
    if args.check:
        same = TABLE.exists() and TABLE.read_text() == text
        print(f"{TABLE}: {'up to date' if same else 'differs from the installed timm'}")
        return 0 if same else 1
    TABLE.parent.mkdir(parents=True, exist_ok=True)
    TABLE.write_text(text)
    print(f"wrote {TABLE} ({text.count(chr(10)) - 6} architectures)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The registry test: every ViT-family architecture of the installed timm, as its hub repository holds it.

Each architecture is built on the meta device (shapes only), its state dict and a config.json as
timm's `save_config_for_hf` writes it with the model arguments removed (the hub's files carry
none) go through vitcli's detection, mapping and inference (`load_state`, the path
`load_checkpoint` takes after reading a file), and what vitcli infers must equal what the timm
model is: heads, width, depth, patch, activation, norm kind and eps, pooling, prefix tokens, the
position table's prefix rows, layer scale, RoPE settings, the attention pool's heads. The timm
side is read here from the built modules, by this test's own rules (the activation by evaluating
the module against the formulas), not from vitcli's table.

An architecture vitcli cannot build must fail at load with one line (a VitcliError); those are
listed and counted, and each must be one the test knows about (UNSUPPORTED) so that a new
failure is never silent. A second test checks that the checked-in table equals what
scripts/gen_timm_archs.py makes from the installed timm.
"""

import functools
import importlib.util
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

timm = pytest.importorskip("timm")
from timm.models._hub import save_config_for_hf  # noqa: E402

from vitcli.checkpoints.archs import timm_table  # noqa: E402
from vitcli.checkpoints.load import load_state  # noqa: E402
from vitcli.core.config import ViTConfig  # noqa: E402
from vitcli.errors import VitcliError  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("gen_timm_archs", ROOT / "scripts" / "gen_timm_archs.py")
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)  # type: ignore[union-attr]

# Architectures vitcli does not build: a name pattern and the words its one-line load error must hold.
UNSUPPORTED = (
    (r"^vit_s?relpos_", "model class VisionTransformerRelPos"),
    (r"^vit_(tiny|small|base|large)_(r\d|r_|resnet)|^vit_base_mci_", "patch embedding (HybridEmbed)"),
    (r"_18x2_", "blocks (ParallelThingsBlock)"),
    (r"_xp_|^vit_pwee_", "blocks (ParallelScalingBlock)"),
    (r"^vit_dpwee_", "blocks (DiffParallelScalingBlock)"),
    (r"^vit_d(wee|little)_", "attention (DiffAttention)"),
    (r"^eva02_enormous_", "blocks (EvaBlockPostNorm)"),
    (r"_rpn_", "blocks (ResPostBlock)"),
    (r"_parfac_", "factorized position embedding"),
    (r"_rope_mixed", "rotary embedding (RotaryEmbeddingMixed)"),
    (r"_sapiens2$", "qk-norm (rmsnorm)"),
)
POOLING = {"token": "cls", "avg": "mean", "map": "map", "": "none"}


@functools.cache
def _model(name: str) -> nn.Module:
    """timm's architecture on the meta device, built once for both tests."""
    return gen.build_meta(name)


def _known_failure(name: str, message: str) -> bool:
    """Whether an architecture's load error is one this test expects (by name prefix and reason)."""
    return any(re.search(pattern, name) and reason in message for pattern, reason in UNSUPPORTED)


def hub_config(model: nn.Module, folder: Path) -> dict[str, Any]:
    """config.json as timm's save_config_for_hf writes it, without model_args (as the hub's files are)."""
    save_config_for_hf(model, str(folder / "config.json"))
    config = json.loads((folder / "config.json").read_text())
    config.pop("model_args", None)
    return config


def _activation(model: nn.Module) -> str:
    """The MLP activation of block 0, by evaluating it against the formulas of the four variants."""
    x = torch.linspace(-6, 6, 241)
    formulas = {"gelu": F.gelu(x), "gelu_tanh": F.gelu(x, approximate="tanh"),
                "quick_gelu": x * torch.sigmoid(1.702 * x), "silu": F.silu(x)}
    mlp = model.blocks[0].mlp
    act = getattr(mlp, "act", None)
    assert act is not None, f"no activation module in {type(mlp).__name__}"
    y = act(x)
    found = [k for k, v in formulas.items() if torch.allclose(y, v, atol=1e-6)]
    assert len(found) == 1, (type(act).__name__, found)
    return found[0]


def _norm(module: nn.Module) -> str:
    """layernorm (has a bias or is nn.LayerNorm) or rmsnorm (timm RmsNorm)."""
    kind = type(module).__name__
    assert kind in ("LayerNorm", "RmsNorm"), kind
    return "layernorm" if kind == "LayerNorm" else "rmsnorm"


def _rope(model: nn.Module) -> dict[str, Any]:
    """timm's rotary embedding as vitcli's config fields (kind by class and pairing)."""
    rope = getattr(model, "rope", None)
    if rope is None:
        return {"rope": "none"}
    kind = {"RotaryEmbeddingCat": "eva", "RotaryEmbeddingDinoV3": "dinov3"}[type(rope).__name__]
    assert rope.rotate_half == (kind == "dinov3"), (type(rope).__name__, rope.rotate_half)
    ref = getattr(rope, "ref_feat_shape", None)
    return {"rope": kind, "rope_base": float(rope.temperature), "rope_ref_grid": tuple(ref) if ref else None,
            "rope_offset": float(rope.grid_offset), "rope_xy": rope.grid_indexing == "xy"}


def _token(model: nn.Module, name: str) -> torch.Tensor | None:
    """A prefix token parameter of the model or of NaFlexViT's `embeds`."""
    found = getattr(model, name, None)
    return found if found is not None else getattr(getattr(model, "embeds", None), name, None)


def timm_truth(model: nn.Module) -> dict[str, Any]:
    """What the timm model is, in vitcli's config terms, read from its modules."""
    block = model.blocks[0]
    pos = _token(model, "pos_embed")
    embed = getattr(model, "patch_embed", None) or model.embeds
    cls, dist, reg = (_token(model, n) for n in ("cls_token", "dist_token", "reg_token"))
    registers = int(reg.shape[1]) if reg is not None else 0
    prefix = int(cls is not None) + int(dist is not None) + registers
    pool = getattr(model, "attn_pool", None)
    patch = embed.patch_size
    truth = {
        "heads": block.attn.num_heads, "dim": model.embed_dim, "depth": len(model.blocks),
        "patch_size": patch if isinstance(patch, int) else patch[0], "activation": _activation(model),
        "norm": _norm(block.norm1), "eps": block.norm1.eps, "pooling": POOLING[model.global_pool],
        "class_token": cls is not None, "distilled": dist is not None, "num_registers": registers,
        "layer_scale": isinstance(getattr(block, "ls1", None), nn.Module) and type(block.ls1).__name__ == "LayerScale"
        or getattr(block, "gamma_1", None) is not None,
        "pool_heads": pool.num_heads if pool is not None else None, **_rope(model),
    }
    if pos is not None and pos.dim() == 3 and type(model).__name__ != "NaFlexVit":
        truth["pos_prefix_rows"] = 0 if model.no_embed_class else prefix
    return truth


def vitcli_view(c: ViTConfig, truth: dict[str, Any]) -> dict[str, Any]:
    """The same fields from vitcli's inferred config (pool heads default to the blocks' heads)."""
    view = {k: getattr(c, k) for k in truth if k != "pool_heads"}
    view["pool_heads"] = (c.pool_heads or c.heads) if c.pooling == "map" else None  # None: the blocks' heads
    if c.rope == "none":
        view = {k: v for k, v in view.items() if not k.startswith("rope_")}
    return view


def _check(name: str, folder: Path) -> tuple[str, str]:
    """('ok' | 'unsupported' | 'wrong', detail) for one architecture."""
    model = _model(name)
    config = hub_config(model, folder)
    try:
        loaded = load_state(model.state_dict(), {"config.json": config}, f"{name}/model.safetensors", device="meta")
    except VitcliError as e:
        line = str(e)
        assert "\n" not in line, line
        return ("unsupported" if _known_failure(name, line) else "wrong"), line
    try:
        truth = timm_truth(model)
    except (AssertionError, AttributeError, KeyError) as e:  # a kind of model this test cannot read, loaded
        return "wrong", f"loaded, but this test cannot read the timm model: {type(e).__name__}: {e}"
    got = vitcli_view(loaded.config, truth)
    wrong = {k: (got.get(k), v) for k, v in truth.items() if not _equal(got.get(k), v)}
    return ("wrong", f"vitcli vs timm: {wrong}") if wrong else ("ok", "")


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9)
    return a == b


# Facts of the checked-in table that only size an architecture; the quick sample takes one architecture of
# every combination of the others (model, block and attention class, norm, activation, pooling, RoPE, ...).
SIZE_FACTS = frozenset({"heads", "kv_heads", "img_size", "eps"})


def _kind(facts: dict[str, Any]) -> str:
    """An architecture's kind: its table facts without the sizes (registers and grouped heads as yes/no)."""
    kind = {k: v for k, v in facts.items() if k not in SIZE_FACTS}
    kind["registers"] = bool(facts.get("registers"))
    kind["grouped_heads"] = facts.get("kv_heads") != facts.get("heads")
    return json.dumps(kind, sort_keys=True, default=str)


def quick_sample(names: list[str]) -> list[str]:
    """One architecture per kind of the checked-in table, one per UNSUPPORTED pattern, and every name the
    table does not know (new in the installed timm): what the quick run checks of the registry."""
    table = timm_table()["architectures"]
    picked: dict[str, str] = {}
    for name in names:
        key = _kind(table[name]) if name in table else name
        picked.setdefault(key, name)
    for pattern, _ in UNSUPPORTED:
        picked.setdefault(pattern, next((n for n in names if re.search(pattern, n)), ""))
    return sorted({n for n in picked.values() if n})


def _sweep(names: list[str], tmp_path: Path, least_ok: int) -> None:
    """Every architecture of `names` through vitcli's inference, compared with timm's modules."""
    start = time.perf_counter()
    results = {name: _check(name, tmp_path) for name in names}
    ok = [n for n, (r, _) in results.items() if r == "ok"]
    unsupported = {n: d for n, (r, d) in results.items() if r == "unsupported"}
    wrong = {n: d for n, (r, d) in results.items() if r == "wrong"}
    print(f"\ntimm {timm.__version__}: {len(names)} ViT-family architectures, {len(ok)} inferred as timm builds them, "
          f"{len(unsupported)} unsupported (one-line error at load), {len(wrong)} wrong "
          f"({time.perf_counter() - start:.0f} s)")
    for n, d in unsupported.items():
        print(f"  unsupported {n}: {d.split(': ', 1)[-1]}")
    assert not wrong, "\n".join(f"{n}: {d}" for n, d in wrong.items())
    assert len(ok) >= least_ok  # the test must not pass by refusing everything


@pytest.mark.slow
def test_every_timm_vit_architecture_is_inferred_as_timm_builds_it(tmp_path: Path) -> None:
    _sweep(gen.registry_names(), tmp_path, 200)


def test_every_kind_of_timm_vit_architecture_is_inferred_as_timm_builds_it(tmp_path: Path) -> None:
    """The quick run's sample of the sweep above: one architecture of each kind."""
    names = quick_sample(gen.registry_names())
    _sweep(names, tmp_path, len(names) // 2)


@pytest.mark.slow
def test_checked_in_table_equals_the_generator_on_the_installed_timm() -> None:
    _table_check(gen.registry_names(), complete=True)


def test_checked_in_table_equals_the_generator_for_every_kind() -> None:
    """The quick run's sample of the check above."""
    _table_check(quick_sample(gen.registry_names()), complete=False)


def _table_check(names: list[str], complete: bool) -> None:
    """Architectures in both the table and the installed timm must have the same facts; the rest are listed
    (and, when `names` is the whole registry and the timm versions agree, there must be none)."""
    table = timm_table()
    both = [n for n in names if n in table["architectures"]]
    fresh = gen.generate(both, _model)["architectures"]
    stale = {n: (table["architectures"][n], fresh[n]) for n in both if table["architectures"][n] != fresh[n]}
    only_timm = sorted(set(names) - set(table["architectures"]))
    only_table = sorted(set(table["architectures"]) - set(names)) if complete else []
    print(f"\ntable from timm {table['timm_version']}, installed timm {timm.__version__}: {len(both)} compared, "
          f"{len(only_timm)} only in timm {only_timm[:5]}, {len(only_table)} only in the table {only_table[:5]}")
    assert not stale, f"run scripts/gen_timm_archs.py: {len(stale)} differ, e.g. {next(iter(stale.items()))}"
    if table["timm_version"] == timm.__version__:
        assert not only_timm and not only_table, "run scripts/gen_timm_archs.py: the registry changed"

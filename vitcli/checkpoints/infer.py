"""The architecture of a mapped checkpoint, read from tensor shapes in one pure function.

`infer_config(family, evidence, overrides)` looks only at shapes, key names and the parsed config
files (an `Evidence`), and returns a new `Inferred`; it changes nothing it is given. Read from
shapes, the way CLIP's `build_model` does it:

  patch size, channels, D      patch_embed.proj.weight (D, C, P, P)
  depth                        the number of block indices
  MLP size                     blocks.0.mlp.fc1.weight (M, D)
  prefix tokens                cls / dist / register token tensors; registers (1, R, D)
  position rows and grid       pos_embed (1, r + N, D): the native size given or in a config file
                               when the table fits it; else r ∈ {class+dist, all prefix, 0} with
                               N a square, when exactly one r gives one; else (non-square or
                               ambiguous) the image's own grid when it fits exactly, so the
                               result may be `native_grid="from image"` (unresolved)
  biases, layer scale, norms   whether the tensors exist
  head / projection            head.weight (classes, D)
  heads                        config file when there is one; else the architecture the repository
                               names (timm config.json / open_clip tower / torchvision file name:
                               see archs.py, which also gives activation, eps, pooling and RoPE);
                               else guessed: D / 64 (CLIP's rule), except the widths whose models
                               use 16 wider heads (1152, 1280, 1408, 1664), and the note says so

What weights cannot show (heads, native size, eps, activation, pooling) may be given as
`Overrides`; what they do show (dim, depth, patch_size, mlp_dim) may be given too, and is only
checked against the shapes. The family supplies the rest (see `families/base.py`).
"""

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from vitcli.checkpoints.archs import ArchFacts, lookup
from vitcli.checkpoints.families.base import NATIVE_GRID, Evidence, Family, Variant, projects
from vitcli.checkpoints.preprocess import Preprocess
from vitcli.core.config import PatchRemainder, ViTConfig
from vitcli.core.patches import grid_shape, remainder_note
from vitcli.errors import VitcliError

NativeGrid = Literal["known", "from image"]
WIDE_HEADS = {1152: 16, 1280: 16, 1408: 16, 1664: 16}  # SigLIP-so400m, ViT-H, ViT-g, ViT-bigG


@dataclass(frozen=True)
class Overrides:
    """What the caller says about the model: the first six fill in what weights cannot show, the
    last four are checked against the weights."""

    family: str | None = None
    heads: int | None = None
    image_size: tuple[int, int] | None = None  # the native [H, W]
    eps: float | None = None
    activation: str | None = None
    pooling: str | None = None
    dim: int | None = None
    depth: int | None = None
    patch_size: int | None = None
    mlp_dim: int | None = None


@dataclass(frozen=True)
class Inferred:
    """The core config, the family label, its preprocessing, the notes, and whether the grid is known.

    With `native_grid == "from image"` the position table could not be read alone: `config` holds
    a placeholder 1 × N grid (right table size, wrong shape) and `grid_candidates` the (prefix rows,
    patch rows) readings the table allows; an image's grid that fits one resolves it."""

    config: ViTConfig
    label: str
    preprocess: Preprocess
    notes: tuple[str, ...]
    table_rows: int
    native_grid: NativeGrid = "known"
    grid_candidates: tuple[tuple[int, int], ...] = ()
    projects: bool = False  # the head projects into a joint image-text space (families.base.projects)


@dataclass(frozen=True)
class _Grid:
    """How the position table was read: grid and prefix rows (a placeholder when unresolved)."""

    grid: tuple[int, int]
    prefix_rows: int
    native: NativeGrid
    candidates: tuple[tuple[int, int], ...]
    note: str = ""
    size: tuple[int, int] | None = None  # the native [H, W] when known (it may not be a multiple of P)


def infer_config(fam: Family, ev: Evidence, overrides: Overrides = Overrides(),
                 image_grid: tuple[int, int] | None = None) -> Inferred:
    """The architecture `ev`'s shapes imply under `fam`'s rules; `image_grid` (rows, cols) is used as
    the native grid only when the table cannot be read alone and fits it exactly."""
    facts = lookup(ev)
    if facts and facts.unsupported:
        raise VitcliError(ev.name, f"{facts.source}: vitcli cannot build {facts.unsupported} yet")
    _require(fam, ev)
    dim, in_chans, patch = _patch_embed(ev)
    fc1 = ev.shapes.get("blocks.0.mlp.fc1.weight") or ev.shapes.get("blocks.0.mlp.fc1_g.weight")  # SwiGLU: fc1_g
    mlp_dim = int(fc1[0]) if fc1 is not None else 4 * dim
    mlp = _mlp_kind(ev)
    if mlp == "swiglu_packed":  # fc1 packs gate and value rows: M is fc2's input width
        mlp_dim = int(ev.shapes["blocks.0.mlp.fc2.weight"][1])
    _check_shown(overrides, dim, ev.depth, patch, mlp_dim)
    class_token, distilled = ev.has("cls_token"), ev.has("dist_token")
    regs = ev.shapes.get("reg_tokens", ())
    registers = int(regs[1]) if len(regs) == 3 else 0
    variant = fam.variant(ev)
    remainder = variant.patch_remainder or fam.patch_remainder
    if ev.has("pos_embed"):
        table = _read_table(ev, patch, (int(class_token) + int(distilled), registers), overrides, image_grid, remainder)
    elif any(ev.has(f"{at}rel_pos_bias.relative_position_bias_table") for at in ("", "blocks.0.")):
        table = _relpos_grid(ev, patch, overrides, remainder)  # BEiT without an absolute table: the bias table's grid
    else:  # no table (DINOv3: RoPE only): the native size only sets the default input size
        table = _untabled_grid(fam, ev, patch, overrides, remainder)
    changes, part_notes = _parts(fam, ev, facts)
    if changes.get("rope_ref_grid") == NATIVE_GRID:  # PE: RoPE coords on the native grid, whatever the image's
        changes = {**changes, "rope_ref_grid": table.grid}
    size = table.size or (table.grid[0] * patch, table.grid[1] * patch)
    resample, why_resample = variant.pos_resample or fam.pos_resample
    heads, why_heads = _heads(dim, overrides, ev, facts)
    activation, why_act = _activation(fam, variant, ev, overrides, facts)
    eps, why_eps = _eps(fam, variant.eps, variant.label, ev, overrides, facts)
    pooling, why_pool = _pooling(fam, ev, overrides, facts, class_token)
    floored = remainder_note(size[0], size[1], patch)
    notes = [n for n in (table.note, floored and f"native {floored}", why_heads, why_act, *fam.notes, *part_notes,
                         why_eps, why_pool,
                         f"position table at other grids: {why_resample}" if ev.has("pos_embed") else "") if n]
    head = ev.shapes.get("head.weight", ())
    config = ViTConfig(
        name=ev.model_name, image_size=size, patch_size=patch, patch_remainder=remainder,
        pos_resample=resample,  # type: ignore[arg-type]
        in_chans=in_chans, dim=dim, depth=ev.depth, heads=heads, mlp_dim=mlp_dim, class_token=class_token,
        distilled=distilled, num_registers=registers, posenc="learned" if ev.has("pos_embed") else "none",
        pos_prefix_rows=table.prefix_rows, mlp=mlp,  # type: ignore[arg-type]
        mlp_norm=ev.has("blocks.0.mlp.norm.weight"), qk_norm=ev.has("blocks.0.attn.q_norm.weight"),
        attn_norm=ev.has("blocks.0.attn.norm.weight"),
        patch_bias=ev.has("patch_embed.proj.bias"), qkv_bias=ev.has("blocks.0.attn.qkv.bias"),
        layer_scale=ev.has("blocks.0.ls1.gamma"), pre_norm=ev.has("norm_pre.weight"), final_norm=ev.has("norm.weight"),
        fc_norm=ev.has("fc_norm.weight"), pooling=pooling,  # type: ignore[arg-type]
        num_classes=int(head[0]) if len(head) == 2 else 0, head_bias=ev.has("head.bias"), eps=eps,
        activation=activation,  # type: ignore[arg-type]
        extra={"family": variant.label, "format": ev.format, "rules": list(notes),
               "pos_resample": why_resample if ev.has("pos_embed") else ""}, **_new_parts(ev),
    ).with_changes(**changes)
    preprocess = fam.file_preprocess(ev, config) or variant.preprocess(config)
    unresolved = table.candidates if table.native == "from image" else ()
    rows = int(ev.shapes["pos_embed"][1]) if ev.has("pos_embed") else 0
    return Inferred(config, variant.label, preprocess, tuple(notes), rows, table.native, unresolved,
                    projects(variant, config.num_classes, bool(ev.files.labels)))


def _mlp_kind(ev: Evidence) -> str:
    """SwiGLU when fc1_g exists; packed SwiGLU when fc1 has twice the rows fc2 reads; else the plain MLP."""
    if ev.has("blocks.0.mlp.fc1_g.weight"):
        return "swiglu"
    fc1, fc2 = ev.shapes.get("blocks.0.mlp.fc1.weight"), ev.shapes.get("blocks.0.mlp.fc2.weight")
    if fc1 and fc2 and len(fc1) == len(fc2) == 2 and fc1[0] == 2 * fc2[1]:
        return "swiglu_packed"
    return "mlp"


def _untabled_grid(fam: Family, ev: Evidence, patch: int, o: Overrides, remainder: PatchRemainder) -> _Grid:
    """The native grid of a model without a position table: the size given, a config file's, the family's."""
    size, why = ((o.image_size, "given") if o.image_size else (ev.files.image_size, "config file")
                 if ev.files.image_size else (fam.default_size, f"{fam.name} default"))
    h, w = size
    grid = _size_grid(size, patch, remainder, "--native-size" if o.image_size else ev.name)
    return _Grid(grid, 0, "known", (), f"native size {h}x{w} ({why}; no position table)", (h, w))


def _size_grid(size: tuple[int, int], patch: int, remainder: PatchRemainder, source: str) -> tuple[int, int]:
    """The patch grid of a native size as the family's patch embedding sees it; else one error on `source`."""
    h, w = size
    try:
        return grid_shape(h, w, patch, remainder)
    except ValueError:
        problem = "is not a multiple of" if remainder == "refuse" else "is smaller than"
        raise VitcliError(source, f"image size {h}x{w} {problem} the patch size {patch}") from None


def _new_parts(ev: Evidence) -> dict[str, Any]:
    """The parts of the newer families that the tensors show: RMSNorm (no norm bias), missing biases, the patch
    norm, the relative position bias (shared or per block), the attention pool's variant (query projection,
    biases, residual MLP)."""
    rel = "shared" if ev.has("rel_pos_bias.relative_position_bias_table") else \
        "layer" if ev.has("blocks.0.rel_pos_bias.relative_position_bias_table") else "none"
    norm_bias = any(k.endswith(("norm1.bias", "norm2.bias")) for k in ev.shapes)  # one missing bias: a broken file
    pool_fc1 = ev.shapes.get("attn_pool.mlp.fc1.weight", ())
    pool = dict(pool_query_proj=ev.has("attn_pool.q.weight"), pool_qkv_bias=ev.has("attn_pool.kv.bias"),
                pool_mlp=ev.has("attn_pool.mlp.fc1.weight")) if ev.has("attn_pool.latent") else {}
    return dict(pool, pool_mlp_dim=int(pool_fc1[0]) if len(pool_fc1) == 2 else None,
                norm="layernorm" if norm_bias else "rmsnorm", proj_bias=ev.has("blocks.0.attn.proj.bias"),
                mlp_bias=ev.has("blocks.0.mlp.fc2.bias"), patch_norm=ev.has("patch_embed.norm.weight"),
                rel_pos_bias=rel)


def _relpos_grid(ev: Evidence, patch: int, o: Overrides, remainder: PatchRemainder) -> _Grid:
    """The native grid of a model without a position table, from its relative bias table
    ((2R-1)(2C-1)+3 rows): a size given or in a config file, else the square that fits."""
    shape = ev.shapes.get("rel_pos_bias.relative_position_bias_table") or \
        ev.shapes.get("blocks.0.rel_pos_bias.relative_position_bias_table")
    if shape is None:
        raise VitcliError(ev.name, "no position table (pos_embed) and no relative position bias table: "
                          "vitcli cannot build a ViT without position information from these weights")
    offsets = int(shape[0]) - 3
    size, given = (o.image_size, True) if o.image_size else (ev.files.image_size, False)
    if size is not None:
        fits = not (remainder == "refuse" and (size[0] % patch or size[1] % patch)) and min(size) >= patch
        grid = (size[0] // patch, size[1] // patch)
        if (2 * grid[0] - 1) * (2 * grid[1] - 1) == offsets and fits:
            return _Grid(grid, 0, "known", (), f"native size {size[0]}x{size[1]}" + (" (given)" if given else ""),
                         tuple(size))  # type: ignore[arg-type]
        if given:
            raise VitcliError("--native-size", f"{size[0]}x{size[1]} does not fit the relative position bias table "
                              f"of {shape[0]} rows")
    side = (math.isqrt(offsets) + 1) // 2
    if (2 * side - 1) ** 2 != offsets:
        raise VitcliError(ev.name, f"the relative position bias table has {shape[0]} rows: not a square grid's "
                          "(2R-1)(2C-1)+3; pass {needs}", needs="native_size")
    return _Grid((side, side), 0, "known", (), f"native grid {side}x{side} (from the relative position bias table)")


def grid_error(source: str, table_rows: int, prefix_rows: Iterable[int]) -> VitcliError:
    """The one-line error for a position table that neither a square grid, a native size nor an image resolves."""
    counts = sorted(set(prefix_rows)) or [0]
    listed = " or ".join(str(r) for r in counts) if len(counts) < 3 else \
        ", ".join(str(r) for r in counts[:-1]) + f" or {counts[-1]}"
    squares = [r for r in counts if table_rows - r > 0 and math.isqrt(table_rows - r) ** 2 == table_rows - r]
    if len(squares) > 1:
        both = " or ".join(map(str, squares))
        return VitcliError(source, f"the position table has {table_rows} rows: {both} prefix rows plus a square grid "
                           "both fit, so its grid is ambiguous; pass {needs}", needs="native_size")
    return VitcliError(source, f"the position table has {table_rows} rows: not {listed} prefix rows plus a square "
                       "grid; pass {needs}", needs="native_size")


def _require(fam: Family, ev: Evidence) -> None:
    """The keys every checkpoint of the family has, and at least one block."""
    missing = [k for k in fam.required if not ev.has(k)]
    if missing:
        raise VitcliError(ev.name, f"{fam.name} checkpoint without {', '.join(ev.expected.get(k, k) for k in missing)}")
    if ev.depth == 0:
        raise VitcliError(ev.name, f"no transformer blocks found ({fam.block_prefixes[0].format(i=0)}…)")


def _patch_embed(ev: Evidence) -> tuple[int, int, int]:
    """(D, C, P) from the patch projection (D, C, P, P)."""
    w = ev.shapes["patch_embed.proj.weight"]
    if len(w) != 4 or w[-1] != w[-2]:
        raise VitcliError(ev.name, f"{ev.expected['patch_embed.proj.weight']} has shape {w}; "
                          "expected a square conv kernel (D, C, P, P)")
    return int(w[0]), int(w[1]), int(w[-1])


def _check_shown(o: Overrides, dim: int, depth: int, patch: int, mlp_dim: int) -> None:
    """Sizes the caller gave that the weights show: equal, or one error naming the option."""
    checks = (("--dim", o.dim, dim, f"which are {dim} wide"), ("--depth", o.depth, depth, f"which have {depth} blocks"),
              ("--patch-size", o.patch_size, patch, f"whose patches are {patch}x{patch}"),
              ("--mlp-dim", o.mlp_dim, mlp_dim, f"whose MLP is {mlp_dim} wide"))
    for option, given, shown, what in checks:
        if given is not None and given != shown:
            raise VitcliError(option, f"{given} contradicts the checkpoint's weights, {what}")


def _read_table(ev: Evidence, patch: int, prefix: tuple[int, int], o: Overrides,
                image_grid: tuple[int, int] | None, remainder: PatchRemainder = "refuse") -> _Grid:
    """Native grid and prefix rows of pos_embed (1, r + N, D): from a size, a square, or the image."""
    length = int(ev.shapes["pos_embed"][1])
    rows = list(dict.fromkeys([prefix[0], prefix[0] + prefix[1], 0]))  # class+dist, all prefix tokens, none
    candidates = tuple((r, length - r) for r in rows if length - r > 0)
    size, given = (o.image_size, True) if o.image_size else (ev.files.image_size, False)
    if size is not None:
        found = _fit_size(size, patch, candidates, given, ev.name, length, remainder)
        if found:
            return found
    squares = [(r, math.isqrt(n)) for r, n in candidates if math.isqrt(n) ** 2 == n]
    if len(squares) == 1:  # several square readings (tiny grids with registers) are ambiguous
        r, side = squares[0]
        return _Grid((side, side), r, "known", candidates)
    if image_grid is not None:
        for r, n in candidates:
            if image_grid[0] * image_grid[1] == n:
                return _Grid(tuple(image_grid), r, "known", candidates,  # type: ignore[arg-type]
                             f"native grid {image_grid[0]}x{image_grid[1]} (from the image: the table fits it exactly)")
    if not candidates:
        raise grid_error(ev.name, length, rows)
    r, n = candidates[0]
    return _Grid((1, n), r, "from image", candidates,
                 f"native grid unknown ({length} rows, {'several' if squares else 'no'} square readings): "
                 "taken from the image's grid when it fits")


def _fit_size(size: tuple[int, int], patch: int, candidates: tuple[tuple[int, int], ...], given: bool, name: str,
              length: int, remainder: PatchRemainder = "refuse") -> _Grid | None:
    """The grid of a native size given or from a config file (floored as the family's conv does), if the table fits
    it."""
    h, w = size
    grid = _size_grid(size, patch, remainder, "--native-size" if given else name)
    for r, n in candidates:
        if grid[0] * grid[1] == n:
            return _Grid(grid, r, "known", candidates, f"native size {h}x{w} (given)" if given else "", (h, w))
    if given:
        raise VitcliError("--native-size", f"{h}x{w} ({grid[0]}x{grid[1]} patches) does not fit the checkpoint's "
                          f"position table of {length} rows")
    return None  # a config's size may differ from the table (a model fine-tuned at another size)


def _heads(dim: int, o: Overrides, ev: Evidence, facts: ArchFacts | None) -> tuple[int, str]:
    """Heads given, from a config file, the named architecture, qk-norm's width, else guessed by the width rules."""
    if o.heads is not None:
        if o.heads <= 0 or dim % o.heads:
            raise VitcliError("--heads", f"{o.heads} heads do not divide the checkpoint's width {dim}")
        return o.heads, f"heads {o.heads} (given)"
    if ev.files.heads:
        return ev.files.heads, f"heads {ev.files.heads} (config.json)"
    if facts and facts.heads:
        if dim % facts.heads:
            raise VitcliError(ev.name, f"{facts.source} has {facts.heads} heads, which do not divide the weights' "
                              f"width {dim}: pass {{needs}}", needs="heads")
        return facts.heads, f"heads {facts.heads} ({facts.source})"
    qk_norm = ev.shapes.get("blocks.0.attn.q_norm.weight")
    if qk_norm and len(qk_norm) == 1 and qk_norm[0] and dim % qk_norm[0] == 0:  # qk-norm is one head wide
        return dim // qk_norm[0], f"heads {dim // qk_norm[0]} (qk-norm over {qk_norm[0]} channels a head)"
    if dim in WIDE_HEADS:
        return WIDE_HEADS[dim], f"heads {WIDE_HEADS[dim]} (guessed: most {dim}-wide models have 16; pass --heads)"
    if dim % 64 == 0:
        return dim // 64, f"heads {dim // 64} (guessed: 64-wide heads; pass --heads)"
    raise VitcliError(ev.name, f"cannot tell the number of heads of a {dim}-wide model from its weights "
                      "(not a multiple of 64): pass {needs}", needs="heads")


def _activation(fam: Family, variant: Variant, ev: Evidence, o: Overrides,
                facts: ArchFacts | None) -> tuple[str, str]:
    """Activation: given, implied by the variant (OpenAI CLIP), the named architecture's, else the family's rule."""
    if o.activation:
        return o.activation, f"activation {o.activation} (given)"
    if variant.activation:
        return variant.activation
    if facts and facts.activation:
        return facts.activation, f"activation {facts.activation} ({facts.source})"
    return fam.activation(ev, variant.label)


def _eps(fam: Family, variant_eps: float | None, label: str, ev: Evidence, o: Overrides,
         facts: ArchFacts | None) -> tuple[float, str]:
    """Norm eps: given, config.json, the named architecture's, the variant's, the family's."""
    if o.eps:
        eps, why = float(o.eps), "given"
    elif ev.files.layer_norm_eps:
        eps, why = ev.files.layer_norm_eps, "config.json"
    elif facts and facts.eps:
        eps, why = facts.eps, facts.source
    else:
        eps, why = variant_eps or fam.eps, f"{label} default"
    return eps, f"LayerNorm eps {eps:g} ({why})"


def _pooling(fam: Family, ev: Evidence, o: Overrides, facts: ArchFacts | None, class_token: bool) -> tuple[str, str]:
    """Pooling: given, the named architecture's (its global_pool), else the attention pool, the family's rule, mean."""
    if o.pooling:
        return o.pooling, f"pooling {o.pooling} (given)"
    if facts and facts.pooling:
        return facts.pooling, f"pooling {facts.pooling} ({facts.source})"
    return ("map" if ev.has("attn_pool.latent") else fam.pooling(ev) if class_token else "mean"), ""


def _parts(fam: Family, ev: Evidence, facts: ArchFacts | None) -> tuple[dict, tuple[str, ...]]:
    """The family's parts rule, with the named architecture's RoPE settings and pool heads in place of its guesses."""
    changes, notes = fam.parts(ev)
    said = []
    if facts and facts.rope:
        guessed = changes.get("rope", "none") != "none"
        changes = {k: v for k, v in changes.items() if not k.startswith("rope")} | facts.rope
        r = facts.rope
        if r["rope"] != "none" or guessed:
            said.append(f"RoPE none ({facts.source})" if r["rope"] == "none" else
                        f"RoPE {r['rope']} (base {r['rope_base']:g}, offset {r['rope_offset']:g}, "
                        f"{'xy' if r['rope_xy'] else 'ij'} indexing, reference grid {r['rope_ref_grid'] or 'none'}; "
                        f"{facts.source})")
    width = ev.shapes.get("attn_pool.latent", (0,))[-1]
    if facts and facts.pool_heads and width and width % facts.pool_heads == 0:
        changes["pool_heads"] = facts.pool_heads
        said.append(f"attention pool: {facts.pool_heads} heads ({facts.source})")
    if said:
        notes = tuple(n for n in notes if not n.startswith(("RoPE", "no RoPE", "attention pool:")))
    return changes, (*notes, *said)


__all__ = ["Inferred", "NativeGrid", "Overrides", "grid_error", "infer_config"]

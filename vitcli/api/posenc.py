"""`vitcli.posenc`: a position-encoding table on its own — shape, stats, chosen rows, similarity."""

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from vitcli.api.documents import PosencDoc
from vitcli.api.results import PosencResult
from vitcli.api.values import check_forwarded, keywords, one_layer, pair, pair_text
from vitcli.errors import VitcliError

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vitcli.api.models import Model

Grid = str | tuple[int, int] | None  # 'ROWSxCOLS' or (rows, cols)
Size = str | int | tuple[int, int] | None  # 'HxW', 448 (square) or (H, W)


def check_table_mode(kind: str | None, grid: object, size: object) -> None:
    """A table's kind is one of KINDS, and its grid comes from `grid` or `size`, not both."""
    from vitcli.core.posenc import KINDS

    if kind is not None and kind not in KINDS:
        raise VitcliError("--kind", f"'{kind}' is not one of {', '.join(KINDS)}")
    if grid is not None and size is not None:
        raise VitcliError("--grid", "give --grid or --size, not both")


def refuse_for_rope(given: dict[str, object]) -> None:
    """--kind rope computes angles from --dim, --grid and --rope-variant: the table's and the model's
    other numbers (CLI name → value) given with it are range-checked, then a UsageError."""
    from vitcli.api.ranges import check_ranges, refuse_unused
    from vitcli.io.sizes import parse_hw, parse_size

    for option in ("--size", "--resample", "--native-size"):
        if isinstance(given.get(option), str):
            text = str(given[option])
            parse_size(text) if option == "--size" else parse_hw(text, option)
    check_ranges(**{o[2:].replace("-", "_"): given.get(o) for o in ("--patch-size", "--depth", "--heads", "--mlp-ratio",
                                                                    "--eps")})
    refuse_unused("--kind learned, sincos1d, sincos2d or none (rope reads --dim, --grid, --rope-variant)", given)


@keywords(layer=one_layer, resample=pair, patch=pair_text)
def posenc(model: "str | Model" = "vit-b16", *, kind: str | None = None, grid: Grid = None, size: Size = None,
           patch_size: int | None = None, positions: str | None = None, similarity: str | None = None,
           resample: Grid = None, output: str | None = None, layer: int | None = None,
           patch: str | tuple[int, int] | None = None, **model_options: object) -> PosencResult:
    """A preset's table of `kind` (learned: the exact table `embed` adds for that seed) for its own grid,
    `grid` (rows, cols) or `size` (H, W); or a checkpoint's learned table; optionally resampled to
    another grid as timm does. `model_options` go to `load_model` (dim, seed, native_size, …).
    A checkpoint with a relative position bias (BEiT) gives `layer`'s bias (H, N, N) instead, and
    the similarity figure is each head's bias map for the query `patch` 'R,C' (see relbias.py)."""
    from vitcli.api.models import Model, load_model
    from vitcli.api.outputs import check_outputs_first
    from vitcli.api.ranges import refuse_unused

    check_forwarded("posenc", model_options, load_model, also=("rope_variant",))
    if isinstance(size, int):
        size = (size, size)  # 448 is 448×448, as the size keyword of load_images reads it
    if kind != "rope":
        refuse_unused("--kind=rope", {"--rope-variant": model_options.pop("rope_variant", None)})
    check_outputs_first({"output": output, "similarity": similarity},
                        inputs=[model.spec.spec if isinstance(model, Model) else model])
    if kind == "rope":  # 2-D rotary: angles, frequencies, kernel (api/rope.py)
        from vitcli.api.rope import rope_posenc

        refuse_for_rope({"--size": size, "--patch-size": patch_size, "--positions": positions, "--resample": resample,
                         "--layer": layer, "--patch": patch, **{"--" + k.replace("_", "-"): model_options.get(k)
                                                               for k in ("depth", "heads", "mlp_ratio", "eps",
                                                                         "native_size")}})
        loaded = model if isinstance(model, Model) and model.checkpoint is not None else None
        dim, variant = model_options.get("dim"), model_options.get("rope_variant")  # parsed by keywords()
        return rope_posenc(loaded, dim=cast("int | None", dim), grid=grid, variant=cast("str | None", variant),
                           similarity=similarity, output=output)
    check_table_mode(kind, grid, size)
    if not isinstance(model, Model):
        model = _load(model, kind, patch_size, model_options)
    asked_bias, named = layer is not None or patch is not None, "--layer" if layer is not None else "--patch"
    layer = -1 if layer is None else layer
    if model.checkpoint is not None and model.config.rel_pos_bias != "none" and \
            (asked_bias or "pos_embed" not in model.checkpoint.state_dict):
        from vitcli.api.relbias import relbias_result

        model.require_grid()
        return relbias_result(model, layer, patch, similarity, output)
    if asked_bias:
        raise VitcliError(named, "this model has no relative position bias: "
                          "--layer and --patch choose a BEiT-style checkpoint's bias table")
    if similarity:  # the (N, N) similarity under the limit before any table is made
        shown = _shown_grid(model, grid, size, resample)
        _check_similarity_memory(model, shown[0] * shown[1])
    if model.checkpoint is not None:
        table, table_grid, rows, what = _checkpoint_table(model, grid, size, kind)
    else:
        table, table_grid, rows, what = _preset_table(model, grid, size)
    resampled_from = None
    if resample is not None:
        from vitcli.core.posenc import resample_as

        target = _pair(resample, "--resample")
        resampled = resample_as(model.config.pos_resample, table, table_grid, target, rows)  # as the family's library
        table, resampled_from, table_grid = resampled, list(table_grid), target
    array = table.numpy()
    if output:
        from vitcli.io.arrays import save_npy

        save_npy(output, array)
    if similarity:
        _similarity_png(similarity, array, rows, table_grid, what, resampled_from)
    return PosencResult(array, _document(model, what, array, table_grid, rows, resampled_from, positions, output,
                                         similarity))


def _load(spec: str, kind: str | None, patch_size: int | None, model_options: dict[str, object]) -> "Model":
    """The model `spec` names: a preset of `kind` (and `patch_size`), or a checkpoint."""
    from vitcli.api.models import load_model

    preset = _is_preset(spec)
    load: Callable[..., Model] = load_model  # its keywords parse the options' values
    return load(spec, posenc=kind if preset else None, patch_size=patch_size if preset else None, **model_options)


def _pair(value: str | tuple[int, int], option: str) -> tuple[int, int]:
    """'AxB' or (a, b) → (a, b)."""
    from vitcli.io.sizes import parse_hw

    return parse_hw(value, option) if isinstance(value, str) else (int(value[0]), int(value[1]))


def _is_preset(spec: str) -> bool:
    from vitcli.core.presets import PRESETS

    return spec.strip().lower() in PRESETS


def _preset_table(model: "Model", grid: Grid, size: Size) -> "tuple[torch.Tensor, tuple[int, int], int, str]":
    """A table of the model's kind for its grid, `grid`, or `size` / P."""
    import torch

    from vitcli.core.posenc import position_table

    c = model.config
    target = _target_grid(model, grid, size)
    _check_table_memory(model, target)
    if c.posenc == "learned":  # the very table `embed --seed` adds: drawn after the model's weights, not built
        from vitcli.core.presets import learned_table

        table = learned_table(c.with_changes(image_size=(target[0] * c.patch_size, target[1] * c.patch_size)),
                              model.spec.seed)
        return table, target, c.pos_prefix_rows, c.posenc
    # fixed tables in float64: the formula's own values (the model adds them in its dtype)
    return position_table(c.posenc, target, c.dim, c.pos_prefix_rows,
                          dtype=torch.float64), target, c.pos_prefix_rows, c.posenc


def _target_grid(model: "Model", grid: Grid, size: Size) -> tuple[int, int]:
    """The grid a preset's table is made for: `grid`, `size` / P, or the model's own."""

    c = model.config
    if grid is not None:
        target = _pair(grid, "--grid")
    elif size is not None:
        h, w = _pair((size, size) if isinstance(size, int) else size, "--size")
        target = (h // c.patch_size, w // c.patch_size)
    else:
        target = c.grid
    if min(target) <= 0:
        raise VitcliError("--size", f"{size} holds no {c.patch_size}x{c.patch_size} patch")
    return target


def _shown_grid(model: "Model", grid: Grid, size: Size, resample: Grid) -> tuple[int, int]:
    """The grid of the table that is shown (after --resample), known before any table is made."""

    if resample is not None:
        return _pair(resample, "--resample")
    return model.config.grid if model.checkpoint is not None else _target_grid(model, grid, size)


def _check_table_memory(model: "Model", grid: tuple[int, int]) -> None:
    """The table (and for a learned one, the draws of the model's weights before it) under the memory
    limit: a learned table of `--seed` exists only for a model that could be built."""
    from vitcli.core.budget import over

    c = model.config
    if c.posenc == "learned":
        try:
            model.check_memory()
        except VitcliError as e:
            raise VitcliError(e.source, "the learned table of --seed is drawn after the weights of the model it "
                              f"belongs to, and {e.problem}", e.needs) from None
    rows = c.pos_prefix_rows + grid[0] * grid[1]
    problem = over(rows * c.dim * 8 * 2, model.memory_limit(), f"a position table of {rows} rows of width {c.dim}")
    if problem:
        raise VitcliError("--grid", problem, needs="max_memory")


def _check_similarity_memory(model: "Model", cells: int) -> None:
    """The (N, N) similarity of the patch rows under the memory limit."""
    from vitcli.core.budget import over

    problem = over(cells * cells * 8 * 3, model.memory_limit(), f"the similarity of {cells} positions")
    if problem:
        raise VitcliError("--similarity", problem, needs="max_memory")


def _checkpoint_table(model: "Model", grid: Grid, size: Size,
                      kind: str | None) -> "tuple[torch.Tensor, tuple[int, int], int, str]":
    """A checkpoint's learned table with its prefix rows counted."""
    if grid is not None or size is not None:
        raise VitcliError("--grid" if grid is not None else "--size", "with --weights the grid is the checkpoint's: "
                          "name its native size with --native-size HxW, or show the table on another grid with "
                          "--resample ROWSxCOLS")
    if kind not in (None, "learned"):
        raise VitcliError("--kind", "with --weights the table is the checkpoint's own (learned)")
    model.require_grid()
    c = model.config
    table = model.checkpoint.state_dict.get("pos_embed") if model.checkpoint is not None else None
    if table is None:
        raise VitcliError(model.source, "this checkpoint has no learned position table")
    return table.detach().float().cpu().reshape(-1, c.dim), c.grid, c.pos_prefix_rows, "learned"


def _similarity_png(path: str, table: "np.ndarray", num_prefix: int, grid: tuple[int, int], kind: str,
                    src: list[int] | None) -> None:
    """Cosine similarity between the patch rows of the table, as one tile per grid position."""
    import torch

    from vitcli.core.analysis import cosine_similarity_matrix
    from vitcli.io.pictures import save_figure, similarity_figure

    cells = torch.from_numpy(table[num_prefix:]).double()  # (N, D)
    sim = cosine_similarity_matrix(cells, cells).numpy()  # (N, N)
    note = f", resampled from {src[0]}x{src[1]}" if src else ""
    save_figure(path,
                similarity_figure(sim, grid, f"Position embedding similarity ({kind}, {grid[0]}x{grid[1]}{note})"))


def parse_positions(text: str, length: int) -> list[int]:
    """'0:3' → [0, 1, 2]; '5' → [5]; '1,4,-1' → [1, 4, length-1]; checked against `length`."""
    try:
        if ":" in text:
            parts = [int(p) if p.strip() else None for p in text.split(":")]
            if len(parts) > 3:
                raise ValueError
            rows = list(range(length))[slice(*parts)]
        else:
            rows = [int(p) for p in text.split(",")]
    except ValueError:
        raise VitcliError("--positions", f"'{text}' is not I, A:B or I,J,K") from None
    bad = [r for r in rows if not -length <= r < length]
    if bad or not rows:
        raise VitcliError("--positions", f"'{text}' selects no rows or rows outside 0..{length - 1}")
    return [r % length for r in rows]


def _document(model: "Model", kind: str, array: "np.ndarray", grid: tuple[int, int], rows: int, src: list[int] | None,
              positions: str | None, output: str | None, similarity: str | None) -> PosencDoc:
    from vitcli.stats import tensor_stats

    doc: PosencDoc = {
        "command": "posenc", "input": None, "kind": kind,
        "source": model.source if kind == "learned" else f"the formula ({kind})",
        "patch_size": model.config.patch_size, "grid": list(grid), "num_patches": grid[0] * grid[1],
        "num_prefix_rows": rows, "dim": array.shape[1], "tensors": {"pos_embed": tensor_stats(array)},
        "outputs": {"array": output, "similarity_png": similarity},
    }
    if src:
        doc["resampled_from"] = src
    if positions:
        doc["positions"] = [{"index": r, "values": array[r].tolist()} for r in parse_positions(positions,
                                                                                               array.shape[0])]
    return doc

"""The arrays, files, JSON and pictures of `Model.attend`, from one inspected forward pass."""

from typing import TYPE_CHECKING, TypeVar

import numpy as np
from typing_extensions import TypedDict

from vitcli.api.documents import AttendBatchDoc, AttendDoc, AttendOutputs, HeadRow, RolloutSummary
from vitcli.api.outputs import rollout_png_path
from vitcli.api.results import AttendResult
from vitcli.api.selection import Selection

if TYPE_CHECKING:
    from vitcli.api.base import ModelBase
    from vitcli.api.images import FittedImage
    from vitcli.api.runs import ModelRun
    from vitcli.core.config import ViTConfig
    from vitcli.core.inspect import AttentionReport, RolloutSpec

T = TypeVar("T")
PathOrFlag = str | bool | None


class Asked(TypedDict):
    """What `attend` was asked to compute and write: a path writes there, True computes without writing."""

    output: str | None
    rollout: PathOrFlag
    distance: PathOrFlag
    plot_distance: str | None
    masks: PathOrFlag
    threshold: float
    cosine: PathOrFlag
    save_qkv: PathOrFlag
    overlay: str | None
    per_head: bool


_NO_FILES: AttendOutputs = {"array": None, "cosine": None, "qkv": None, "distance": None, "distance_png": None,
                            "masks": None, "rollout": None, "rollout_png": None, "overlay": None}


def single_result(model: "ModelBase", run: "ModelRun", sel: Selection, report: "AttentionReport",
                  spec: "RolloutSpec | None", outputs: Asked) -> AttendResult:
    """One image: every array without its batch axis, the asked files written, the document."""
    from vitcli.stats import tensor_stats

    fitted = run.fitted[0]
    grid = report.grid
    weights = report.weights[0].numpy()  # (L, H_sel, Q, T)
    queries = sel.pooled or (sel.queries if sel.queries is not None else "all")
    doc: AttendDoc = {**model._single_document("attend", fitted, grid, run.normalize), "layers": report.layers,
                      "head_selection": sel.heads.labels, "queries": queries,
                      "query_names": query_name(model.config, grid, sel), "shape": list(weights.shape),
                      "axes": ["layers", "heads", "queries", "tokens"], "heads": head_rows(model.config, report, sel),
                      "tensors": {"attention": tensor_stats(weights)}, "outputs": _NO_FILES}
    res = AttendResult(doc, weights=weights, warnings=list(model.warnings))
    if report.rollout is not None:
        res.rollout = report.rollout[0].numpy()
    if report.rollout_row is not None:
        res.rollout_row = report.rollout_row[0].numpy()
    if report.distance and (outputs["distance"] or outputs["plot_distance"]):
        res.distance = distance_table(report)[0]
    if outputs["masks"]:
        res.masks = dino_masks(report, outputs["threshold"])
    if report.cosine is not None:
        res.cosine = report.cosine[0].numpy()
    if report.qkv is not None:
        q, k, v = (t[0].float().numpy() for t in report.qkv)
        res.qkv = (q, k, v)
    res.terminal_map = terminal_map(model.config, report, sel)
    doc["outputs"] = files = _write(model, fitted, report, sel, res, spec, outputs)
    if res.cosine is not None:
        doc["tensors"]["cosine"] = tensor_stats(res.cosine)
    if files.get("qkv"):
        doc["qkv_note"] = qkv_note(model.config)
    if res.distance is not None:
        doc["mean_distance"] = res.distance.tolist()
    if res.masks is not None:
        doc["masks"] = {"threshold": outputs["threshold"],
                        "patches_per_head": res.masks.reshape(len(res.masks), -1).sum(1).tolist()}
    if res.rollout is not None and spec is not None:
        doc["rollout"] = rollout_summary(report, sel, spec)
    return res


def _computed(value: T | None, name: str) -> T:
    """An array the forward pass was asked for (`name` was given), present by construction."""
    if value is None:
        raise ValueError(f"{name} was asked for but not computed")
    return value


def _write(model: "ModelBase", fitted: "FittedImage", report: "AttentionReport", sel: Selection, res: AttendResult,
           spec: "RolloutSpec | None", outputs: Asked) -> AttendOutputs:
    """Every array and picture asked for by path, each written atomically; the `outputs` document."""
    from vitcli.io.arrays import save_npy, save_npz

    def path(name: str) -> str | None:
        value = outputs[name]  # type: ignore[literal-required]  # one of Asked's path keys, by name
        return value if isinstance(value, str) else None

    if outputs["output"]:
        save_npy(outputs["output"], _computed(res.weights, "output"))
    if cosine := path("cosine"):
        save_npy(cosine, _computed(res.cosine, "cosine"))
    if qkv := path("save_qkv"):
        q, k, v = _computed(res.qkv, "save_qkv")
        save_npz(qkv, {"q": q, "k": k, "v": v, "layers": np.array(report.layers)})
    if distance := path("distance"):
        save_npy(distance, _computed(res.distance, "distance"))
    if outputs["plot_distance"]:
        _distance_png(model, fitted, _computed(res.distance, "plot_distance"), outputs["plot_distance"])
    if masks := path("masks"):
        save_npy(masks, _computed(res.masks, "masks"))
    rollout = path("rollout")
    rollout_png = rollout_png_path(rollout) if rollout else None
    if rollout:
        save_npy(rollout, _computed(res.rollout, "rollout"))
        if rollout_png:
            _rollout_png(model, fitted, report, sel, _computed(spec, "rollout"), rollout_png)
    if outputs["overlay"]:
        if spec is not None:
            _rollout_png(model, fitted, report, sel, spec, outputs["overlay"])
        else:
            _overlay_png(model, fitted, report, sel, outputs["overlay"], outputs["per_head"])
    return {"array": outputs["output"], "cosine": path("cosine"), "qkv": path("save_qkv"), "distance": path("distance"),
            "distance_png": outputs["plot_distance"], "masks": path("masks"), "rollout": path("rollout"),
            "rollout_png": rollout_png, "overlay": outputs["overlay"]}


def many_document(model: "ModelBase", run: "ModelRun", sel: Selection | None, per_image: list[np.ndarray],
                  outputs: Asked) -> AttendResult:
    """Many images: the batch summary, and the mean distance over the images with its spread."""
    report = run.report
    grid = report.first_grid
    doc: AttendBatchDoc = {
        "command": "attend", **report.document(), "normalize": run.normalize, "patch_size": model.config.patch_size,
        "model": model.document(grid), "layers": sel.layers if sel else [],
        "head_selection": sel.heads.labels if sel else None,
        "axes": ["images", "layers", "heads", "queries", "tokens"],
        "tensors": {"attention": report.stats["attention"].document()} if "attention" in report.stats else {}}
    res = AttendResult(doc, weights=run.arrays.get("attention"), warnings=list(model.warnings))
    if per_image:
        stacked = np.concatenate(per_image)  # (B, L, H)
        mean, spread = stacked.mean(0), stacked.std(0)
        doc.update({"mean_distance": mean.tolist(), "mean_distance_std": spread.tolist(),
                    "distance_images": len(stacked),
                    "mean_distance_overall": {"mean": float(mean.mean()), "spread": float(spread.mean())}})
        res.distance = mean
        if isinstance(outputs["distance"], str):
            from vitcli.io.arrays import save_npy

            save_npy(outputs["distance"], mean)  # (L, H) averaged over the images
        if outputs["plot_distance"]:
            _distance_many_png(model, mean, spread, len(stacked), outputs["plot_distance"])
        doc["outputs"].update({"distance": outputs["distance"] if isinstance(outputs["distance"], str) else None,
                               "distance_png": outputs["plot_distance"]})
    return res


# --- summaries ---------------------------------------------------------------------------------


def head_rows(config: "ViTConfig", report: "AttentionReport", sel: Selection) -> list[HeadRow]:
    """Per selected layer × head: entropy, strongest patch, class-token weight, mean distance.

    With several queries, entropy is the mean of their rows' entropies, and the strongest patch and
    class weight those of their mean row; rows are taken in blocks (no float64 copy of a T×T map).
    """
    import torch

    from vitcli.core.analysis import attention_entropy, chunk_size

    n, cols = report.num_prefix, report.grid[1]
    rows: list[HeadRow] = []
    for li, layer in enumerate(report.layers):
        dist = report.distance[layer][0] if layer in report.distance else None  # (H,)
        for hi, label in enumerate(sel.heads.labels):
            w = report.weights[0, li, hi]  # (Q, T)
            mean_row = w.mean(0, dtype=torch.float64)  # (T,)
            fused = sel.heads.fusion in ("max", "min")  # not a distribution: the entropy of row / sum
            entropy = torch.cat([attention_entropy(r, fused) for r in w.split(chunk_size(w.shape[-1]))])  # (Q,)
            j = int(mean_row[n:].argmax())
            d = None
            if dist is not None:
                d = float(dist.mean()) if sel.heads.fusion else float(dist[int(label)])
            rows.append({"layer": layer, "head": int(label) if label.isdigit() else label,
                         "entropy": float(entropy.mean()), "max_weight": float(mean_row[n + j]),
                         "max_patch": list(divmod(j, cols)),
                         "cls_weight": float(mean_row[0]) if config.class_token else None, "mean_distance": d})
    return rows


def dino_masks(report: "AttentionReport", threshold: float) -> np.ndarray:
    """(heads, rows, cols) bool: per head, the last layer's class-token map cut at the mass threshold."""
    from vitcli.core.analysis import mass_threshold_mask, prefix_row_to_grid

    last = max(report.cls_rows)
    maps = prefix_row_to_grid(report.cls_rows[last][0], report.num_prefix, report.grid)  # (H, rows, cols)
    return mass_threshold_mask(maps, threshold).numpy()


def rollout_summary(report: "AttentionReport", sel: Selection, spec: "RolloutSpec") -> RolloutSummary:
    row = _computed(report.rollout_row, "rollout")[0]  # (T,) the query's row
    j = int(row[report.num_prefix:].argmax())
    return {"fusion": spec.fusion, "discard_ratio": spec.discard_ratio, "discard_scope": spec.discard_scope,
            "start_layer": spec.start_layer, "max_patch": list(divmod(j, report.grid[1])),
            "max_weight": float(row[report.num_prefix + j]), "prefix_weight": float(row[:report.num_prefix].sum())}


def query_name(config: "ViTConfig", grid: tuple[int, int], sel: Selection) -> str:
    from vitcli.core.select import prefix_names, token_name

    if sel.pooled:
        return {"probe": "attention-pool probe", "mean": "mean of the patch rows"}[sel.pooled]
    if sel.queries is None:
        return "all queries"
    names = prefix_names(config.class_token, config.distilled, config.num_registers)
    return ", ".join(token_name(q, grid, config.num_prefix_tokens, names) for q in sel.queries)


def head_span(labels: list[str]) -> str:
    return f"{labels[0]}–{labels[-1]}" if len(labels) > 2 else ", ".join(labels)


def terminal_map(config: "ViTConfig", report: "AttentionReport", sel: Selection) -> tuple[str, np.ndarray] | None:
    """The map the terminal draws: the one query's (last selected layer, selected heads' mean), or
    with several queries the class token's; None when there is nothing on the grid to draw."""
    from vitcli.core.analysis import fuse_heads, prefix_row_to_grid

    layer, heads = report.layers[-1], sel.heads
    how = f"{heads.fusion} of heads" if heads.fusion else f"mean of heads {head_span(heads.labels)}"
    if sel.one_row:
        row = report.weights[0, -1, :, 0].double().mean(0)  # (T,) the selected heads (or their fusion)
        who = query_name(config, report.grid, sel)
    elif layer in report.cls_rows:
        rows = report.cls_rows[layer][0]  # (H, T)
        row = fuse_heads(rows[:, None], heads.fusion)[0] if heads.fusion else rows[heads.heads].mean(0)
        who = "class-token"
    else:
        return None
    grid = prefix_row_to_grid(row, report.num_prefix, report.grid).numpy()
    return f"{who} attention, layer {layer} ({how}), {report.grid[0]}×{report.grid[1]} patches", grid


# --- pictures ----------------------------------------------------------------------------------


def _marked_patch(report: "AttentionReport", sel: Selection) -> tuple[int, int] | None:
    """(r, c) of a single patch query, for drawing."""
    n = report.num_prefix
    if sel.queries and len(sel.queries) == 1 and sel.queries[0] >= n:
        return divmod(sel.queries[0] - n, report.grid[1])
    return None


def _title(model: "ModelBase", fitted: "FittedImage") -> str:
    name = fitted.loaded.path if fitted.loaded.path != "-" else "<stdin>"
    return f"{name} ({fitted.pixels.shape[0]}×{fitted.pixels.shape[1]}), {model.config.name}, {model.source}"


def _overlay_png(model: "ModelBase", fitted: "FittedImage", report: "AttentionReport", sel: Selection, path: str,
                 per_head: bool) -> None:
    """The selected query's map of the last selected layer over the image."""
    from vitcli.core.analysis import prefix_row_to_grid
    from vitcli.io.pictures import overlay_figure, save_figure

    weights = report.weights[0, -1, :, 0]  # (H_sel, T) last selected layer, the one query
    labels = sel.heads.labels
    if per_head or len(labels) == 1:
        maps, titles = weights, [f"head {h}" if h.isdigit() else f"{h} of heads" for h in labels]
    else:
        maps, titles = weights.mean(0, keepdim=True), [f"mean of heads {head_span(labels)}"]
    grids = prefix_row_to_grid(maps, report.num_prefix, report.grid).numpy()
    title = (f"Attention of {query_name(model.config, report.grid, sel)}, layer {report.layers[-1]}\n"
             f"{_title(model, fitted)}")
    fig = overlay_figure(fitted.pixels, grids, titles, title, _marked_patch(report, sel), model.config.patch_size)
    save_figure(path, fig)


def _rollout_png(model: "ModelBase", fitted: "FittedImage", report: "AttentionReport", sel: Selection,
                 spec: "RolloutSpec", path: str) -> None:
    from vitcli.core.analysis import prefix_row_to_grid
    from vitcli.io.pictures import overlay_figure, save_figure

    row = _computed(report.rollout_row, "rollout")[0]  # (T,) the query's row
    grid = prefix_row_to_grid(row, report.num_prefix, report.grid)[None].numpy()
    discard = f", discard {spec.discard_ratio:g} per {spec.discard_scope}" if spec.discard_ratio else ""
    title = (f"Attention rollout of {query_name(model.config, report.grid, sel)}, layers {spec.start_layer}–"
             f"{model.config.depth - 1} ({spec.fusion} of heads{discard})\n{_title(model, fitted)}")
    fig = overlay_figure(fitted.pixels, grid, [""], title, _marked_patch(report, sel), model.config.patch_size,
                         label="Rollout weight")
    save_figure(path, fig)


def _distance_png(model: "ModelBase", fitted: "FittedImage", table: np.ndarray, path: str) -> None:
    from vitcli.io.pictures import distance_figure, save_figure

    title = f"Mean attention distance (P = {model.config.patch_size})\n{_title(model, fitted)}"
    save_figure(path, distance_figure(table, model.config.patch_size, title))


def _distance_many_png(model: "ModelBase", mean: np.ndarray, spread: np.ndarray, count: int, path: str) -> None:
    from vitcli.io.pictures import distance_figure, save_figure

    c = model.config
    title = (f"Mean attention distance over {count} images (P = {c.patch_size}, ± std over images)\n"
             f"{c.name}, {model.source}")
    save_figure(path, distance_figure(mean, c.patch_size, title, spread=spread))


def qkv_note(c: "ViTConfig") -> str:
    """What the saved Q and K are: after qk-norm and RoPE when the model has them (the ones the scores use)."""
    steps = (["qk-norm"] if c.qk_norm else []) + ([f"RoPE ({c.rope}) on the patch rows"] if c.rope != "none" else [])
    return "q, k as the scores use them: after " + " and ".join(steps) if steps else "q, k, v straight from attn.qkv"

def distance_table(report: "AttentionReport") -> "np.ndarray":
    """(B, layers, heads) mean attention distance of every layer, float64."""
    import torch

    return torch.stack([report.distance[i] for i in sorted(report.distance)], dim=1).double().numpy()

"""`vitcli attend`: self-attention you can read (tables), measure (entropy, distance, rollout) and see."""

from dataclasses import dataclass
from enum import Enum
from typing import Annotated, Any, Optional

import typer

from vitcli.cli.batch import BatchOptions, ImagesArg, gather
from vitcli.cli.common import OUTPUT_PANEL, ImageOptions, JsonOpt, NormalizeOpt, Output, OutputOpt, QuietOpt, with_options
from vitcli.cli.model import ModelOptions

HELP = """Run the encoder and show self-attention A = softmax(Q·Kᵀ/√d_k) of chosen layers, heads and queries.

-o writes the selection as (layers, heads, queries, tokens); tokens are the prefix tokens (class,
distillation, registers) then the patches row by row on the input's true grid. The table gives,
per layer × head: entropy, the strongest patch (r, c), the class-token weight and the mean
attention distance (ViT paper D.7). --query cls never builds the T×T matrix, so large images fit.
Layers and heads count from 0. Several images: -o gets a leading batch axis (B, layers, heads,
queries, tokens) and --distance / --plot-distance average over the images, with their spread.
"""
EPILOG = (
    "Examples:  vitcli attend sample_images/chelsea.jpg  ·  "
    "vitcli attend cat.jpg --layer all --head mean -o attn.npy  ·  "
    "vitcli attend cat.jpg --query 3,5 --overlay q.png --per-head  ·  "
    "vitcli attend cat.jpg --rollout roll.npy --discard-ratio 0.9  ·  "
    "vitcli attend cat.jpg --plot-distance dist.png --size 448  ·  "
    "vitcli attend photos/ --plot-distance dist.png --distance dist.npy"
)
ANALYSIS_PANEL = "Analyses"
PICTURE_PANEL = "Pictures"


class Fusion(str, Enum):
    mean = "mean"
    max = "max"
    min = "min"


class Scope(str, Enum):
    row = "row"
    matrix = "matrix"


@dataclass
class Analyses:
    """The optional analyses and pictures of attend."""

    rollout: Annotated[Optional[str], typer.Option("--rollout", help="Attention rollout: write the (T, T) product as .npy, and the selected query's map as a picture beside it (same name, .png).", rich_help_panel=ANALYSIS_PANEL, show_default=False)] = None
    rollout_fusion: Annotated[Fusion, typer.Option("--rollout-fusion", help="Head fusion for rollout.", rich_help_panel=ANALYSIS_PANEL)] = Fusion.mean
    discard_ratio: Annotated[float, typer.Option("--discard-ratio", help="Rollout: zero this share of the lowest weights (never the diagonal) before adding I.", rich_help_panel=ANALYSIS_PANEL)] = 0.0
    discard_scope: Annotated[Scope, typer.Option("--discard-scope", help="Rollout discard over each image's whole matrix or each row.", rich_help_panel=ANALYSIS_PANEL)] = Scope.matrix
    start_layer: Annotated[int, typer.Option("--start-layer", help="Rollout: first layer of the product.", rich_help_panel=ANALYSIS_PANEL)] = 0
    distance: Annotated[Optional[str], typer.Option("--distance", help="Write the mean attention distance of every layer and head, (layers, heads) in pixels, as .npy.", rich_help_panel=ANALYSIS_PANEL, show_default=False)] = None
    plot_distance: Annotated[Optional[str], typer.Option("--plot-distance", help="Mean attention distance against depth, one dot per head (ViT fig. 7 right), as PNG.", rich_help_panel=PICTURE_PANEL, show_default=False)] = None
    renorm: Annotated[bool, typer.Option("--renorm", help="Mean distance: renormalise rows after removing prefix tokens (off, as the paper's code).", rich_help_panel=ANALYSIS_PANEL)] = False
    masks: Annotated[Optional[str], typer.Option("--masks", help="DINO masks: per head of the last layer, the fewest patches holding --threshold of the class token's attention, (heads, rows, cols) bool .npy.", rich_help_panel=ANALYSIS_PANEL, show_default=False)] = None
    threshold: Annotated[float, typer.Option("--threshold", help="Attention mass the DINO masks keep.", rich_help_panel=ANALYSIS_PANEL)] = 0.6
    cosine: Annotated[Optional[str], typer.Option("--cosine", help="cos(q_i, k_j) of the selected queries and every key, same shape as -o, as .npy.", rich_help_panel=ANALYSIS_PANEL, show_default=False)] = None
    save_qkv: Annotated[Optional[str], typer.Option("--save-qkv", help="Write Q, K, V of the selected layers, each (layers, heads, tokens, head_dim), as .npz.", rich_help_panel=OUTPUT_PANEL, show_default=False)] = None
    overlay: Annotated[Optional[str], typer.Option("--overlay", help="The query's attention (or the rollout map) over the image with a colour bar, as PNG.", rich_help_panel=PICTURE_PANEL, show_default=False)] = None
    per_head: Annotated[bool, typer.Option("--per-head", help="--overlay: one panel per head, labelled, in one image.", rich_help_panel=PICTURE_PANEL)] = False


@with_options(image_opts=ImageOptions, model_opts=ModelOptions, analyses=Analyses, batch=BatchOptions)
def attend_command(
    images: ImagesArg = None,
    layer: Annotated[str, typer.Option("--layer", help="Layer I (negative from the end), range A:B (B excluded), I,J or all.")] = "-1",
    head: Annotated[str, typer.Option("--head", help="Head I, I,J, all, or a fusion of all heads: mean, max, min.")] = "all",
    query: Annotated[Optional[str], typer.Option("--query", help="Query token: cls, a token index, a patch R,C, or all. [default: cls; the centre patch for a model without a class token]", show_default=False)] = None,
    normalize: NormalizeOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
    analyses: Analyses,
    batch: BatchOptions,
) -> None:
    from vitcli.cli.run import run_model

    out = Output(output, as_json, quiet)
    plan = Plan(layer, head, query, analyses)
    inputs = gather(images, batch)
    if inputs.many:
        return _attend_many(inputs.paths, plan, normalize, image_opts, model_opts, batch, out)
    run = run_model(inputs.paths[0], image_opts, model_opts, None, normalize, call=plan.inspect)
    _write_outputs(run, plan, out)
    doc = _document(run, plan, out)
    _show(doc, run, plan, out)


class Plan:
    """The parsed selection, resolved once the model (depth, heads, grid) is known."""

    def __init__(self, layer: str, head: str, query: str | None, analyses: Analyses) -> None:
        self.layer_text, self.head_text, self.query_text, self.a = layer, head, query, analyses
        self.layers: list[int] = []
        self.heads: Any = None
        self.queries: list[int] | None = None

    def inspect(self, model: Any, x: Any) -> Any:
        """Resolve the selection against this model and input, then run `inspect_attention`."""
        from vitcli.cli.model import _value_error
        from vitcli.core.inspect import RolloutSpec, inspect_attention
        from vitcli.core.patches import grid_shape
        from vitcli.core.select import parse_heads, parse_layers, parse_query

        c = model.config
        grid = grid_shape(x.shape[-2], x.shape[-1], c.patch_size)
        with _value_error("--layer"):
            self.layers = parse_layers(self.layer_text, c.depth)
        with _value_error("--head"):
            self.heads = parse_heads(self.head_text, c.heads)
        text = self.query_text or ("cls" if c.class_token else f"{grid[0] // 2},{grid[1] // 2}")
        with _value_error("--query"):
            self.queries = parse_query(text, grid, c.num_prefix_tokens, c.class_token)
        self._check(c)
        a = self.a
        every = list(range(c.depth)) if a.distance or a.plot_distance else None
        spec = RolloutSpec(a.rollout_fusion.value, a.discard_ratio, a.discard_scope.value, a.start_layer) if a.rollout else None
        with _value_error("--start-layer" if a.rollout else "--layer"):
            return inspect_attention(model, x, self.layers, self.heads, self.queries, every, a.renorm, spec,
                                     keep_qkv=bool(a.save_qkv), cosine=bool(a.cosine))

    def _check(self, config: Any) -> None:
        """Refuse combinations that cannot give a picture or a mask, before the forward pass."""
        from vitcli.errors import VitcliError

        a = self.a
        if (a.overlay or a.rollout) and (self.queries is None or len(self.queries) != 1):
            raise VitcliError("--query", "--overlay and --rollout draw one query's map: choose cls, a token or R,C")
        if a.masks and not config.class_token:
            raise VitcliError("--masks", "DINO masks are the class token's maps, and this model has no class token")
        if not 0 < a.threshold <= 1:
            raise VitcliError("--threshold", f"{a.threshold} is outside (0, 1]")
        if not 0 <= a.discard_ratio < 1:
            raise VitcliError("--discard-ratio", f"{a.discard_ratio} is outside [0, 1)")


def _attend_many(paths: list[str], plan: Plan, normalize: str | None, image_opts: ImageOptions,
                 model_opts: ModelOptions, batch: BatchOptions, out: Output) -> None:
    """Attention rows of every image streamed to -o (B, L, H, Q, T); mean distance over the images."""
    import numpy as np
    import torch

    from vitcli.cli.batch import run_batch, show_summary
    from vitcli.cli.model import model_document, model_rows
    from vitcli.cli.run import batch_model
    from vitcli.core.presets import count_params
    from vitcli.errors import VitcliError

    a = plan.a
    single = [name for name, value in [("--overlay", a.overlay), ("--rollout", a.rollout), ("--masks", a.masks),
                                       ("--cosine", a.cosine), ("--save-qkv", a.save_qkv)] if value]
    if single:
        raise VitcliError(single[0], "draws or writes one image's analysis: give one image (several images take -o, --distance, --plot-distance)")
    bm = batch_model(image_opts, model_opts, None, normalize)
    distances: list[np.ndarray] = []

    def compute(items: list[Any]) -> np.ndarray:
        with torch.inference_mode():
            report = plan.inspect(bm.model, bm.batch_tensor(items))
        if a.distance or a.plot_distance:
            distances.append(distance_table(report))  # (b, L, H)
        return report.weights.numpy()  # (b, L_sel, H_sel, Q, T)

    report = run_batch(paths, batch, out.output, out, prepare=bm.prepare, compute=compute, patch_size=bm.patch_size,
                       overlap=bm.overlap_decoding)
    grid = report.first.get("grid")
    doc = {"command": "attend", **report.document(), "normalize": bm.normalize, "patch_size": bm.patch_size,
           "model": model_document(bm.setup, tuple(grid) if grid else None, count_params(bm.model)),
           "layers": plan.layers, "head_selection": plan.heads.labels if plan.heads else None,
           "axes": ["images", "layers", "heads", "queries", "tokens"], "tensors": {"attention": report.stats.document()}}
    rows = model_rows(doc["model"]) + [("normalize", bm.normalize), ("layers", _span(plan.layers))]
    if distances:
        per_image = np.concatenate(distances)  # (B, L, H)
        mean, spread = per_image.mean(0), per_image.std(0)
        doc.update(mean_distance=mean.tolist(), mean_distance_std=spread.tolist(), distance_images=len(per_image))
        if a.distance:
            from vitcli.io.arrays import save_npy

            save_npy(a.distance, mean)  # (L, H) averaged over the images
        if a.plot_distance:
            _distance_many_png(bm, mean, spread, len(per_image), a.plot_distance)
        doc["outputs"].update(distance=a.distance, distance_png=a.plot_distance)
        rows.append(("mean distance over images", f"{mean.mean():.1f} px (heads' spread over images ± {spread.mean():.1f})"))
    show_summary("attend", report, rows, "attention (B, L, H, Q, T)", doc, out)
    if bm.warning:
        out.message(f"[yellow]warning:[/] {bm.warning}")


def _distance_many_png(bm: Any, mean: Any, spread: Any, count: int, path: str) -> None:
    from vitcli.io.pictures import distance_figure, save_figure

    c = bm.setup.config
    title = (f"Mean attention distance over {count} images (P = {c.patch_size}, ± std over images)\n"
             f"{c.name}, {bm.setup.source}, size {bm.image_opts.size}")
    save_figure(path, distance_figure(mean, c.patch_size, title, spread=spread))


# --- outputs -----------------------------------------------------------------------------------


def _write_outputs(run: Any, plan: Plan, out: Output) -> None:
    """Every array and picture asked for, each written atomically."""
    import numpy as np

    from vitcli.io.arrays import save_npy, save_npz

    r, a = run.result, plan.a
    if out.output:
        save_npy(out.output, r.weights[0].numpy())  # (L, H, Q, T)
    if a.cosine:
        save_npy(a.cosine, r.cosine[0].numpy())  # (L, H, Q, T)
    if a.save_qkv:
        q, k, v = (t[0].float().numpy() for t in r.qkv)
        save_npz(a.save_qkv, {"q": q, "k": k, "v": v, "layers": np.array(r.layers)})
    if a.distance:
        save_npy(a.distance, distance_table(r)[0])  # (L, H)
    if a.plot_distance:
        _distance_png(run, a.plot_distance)
    if a.masks:
        save_npy(a.masks, dino_masks(run, a.threshold))
    if a.rollout:
        save_npy(a.rollout, r.rollout[0].numpy())  # (T, T)
        _rollout_png(run, plan, rollout_png_path(a.rollout))
    if a.overlay:
        _overlay_png(run, plan, a.overlay)


def rollout_png_path(npy: str) -> str:
    """Where the rollout map picture goes: beside the .npy, with .png."""
    from pathlib import Path

    return str(Path(npy).with_suffix(".png")) if npy != "-" else "rollout.png"


def distance_table(report: Any) -> Any:
    """(B, layers, heads) mean attention distance of every layer, as numpy float64."""
    import torch

    return torch.stack([report.distance[i] for i in sorted(report.distance)], dim=1).double().numpy()


def dino_masks(run: Any, threshold: float) -> Any:
    """(heads, rows, cols) bool: per head, the last layer's class-token map cut at the mass threshold."""
    from vitcli.core.analysis import mass_threshold_mask, prefix_row_to_grid

    r = run.result
    last = max(r.cls_rows)
    maps = prefix_row_to_grid(r.cls_rows[last][0], r.num_prefix, r.grid)  # (H, rows, cols)
    return mass_threshold_mask(maps, threshold).numpy()


def query_name(run: Any, plan: Plan) -> str:
    from vitcli.core.select import prefix_names, token_name

    c = run.setup.config
    if plan.queries is None:
        return "all queries"
    names = prefix_names(c.class_token, c.distilled, c.num_registers)
    return ", ".join(token_name(q, run.result.grid, run.result.num_prefix, names) for q in plan.queries)


def _marked_patch(run: Any, plan: Plan) -> tuple[int, int] | None:
    """(r, c) of a single patch query, for drawing."""
    n = run.result.num_prefix
    if plan.queries and len(plan.queries) == 1 and plan.queries[0] >= n:
        return divmod(plan.queries[0] - n, run.result.grid[1])
    return None


def _title(run: Any) -> str:
    p = run.prepared
    name = p.loaded.path if p.loaded.path != "-" else "<stdin>"
    return f"{name} ({p.pixels.shape[0]}×{p.pixels.shape[1]}), {run.setup.config.name}, {run.setup.source}"


def _overlay_png(run: Any, plan: Plan, path: str) -> None:
    """The selected query's map of the last selected layer over the image (or the rollout map)."""
    from vitcli.core.analysis import prefix_row_to_grid
    from vitcli.io.pictures import overlay_figure, save_figure

    r = run.result
    if plan.a.rollout:
        return _rollout_png(run, plan, path)
    weights = r.weights[0, -1, :, 0]  # (H_sel, T) last selected layer, the one query
    labels = plan.heads.labels
    if plan.a.per_head or len(labels) == 1:
        maps, titles = weights, [f"head {h}" if h.isdigit() else f"{h} of heads" for h in labels]
    else:
        maps, titles = weights.mean(0, keepdim=True), [f"mean of heads {_head_span(labels)}"]
    grids = prefix_row_to_grid(maps, r.num_prefix, r.grid).numpy()
    title = f"Attention of {query_name(run, plan)}, layer {r.layers[-1]}\n{_title(run)}"
    fig = overlay_figure(run.prepared.pixels, grids, titles, title, _marked_patch(run, plan), run.setup.config.patch_size)
    save_figure(path, fig)


def _head_span(labels: list[str]) -> str:
    return f"{labels[0]}–{labels[-1]}" if len(labels) > 2 else ", ".join(labels)


def _rollout_png(run: Any, plan: Plan, path: str) -> None:
    from vitcli.core.analysis import prefix_row_to_grid
    from vitcli.io.pictures import overlay_figure, save_figure

    r, a = run.result, plan.a
    row = r.rollout[0, plan.queries[0]]  # (T,)
    grid = prefix_row_to_grid(row, r.num_prefix, r.grid)[None].numpy()
    discard = f", discard {a.discard_ratio:g} per {a.discard_scope.value}" if a.discard_ratio else ""
    title = (f"Attention rollout of {query_name(run, plan)}, layers {a.start_layer}–{run.setup.config.depth - 1} "
             f"({a.rollout_fusion.value} of heads{discard})\n{_title(run)}")
    fig = overlay_figure(run.prepared.pixels, grid, [""], title, _marked_patch(run, plan), run.setup.config.patch_size,
                         label="Rollout weight")
    save_figure(path, fig)


def _distance_png(run: Any, path: str) -> None:
    from vitcli.io.pictures import distance_figure, save_figure

    table = distance_table(run.result)[0]  # (L, H)
    c = run.setup.config
    title = f"Mean attention distance (P = {c.patch_size})\n{_title(run)}"
    save_figure(path, distance_figure(table, c.patch_size, title))


# --- report ------------------------------------------------------------------------------------


def head_rows(run: Any, plan: Plan) -> list[dict[str, Any]]:
    """Per selected layer × head: entropy, strongest patch, class-token weight, mean distance.

    With several queries, entropy is the mean of their rows' entropies, and the strongest patch
    and class weight are those of their mean row; rows are taken in blocks (no float64 copy of a
    T×T map).
    """
    import torch

    from vitcli.core.analysis import attention_entropy, chunk_size

    r = run.result
    n, cols = r.num_prefix, r.grid[1]
    has_cls = run.setup.config.class_token
    rows = []
    for li, layer in enumerate(r.layers):
        dist = r.distance[layer][0] if layer in r.distance else None  # (H,)
        for hi, label in enumerate(plan.heads.labels):
            w = r.weights[0, li, hi]  # (Q, T)
            mean_row = w.mean(0, dtype=torch.float64)  # (T,)
            entropy = torch.cat([attention_entropy(rows) for rows in w.split(chunk_size(w.shape[-1]))])  # (Q,)
            j = int(mean_row[n:].argmax())
            d = None
            if dist is not None:
                d = float(dist.mean()) if plan.heads.fusion else float(dist[int(label)])
            rows.append({
                "layer": layer, "head": int(label) if label.isdigit() else label,
                "entropy": float(entropy.mean()),
                "max_weight": float(mean_row[n + j]), "max_patch": list(divmod(j, cols)),
                "cls_weight": float(mean_row[0]) if has_cls else None,
                "mean_distance": d,
            })
    return rows


def _document(run: Any, plan: Plan, out: Output) -> dict[str, Any]:
    from vitcli.report import tensor_stats

    r, a = run.result, plan.a
    doc = {
        **run.document("attend"),
        "layers": r.layers,
        "head_selection": plan.heads.labels,
        "queries": plan.queries if plan.queries is not None else "all",
        "query_names": query_name(run, plan),
        "shape": list(r.weights.shape[1:]),
        "axes": ["layers", "heads", "queries", "tokens"],
        "heads": head_rows(run, plan),
        "tensors": {"attention": tensor_stats(r.weights[0].numpy())},
        "outputs": {"array": out.output, "cosine": a.cosine, "qkv": a.save_qkv, "distance": a.distance,
                    "distance_png": a.plot_distance, "masks": a.masks, "rollout": a.rollout,
                    "rollout_png": rollout_png_path(a.rollout) if a.rollout else None, "overlay": a.overlay},
    }
    if r.cosine is not None:
        doc["tensors"]["cosine"] = tensor_stats(r.cosine[0].numpy())
    if a.distance or a.plot_distance:
        doc["mean_distance"] = distance_table(r)[0].tolist()
    if a.masks:
        masks = dino_masks(run, a.threshold)
        doc["masks"] = {"threshold": a.threshold, "patches_per_head": masks.reshape(len(masks), -1).sum(1).tolist()}
    if r.rollout is not None:
        doc["rollout"] = _rollout_summary(run, plan)
    return doc


def _rollout_summary(run: Any, plan: Plan) -> dict[str, Any]:
    r, a = run.result, plan.a
    row = r.rollout[0, plan.queries[0]]
    j = int(row[r.num_prefix:].argmax())
    return {"fusion": a.rollout_fusion.value, "discard_ratio": a.discard_ratio, "discard_scope": a.discard_scope.value,
            "start_layer": a.start_layer, "max_patch": list(divmod(j, r.grid[1])),
            "max_weight": float(row[r.num_prefix + j]), "prefix_weight": float(row[:r.num_prefix].sum())}


def _show(doc: dict[str, Any], run: Any, plan: Plan, out: Output) -> None:
    from vitcli.cli.model import model_rows
    from vitcli.report import emit_json, info_table, stats_table

    if out.as_json:
        return emit_json(doc)
    rows = run.prepared.input_rows() + model_rows(doc["model"]) + [("normalize", doc["normalize"])]
    rows += [("layers", _span(doc["layers"])), ("heads", ", ".join(doc["head_selection"])), ("query", doc["query_names"]),
             ("array (layers, heads, queries, tokens)", "(" + ", ".join(map(str, doc["shape"])) + ")")]
    if "rollout" in doc:
        ro = doc["rollout"]
        rows.append(("rollout strongest patch", "({}, {}) {:.4f}; prefix tokens {:.4f}".format(*ro["max_patch"], ro["max_weight"], ro["prefix_weight"])))
    if "masks" in doc:
        rows.append((f"DINO masks ({doc['masks']['threshold']:.0%} mass)", "patches per head " + ", ".join(map(str, doc["masks"]["patches_per_head"]))))
    rows += [(name, path) for name, path in doc["outputs"].items() if path]
    out.show(info_table("vitcli attend", rows), _heads_table(doc), stats_table("tensors", doc["tensors"]))
    heatmap = _cls_heatmap(run, plan, out)
    if heatmap is not None:
        out.show(heatmap)
    for w in run.warnings:
        out.message(f"[yellow]warning:[/] {w}")


def _span(layers: list[int]) -> str:
    if len(layers) > 2 and layers == list(range(layers[0], layers[-1] + 1)):
        return f"{layers[0]}–{layers[-1]}"
    return ", ".join(map(str, layers))


def _heads_table(doc: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"attention of {doc['query_names']}", title_justify="left", title_style="bold")
    for name, justify in [("layer", "right"), ("head", "right"), ("entropy (nats)", "right"), ("max weight", "right"),
                          ("at patch (r, c)", "center"), ("on cls", "right"), ("mean distance (px)", "right")]:
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for h in doc["heads"][:200]:
        table.add_row(str(h["layer"]), str(h["head"]), f"{h['entropy']:.3f}", f"{h['max_weight']:.4f}",
                      "({}, {})".format(*h["max_patch"]), "–" if h["cls_weight"] is None else f"{h['cls_weight']:.4f}",
                      "–" if h["mean_distance"] is None else f"{h['mean_distance']:.1f}")
    if len(doc["heads"]) > 200:
        table.caption = f"first 200 of {len(doc['heads'])} rows; --json has all"
    return table


def _cls_heatmap(run: Any, plan: Plan, out: Output) -> Any:
    """The class token's map of the last selected layer (selected heads' mean) as terminal blocks."""
    from rich.console import Group
    from rich.text import Text

    from vitcli.core.analysis import fuse_heads, prefix_row_to_grid
    from vitcli.report import heatmap_text

    r = run.result
    layer = r.layers[-1]
    if layer not in r.cls_rows:
        return None
    rows = r.cls_rows[layer][0]  # (H, T)
    heads = plan.heads
    row = fuse_heads(rows[:, None], heads.fusion)[0] if heads.fusion else rows[heads.heads].mean(0)
    grid = prefix_row_to_grid(row, r.num_prefix, r.grid).numpy()
    how = f"{heads.fusion} of heads" if heads.fusion else f"mean of heads {_head_span(heads.labels)}"
    title = Text(f"class-token attention, layer {layer} ({how}), {r.grid[0]}×{r.grid[1]} patches", style="bold")
    return Group(title, heatmap_text(grid, colour=out.console.color_system is not None))

"""`vitcli figures`: paper figures and feature analyses, each writing its array (.npy) and PNG.

filters (ViT fig. 7 left), pca (DINOv2 fig. 1), similar (patch-to-patch cosine similarity) and
norms (high-norm tokens, Darcet et al. 2023). Position-embedding similarity (ViT fig. 7 centre)
is `vitcli posenc --similarity`; mean attention distance (fig. 7 right) is `vitcli attend`.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import typer

from vitcli.cli.common import OUTPUT_PANEL, ImageArg, ImageOptions, JsonOpt, NormalizeOpt, Output, OutputOpt, QuietOpt, with_options
from vitcli.cli.model import ModelOptions

HELP = "Paper figures and feature analyses on any checkpoint: filters, pca, similar, norms."
app = typer.Typer(name="figures", help=HELP, no_args_is_help=True, add_completion=False, rich_markup_mode="rich",
                  context_settings={"help_option_names": ["-h", "--help"]})

PngOpt = Annotated[Optional[str], typer.Option("--png", help="Write the figure as PNG to FILE.", rich_help_panel=OUTPUT_PANEL, show_default=False)]


# --- shared plumbing --------------------------------------------------------------------------------


@dataclass
class Runs:
    """One model and its forward pass on each image."""

    setup: Any
    model: Any
    prepared: list[Any]
    results: list[Any]
    normalize: str
    params: int
    warnings: list[str]

    def document(self, command: str) -> dict[str, Any]:
        """The JSON keys every model command shares (the first image's input and grid)."""
        from vitcli.cli.model import model_document

        grid, prefix = self.results[0].grid, self.results[0].num_prefix
        return {
            "command": command, "input": self.prepared[0].input_document(),
            "inputs": [p.input_document() for p in self.prepared], "patch_size": self.setup.config.patch_size,
            "grid": list(grid), "num_patches": grid[0] * grid[1], "num_tokens": grid[0] * grid[1] + prefix,
            "normalize": self.normalize, "model": model_document(self.setup, grid, self.params),
        }

    def rows(self, doc: dict[str, Any]) -> list[tuple[str, Any]]:
        """Table rows: the inputs, the model and the normalisation."""
        from vitcli.cli.model import model_rows

        rows = [r for p in self.prepared for r in p.input_rows()]
        return rows + model_rows(doc["model"]) + [("normalize", self.normalize)]


def run_images(images: list[str], image_opts: ImageOptions, model_opts: ModelOptions, normalize: str | None,
               forward: Any = None) -> Runs:
    """Build the model once and run it on each image, fitted as every model command fits them
    (the checkpoint family's preprocessing, or --size / --fit); `forward(config)` gives the
    forward pass's Capture (default: the final tokens, inputs freed)."""
    import torch

    from vitcli.cli.run import batch_model
    from vitcli.core.capture import Capture
    from vitcli.core.presets import count_params

    bm = batch_model(image_opts, model_opts, None, normalize)
    prepared = [bm.prepare(path) for path in images]
    capture = forward(bm.setup.config) if forward else Capture(inputs=False)
    with torch.inference_mode():
        results = [bm.model(bm.batch_tensor([p]), capture) for p in prepared]
    return Runs(bm.setup, bm.model, prepared, results, bm.normalize, count_params(bm.model),
                [bm.warning] if bm.warning else [])


def _numpy(t: Any) -> Any:
    return t.detach().double().cpu().numpy()


def _save(path: str | None, array: Any) -> None:
    if path:
        from vitcli.io.arrays import save_npy

        save_npy(path, array)


def _figure(path: str | None, draw: Any) -> None:
    """Draw and write a figure only when a PNG was asked for."""
    if path:
        from vitcli.io.pictures import save_figure

        save_figure(path, draw())


def _finish(out: Output, doc: dict[str, Any], rows: list[tuple[str, Any]], *tables: Any, warnings: list[str] = ()) -> None:
    """JSON, or the info table and the command's own tables, then warnings."""
    from vitcli.report import emit_json, info_table

    if out.as_json:
        return emit_json(doc)
    outputs = [(name, path) for name, path in doc["outputs"].items() if path]
    out.show(info_table(f"vitcli {doc['command']}", rows + outputs), *tables)
    for w in warnings:
        out.message(f"[yellow]warning:[/] {w}")


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> Any:
    from rich.table import Table

    from vitcli.report import fmt

    table = Table(title=title, title_justify="left", title_style="bold")
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i == 0 else "right", style="cyan" if i == 0 else None)
    for row in rows:
        table.add_row(*(v if isinstance(v, str) else fmt(v) for v in row))
    return table


def _guard(option: str):
    """The core's ValueError as a one-line error naming the option."""
    from vitcli.cli.model import _value_error

    return _value_error(option)


def _name(path: str) -> str:
    from pathlib import Path

    return "<stdin>" if path == "-" else Path(path).name


# --- filters ----------------------------------------------------------------------------------------

FILTERS_HELP = """Patch-embedding filters (ViT paper, fig. 7 left): the first principal components of the
patch projection E, one P×P RGB tile each.

The D filters of the projection (the conv weight (D, C, P, P), which is the linear weight (D, P·P·C)
reshaped) are rows of a (D, C·P·P) matrix; it is centred and its principal components are
reshaped to (C, P, P). -o writes them as (k, C, P, P) float64; each PNG tile is min-max
normalised on its own (a component's sign and scale are arbitrary).
"""
FILTERS_EPILOG = "Example:  vitcli figures filters --weights vit_b16.safetensors --png filters.png -o filters.npy"


@app.command("filters", help=FILTERS_HELP, epilog=FILTERS_EPILOG, short_help="Patch-embedding filters as RGB tiles (ViT fig. 7 left).")
@with_options(model_opts=ModelOptions)
def filters_command(
    count: Annotated[int, typer.Option("--count", "-k", help="Number of principal components.")] = 28,
    png: PngOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    model_opts: ModelOptions,
) -> None:
    from vitcli.cli.model import build, model_document, model_rows, resolve_config
    from vitcli.core.features import filter_components, tiles_for_display
    from vitcli.errors import VitcliError
    from vitcli.io.paper_figures import filters_figure
    from vitcli.report import tensor_stats

    out = Output(output, as_json, quiet)
    if count < 1:
        raise VitcliError("--count", f"must be at least 1, got {count}")
    setup = resolve_config(model_opts)
    weight = setup.checkpoint.state_dict["patch_embed.proj.weight"] if setup.checkpoint else build(setup, model_opts)[0].patch_embed.proj.weight
    comps, ratio = filter_components(weight.detach().float().cpu(), count)  # (k, C, P, P), (k,)
    array, explained = _numpy(comps), _numpy(ratio)
    _save(out.output, array)
    title = f"Patch-embedding filters of {setup.config.name}: first {len(array)} principal components"
    _figure(png, lambda: filters_figure(_numpy(tiles_for_display(comps)), explained, title))
    doc = {"command": "figures filters", "input": None, "patch_size": setup.config.patch_size,
           "model": model_document(setup), "weight_shape": list(weight.shape), "explained_variance_ratio": explained.tolist(),
           "tensors": {"components": tensor_stats(array)}, "outputs": {"array": out.output, "png": png}}
    rows = model_rows(doc["model"]) + [("filters (D, C, P, P)", tuple(weight.shape)), ("components", tuple(array.shape))]
    cumulative = explained.cumsum()
    shown = [[str(i + 1), 100 * e, 100 * c] for i, (e, c) in enumerate(zip(explained, cumulative))][:10]
    _finish(out, doc, rows, _table(f"principal components (first {len(shown)})", ["PC", "variance %", "cumulative %"], shown))


# --- pca --------------------------------------------------------------------------------------------

PCA_HELP = """Feature PCA to RGB (DINOv2, fig. 1): the first three principal components of the last
layer's patch tokens (after the final norm, prefix tokens removed), fitted over all the images
together, as red, green and blue (each min-max scaled over all the images).

--foreground-threshold T: the first component is given the sign that makes the border patches
(the outer ring of each grid, taken as background) score below the mean, scaled to [0, 1], and
patches above T are foreground; a second PCA on the foreground patches alone colours them, the
background is black. -o writes (images, rows, cols, 3) float64 in [0, 1].
"""
PCA_EPILOG = "Example:  vitcli figures pca sample_images/chelsea.jpg sample_images/astronaut.jpg --weights dinov2.safetensors --foreground-threshold 0.5 --png pca.png"


@app.command("pca", help=PCA_HELP, epilog=PCA_EPILOG, short_help="Feature PCA to RGB over one or more images (DINOv2 fig. 1).")
@with_options(image_opts=ImageOptions, model_opts=ModelOptions)
def pca_command(
    images: Annotated[list[str], typer.Argument(help="One or more image files (- for standard input).", show_default=False)],
    foreground_threshold: Annotated[Optional[float], typer.Option("--foreground-threshold", help="Keep patches whose first component (scaled to [0, 1], border = background) is above this, and redo the PCA on them.", show_default=False)] = None,
    normalize: NormalizeOpt = None,
    png: PngOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
) -> None:
    import torch

    from vitcli.core.features import feature_pca_rgb
    from vitcli.errors import VitcliError
    from vitcli.io.paper_figures import pca_figure
    from vitcli.report import tensor_stats

    out = Output(output, as_json, quiet)
    if foreground_threshold is not None and not 0.0 <= foreground_threshold < 1.0:
        raise VitcliError("--foreground-threshold", f"{foreground_threshold} is outside [0, 1)")
    runs = run_images(images, image_opts, model_opts, normalize)
    grids = {r.grid for r in runs.results}
    if len(grids) > 1:
        raise VitcliError(images[1], f"the images give different patch grids {sorted(grids)}; give one --size for all")
    grid, prefix = runs.results[0].grid, runs.results[0].num_prefix
    features = torch.cat([r.output[:, prefix:] for r in runs.results])  # (B, N, D)
    with _guard("--foreground-threshold"):
        result = feature_pca_rgb(features.float().cpu(), grid, foreground_threshold)
    maps = _numpy(result.rgb)  # (B, rows, cols, 3)
    _save(out.output, maps)
    title = f"PCA of last-layer patch features, {runs.setup.config.name}" + (f", foreground > {foreground_threshold}" if foreground_threshold is not None else "")
    _figure(png, lambda: pca_figure([p.pixels for p in runs.prepared], maps, runs.setup.config.patch_size,
                                    [_name(i) for i in images], title))
    doc = {**runs.document("figures pca"), "foreground_threshold": foreground_threshold,
           "explained_variance_ratio": _numpy(result.explained).tolist(), "first_component_flipped": result.flipped,
           "tensors": {"pca_rgb": tensor_stats(maps), "first_component": tensor_stats(_numpy(result.first))},
           "outputs": {"array": out.output, "png": png}}
    rows = runs.rows(doc) + [("explained variance", ", ".join(f"{100 * v:.1f}%" for v in doc["explained_variance_ratio"]))]
    if result.foreground is not None:
        counts = result.foreground.flatten(1).sum(1).tolist()
        doc["foreground_patches"] = counts
        rows.append(("foreground patches", ", ".join(f"{c}/{grid[0] * grid[1]}" for c in counts)))
    from vitcli.report import stats_table

    _finish(out, doc, rows, stats_table("arrays", doc["tensors"]), warnings=runs.warnings)


# --- similar ----------------------------------------------------------------------------------------

SIMILAR_HELP = """Patch similarity: the cosine similarity of one query patch's features with every patch
of the same image, or of a second image (--to).

The query is --patch ROW,COL on the grid, or --pixel X,Y in the fitted image (x to the right,
y down), by default the centre patch. Features are the tokens after block --layer (0-based,
negative from the end; default -1, the last), through the model's final norm unless --no-norm
(at the last layer that is the encoder output). -o writes the (rows, cols) map.
"""
SIMILAR_EPILOG = "Example:  vitcli figures similar sample_images/chelsea.jpg --patch 5,6 --layer -1 --png similar.png -o similar.npy"


@app.command("similar", help=SIMILAR_HELP, epilog=SIMILAR_EPILOG, short_help="Cosine similarity of one patch with every patch, at a layer.")
@with_options(image_opts=ImageOptions, model_opts=ModelOptions)
def similar_command(
    image: ImageArg,
    to: Annotated[Optional[str], typer.Option("--to", help="Second image: compare the query with its patches instead.", show_default=False)] = None,
    patch: Annotated[Optional[str], typer.Option("--patch", help="Query patch ROW,COL (0-based; negative from the end).", show_default=False)] = None,
    pixel: Annotated[Optional[str], typer.Option("--pixel", help="Query pixel X,Y in the fitted image; its patch is the query.", show_default=False)] = None,
    layer: Annotated[int, typer.Option("--layer", help="Block whose output gives the features (0-based, negative from the end).")] = -1,
    norm: Annotated[bool, typer.Option("--norm/--no-norm", help="Pass the block output through the final norm.")] = True,
    normalize: NormalizeOpt = None,
    png: PngOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
) -> None:
    from vitcli.core.features import layer_features, patch_index, patch_similarity
    from vitcli.errors import VitcliError
    from vitcli.io.paper_figures import similarity_overlay_figure
    from vitcli.report import tensor_stats

    out = Output(output, as_json, quiet)
    if patch and pixel:
        raise VitcliError("--patch", "give --patch or --pixel, not both")
    runs = run_images([image] + ([to] if to else []), image_opts, model_opts, normalize, lambda c: _block_capture(c, layer))
    config = runs.setup.config
    depth = config.depth
    layer_i = layer % depth
    feats = [layer_features(r.blocks, layer_i, runs.model.norm if norm else None)[0] for r in runs.results]  # (T, D)
    q_grid, t_grid, prefix = runs.results[0].grid, runs.results[-1].grid, runs.results[0].num_prefix
    rc = _query(patch, pixel, q_grid, config.patch_size, runs.prepared[0].pixels.shape)
    with _guard("--patch" if not pixel else "--pixel"):
        index = patch_index(*rc, q_grid)
        sim = _numpy(patch_similarity(feats[0], feats[-1], index, prefix, t_grid))  # (rows, cols)
    rc = divmod(index, q_grid[1])
    _save(out.output, sim)
    title = f"Cosine similarity to patch ({rc[0]}, {rc[1]}), block {layer_i}{'' if norm else ' (no norm)'}, {config.name}"
    _figure(png, lambda: similarity_overlay_figure(runs.prepared[0].pixels, runs.prepared[-1].pixels, sim, rc,
                                                   config.patch_size, to is None, title))
    best = divmod(int(sim.argmax()), t_grid[1])
    doc = {**runs.document("figures similar"), "query": {"row": rc[0], "col": rc[1], "index": index},
           "target": to or image, "target_grid": list(t_grid), "layer": layer_i, "norm": norm,
           "most_similar": {"row": best[0], "col": best[1], "similarity": float(sim.max())},
           "tensors": {"similarity": tensor_stats(sim)}, "outputs": {"array": out.output, "png": png}}
    rows = runs.rows(doc) + [("query patch (row, col)", f"{rc[0]}, {rc[1]} (token {index + prefix})"),
                             ("features", f"block {layer_i} of 0..{depth - 1}" + (" + final norm" if norm else "")),
                             ("most similar patch", f"{best[0]}, {best[1]}: {sim.max():.4f}")]
    from vitcli.report import heatmap_text, stats_table

    _finish(out, doc, rows, stats_table("arrays", doc["tensors"]), heatmap_text(sim, colour=out.console.color_system is not None),
            warnings=runs.warnings)


def _block_capture(config: Any, layer: int) -> Any:
    """Block `layer`'s output alone: the blocks after it never run."""
    from vitcli.core.attention import resolve_indices
    from vitcli.core.capture import Capture

    with _guard("--layer"):
        return Capture(inputs=False, blocks=resolve_indices([layer], config.depth, "layer"), final="none")


def _query(patch: str | None, pixel: str | None, grid: tuple[int, int], patch_size: int, shape: tuple[int, ...]) -> tuple[int, int]:
    """(row, col) of the query: --patch, the patch under --pixel, or the centre patch."""
    from vitcli.errors import VitcliError

    option, text = ("--pixel", pixel) if pixel else ("--patch", patch)
    if text is None:
        return grid[0] // 2, grid[1] // 2
    try:
        a, b = (int(v) for v in text.split(","))
    except ValueError:
        raise VitcliError(option, f"'{text}' is not two integers {'X,Y' if pixel else 'ROW,COL'}") from None
    if not pixel:
        return a, b
    h, w = shape[:2]
    if not (0 <= a < w and 0 <= b < h):
        raise VitcliError("--pixel", f"{a},{b} is outside the {w}x{h} (width x height) fitted image")
    return b // patch_size, a // patch_size


# --- norms ------------------------------------------------------------------------------------------

NORMS_HELP = """High-norm tokens (Darcet et al. 2023, "Vision Transformers Need Registers"): the L2 norm of
every token after every block, and the patch tokens far above the rest.

A patch token is an outlier at a layer when its norm exceeds median + k·MAD of that layer's patch
norms (MAD = median |norm − median|, unscaled), or --norm-threshold for every layer. Each is
listed with its (row, col), norm, and the share of the class token's attention (mean over heads,
in the same block) that it takes. Register tokens are listed apart. -o writes the norms
(layers, tokens), tokens in model order: prefix (class, registers) first, then the patches.
"""
NORMS_EPILOG = "Example:  vitcli figures norms sample_images/chelsea.jpg --weights dinov2_reg.safetensors --png norms.png -o norms.npy"


@app.command("norms", help=NORMS_HELP, epilog=NORMS_EPILOG, short_help="High-norm tokens per layer and register tokens (Darcet et al. 2023).")
@with_options(image_opts=ImageOptions, model_opts=ModelOptions)
def norms_command(
    image: ImageArg,
    k: Annotated[float, typer.Option("--k", help="Outliers lie above median + k·MAD of the layer's patch-token norms.")] = 5.0,
    norm_threshold: Annotated[Optional[float], typer.Option("--norm-threshold", help="A fixed norm threshold for every layer instead of the MAD rule.", show_default=False)] = None,
    top: Annotated[int, typer.Option("--top", help="List at most this many outliers (largest norms first).")] = 20,
    normalize: NormalizeOpt = None,
    png: PngOpt = None,
    output: OutputOpt = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    *,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
) -> None:
    import torch

    from vitcli.core.features import class_attention_share, high_norm_tokens, mad_thresholds, token_norms
    from vitcli.io.paper_figures import norms_figure
    from vitcli.report import tensor_stats

    out = Output(output, as_json, quiet)
    runs = run_images([image], image_opts, model_opts, normalize, _norms_forward)
    r, config = runs.results[0], runs.setup.config
    norms = token_norms([b[0] for b in r.blocks.values()])  # (L, T)
    prefix, depth = r.num_prefix, norms.shape[0]
    thresholds = torch.full((depth,), norm_threshold, dtype=torch.float64) if norm_threshold is not None else mad_thresholds(norms[:, prefix:], k)
    outliers = high_norm_tokens(norms, prefix, thresholds)
    share = class_attention_share([a[0] for a in r.attentions.values()]) if r.attentions else None  # (L, T)
    array = _numpy(norms)
    _save(out.output, array)
    registers = range(int(config.class_token) + int(config.distilled), prefix)
    rule = f"> {norm_threshold:g}" if norm_threshold is not None else f"> median + {k:g}·MAD"
    _figure(png, lambda: norms_figure(array, prefix, config.class_token, registers, _numpy(thresholds), outliers,
                                      f"Token norms per layer, {config.name} (outliers {rule})"))
    listed = _outlier_rows(outliers, norms, share, prefix, r.grid)
    regs = [{"layer": l, "register": j, "token": t, "norm": float(norms[l, t]),
             "class_attention": None if share is None else float(share[l, t])}
            for l in range(depth) for j, t in enumerate(registers)]
    doc = {**runs.document("figures norms"), "rule": rule, "thresholds": _numpy(thresholds).tolist(),
           "outliers": listed, "registers": regs, "tensors": {"norms": tensor_stats(array)},
           "outputs": {"array": out.output, "png": png}}
    rows = runs.rows(doc) + [("outlier rule", rule), ("outliers (all layers)", str(len(listed)))]
    _finish(out, doc, rows, *_norm_tables(listed[:top], regs, len(listed)), warnings=runs.warnings)


def _norms_forward(config: Any) -> Any:
    """Every block's output, and the class token's attention row in every block (if it has one)."""
    from vitcli.core.capture import Capture

    every = range(config.depth)
    if config.class_token:
        return Capture(inputs=False, blocks=every, attention=every, queries=[0], final="none")
    return Capture(inputs=False, blocks=every, final="none")


def _outlier_rows(outliers: list[tuple[int, int]], norms: Any, share: Any, prefix: int, grid: tuple[int, int]) -> list[dict[str, Any]]:
    """One record per outlier, largest norm first."""
    rows = [{"layer": l, "row": p // grid[1], "col": p % grid[1], "token": p + prefix, "norm": float(norms[l, p + prefix]),
             "class_attention": None if share is None else float(share[l, p + prefix])} for l, p in outliers]
    return sorted(rows, key=lambda o: -o["norm"])


def _norm_tables(outliers: list[dict[str, Any]], regs: list[dict[str, Any]], total: int) -> list[Any]:
    """The outlier table and, for models with registers, the register table."""
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.2f}%"

    tables = [_table(f"high-norm patch tokens ({len(outliers)} of {total} shown)", ["layer", "row, col", "norm", "class attention"],
                     [[str(o["layer"]), f"{o['row']}, {o['col']}", o["norm"], pct(o["class_attention"])] for o in outliers])]
    if regs:
        tables.append(_table("register tokens", ["layer", "register", "norm", "class attention"],
                             [[str(g["layer"]), str(g["register"]), g["norm"], pct(g["class_attention"])] for g in regs]))
    return tables

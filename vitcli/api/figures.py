"""The classic ViT analyses on a `Model`: filters, pca, similar, norms (each: arrays, PNG, document)."""

from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from vitcli.api.documents import (
    FigureDoc,
    FiltersDoc,
    NormsDoc,
    OutlierRow,
    PcaDoc,
    RegisterRow,
    ShownTable,
    SimilarDoc,
    SimilarTextDoc,
)
from vitcli.api.images import ImageSource, image_keywords
from vitcli.api.results import FigureResult
from vitcli.api.text import TextMixin
from vitcli.api.values import keywords, one_layer
from vitcli.errors import VitcliError, option_errors

if TYPE_CHECKING:
    import numpy as np
    import torch

    from vitcli.api.base import ModelBase
    from vitcli.api.images import FittedImage, Images
    from vitcli.core.capture import Capture
    from vitcli.core.config import ViTConfig
    from vitcli.core.encoder import ViTOutput


def _numpy(t: "torch.Tensor") -> "np.ndarray":
    return t.detach().double().cpu().numpy()


def _who(model: "ModelBase") -> str:
    """The model as a picture's title names it: random weights say so, as what the picture shows is the layout."""
    return model.config.name + (f", {model.source}" if model.checkpoint is None else "")


def _write(output: str | None, array: "np.ndarray", png: str | None, draw: Callable[[], object]) -> None:
    """The array to `output` and the figure to `png` (drawn only when asked), each atomic."""
    if output:
        from vitcli.io.arrays import save_npy

        save_npy(output, array)
    if png:
        from vitcli.io.pictures import save_figure

        save_figure(png, draw())


def _name(path: str) -> str:
    from pathlib import Path

    return "<stdin>" if path == "-" else Path(path).name


MAD_K = 5.0  # `figures norms`' default rule: an outlier's norm exceeds median + MAD_K·MAD of its layer


class FiguresMixin(TextMixin):  # similar --text reads the text tower
    """`filters`, `pca`, `similar` and `norms` for `Model`."""

    def _forward_each(self, images: "ImageSource", normalize: str | None, capture: "Capture",
                      outputs: dict[str, str | None] | None = None
                      ) -> "tuple[list[FittedImage], list[ViTOutput], str]":
        """Fit every image as the model's commands do and run each alone (a batch of one), once the
        `outputs` (keyword → path) are known to be writable."""
        import torch

        fitted, norm = self._fit_each(images, normalize, outputs)
        with torch.inference_mode():
            outs = [self.module(self.batch_tensor([f]), capture=capture) for f in fitted]
        return fitted, outs, norm

    def _fit_each(self, images: "ImageSource", normalize: str | None,
                  outputs: dict[str, str | None] | None = None) -> "tuple[list[FittedImage], str]":
        """Every image fitted as the model's commands fit it, each forward pass (a batch of one) checked
        against the memory limit before any runs; the normalisation's name."""
        from vitcli.api.images import as_images
        from vitcli.api.runs import BatchSpec, _check_planned

        images = as_images(images)
        self.check_outputs(images, (), **(outputs or {}))
        self.resolve_grid(images)
        _check_planned(self, images, BatchSpec(batch_size=1), None)  # a fixed size: before any image is fitted
        prepare, norm, _ = self.preparer(images.spec, normalize)
        fitted = [prepare(item, name) for item, name in zip(images.items, images.names(), strict=True)]
        for f in fitted:
            self.check_memory(1, (int(f.pixels.shape[0]), int(f.pixels.shape[1])))
        return fitted, norm

    def _figure_document(self, command: str, fitted: "list[FittedImage]", out: "ViTOutput", norm: str) -> FigureDoc:
        doc = self._single_document(command, fitted[0], out.grid, norm)
        return {**doc, "inputs": [f.input_document() for f in fitted]}

    @keywords()
    def filters(self, *, count: int = 28, output: str | None = None,
                png: str | None = None) -> FigureResult[FiltersDoc]:
        """Patch-embedding filters (ViT fig. 7 left): the first `count` principal components (k, C, P, P)."""
        from vitcli.core.features import filter_components, tiles_for_display
        from vitcli.io.paper_figures import filters_figure
        from vitcli.stats import tensor_stats

        if count < 1:
            raise VitcliError("--count", f"must be at least 1, got {count}")
        self.check_outputs(output=output, png=png)
        weight = self._patch_weight()  # (D, C, P, P)
        comps, ratio = filter_components(weight, count)  # (k, C, P, P), (k,)
        array, explained = _numpy(comps), _numpy(ratio)
        title = f"Patch-embedding filters of {_who(self)}: first {len(array)} principal components"
        _write(output, array, png, lambda: filters_figure(_numpy(tiles_for_display(comps)), explained, title))
        doc: FiltersDoc = {"command": "figures filters", "input": None, "patch_size": self.config.patch_size,
               "model": self.document(), "weight_shape": list(weight.shape),
               "explained_variance_ratio": explained.tolist(), "tensors": {"components": tensor_stats(array)},
               "outputs": {"array": output, "png": png}}
        shown = [[str(i + 1), 100 * e, 100 * c] for i,
                 (e, c) in enumerate(zip(explained, explained.cumsum(), strict=True))][:10]
        table: ShownTable = {"title": f"principal components (first {len(shown)})",
                             "columns": ["PC", "variance %", "cumulative %"], "rows": shown}
        return FigureResult(array, doc, [table], warnings=list(self.warnings))

    def _patch_weight(self) -> "torch.Tensor":
        """The patch embedding's weight in float32; a preset's is drawn alone, not with the 86M others."""
        if self.checkpoint is None and self._module is None:
            from vitcli.core.presets import draw_tensor

            _, dtype = self.placement
            return draw_tensor(self.config, self.spec.seed, "patch_embed.proj.weight").to(dtype).float()
        return self.module.patch_embed.proj.weight.detach().float().cpu()

    @image_keywords("images")
    def pca(self, images: "ImageSource", *, foreground_threshold: float | None = None, normalize: str | None = None,
            output: str | None = None, png: str | None = None) -> FigureResult[PcaDoc]:
        """Feature PCA to RGB (DINOv2 fig. 1) over the images' last-layer patch tokens: (B, rows, cols, 3)."""
        import torch

        from vitcli.core.capture import Capture
        from vitcli.core.features import feature_pca_rgb
        from vitcli.io.paper_figures import pca_figure
        from vitcli.stats import tensor_stats

        if foreground_threshold is not None and not 0.0 <= foreground_threshold < 1.0:
            raise VitcliError("--foreground-threshold", f"{foreground_threshold} is outside [0, 1)")
        fitted, outs, norm = self._forward_each(images, normalize, Capture(inputs=False),
                                                 {"output": output, "png": png})
        grids = {o.grid for o in outs}
        if len(grids) > 1:
            raise VitcliError(fitted[1].loaded.path, f"the images give different patch grids {sorted(grids)}; "
                              "give one --size for all")
        grid, prefix = outs[0].grid, outs[0].num_prefix
        features = torch.cat([_kept(o.output, "output")[:, prefix:] for o in outs])  # (B, N, D)
        with option_errors("--foreground-threshold"):
            result = feature_pca_rgb(features.float().cpu(), grid, foreground_threshold)
        maps = _numpy(result.rgb)  # (B, rows, cols, 3)
        title = f"PCA of last-layer patch features, {_who(self)}" + (
            f", foreground > {foreground_threshold}" if foreground_threshold is not None else "")
        _write(output, maps, png, lambda: pca_figure([f.pixels for f in fitted], maps, self.config.patch_size,
                                                      [_name(f.loaded.path) for f in fitted], title))
        doc: PcaDoc = {**self._figure_document("figures pca", fitted, outs[0], norm),
               "foreground_threshold": foreground_threshold,
               "explained_variance_ratio": _numpy(result.explained).tolist(), "first_component_flipped": result.flipped,
               "tensors": {"pca_rgb": tensor_stats(maps), "first_component": tensor_stats(_numpy(result.first))},
               "outputs": {"array": output, "png": png}}
        if result.foreground is not None:
            doc["foreground_patches"] = result.foreground.flatten(1).sum(1).tolist()
        return FigureResult(maps, doc, images=fitted, warnings=list(self.warnings))

    @image_keywords("image", "to", layer=one_layer)
    def similar(self, image: "ImageSource", *, to: "ImageSource | None" = None,
                patch: str | tuple[int, int] | None = None,
                pixel: str | tuple[int, int] | None = None, layer: int = -1, norm: bool = True,
                normalize: str | None = None, output: str | None = None, png: str | None = None,
                text: str | None = None,
                tokenizer: str | None = None) -> FigureResult[SimilarDoc] | FigureResult[SimilarTextDoc]:
        """Cosine similarity of one patch's features (after block `layer`) with every patch: (rows, cols); with
        `text`, of every patch's feature in the joint image-text space with the prompt's text embedding."""
        from vitcli.core.attention import resolve_indices
        from vitcli.core.capture import Capture
        from vitcli.core.features import patch_index, patch_similarity
        from vitcli.io.paper_figures import similarity_overlay_figure
        from vitcli.stats import tensor_stats

        if patch is not None and pixel is not None:
            raise VitcliError("--patch", "give --patch or --pixel, not both")
        with option_errors("--layer"):
            layer_i = resolve_indices([layer], self.config.depth, "layer")[0]
        if text is not None:
            return self._similar_text(image, text, tokenizer, layer_i, norm, normalize, output, png,
                                      {"--to": to, "--patch": patch, "--pixel": pixel})
        if tokenizer is not None:
            raise VitcliError("--tokenizer", "reads the prompt of --text: use it with --text")
        sources = [image] + ([to] if to is not None else [])
        fitted, outs, norm_name = self._forward_each(_as_list(sources), normalize,
                                                     Capture(inputs=False, blocks=[layer_i], final="none"),
                                                     {"output": output, "png": png})
        import torch

        with torch.inference_mode():
            feats = [self._block_features(o, layer_i, norm) for o in outs]  # (T, D) each
        q_grid, t_grid, prefix = outs[0].grid, outs[-1].grid, outs[0].num_prefix
        rc = _query(patch, pixel, q_grid, self.config.patch_size, fitted[0].pixels.shape)
        with option_errors("--patch" if pixel is None else "--pixel"):
            index = patch_index(*rc, q_grid)
            sim = _numpy(patch_similarity(feats[0], feats[-1], index, prefix, t_grid))  # (rows, cols)
        rc = divmod(index, q_grid[1])
        title = (f"Cosine similarity to patch ({rc[0]}, {rc[1]}), block {layer_i}{'' if norm else ' (no norm)'}, "
                 f"{_who(self)}")
        _write(output, sim, png, lambda: similarity_overlay_figure(fitted[0].pixels, fitted[-1].pixels, sim, rc,
                                                                   self.config.patch_size, to is None, title))
        best = divmod(int(sim.argmax()), t_grid[1])
        doc: SimilarDoc = {**self._figure_document("figures similar", fitted, outs[0], norm_name),
               "query": {"row": rc[0], "col": rc[1], "index": index},
               "target": fitted[-1].loaded.path, "target_grid": list(t_grid), "layer": layer_i, "norm": norm,
               "most_similar": {"row": best[0], "col": best[1], "similarity": float(sim.max())},
               "tensors": {"similarity": tensor_stats(sim)}, "outputs": {"array": output, "png": png}}
        return FigureResult(sim, doc, heatmap=sim, images=fitted, warnings=list(self.warnings))

    def _similar_text(self, image: "ImageSource", text: str, tokenizer: str | None, layer: int, norm: bool,
                      normalize: str | None, output: str | None, png: str | None,
                      unused: dict[str, object]) -> FigureResult[SimilarTextDoc]:
        """figures similar --text: cos(each patch's feature through the final norm, the pooling head as its only key
        and the projection (core.text.patch_embeddings), the prompt's text embedding): a dense text map (rows, cols)."""
        import torch

        from vitcli.core.capture import Capture
        from vitcli.core.text import patch_embeddings
        from vitcli.io.pictures import overlay_figure
        from vitcli.stats import tensor_stats

        given = [opt for opt, v in unused.items() if v is not None]
        if given:
            raise VitcliError(given[0], "--text compares every patch with a prompt: give one or the other")
        if not norm:
            raise VitcliError("--no-norm",
                              "--text reads the features as the image embedding does: through the final norm")
        # (E,): first, before images
        embedding = torch.from_numpy(self.embed_text([text], tokenizer=tokenizer).array[0])
        fitted, outs, norm_name = self._forward_each(_as_list([image]), normalize,
                                                     Capture(inputs=False, blocks=[layer], final="none"),
                                                     {"output": output, "png": png})
        out = outs[0]
        with torch.inference_mode():
            tokens = self._block_features(out, layer, True)[out.num_prefix:]  # (N, D)
            joint = patch_embeddings(self.module, tokens[None], self.projects)[0].float()  # (N, E)
        if joint.shape[-1] != embedding.shape[-1]:
            raise VitcliError(self.spec.spec, f"its patch features are {joint.shape[-1]}-d and its text embedding "
                              f"{embedding.shape[-1]}-d: not one joint space")
        sim = _numpy(torch.nn.functional.cosine_similarity(joint, embedding.to(joint.device)[None], dim=-1)
                     .reshape(out.grid))  # (rows, cols)
        title = f"Cosine similarity to the text {text[:40]!r}, block {layer}, {self.config.name}"
        _write(output, sim, png, lambda: overlay_figure(fitted[0].pixels, sim[None], [f"text: {text[:40]}"], title,
                                                        label="Cosine similarity"))
        best = divmod(int(sim.argmax()), out.grid[1])
        doc: SimilarTextDoc = {
            **self._figure_document("figures similar", fitted, out, norm_name), "query": {"text": text},
            "layer": layer, "norm": True, "joint_space": "projected" if self.projects else "pooled",
            "most_similar": {"row": best[0], "col": best[1], "similarity": float(sim.max())},
            "tensors": {"similarity": tensor_stats(sim)}, "outputs": {"array": output, "png": png}}
        return FigureResult(sim, doc, heatmap=sim, images=fitted, warnings=list(self.warnings))

    def _block_features(self, out: "ViTOutput", layer: int, norm: bool) -> "torch.Tensor":
        """Block `layer`'s output of the one image, through the final norm when asked: (T, D)."""
        x = out.blocks[layer]  # (1, T, D)
        return (self.module.norm(x) if norm else x)[0]

    @image_keywords("image")
    def norms(self, image: "ImageSource", *, k: float | None = None, norm_threshold: float | None = None, top: int = 20,
              normalize: str | None = None, output: str | None = None,
              png: str | None = None) -> FigureResult[NormsDoc]:
        """Token norms after every block (layers, tokens) and high-norm outliers (Darcet et al. 2023)."""
        from vitcli.api.ranges import check_ranges, refuse_unused

        check_ranges(k=k, norm_threshold=norm_threshold, top=top)
        if norm_threshold is not None:
            refuse_unused("the MAD rule (no --norm-threshold)", {"--k": k})
        k = MAD_K if k is None else k
        fitted, outs, norm_name = self._forward_each(_as_list([image]), normalize, _norms_capture(self.config),
                                                     {"output": output, "png": png})
        return self._norms_of(fitted, outs[0], norm_name, k, norm_threshold, top, output, png)

    def _norms_of(self, fitted: "list[FittedImage]", out: "ViTOutput", norm_name: str, k: float,
                  norm_threshold: float | None, top: int, output: str | None,
                  png: str | None) -> FigureResult[NormsDoc]:
        """`norms` from a forward pass that kept `_norms_capture` (view shares that pass with its similarity maps)."""
        import torch

        from vitcli.core.features import high_norm_tokens, mad_thresholds, token_norms
        from vitcli.io.paper_figures import norms_figure
        from vitcli.stats import tensor_stats

        c = self.config
        blocks = [out.blocks[i] for i in range(c.depth)]
        norms = token_norms([b[0] for b in blocks])  # (L, T)
        prefix, depth = out.num_prefix, norms.shape[0]
        thresholds = (torch.full((depth,), norm_threshold, dtype=torch.float64) if norm_threshold is not None
                      else mad_thresholds(norms[:, prefix:], k))
        outliers = high_norm_tokens(norms, prefix, thresholds)
        share = _attention_share(c, out)  # (L, T), NaN where the row is not defined
        array = _numpy(norms)
        registers = range(int(c.class_token) + int(c.distilled), prefix)
        rule = f"> {norm_threshold:g}" if norm_threshold is not None else f"> median + {k:g}·MAD"
        _write(output, array, png, lambda: norms_figure(array, prefix, c.class_token, registers, _numpy(thresholds),
                                                         outliers,
                                                         f"Token norms per layer, {_who(self)} (outliers {rule})"))
        listed = _outlier_rows(outliers, norms, share, prefix, out.grid)
        regs: list[RegisterRow] = [{"layer": i, "register": j, "token": t, "norm": float(norms[i, t]),
                 "class_attention": _share(share, i, t)}
                for i in range(depth) for j, t in enumerate(registers)]
        doc: NormsDoc = {**self._figure_document("figures norms", fitted, out, norm_name), "rule": rule,
               "attention_row": _attention_row(c),
               "thresholds": _numpy(thresholds).tolist(), "outliers": listed, "registers": regs,
               "tensors": {"norms": tensor_stats(array)}, "outputs": {"array": output, "png": png}}
        return FigureResult(array, doc, _norm_tables(listed[:top], regs, len(listed), _attention_row(c)), images=fitted,
                            warnings=list(self.warnings))


def _kept(value: "torch.Tensor | None", name: str) -> "torch.Tensor":
    """A tensor the forward pass's Capture asked for (`name`), present by construction."""
    if value is None:
        raise ValueError(f"the forward pass kept no {name}")
    return value


def _as_list(sources: "list[ImageSource]") -> "Images":
    """Several sources as one `Images` in the order given (not sorted: the query image comes first)."""
    from vitcli.api.images import Images, as_images

    parts = [as_images(s) for s in sources]
    return Images([i for p in parts for i in p.items], len(sources) > 1, parts[0].spec)


def _query(patch: str | tuple[int, int] | None, pixel: str | tuple[int, int] | None, grid: tuple[int, int],
           patch_size: int, shape: tuple[int, ...]) -> tuple[int, int]:
    """(row, col) of the query: `patch`, the patch under `pixel` (x, y), or the centre patch."""
    option, value = ("--pixel", pixel) if pixel is not None else ("--patch", patch)
    if value is None:
        return grid[0] // 2, grid[1] // 2
    try:
        a, b = (int(v) for v in (value.split(",") if isinstance(value, str) else value))
    except (TypeError, ValueError):
        raise VitcliError(option,
                          f"'{value}' is not two integers {'X,Y' if pixel is not None else 'ROW,COL'}") from None
    if pixel is None:
        return a, b
    h, w = shape[:2]
    if not (0 <= a < w and 0 <= b < h):
        raise VitcliError("--pixel", f"{a},{b} is outside the {w}x{h} (width x height) fitted image")
    return b // patch_size, a // patch_size


def _outlier_rows(outliers: list[tuple[int, int]], norms: "torch.Tensor", share: "torch.Tensor | None", prefix: int,
                  grid: tuple[int, int]) -> list[OutlierRow]:
    """One record per outlier, largest norm first."""
    rows: list[OutlierRow] = [{"layer": i, "row": p // grid[1], "col": p % grid[1], "token": p + prefix,
             "norm": float(norms[i, p + prefix]),
             "class_attention": _share(share, i, p + prefix)} for i, p in outliers]
    return sorted(rows, key=lambda o: -o["norm"])


def _attention_row(c: "ViTConfig") -> str | None:
    """Whose attention share `figures norms` lists: the class token's, else the probe's, else the patch rows' mean."""
    from vitcli.api.selection import default_query

    return default_query(c) if c.class_token or c.pooling in ("map", "mean") else None


def _norms_capture(c: "ViTConfig") -> "Capture":
    """Every block's output, and the attention row of `_attention_row`: the class token's row or the patch
    rows' mean of every layer ({"row": (B, H, T)} reduced; the weights' queries only the class token's), or
    the probe's weights over the final tokens."""
    from vitcli.core.capture import Capture
    from vitcli.core.inspect import attention_row_reducer

    layers, row = list(range(c.depth)), _attention_row(c)
    if row == "probe":
        return Capture(inputs=False, blocks=layers, final="pooled", pool_attention=True)
    if row is None:
        return Capture(inputs=False, blocks=layers, final="none")
    return Capture(inputs=False, blocks=layers, reduce=layers, reducer=attention_row_reducer(row, c.num_prefix_tokens),
                   queries=[0], final="none")


def _attention_share(c: "ViTConfig", out: "ViTOutput") -> "torch.Tensor | None":
    """(L, T) share of the row's attention each token takes (mean over heads), NaN where the row does not
    exist (the probe reads the final tokens only: its share is the last layer's); None without a row."""
    import torch

    from vitcli.core.features import class_attention_share

    row = _attention_row(c)
    if row in ("cls", "mean"):
        rows = [cast("dict[str, torch.Tensor]", out.reduced[i])["row"][0] for i in range(c.depth)]  # (H, T) each
        if row == "cls":
            return class_attention_share([r[:, None] for r in rows])
        return torch.stack([r.mean(0) for r in rows])
    if row == "probe":
        probe = _kept(out.pool_attention, "pool_attention")  # (1, H, 1, T)
        share = torch.full((c.depth, probe.shape[-1]), float("nan"), dtype=torch.float64)
        share[-1] = probe[0, :, 0].double().mean(0)
        return share
    return None


def _share(share: "torch.Tensor | None", layer: int, token: int) -> float | None:
    value = None if share is None else float(share[layer, token])
    return None if value is None or value != value else value


def _norm_tables(outliers: list[OutlierRow], regs: list[RegisterRow], total: int,
                 row: str | None = "cls") -> list[ShownTable]:
    """The outlier table and, for models with registers, the register table."""
    who = {"cls": "class attention", "probe": "probe attention", "mean": "patch-mean attention"}[row or "cls"]
    def pct(v: float | None) -> str:
        return "–" if v is None else f"{100 * v:.2f}%"

    tables: list[ShownTable] = [{"title": f"high-norm patch tokens ({len(outliers)} of {total} shown)",
               "columns": ["layer", "row, col", "norm", who],
               "rows": [[str(o["layer"]), f"{o['row']}, {o['col']}", o["norm"],
                         pct(o["class_attention"])] for o in outliers]}]
    if regs:
        tables.append({"title": "register tokens", "columns": ["layer", "register", "norm", who],
                       "rows": [[str(g["layer"]), str(g["register"]), g["norm"],
                                 pct(g["class_attention"])] for g in regs]})
    return tables

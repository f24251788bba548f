"""`Model.explain`: which patches made the model give an output (a class logit, a similarity).

Methods and their formulas are in `vitcli.core.explain`. The map is (rows, cols) on the input's
true grid, float32, unnormalised; several images give (B, rows, cols) rows streamed to `output`
with an index (score and class per image). `method="all"` stacks the four maps of ALL_METHODS
(4, rows, cols), as it always has: legrad (its maps min-max scaled to [0, 1], its start layer its own)
is asked for by name.
"""

from typing import TYPE_CHECKING

import numpy as np

from vitcli.api.base import ModelBase
from vitcli.api.documents import ExplainBatchDoc, ExplainDoc, ExplainImage, ExplainSummary, TopPatch
from vitcli.api.images import ImageSource, image_keywords
from vitcli.api.results import ExplainResult
from vitcli.api.text import TextMixin
from vitcli.api.values import one_layer
from vitcli.errors import VitcliError, option_errors

if TYPE_CHECKING:
    import torch

    from vitcli.api.images import FittedImage, ImageSpec
    from vitcli.api.runs import BatchSpec, ModelRun, Progress
    from vitcli.core.explain import Target

METHOD_NAMES = ("grad-rollout", "attn-grad", "gradcam", "rollout", "legrad")
ALL_METHODS = ("grad-rollout", "attn-grad", "gradcam", "rollout")  # what `all` stacks, in this order (not legrad)
TARGET_HELP = "top, class:N, class:NAME, image:OTHER, patch:R,C or text:PROMPT"
TOP_PATCHES = 5


def parse_target(model: TextMixin, text: str | int, spec: "ImageSpec", normalize: str | None,
                 method: str = "grad-rollout") -> "tuple[Target, str]":
    """--target text (a bare N is class:N) → a core `Target` and its canonical label; image:OTHER is read
    and embedded here. `top` on a model without a head stands only for `--method rollout` (attention alone)."""
    from vitcli.core.explain import Target

    text = target_form(text)
    kind, _, arg = text.partition(":")
    c = model.config
    if kind in ("top", "class"):
        if kind == "top" and not arg and method == "rollout":
            return Target("top"), "top"  # rollout reads no output: the score is given when there is one
        if not c.num_classes or c.pooling == "none":
            raise VitcliError("--target", f"{kind} explains a classifier logit and this model has no head: "
                              "use image:OTHER or patch:R,C")
        if kind == "top":
            return Target("top"), "top"
        n = _class_index(model, text, arg)
        if not 0 <= n < c.num_classes:
            raise VitcliError("--target",
                              f"class {n} is outside the head's {c.num_classes} classes (0..{c.num_classes - 1})")
        return Target("class", n), f"class:{n}"
    if kind == "image":
        return Target("image", other=_other_embedding(model, arg, spec, normalize)), f"image:{arg}"
    if kind == "text":
        return Target("text", other=text_embedding(model, arg)), f"text:{arg}"
    r, col = (int(p) for p in arg.split(","))  # patch:R,C, its form checked by target_form
    return Target("patch", (r, col)), f"patch:{r},{col}"


def target_form(text: str | int) -> str:
    """A target's text checked for its form alone (no model needed): a bare N (or int) is class:N; a negative
    class, an unknown kind or a kind without its argument is the one-line error naming --target."""
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise VitcliError("--target", f"{text!r:.40} is not a target: use {TARGET_HELP}")
    from vitcli.core.select import whole

    text = str(text).strip()
    if whole(text) is not None:
        text = f"class:{text}"
    kind, _, arg = text.partition(":")
    if kind == "class" and (whole(arg) or 0) < 0:
        raise VitcliError("--target", f"class {arg.strip()} is negative: classes count from 0")
    if (kind not in ("top", "class", "image", "patch", "text") or (kind != "top" and not arg.strip())
            or (kind == "top" and arg)):
        raise VitcliError("--target", f"'{text}' is not one of {TARGET_HELP}")
    parts = arg.split(",")
    if kind == "patch" and (len(parts) != 2 or not all(whole(p, signed=False) is not None for p in parts)):
        raise VitcliError("--target", f"'{text}': patch:R,C takes a row and a column, such as patch:3,5")
    return text


def _class_index(model: "ModelBase", text: str, arg: str) -> int:
    """class:N, or class:NAME looked up in the checkpoint's labels (one class must match)."""
    from vitcli.core.select import whole

    index = whole(arg)
    if index is not None:
        return index
    if not arg.strip():
        raise VitcliError("--target", f"'{text}': class:N takes a class index N or a label name")
    if not model.labels:
        raise VitcliError("--target", f"'{text}': this checkpoint names no classes (no id2label / label_names in "
                          "its config.json): give class:N")
    found = model.find_class(arg)
    if len(found) != 1:
        what = "no class is" if not found else f"{len(found)} classes are ({', '.join(map(str, found[:5]))})"
        raise VitcliError("--target", f"'{text}': {what} labelled '{arg.strip()}'; give class:N")
    return found[0]


def text_embedding(model: TextMixin, prompt: str) -> "torch.Tensor":
    """The prompt's text embedding (E,) in the joint space, unnormalised (a float32 torch tensor on the model's
    device): what a text:PROMPT target's y = cos(projected pooled image embedding, ·) compares with."""
    import torch

    embedding = model.embed_text([prompt]).array[0]  # (E,)
    return torch.from_numpy(embedding).to(model.device)


def _other_embedding(model: "ModelBase", path: str, spec: "ImageSpec", normalize: str | None) -> "torch.Tensor":
    """The pooled embedding (D,) of image:OTHER, fitted like the images explained."""
    from vitcli.core.explain import pooled_embedding

    if model.config.pooling == "none":
        raise VitcliError("--target", "image: compares pooled embeddings, and this model has none (pooling none)")
    planned = model.planned_size(path, spec)
    if planned is not None:  # before OTHER is decoded
        model.check_memory(1, planned, source=f"--target image:{path}")
    prepare, _, _ = model.preparer(spec, normalize)
    fitted = prepare(path, path)
    h, w = fitted.pixels.shape[:2]
    model.check_memory(1, (int(h), int(w)), source=f"--target image:{path}")  # before OTHER's forward pass
    with option_errors("--target"):
        return pooled_embedding(model.module, model.batch_tensor([fitted]))


# the methods that read each option (besides `all`)
USED_BY = {"--start-layer": ("grad-rollout", "attn-grad", "rollout", "legrad"), "--layer": ("gradcam",),
           "--discard-ratio": ("attn-grad", "rollout")}


def _settle(method: str, start_layer: int | None, layer: int | None,
            discard_ratio: float | None) -> tuple[int, int, float]:
    """Refuse an option given that `method` ignores; (start_layer, layer, discard_ratio), defaults filled in."""
    from vitcli.api.ranges import refuse_unused

    for option, value in (("--start-layer", start_layer), ("--layer", layer), ("--discard-ratio", discard_ratio)):
        if method != "all" and method not in USED_BY[option]:
            refuse_unused(f"--method {', '.join(USED_BY[option])} or all", {option: value})
    return start_layer or 0, -1 if layer is None else layer, discard_ratio or 0.0


def _check(model: "ModelBase", start_layer: int, layer: int, discard_ratio: float) -> None:
    """Options wrong for every image (used or not by the method), refused before any image is read."""
    depth = model.config.depth
    if not -depth <= layer < depth:
        raise VitcliError("--layer",
                          f"layer {layer} is outside the model's {depth} blocks (0..{depth - 1}, or negative from the "
                          "end)")
    if not 0 <= start_layer < depth:
        raise VitcliError("--start-layer", f"start layer {start_layer} is outside 0..{depth - 1}")
    if not 0 <= discard_ratio < 1:
        raise VitcliError("--discard-ratio", f"{discard_ratio} is outside [0, 1)")


def top_patches(grid_map: np.ndarray, k: int = TOP_PATCHES) -> list[TopPatch]:
    """The k strongest patches of a (rows, cols) map, strongest first."""
    flat = grid_map.reshape(-1)
    order = np.argsort(-flat, kind="stable")[:k]
    cols = grid_map.shape[1]
    return [{"row": int(i // cols), "col": int(i % cols), "value": float(flat[i])} for i in order]


def summary(method: str, target: str, maps: np.ndarray, score: float, klass: int | None,
            labels: dict[int, str] | None = None) -> ExplainSummary:
    """The `explain` JSON object of one image: method, target, score, class (with its label when the
    checkpoint names it), top patches (per method for all)."""
    doc: ExplainSummary = {"method": method, "target": target, "score": None if np.isnan(score) else float(score)}
    if klass is not None:
        doc["class"] = int(klass)
        if labels and int(klass) in labels:
            doc["label"] = labels[int(klass)]
    if method == "all":
        doc["methods"] = [{"method": m, "top_patches": top_patches(maps[i])} for i, m in enumerate(ALL_METHODS)]
    else:
        doc["top_patches"] = top_patches(maps)
    return doc


class ExplainMixin(TextMixin):  # a text:PROMPT target reads the text tower
    """`explain` for `Model`."""

    @image_keywords("images", layer=one_layer)
    def explain(self, images: "ImageSource", *, method: str = "grad-rollout", target: str | int = "top",
                start_layer: int | None = None,
                layer: int | None = None, discard_ratio: float | None = None, normalize: str | None = None,
                output: str | None = None, output_dir: str | None = None, overlay: str | None = None,
                batch: "BatchSpec | None" = None, keep: bool = True,
                progress: "Progress | None" = None) -> ExplainResult:
        """The map of `method` for `target` on one image ((rows, cols)), or on many ((B, rows, cols),
        streamed to `output` or one file each in `output_dir`, with an index). `overlay` draws one
        image's map(s) as PNG. `method="legrad"` gives maps min-max scaled to [0, 1] and is not part of "all".
        `start_layer` (default 0, every block; LeGrad's own default is the last two), `layer` (-1) and
        `discard_ratio` (0) given to a method that ignores them (see USED_BY) are a UsageError."""
        from vitcli.api.images import as_images
        from vitcli.api.runs import BatchSpec, run_model
        from vitcli.core.explain import explain as explain_maps

        images = as_images(images)
        self.check_outputs(images, [str(target)[len("image:"):]] if str(target).startswith("image:") else [],
                           output=output, output_dir=output_dir, overlay=overlay)
        if method not in (*METHOD_NAMES, "all"):
            raise VitcliError("--method", f"'{method}' is not one of {', '.join(METHOD_NAMES)}, all")
        methods = list(ALL_METHODS) if method == "all" else [method]
        _check(self, start_layer or 0, -1 if layer is None else layer, discard_ratio or 0.0)
        start_layer, layer, discard_ratio = _settle(method, start_layer, layer, discard_ratio)
        if images.many and overlay:
            raise VitcliError("--overlay", "draws one image's map: give one image (several images take -o)")
        self.resolve_grid(images)
        core_target, label = parse_target(self, target, images.spec, normalize, method)
        found: list[ExplainSummary] = []
        waiting: list[ExplainSummary] = []  # summaries of the batch just computed, for its index lines

        def compute(x: "torch.Tensor") -> dict[str, np.ndarray]:
            with option_errors("--target"):
                outs = [explain_maps(self.module, x, m, core_target, start_layer, layer, discard_ratio)
                        for m in methods]
            maps, first = [out.maps.cpu().numpy() for out in outs], outs[0]
            stacked = maps[0] if len(maps) == 1 else np.stack(maps, axis=1)  # (b, rows, cols) or (b, 4, rows, cols)
            klass = first.klass.cpu().numpy() if first.klass is not None else [None] * len(stacked)
            for i in range(len(stacked)):
                found.append(summary(method, label, stacked[i], float(first.score[i]), klass[i], self.labels))
                waiting.append(found[-1])
            return {"map": stacked.astype(np.float32)}

        def describe(fitted: "FittedImage") -> dict[str, ExplainSummary]:
            return {"explain": waiting.pop(0)}

        run = run_model(self, images, compute, main="map", normalize=normalize, batch=batch or BatchSpec(),
                        output=output if images.many else None, output_dir=output_dir, keep=keep and images.many,
                        progress=progress, describe=describe, backward=(method, discard_ratio > 0))
        if images.many:
            return self._explain_many(run, method, label)
        return self._explain_one(run, method, label, found[0], output, overlay, layer)

    def _explain_one(self, run: "ModelRun", method: str, label: str, found: ExplainSummary, output: str | None,
                     overlay: str | None, layer: int) -> ExplainResult:
        from vitcli.io.arrays import save_npy
        from vitcli.stats import tensor_stats

        maps = run.arrays["map"][0]
        fitted = run.fitted[0]
        p = self.config.patch_size
        grid = int(fitted.pixels.shape[0]) // p, int(fitted.pixels.shape[1]) // p
        if output:
            save_npy(output, maps)
        if overlay:
            _overlay_png(self, fitted, maps, method, label, found, overlay, layer)
        axes = ["methods", "rows", "cols"] if method == "all" else ["rows", "cols"]
        doc: ExplainDoc = {**self._single_document("explain", fitted, grid, run.normalize), "explain": found,
                           "axes": axes, "shape": list(maps.shape), "tensors": {"map": tensor_stats(maps)},
                           "outputs": {"array": output, "overlay": overlay}}
        if method == "all":
            doc["methods"] = list(ALL_METHODS)
        return ExplainResult(doc, maps, found["score"], fitted, list(self.warnings))

    def _explain_many(self, run: "ModelRun", method: str, label: str) -> ExplainResult:
        report = run.report
        grid = report.first_grid
        rows = [_image_row(e["path"], e["explain"]) for e in report.entries]
        axes = ["images", "methods", "rows", "cols"] if method == "all" else ["images", "rows", "cols"]
        doc: ExplainBatchDoc = {"command": "explain", **report.document(), "normalize": run.normalize,
               "patch_size": self.config.patch_size, "model": self.document(grid), "axes": axes,
               "explain": {"method": method, "target": label, "images": rows},
               "tensors": {"map": report.stats["map"].document()} if "map" in report.stats else {}}
        scores = np.array([np.nan if f["score"] is None else f["score"] for f in rows])
        return ExplainResult(doc, run.arrays.get("map"), scores, None, list(self.warnings))


def _image_row(path: str, found: ExplainSummary) -> ExplainImage:
    """One image of a run over many: its path, then its summary (from its index line)."""
    return {"path": path, **found}


def _overlay_png(model: "ModelBase", fitted: "FittedImage", maps: np.ndarray, method: str, label: str,
                 found: ExplainSummary,
                 path: str, layer: int) -> None:
    """The map over the image with a colour bar; method all: the four side by side, each scaled to [0, 1]."""
    from vitcli.io.pictures import overlay_figure, save_figure

    name = fitted.loaded.path if fitted.loaded.path != "-" else "<stdin>"
    score = "n/a" if found["score"] is None else f"{found['score']:.4g}"
    klass = f" (class {found['class']}{', ' + found['label'] if 'label' in found else ''})" if "class" in found else ""
    about = f"{name} ({fitted.pixels.shape[0]}×{fitted.pixels.shape[1]}), {model.config.name}, {model.source}"
    if method == "all":
        lo = maps.reshape(len(maps), -1).min(1)[:, None, None]
        hi = maps.reshape(len(maps), -1).max(1)[:, None, None]
        panels, titles = (maps - lo) / np.where(hi > lo, hi - lo, 1), list(ALL_METHODS)
        colour = "Relevance (each map scaled to [0, 1])"
    else:
        panels, titles = maps[None], [""]
        colour = "Relevance (min-max scaled to [0, 1])" if method == "legrad" else "Relevance"
    at = f" (layer {layer % model.config.depth})" if method == "gradcam" else ""
    what = "all methods" if method == "all" else method + at
    title = f"explain {what}: target {label}{klass}, score {score}\n{about}"
    save_figure(path, overlay_figure(fitted.pixels, panels, titles, title, patch_size=model.config.patch_size,
                                     label=colour))


__all__ = ["ALL_METHODS", "METHOD_NAMES", "ExplainMixin", "ExplainResult", "parse_target", "summary", "top_patches"]

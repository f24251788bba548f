"""`Model.compare`: how alike two models' (or one model's) layers are on the same images.

Both models see each image through their own preprocessing; each batch runs one forward pass per
model that keeps every chosen block (`LayerCompute`). CKA streams (Nguyen et al. 2021's minibatch
estimator, `core.similarity.MinibatchCKA`): memory follows the batch, not the number of images.
`exact=True` and the kNN metrics (mutual-knn, cknna, svcca) hold every image's features, N × D per
layer, checked against the memory limit before any forward pass.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from vitcli.api.display import ShowsItself
from vitcli.api.documents import BestMatch, CompareDoc, CompareFeaturesDoc, Matrices
from vitcli.api.images import image_keywords
from vitcli.api.values import choice, flag, keywords, model_spec, number, path
from vitcli.api.values import layers as layers_parser
from vitcli.errors import UsageError, VitcliError

if TYPE_CHECKING:
    import torch

    from vitcli.api.base import ModelBase
    from vitcli.api.images import FittedImage, Images, ImageSource
    from vitcli.api.layers import LayerCompute
    from vitcli.api.models import Model
    from vitcli.api.runs import BatchReport, BatchSpec, Progress

PATCH_ROWS = 1024  # rows of one CKA minibatch with --tokens patches (each patch is a sample)
MIN_SAMPLES = 4  # HSIC₁ divides by n(n−3)


@dataclass
class CompareResult(ShowsItself):
    """The (LA, LB) similarity of each metric, the layers compared, and the JSON document."""

    similarity: np.ndarray  # (LA, LB), or (metrics, LA, LB) for several metrics, in the order given
    metrics: list[str]
    layers_a: list[int]
    layers_b: list[int]
    document: "CompareDoc | CompareFeaturesDoc"
    warnings: list[str] = field(default_factory=list)
    MAP: ClassVar[str | None] = "first"

    @property
    def first(self) -> tuple[str, np.ndarray]:
        """The first metric's (LA, LB) matrix with its name (what a notebook shows)."""
        matrix = self.similarity if self.similarity.ndim == 2 else self.similarity[0]
        return self.metrics[0], matrix

    def to_json(self) -> "CompareDoc | CompareFeaturesDoc":
        return self.document


def metric_list(metric: str | Sequence[str]) -> list[str]:
    """'cka', 'cka,svcca' or a list → the metrics in the order given, each checked."""
    from vitcli.core.similarity import METRICS

    names = [m.strip() for m in (metric.split(",") if isinstance(metric, str) else metric)]
    for name in names:
        if name not in METRICS:
            raise VitcliError("--metric", f"'{name}' is not one of {', '.join(METRICS)}")
    if not names or len(set(names)) != len(names):
        raise VitcliError("--metric", "give each metric once: " + ", ".join(METRICS))
    return names


def _metric(name: str, value: object) -> str | list[str]:
    """keywords' parser for `metric`: text or a list of names."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    raise VitcliError("--metric", f"{value!r:.60} is not a metric name or a list of them")


def _other(name: str, value: object) -> "str | Model | None":
    """keywords' parser for `with_model`: None (the model with itself) or a model spec."""
    return None if value is None else model_spec(name, value)


@dataclass
class Plan:
    """What compare computes, decided before any forward pass."""

    metrics: list[str]
    tokens: str
    layers_a: list[int]
    layers_b: list[int]
    samples: int  # rows per layer: images, or images × patches
    hold: bool  # every image's features kept (exact, or a kNN metric)
    exact: bool
    topk: int
    cca_dim: int


class CompareMixin:
    """`compare` for `Model`."""

    @image_keywords("images", with_model=_other, metric=_metric, tokens=choice(("cls", "mean", "pooled", "patches")),
              layers_b=layers_parser, topk=number(1, whole=True), cca_dim=number(1, whole=True), exact=flag, plot=path)
    def compare(self: "Model", images: "ImageSource", *, with_model: "str | Model | None" = None,
                metric: str | Sequence[str] = "cka", tokens: str | None = None, layers: str | Sequence[int] = "all",
                layers_b: str | Sequence[int] = "all", topk: int = 10, cca_dim: int = 10, exact: bool = False,
                normalize: str | None = None, output: str | None = None, plot: str | None = None,
                batch: "BatchSpec | None" = None, progress: "Progress | None" = None) -> CompareResult:
        """Layer × layer similarity of this model (A) and `with_model` (B; default A itself) on `images`:
        `metric` one or several of cka, unbiased-cka, mutual-knn, cknna, svcca; `tokens` cls | mean |
        pooled | patches; `output` the (LA, LB) matrix ((metrics, LA, LB) for several) as .npy; `plot`
        the heatmap as PNG."""
        from vitcli.api.images import as_images
        from vitcli.api.layers import choose_layers, choose_tokens
        from vitcli.api.outputs import check_outputs_first
        from vitcli.api.runs import BatchSpec

        images = replace(as_images(images), many=True)
        other = self if with_model is None else _load_other(self, with_model)
        metrics = metric_list(metric)
        chosen = choose_tokens(tokens, [self] if other is self else [self, other])
        la = choose_layers(layers if isinstance(layers, str) else ",".join(map(str, layers)), self.config.depth)
        lb = choose_layers(layers_b if isinstance(layers_b, str) else ",".join(map(str, layers_b)),
                           other.config.depth, "--layers-b")
        check_outputs_first({"output": output, "plot": plot},
                            inputs=[self.spec.spec, other.spec.spec, *images.items])
        plan = _plan(self, other, images, metrics, chosen, la, lb, exact, topk, cca_dim)
        batch = (batch or BatchSpec()).checked()
        _check_held(self, other, plan, images)
        values, report = _run(self, other, images, plan, normalize, batch, progress)
        matrix = np.stack([values[m] for m in metrics]) if len(metrics) > 1 else values[metrics[0]]
        doc = _document(self, other, plan, matrix, report, output, plot)
        pair = f"{short_name(self)} with itself" if other is self else f"A {short_name(self)} vs B {short_name(other)}"
        _write(matrix, la, lb, output, plot, f"{metrics[0]} of layer features ({plan.tokens}), {pair}, "
               f"{report.done} images", metrics[0])
        return CompareResult(matrix, metrics, la, lb, doc,
                             list(self.warnings) + (list(other.warnings) if other is not self else []))


@keywords(features=path, features_b=path, metric=_metric, layers_b=layers_parser, topk=number(1, whole=True),
          cca_dim=number(1, whole=True), exact=flag, plot=path, batch_size=number(1, whole=True))
def compare_features(features: str, features_b: str | None = None, *, metric: str | Sequence[str] = "cka",
                     layers: str | Sequence[int] = "all", layers_b: str | Sequence[int] = "all", topk: int = 10,
                     cca_dim: int = 10, exact: bool = False, output: str | None = None, plot: str | None = None,
                     batch_size: int = 16) -> CompareResult:
    """`compare` on features written before by `embed --stage layers` (a .parquet file or a folder of
    shards) instead of running models: A's, and B's (default A with itself), the same images in both."""
    from vitcli.api.outputs import check_outputs_first
    from vitcli.io.parquet import count_rows, layer_files, layer_meta, layer_rows

    files_a = layer_files(features)
    files_b = layer_files(features_b) if features_b else files_a
    meta_a, meta_b = layer_meta(files_a), layer_meta(files_b)
    if meta_a.get("tokens") != meta_b.get("tokens"):
        raise VitcliError("--features", f"A's files hold {meta_a.get('tokens')} tokens, B's {meta_b.get('tokens')}")
    la = _stored(layers, meta_a, "--layers")
    lb = _stored(layers_b, meta_b, "--layers-b")
    check_outputs_first({"output": output, "plot": plot}, inputs=[*files_a, *files_b])
    metrics = metric_list(metric)
    n = count_rows(files_a)
    plan = Plan(metrics, str(meta_a.get("tokens")), la, lb, n,
                exact or any(m not in ("cka", "unbiased-cka") for m in metrics), exact, topk, cca_dim)
    _check_plan_counts(plan, n, min(meta_a["model"]["dim"], meta_b["model"]["dim"]))
    same = features_b is None and la == lb
    consumer = _Features(plan, same, batch_size)
    wanted_a = la if features_b else sorted(set(la) | set(lb))  # A with itself: read each column once
    chunks_b = layer_rows(files_b, batch_size, lb) if features_b else None
    read = 0
    for paths, rows in layer_rows(files_a, batch_size, wanted_a):  # (b, layers read, D)
        xs = [torch_rows(rows[:, wanted_a.index(i)]) for i in la]
        if chunks_b is None:
            ys = xs if same else [torch_rows(rows[:, wanted_a.index(i)]) for i in lb]
        else:
            paths_b, rows_b = next(chunks_b, ([], np.zeros((0,))))
            if paths_b != paths:
                raise VitcliError("--features", f"A's and B's files hold different images ({paths[0]!r} and "
                                  f"{(paths_b or ['nothing'])[0]!r} at row {read}): embed the same images for both")
            ys = [torch_rows(rows_b[:, j]) for j in range(len(lb))]
        consumer.add(xs, ys)
        read += len(paths)
    values = consumer.results()
    matrix = np.stack([values[m] for m in metrics]) if len(metrics) > 1 else values[metrics[0]]
    doc: CompareFeaturesDoc = {
        "command": "compare", "features": [features] + ([features_b] if features_b else []), "images": read,
        "processed": read, "metrics": metrics, "tokens": plan.tokens, "samples": read, "layers_a": la, "layers_b": lb,
        "self": features_b is None, "cka_estimator": _estimator(plan), "topk": topk, "cca_dim": cca_dim,
        "shape": list(matrix.shape), **_matrices(plan, matrix, features_b is None),
        "model_a": meta_a["model"], "model_b": meta_b["model"], "outputs": {"array": output, "plot": plot},
    }
    _write(matrix, la, lb, output, plot, f"{metrics[0]} of stored layer features ({plan.tokens}), {read} images",
           metrics[0])
    return CompareResult(matrix, metrics, la, lb, doc)


def torch_rows(rows: np.ndarray) -> "torch.Tensor":
    """(b, D) float32 numpy → torch (no copy)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(rows))


def _stored(text: str | Sequence[int], meta: dict[str, Any], option: str) -> list[int]:
    """The layers asked for among those the files hold (block indices of the model that wrote them)."""
    from vitcli.api.layers import choose_layers

    stored = list(meta["layers"])
    wanted = stored if text == "all" else choose_layers(text if isinstance(text, str) else ",".join(map(str, text)),
                                                       int(meta["model"]["depth"]), option)
    missing = [i for i in wanted if i not in stored]
    if missing:
        raise VitcliError(option, f"layer {missing[0]} is not in the files (they hold {', '.join(map(str, stored))})")
    return wanted


def _load_other(model: "Model", spec: "str | Model") -> "Model":
    """Model B: a loaded Model, or a spec (model_spec made paths str) loaded on A's device, dtype and memory limit."""
    return model.sibling(spec) if isinstance(spec, str) else spec


def short_name(model: "ModelBase") -> str:
    """A model's name for a title: its file's name, or the preset with 'random weights'."""
    from pathlib import Path

    if model.checkpoint is None:
        return f"{model.spec.spec} (random weights)"
    return Path(model.spec.spec).name or model.spec.spec


def _plan(a: "Model", b: "Model", images: "Images", metrics: list[str], tokens: str, la: list[int], lb: list[int],
          exact: bool, topk: int, cca_dim: int) -> Plan:
    """The run's plan, with the usage errors a count of images or a size can show before any forward pass."""
    from vitcli.core.similarity import CKA_METRICS

    n = len(images)
    per = 1
    if tokens == "patches":
        ga, gb = _planned_grid(a, images), _planned_grid(b, images)
        if ga and gb and ga != gb:
            raise VitcliError("--tokens", f"patches makes every patch a sample, so both models need one grid: A's is "
                              f"{ga[0]}×{ga[1]}, B's {gb[0]}×{gb[1]} (give --size, or use cls, mean or pooled)")
        per = ga[0] * ga[1] if ga else 1
    plan = Plan(metrics, tokens, la, lb, n * per, False, exact, topk, cca_dim)
    _check_plan_counts(plan, n, min(a.config.dim, b.config.dim))
    plan.hold = exact or any(m not in CKA_METRICS for m in metrics)
    return plan


def _check_plan_counts(plan: Plan, images: int, widest: int) -> None:
    """The usage errors a count of images shows before anything runs: kNN's --topk, CKA's 4 samples, --cca-dim."""
    from vitcli.core.similarity import CKA_METRICS

    knn = [m for m in plan.metrics if m in ("mutual-knn", "cknna")]
    if knn and images < plan.topk + 1:
        raise UsageError("--topk", f"{knn[0]} finds {plan.topk} neighbours among the other images: it needs at least "
                         f"{plan.topk + 1} images, got {images}")
    if any(m in CKA_METRICS for m in plan.metrics) and plan.samples < MIN_SAMPLES:
        raise VitcliError("IMAGE", f"CKA needs at least {MIN_SAMPLES} samples (unbiased HSIC divides by n(n−3)); "
                          f"got {plan.samples}")
    if "svcca" in plan.metrics and plan.cca_dim > min(plan.samples, widest):
        raise UsageError("--cca-dim", f"{plan.cca_dim} directions need at least as many samples and channels: "
                         f"{plan.samples} samples, width {widest}")


def _planned_grid(model: "Model", images: "Images") -> tuple[int, int] | None:
    """The patch grid every image gets when the size is fixed before decoding (a family crop or --size)."""
    from vitcli.io.sizes import parse_size

    spec, family = model.image_plan(images.spec)
    size = tuple(family.size) if family is not None and family.crop else \
        parse_size(spec.size) if spec.size not in (None, "native") else None
    p = model.config.patch_size
    return (size[0] // p, size[1] // p) if size else None


def _check_held(a: "Model", b: "Model", plan: Plan, images: "Images") -> None:
    """Held features (N × D per layer, float32, and a float64 copy of two layers at a time) against the limit."""
    from vitcli.core.budget import over

    if not plan.hold:
        return
    widths = len(plan.layers_a) * a.config.dim + (len(plan.layers_b) * b.config.dim if b is not a else 0)
    n = plan.samples
    need = n * widths * 4 + 2 * n * max(a.config.dim, b.config.dim) * 8 * 2 + min(n, 1024) * n * 8 * 2
    problem = over(need, a.memory_limit(), f"holding the features of {n:,} samples × {widths:,} channels "
                   f"({', '.join(m for m in plan.metrics)}{', exact' if plan.exact else ''})")
    if problem:
        raise VitcliError("--metric" if not plan.exact else "--exact", problem, needs="max_memory")


def _samples(x: "torch.Tensor") -> "torch.Tensor":
    """(b, D) or (b, N, D) → (b·N, D) on the CPU; half types as float32 (float64 stays: --dtype float64 is exact)."""
    import torch

    x = x.reshape(-1, x.shape[-1]).cpu()  # (b·N, D) samples
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class _Features:
    """Consumes each batch's layer rows: into the minibatch CKA, and kept when the plan holds them."""

    def __init__(self, plan: Plan, same: bool, rows: int) -> None:
        from vitcli.core.similarity import CKA_METRICS, MinibatchCKA

        streamed = not plan.exact and any(m in CKA_METRICS for m in plan.metrics)
        self.plan, self.same = plan, same
        self.minibatch = MinibatchCKA(rows, same) if streamed else None
        self.held_a: list[list[torch.Tensor]] = []
        self.held_b: list[list[torch.Tensor]] = []

    def add(self, xs: "list[torch.Tensor]", ys: "list[torch.Tensor]") -> None:
        """Each layer's (b, D) or (b, N, D) rows of A and of B (ys is xs: A with itself, same layers)."""
        xs = [_samples(x) for x in xs]
        ys = xs if self.same else [_samples(y) for y in ys]
        if self.minibatch is not None:
            self.minibatch.add(xs, ys)
        if self.plan.hold:
            self.held_a.append(xs)
            if not self.same:
                self.held_b.append(ys)

    def results(self) -> dict[str, np.ndarray]:
        """metric → (LA, LB) float64 (cka and unbiased-cka share the minibatch estimate when streamed)."""
        import torch

        from vitcli.core.similarity import CKA_METRICS, similarity

        streamed = self.minibatch.result().numpy() if self.minibatch is not None else None
        xs = [torch.cat(parts) for parts in zip(*self.held_a, strict=False)] if self.plan.hold else []
        ys = (xs if self.same else
              [torch.cat(parts) for parts in zip(*self.held_b, strict=False)] if self.plan.hold else [])
        return {m: streamed if m in CKA_METRICS and streamed is not None else
                similarity(m, xs, ys, topk=self.plan.topk, cca_dim=self.plan.cca_dim).numpy()
                for m in self.plan.metrics}


def _run(a: "Model", b: "Model", images: "Images", plan: Plan, normalize: str | None, batch: "BatchSpec",
         progress: "Progress | None") -> tuple[dict[str, np.ndarray], "BatchReport"]:
    """Decode (each model's preprocessing) in threads, one forward pass per model per batch, metrics at the end."""
    from vitcli.api.layers import LayerCompute, kept_bytes
    from vitcli.api.runs import _check_planned, run_batches

    same = b is a
    layers_a = sorted(set(plan.layers_a) | (set(plan.layers_b) if same else set()))
    for model, layers in [(a, layers_a)] + ([] if same else [(b, plan.layers_b)]):
        model.resolve_grid(images)
        _check_planned(model, images, batch, kept_bytes(model, layers))
    prep_a, _, _ = a.preparer(images.spec, normalize)
    prep_b = None if same else b.preparer(images.spec, normalize)[0]
    compute_a = LayerCompute(a, layers_a, plan.tokens)
    compute_b = None if same else LayerCompute(b, plan.layers_b, plan.tokens)
    per_image = plan.samples // max(1, len(images))
    features = _Features(plan, same and plan.layers_a == plan.layers_b,
                         min(batch.batch_size * per_image, PATCH_ROWS) if plan.tokens == "patches"
                         else batch.batch_size)

    def prepare(item: object, name: str) -> "FittedImage":
        fitted = prep_a(item, name)
        if prep_b is not None:
            partner = prep_b(item, name)
            partner.loaded.release()
            fitted.partner = partner
        return fitted

    def compute(items: "list[FittedImage]") -> dict[str, np.ndarray]:
        rows_a = _forward(a, compute_a, items, layers_a)
        if same:
            xs = [rows_a[layers_a.index(i)] for i in plan.layers_a]
            ys = xs if plan.layers_a == plan.layers_b else [rows_a[layers_a.index(i)] for i in plan.layers_b]
        else:
            xs = rows_a
            ys = _forward(b, compute_b, [i.partner for i in items], plan.layers_b)  # type: ignore[attr-defined, arg-type]
            _check_patches(plan, xs[0], ys[0])
        features.add(xs, ys)
        return {}

    report = run_batches(images, batch, prepare=prepare, compute=compute, main="layers",
                         patch_size=a.config.patch_size, overlap=not a.on_cpu, progress=progress)
    if report.done < MIN_SAMPLES and any(m in ("cka", "unbiased-cka") for m in plan.metrics):
        raise VitcliError("IMAGE", f"CKA needs at least {MIN_SAMPLES} images read; {report.done} were")
    return features.results(), report


def _forward(model: "Model", compute: "LayerCompute", items: "list[FittedImage]",
             layers: list[int]) -> "list[torch.Tensor]":
    """The layers' rows of a batch, in the items' order; images of different sizes run as separate passes."""
    import torch

    from vitcli.api.layers import kept_bytes

    groups: dict[tuple[int, ...], list[int]] = {}
    for i, item in enumerate(items):
        groups.setdefault(tuple(item.tensor().shape), []).append(i)
    parts: list[tuple[list[int], list[torch.Tensor]]] = []
    for idx in groups.values():
        x = model.batch_tensor([items[i] for i in idx])  # (b, 3, H, W)
        model.check_memory(len(idx), (int(x.shape[2]), int(x.shape[3])), kept_bytes(model, layers)(len(idx), x.shape))
        parts.append((idx, compute.tensors(x)))
    if len(parts) == 1:
        return parts[0][1]
    order = torch.tensor([i for idx, _ in parts for i in idx]).argsort()
    return [torch.cat([p[1][k] for p in parts])[order] for k in range(len(layers))]


def _check_patches(plan: Plan, x: "torch.Tensor", y: "torch.Tensor") -> None:
    """--tokens patches: A and B must give each image the same number of patches."""
    if plan.tokens == "patches" and x.shape[1] != y.shape[1]:
        raise VitcliError("--tokens", f"patches makes every patch a sample, so both models need one grid: A gives "
                          f"{x.shape[1]} patches an image, B {y.shape[1]} (give --size, or use cls, mean or pooled)")


def best_matches(matrix: np.ndarray, la: list[int], lb: list[int], same: bool = False) -> list[BestMatch]:
    """For each layer of A, the layer of B with the highest score and the score (a model with itself:
    the best other layer, when there is one)."""
    scores = np.where(np.isnan(matrix), -np.inf, matrix)
    if same and len(lb) > 1:
        scores = np.where(np.array(la)[:, None] == np.array(lb)[None, :], -np.inf, scores)
    best = np.argmax(scores, axis=1)
    return [{"layer": a, "best_b": lb[int(j)], "score": float(matrix[i, j])}
            for i, (a, j) in enumerate(zip(la, best, strict=False))]


def _document(a: "Model", b: "Model", plan: Plan, matrix: np.ndarray, report: "BatchReport", output: str | None,
              plot: str | None) -> CompareDoc:
    """compare's JSON document."""
    doc: CompareDoc = {
        "command": "compare", **report.document(), "outputs": {"array": output, "plot": plot},  # in the run's place
        "metrics": plan.metrics, "tokens": plan.tokens,
        "samples": report.done * (plan.samples // max(1, report.inputs)),
        "layers_a": plan.layers_a, "layers_b": plan.layers_b, "self": b is a, "cka_estimator": _estimator(plan),
        "topk": plan.topk, "cca_dim": plan.cca_dim, "shape": list(matrix.shape), **_matrices(plan, matrix, b is a),
        "model_a": a.document(), "model_b": b.document(),
    }
    return doc


def _estimator(plan: Plan) -> str | None:
    """How CKA was estimated: streamed minibatches, or all samples at once."""
    from vitcli.core.similarity import CKA_METRICS

    if not any(m in CKA_METRICS for m in plan.metrics):
        return None
    return "all samples" if plan.exact else "minibatch unbiased HSIC (Nguyen et al. 2021)"


def _matrices(plan: Plan, matrix: np.ndarray, same: bool) -> Matrices:
    """The JSON keys of the matrices: each metric's rows, and the best-matching layer of B per layer of A."""
    mats = matrix if matrix.ndim == 3 else matrix[None]
    return {"similarity": {m: [[round(float(v), 6) for v in row] for row in mats[i]]
                           for i, m in enumerate(plan.metrics)},
            "best": {m: best_matches(mats[i], plan.layers_a, plan.layers_b, same) for i, m in enumerate(plan.metrics)}}


def _write(matrix: np.ndarray, la: list[int], lb: list[int], output: str | None, plot: str | None, title: str,
           label: str) -> None:
    """-o's .npy and --plot's heatmap (the first metric's)."""
    if output:
        from vitcli.io.arrays import save_npy

        save_npy(output, matrix)
    if plot:
        from vitcli.io.pictures import layer_similarity_figure, save_figure

        save_figure(plot, layer_similarity_figure(matrix if matrix.ndim == 2 else matrix[0], la, lb, title, label))


__all__ = ["CompareMixin", "CompareResult", "best_matches", "compare_features", "metric_list", "short_name"]

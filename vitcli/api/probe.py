"""`Model.probe`: which layer's features classify a labelled folder best (k-NN and linear probe per layer).

Labels come from the folder layout (ROOT/CLASS/*.jpg, the ImageFolder convention) or a CSV file of
`path,label` lines (paths relative to ROOT). Every chosen layer's features of every image are held
(N × L × D, checked against the memory limit before any forward pass); the probes themselves are
`vitcli.core.probes`.
"""

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from vitcli.api.base import ModelBase
from vitcli.api.display import ShowsItself
from vitcli.api.documents import ProbeDoc
from vitcli.api.values import choice, keywords, number, path
from vitcli.errors import UsageError, VitcliError

if TYPE_CHECKING:
    import torch

    from vitcli.api.images import Images
    from vitcli.api.runs import BatchSpec, Progress
    from vitcli.core.probes import Split

PROBES = ("k-NN", "linear")


@dataclass
class ProbeResult(ShowsItself):
    """Accuracy per layer (layers, 2): column 0 k-NN, column 1 linear, fractions in [0, 1]."""

    accuracy: np.ndarray  # (layers, 2)
    layers: list[int]
    classes: list[str]
    labels: np.ndarray  # (n,) class index of each image read, in sorted path order
    paths: list[str]  # the images read (skipped ones left out), row i ↔ labels[i]
    splits: list[tuple[np.ndarray, np.ndarray]]  # (train rows, test rows) of each split
    document: ProbeDoc
    warnings: list[str] = field(default_factory=list)
    MAP: ClassVar[str | None] = "accuracy"

    def to_json(self) -> ProbeDoc:
        return self.document


@dataclass
class Labelled:
    """Images with a class each, sorted by path."""

    paths: list[str]
    labels: list[int]
    classes: list[str]
    source: str  # 'folders' or the label file


def labelled_images(root: str, labels_file: str | None) -> Labelled:
    """ROOT/CLASS/… images, or the `path,label` lines of a CSV file (paths relative to ROOT)."""
    if not os.path.isdir(root):
        raise VitcliError(root, "is not a folder: give ROOT with one sub-folder per class, or --labels FILE.csv")
    pairs = _from_csv(root, labels_file) if labels_file else _from_folders(root)
    classes = sorted({label for _, label in pairs})
    if len(classes) < 2:
        where = labels_file or root
        raise VitcliError(where, f"one class ({classes[0]!r}): a probe needs at least two" if classes else
                          "no labelled images: ROOT/CLASS/*.jpg, or path,label lines in --labels")
    pairs.sort()
    index = {c: i for i, c in enumerate(classes)}
    return Labelled([p for p, _ in pairs], [index[c] for _, c in pairs], classes, labels_file or "folders")


def _from_folders(root: str) -> list[tuple[str, str]]:
    """(path, class) of the images under each sub-folder of ROOT (recursively), hidden ones left out."""
    from vitcli.io.inputs import IMAGE_EXTENSIONS

    pairs = []
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if not entry.is_dir() or entry.name.startswith("."):
            continue
        for folder, dirs, files in os.walk(entry.path):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            pairs += [(os.path.join(folder, f), entry.name) for f in files
                      if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return pairs


def _from_csv(root: str, labels_file: str) -> list[tuple[str, str]]:
    """The `path,label` lines (a `path,label` header is skipped); each path must exist under ROOT."""
    try:
        with open(labels_file, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise VitcliError(labels_file, getattr(e, "strerror", None) or str(e)) from None
    pairs = []
    for n, row in enumerate(rows, 1):
        if not row or (n == 1 and [c.strip().lower() for c in row] == ["path", "label"]):
            continue
        if len(row) != 2 or not row[0].strip() or not row[1].strip():
            raise VitcliError(labels_file, f"line {n}: expected path,label, got {','.join(row)!r:.80}")
        file = os.path.join(root, row[0].strip())
        if not os.path.isfile(file):
            raise VitcliError(labels_file, f"line {n}: {row[0].strip()!r} does not exist under {root}")
        pairs.append((file, row[1].strip()))
    return pairs


class ProbeMixin(ModelBase):
    """`probe` for `Model`."""

    @keywords(root=path, labels=path, tokens=choice(("cls", "mean", "pooled")), k=number(1, whole=True),
              l2=number(0), test_fraction=number(0, 1, above=True, below=True), folds=number(2, whole=True),
              plot=path)
    def probe(self, root: str, *, labels: str | None = None, tokens: str | None = None,
              layers: str = "all", size: object = None, fit: str | None = None, k: int = 20, l2: float = 1e-4,
              seed: int = 0, test_fraction: float = 0.2, folds: int | None = None, normalize: str | None = None,
              output: str | None = None, plot: str | None = None,
              batch: "BatchSpec | None" = None, progress: "Progress | None" = None) -> ProbeResult:
        """k-NN (cosine, DINO's weighted vote, T = 0.07) and linear-probe accuracy of every chosen layer on
        ROOT's labelled images: a stratified split fixed by `seed` (`test_fraction`) or `folds` folds.
        `size` and `fit` bring images to a size as load_images does (default: the model's own preprocessing)."""
        import torch

        from vitcli.api.images import Images, ImageSpec, as_size_text, check_fixed_size
        from vitcli.api.layers import choose_layers, choose_tokens
        from vitcli.api.outputs import check_outputs_first
        from vitcli.api.runs import BatchSpec

        found = labelled_images(root, labels)
        chosen = choose_tokens(tokens, [self])
        la = choose_layers(layers, self.config.depth)
        spec = ImageSpec(as_size_text(size), fit)  # type: ignore[arg-type]
        check_fixed_size(spec)
        images = Images(found.paths, True, spec)
        check_outputs_first({"output": output, "plot": plot}, inputs=[self.spec.spec, *found.paths,
                                                                      *([labels] if labels else [])])
        _check_counts(found, k, test_fraction, folds)
        _check_held(self, len(images), la)
        batch = (batch or BatchSpec()).checked()
        feats, rows = _features(self, images, la, chosen, normalize, batch, progress)
        y = torch.tensor([found.labels[i] for i in rows])
        splits = fold_splits_or_holdout(y, folds, test_fraction, seed)
        _check_k(k, splits)
        acc = np.array([_layer(feats[:, j], y, splits, k, l2) for j in range(len(la))])  # (layers, 2)
        doc = _document(self, found, la, chosen, acc, rows, splits, k, l2, seed, test_fraction, folds, output, plot)
        if output:
            from vitcli.io.arrays import save_npy

            save_npy(output, acc)
        if plot:
            from vitcli.api.compare import short_name
            from vitcli.io.pictures import accuracy_figure, save_figure

            title = f"probe accuracy by layer ({chosen}), {short_name(self)}: {len(rows)} images, " \
                    f"{len(found.classes)} classes"
            save_figure(plot, accuracy_figure(la, acc, [f"k-NN (k={k})", "linear"], title))
        return ProbeResult(acc, la, found.classes, y.numpy(), [found.paths[i] for i in rows],
                           [(a.numpy(), b.numpy()) for a, b in splits], doc, list(self.warnings))


def fold_splits_or_holdout(labels: "torch.Tensor", folds: int | None, test_fraction: float,
                           seed: int) -> "list[Split]":
    """K stratified folds, or one stratified hold-out split."""
    from vitcli.core.probes import fold_splits, holdout_split

    return fold_splits(labels, folds, seed) if folds else [holdout_split(labels, test_fraction, seed)]


def _check_counts(found: Labelled, k: int, test_fraction: float, folds: int | None) -> None:
    """Enough images per class for a split, and folds no more than images."""
    counts = np.bincount(found.labels, minlength=len(found.classes))
    smallest = int(counts.argmin())
    if counts[smallest] < 2:
        raise VitcliError(found.source if found.source != "folders" else found.paths[0].rsplit(os.sep, 1)[0],
                          f"class {found.classes[smallest]!r} has one image: a split needs at least two per class")
    if folds and folds > len(found.paths):
        raise UsageError("--folds", f"{folds} folds of {len(found.paths)} images leave a fold empty")


def _check_k(k: int, splits: "list[Split]") -> None:
    """k neighbours need more training images than k."""
    fewest = min(int(train.numel()) for train, _ in splits)
    if k > fewest:
        raise UsageError("--k", f"{k} neighbours (--k, --topk) need at least {k} training images; "
                                f"the split has {fewest}")


def _check_held(model: ModelBase, n: int, layers: list[int]) -> None:
    """Every image's features of every chosen layer (float32), and a float64 copy of one layer, against the limit."""
    from vitcli.core.budget import over

    need = n * len(layers) * model.config.dim * 4 + n * model.config.dim * 8 * 4
    problem = over(need, model.memory_limit(), f"holding {n:,} images × {len(layers)} layers × {model.config.dim} "
                   "features")
    if problem:
        raise VitcliError("--layers", problem, needs="max_memory")


def _features(model: ModelBase, images: "Images", layers: list[int], tokens: str, normalize: str | None,
              batch: "BatchSpec", progress: "Progress | None") -> tuple["torch.Tensor", list[int]]:
    """(n read, layers, D) float32 features from one forward pass per batch, and the rows of the images read."""
    import torch

    from vitcli.api.layers import LayerCompute, kept_bytes
    from vitcli.api.runs import run_model

    run = run_model(model, images, LayerCompute(model, layers, tokens), main="layers", normalize=normalize,
                    batch=batch, keep=True, progress=progress, kept=kept_bytes(model, layers))
    index = {n: i for i, n in enumerate(images.names())}
    read = [index[e["path"]] for e in run.report.entries]
    if len(read) < 4:
        raise VitcliError("ROOT", f"{len(read)} images were read: too few for a probe")
    return torch.from_numpy(np.asarray(run.arrays["layers"])), read


def _layer(features: "torch.Tensor", labels: "torch.Tensor", splits: "list[Split]", k: int,
           l2: float) -> tuple[float, float]:
    from vitcli.core.probes import probe_accuracy

    return probe_accuracy(features, labels, splits, k, l2)


def _document(model: ModelBase, found: Labelled, layers: list[int], tokens: str, acc: np.ndarray, rows: list[int],
              splits: "list[Split]", k: int, l2: float, seed: int, test_fraction: float, folds: int | None,
              output: str | None, plot: str | None) -> ProbeDoc:
    """probe's JSON document."""
    best = [int(np.argmax(acc[:, j])) for j in range(2)]
    return {
        "command": "probe", "images": len(found.paths), "processed": len(rows), "classes": found.classes,
        "labels_from": found.source, "tokens": tokens, "layers": layers, "k": k, "temperature": 0.07, "l2": l2,
        "seed": seed, "split": {"folds": folds} if folds else {"test_fraction": test_fraction},
        "test_images": sum(int(t.numel()) for _, t in splits),
        "accuracy": [{"layer": layer, "knn": round(float(a[0]), 6), "linear": round(float(a[1]), 6)}
                     for layer, a in zip(layers, acc, strict=False)],
        "best": {"knn": {"layer": layers[best[0]], "accuracy": float(acc[best[0], 0])},
                 "linear": {"layer": layers[best[1]], "accuracy": float(acc[best[1], 1])}},
        "model": model.document(), "outputs": {"array": output, "plot": plot},
    }


__all__ = ["ProbeMixin", "ProbeResult", "labelled_images"]

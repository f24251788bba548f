"""`vitcli probe`: k-NN and linear-probe accuracy of every layer on a labelled folder."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from vitcli.cli.common import (
    OUTPUT_PANEL,
    BatchOptions,
    ImageOptions,
    ModelOptions,
    NormalizeOpt,
    Output,
    OutputOptions,
    batch_spec,
    choices,
    examples,
    open_model,
    prose,
    value,
    with_options,
)
from vitcli.cli.compare import LayersOpt, PlotOpt

if TYPE_CHECKING:
    from vitcli.api.documents import ProbeDoc

HELP = prose("""Which layer's features classify your images best: k-NN and linear-probe accuracy at every layer.

Labels come from the folder layout (ROOT/CLASS/*.jpg, the ImageFolder convention) or --labels FILE.csv (path,label
lines, paths relative to ROOT). A layer's feature is the residual stream after that block, before the final norm, as
--tokens picks it (cls, mean of the patch tokens, or pooled: at the last layer the model's own pooled embedding).

k-NN: cosine similarity to every training image; the --k most similar vote with weight exp(s / 0.07) (DINO's weighted
k-NN). Linear: multinomial logistic regression on features standardised with the training mean and std, minimising mean
cross-entropy + (--l2 / 2)·‖W‖² with L-BFGS (scikit-learn's LogisticRegression with C = 1 / (l2 · n_train)).

The split is stratified and fixed by --seed (which also seeds a preset's random weights): --test-fraction of each class
held out, or --folds K (each image tested once). -o writes (layers, 2) accuracies in [0, 1]: column 0 k-NN, column 1
linear.
""")
EXAMPLES = [
    "python -c \"import csv; csv.writer(open('labels.csv', 'w')).writerows([('chelsea.jpg', 'cat'), "
    "('chelsea_exif_rotated.jpg', 'cat'), ('coffee.jpg', 'thing'), ('rocket.jpg', 'thing'), "
    "('astronaut.jpg', 'thing')])\"",
    "vitcli probe sample_images/ --labels labels.csv --model vit-ti16 --k 1 --folds 2 -o acc.npy --plot acc.png",
]
EPILOG = examples(EXAMPLES)
ProbeTokens = choices("ProbeTokens", Literal["cls", "mean", "pooled"])
AccuracyOpt = Annotated[str | None, typer.Option(
    "-o", "--output", metavar="FILE", rich_help_panel=OUTPUT_PANEL, show_default=False,
    help="Write the (layers, 2) accuracies as .npy (column 0 k-NN, column 1 linear), or - for standard output.")]


@dataclass
class AccuracyOutput(OutputOptions):
    """-o, --json, -q, with -o writing each layer's accuracies."""

    output: AccuracyOpt = None


@with_options(out_opts=AccuracyOutput, image_opts=ImageOptions, model_opts=ModelOptions, batch=BatchOptions)
def probe_command(
    root: Annotated[str, typer.Argument(
        metavar="ROOT", show_default=False,
        help="Folder of images: ROOT/CLASS/*.jpg, or the folder --labels names them under.")],
    labels: Annotated[str | None, typer.Option(
        "--labels", metavar="FILE.csv", show_default=False,
        help="path,label lines (paths relative to ROOT) instead of the folder layout.")] = None,
    tokens: Annotated[ProbeTokens | None, typer.Option(  # type: ignore[valid-type]
        "--tokens", metavar="TOKENS", show_default=False,
        help="cls | mean | pooled. \\[default: cls with a class token, else mean]")] = None,
    layers: LayersOpt = "all",
    k: Annotated[int, typer.Option(
        "--k", "--topk", metavar="K",
        help="Neighbours that vote in the k-NN probe (--topk is the same option).")] = 20,
    l2: Annotated[float, typer.Option(
        "--l2", metavar="X",
        help="L2 penalty of the linear probe (on the mean loss).")] = 1e-4,
    test_fraction: Annotated[float, typer.Option(
        "--test-fraction", metavar="F",
        help="Share of each class held out for testing.")] = 0.2,
    folds: Annotated[int | None, typer.Option(
        "--folds", metavar="K", show_default=False,
        help="K-fold cross-validation instead of one split.")] = None,
    normalize: NormalizeOpt = None,
    plot: PlotOpt = None,
    *,
    out_opts: AccuracyOutput,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
    batch: BatchOptions,
) -> None:
    from vitcli.errors import UsageError

    if batch.output_dir is not None or batch.from_list is not None:
        raise UsageError("--output-dir" if batch.output_dir is not None else "--from-list",
                         "probe reads ROOT (and --labels) and writes -o and --plot")
    out, output = Output(out_opts), out_opts.output
    if image_opts.patch_size is not None:
        raise UsageError("-p", "probe runs the model's own patch size")
    from vitcli.api.probe import labelled_images

    total = len(labelled_images(root, labels).paths)  # a bad folder or label file fails before the model loads
    model = open_model(model_opts)
    with out.progress(total) as progress:
        result = model.probe(root, labels=labels, tokens=value(tokens), layers=layers, size=image_opts.size,
                             fit=value(image_opts.fit), k=k, l2=l2, seed=model_opts.seed,
                             test_fraction=test_fraction, folds=folds, normalize=normalize, output=output, plot=plot,
                             batch=batch_spec(batch), progress=progress)
    out.finish(result.document, *_tables(result.document), warnings=result.warnings)


def _tables(doc: "ProbeDoc") -> list[Any]:
    """The run's summary and the accuracy of each layer, the best ones marked."""
    from vitcli.cli.report import info_table
    from vitcli.cli.tables import output_rows, rows_table

    split = doc["split"]
    rows = [("images", f"{doc['processed']} of {doc['images']}, {len(doc['classes'])} classes ({doc['labels_from']})"),
            ("model", f"{doc['model']['name']}: {doc['model']['source']}"), ("tokens", doc["tokens"]),
            ("split", f"{split['folds']} folds" if "folds" in split else f"{split['test_fraction']:g} held out "
             f"({doc['test_images']} test images), seed {doc['seed']}"),
            ("probes", f"k-NN k={doc['k']} T={doc['temperature']}; linear l2={doc['l2']:g}"),
            *output_rows(doc["outputs"])]
    best = doc["best"]
    table = [[str(a["layer"]), _mark(a["knn"], a["layer"] == best["knn"]["layer"]),
              _mark(a["linear"], a["layer"] == best["linear"]["layer"])] for a in doc["accuracy"]]
    return [info_table("vitcli probe", rows), rows_table("accuracy (* best)", ["layer", "k-NN", "linear"], table)]


def _mark(accuracy: float, best: bool) -> str:
    return f"{100 * accuracy:.1f}%" + (" *" if best else "  ")

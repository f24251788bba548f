"""`vitcli compare`: layer × layer similarity of one model with itself, or of two models, on the same images."""

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer

from vitcli.cli.common import (
    OUTPUT_PANEL,
    BatchOptions,
    ImageOptions,
    ImagesArg,
    ModelOptions,
    NormalizeOpt,
    Output,
    OutputOptions,
    batch_spec,
    choices,
    examples,
    gather,
    open_model,
    prose,
    value,
    with_options,
)

if TYPE_CHECKING:
    from vitcli.api.documents import CompareDoc, CompareFeaturesDoc

HELP = prose("""How alike the layers of two models (or of one model, layer × layer) are on the same images.

Each image goes through each model's own preprocessing. A layer's feature is the residual stream after that block,
before the final norm; --tokens picks what stands for an image: cls, mean (of the patch tokens), pooled (at the last
layer the model's own pooled embedding; at earlier layers the token its pool reads) or patches (every patch a sample;
both grids must match).

Metrics (X, Y: n × d features of A's and B's layer; K = XXᵀ, L = YYᵀ; K̃: K with a zero diagonal):

cka: linear CKA (Kornblith et al. 2019) = ‖X̄ᵀȲ‖²_F / (‖X̄ᵀX̄‖_F ‖ȲᵀȲ‖_F), X̄ column-centred.

unbiased-cka: HSIC₁(K, L) / √(HSIC₁(K, K) HSIC₁(L, L)), HSIC₁ = \\[tr(K̃L̃) + 1ᵀK̃1·1ᵀL̃1/((n−1)(n−2)) −
2/(n−2)·1ᵀK̃L̃1] / (n(n−3)) (Song et al. 2012).

Without --exact both CKAs stream: Nguyen et al. 2021's minibatch estimator Σᵢ HSIC₁(Kᵢ, Lᵢ) / √(Σᵢ HSIC₁(Kᵢ, Kᵢ) Σᵢ
HSIC₁(Lᵢ, Lᵢ)) over batches i, so memory does not grow with the number of images; --exact holds every feature and gives
the textbook value on all images.

mutual-knn: mean over images of |kNN_A(i) ∩ kNN_B(i)| / k (Huh et al. 2024), k = --topk.

cknna: HSIC₁ of K and L kept only where j is among both kNN_A(i) and kNN_B(i), over the same for A with itself and B
with itself (Huh et al. 2024).

svcca: columns standardised, the top --cca-dim left singular vectors (exact SVD), the mean of their canonical
correlations.

mutual-knn, cknna and svcca take features L2-normalised per image and hold N × D per layer (checked against the memory
limit before any forward pass). -o writes the (layers of A, layers of B) matrix, (metrics, LA, LB) for several metrics
in the order given.
""")
EXAMPLES = [
    "vitcli compare sample_images/ --model vit-s16 --plot cka.png",
    "vitcli compare sample_images/ --model vit-ti16 --with vit-s16 --metric cka,mutual-knn --topk 2 -o sim.npy",
    "vitcli compare sample_images/ --model vit-ti16 --tokens patches --layers 0,6,11 --exact --json",
]
EPILOG = examples(EXAMPLES)
TokensChoice = choices("TokensChoice", Literal["cls", "mean", "pooled", "patches"])
TokensOpt = Annotated[TokensChoice | None, typer.Option(  # type: ignore[valid-type]
    "--tokens", metavar="TOKENS", show_default=False,
    help="cls | mean | pooled | patches: what stands for an image at a layer. "
         "\\[default: cls with a class token, else mean]")]
LayersOpt = Annotated[str, typer.Option("--layers", metavar="LAYERS", help="Blocks of A: all, -1, 0,3,6 or 2:5.")]
PlotOpt = Annotated[str | None, typer.Option(
    "--plot", metavar="FILE", rich_help_panel=OUTPUT_PANEL, show_default=False,
    help="Write the plot as PNG to FILE.")]
ArrayOpt = Annotated[str | None, typer.Option(
    "-o", "--output", metavar="FILE", rich_help_panel=OUTPUT_PANEL, show_default=False,
    help="Write the (layers of A, layers of B) matrix as .npy ((metrics, LA, LB) for several), or - for standard "
         "output.")]


@dataclass
class MatrixOutput(OutputOptions):
    """-o, --json, -q, with -o writing the similarity matrix."""

    output: ArrayOpt = None


@with_options(out_opts=MatrixOutput, image_opts=ImageOptions, model_opts=ModelOptions, batch=BatchOptions)
def compare_command(
    images: ImagesArg = None,
    with_model: Annotated[str | None, typer.Option(
        "--with", metavar="WEIGHTS", show_default=False,
        help="Model B: a preset, a checkpoint or a hub name (anything --weights takes). "
             "\\[default: A with itself]")] = None,
    metric: Annotated[str, typer.Option(
        "--metric", metavar="METRIC",
        help="cka, unbiased-cka, mutual-knn, cknna, svcca, or a comma list.")] = "cka",
    tokens: TokensOpt = None,
    layers: LayersOpt = "all",
    layers_b: Annotated[str, typer.Option(
        "--layers-b", metavar="LAYERS",
        help="Blocks of B (all, -1, 0,3,6 or 2:5).")] = "all",
    topk: Annotated[int, typer.Option("--topk", metavar="K", help="Neighbours for mutual-knn and cknna.")] = 10,
    cca_dim: Annotated[int, typer.Option("--cca-dim", metavar="N", help="Singular directions svcca keeps.")] = 10,
    exact: Annotated[bool, typer.Option(
        "--exact", metavar="",
        help="Hold every image's features and compute CKA on all of them at once (the textbook value) instead of "
             "streaming minibatches.")] = False,
    features: Annotated[list[str] | None, typer.Option(
        "--features", metavar="DIR", show_default=False,
        help="Compare features written before by embed --stage layers --output-dir DIR --format parquet (or -o "
             "FILE.parquet) instead of running models: once for A with itself, twice for A and B.")] = None,
    normalize: NormalizeOpt = None,
    plot: PlotOpt = None,
    *,
    out_opts: MatrixOutput,
    image_opts: ImageOptions,
    model_opts: ModelOptions,
    batch: BatchOptions,
) -> None:
    from vitcli.errors import UsageError

    if batch.output_dir is not None:
        raise UsageError("--output-dir", "compare writes one matrix: use -o FILE.npy")
    out, output = Output(out_opts), out_opts.output
    if features:
        return _stored(features, images, with_model, out, metric=metric, layers=layers, layers_b=layers_b, topk=topk,
                       cca_dim=cca_dim, exact=exact, output=output, plot=plot, batch_size=batch.batch_size)
    found = gather(images, image_opts, batch)
    model = open_model(model_opts, image_opts)
    with out.progress(len(found)) as progress:
        result = model.compare(found, with_model=with_model, metric=metric, tokens=value(tokens), layers=layers,
                               layers_b=layers_b, topk=topk, cca_dim=cca_dim, exact=exact, normalize=normalize,
                               output=output, plot=plot, batch=batch_spec(batch), progress=progress)
    out.finish(result.document, *_tables(result.document), warnings=result.warnings)


def _stored(features: list[str], images: list[str] | None, with_model: str | None, out: Output, **options: Any) -> None:
    """--features: the comparison of stored layer features, no model run."""
    from vitcli.api.compare import compare_features
    from vitcli.errors import UsageError

    if images or with_model or len(features) > 2:
        raise UsageError("--features", "compares stored features: give it once (A with itself) or twice (A, B), "
                         "without IMAGE or --with")
    result = compare_features(features[0], features[1] if len(features) > 1 else None, **options)
    out.finish(result.document, *_tables(result.document))


def _tables(doc: "CompareDoc | CompareFeaturesDoc") -> list[Any]:
    """The run's summary and, for each layer of A, the best-matching layer of B under each metric."""
    from vitcli.cli.report import info_table
    from vitcli.cli.tables import batch_rows, rows_table, span

    a, b = doc["model_a"], doc["model_b"]
    rows = (batch_rows(doc) if "features" not in doc else [("features", ", ".join(doc["features"]))]) + [
        ("model A", f"{a['name']}: {a['source']}"),
        ("model B", "A itself" if doc["self"] else f"{b['name']}: {b['source']}"),
        ("tokens", doc["tokens"]), ("samples", f"{doc['samples']:,}"),
        ("layers A / B", f"{span(doc['layers_a'])} / {span(doc['layers_b'])}"),
        ("metrics", ", ".join(doc["metrics"])),
    ]
    if doc["cka_estimator"]:
        rows.append(("CKA estimate", doc["cka_estimator"]))
    columns = ["A layer"] + doc["metrics"]
    best = doc["best"]
    table = [[str(row["layer"])] + [f"{best[m][i]['best_b']} ({best[m][i]['score']:.3f})" for m in doc["metrics"]]
             for i, row in enumerate(best[doc["metrics"][0]])]
    return [info_table("vitcli compare", rows), rows_table(
        "best layer of B (score)" + (", not itself" if doc["self"] else ""), columns, table)]

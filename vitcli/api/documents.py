"""The JSON documents the commands print (`--json`, `to_json()`), one `TypedDict` each, so that mypy checks
every key the API writes and the CLI reads.

The lowest module of the API: it imports no other (`results.py` and every builder import it). Shared parts
(the `model` and `input` objects, tensor statistics, the summary of a run over many images) are nested
TypedDicts; a key present only in some runs is `NotRequired`; `JSONValue` is kept for the free-form parts
(a checkpoint's preprocessing, a sharded run's outputs). The classes are `@final` so that `"key" in doc`
tells a union's members apart. At run time these are plain dicts, in the order the builders write them.
"""

from collections.abc import Mapping, Sequence
from typing import Literal, final

from typing_extensions import NotRequired, TypedDict

from vitcli.stats import ChannelStats, TensorStats

# A JSON value: what a free-form part of a document may hold (read-only containers, so list[str] is one).
JSONValue = str | int | float | bool | None | Sequence["JSONValue"] | Mapping[str, "JSONValue"]
Tensors = dict[str, TensorStats]  # name → statistics of an array the command computed


# --- shared parts -------------------------------------------------------------------------------


@final
class InputDoc(TypedDict):
    """One fitted image (`input`, and each of `inputs`)."""

    path: str
    original_size: list[int]
    size: list[int]
    fit: str
    resize: str
    mode: str
    format: str | None
    frames: int
    notes: list[str]


@final
class ModelDoc(TypedDict):
    """The `model` object every model command shares (`ModelBase.document`)."""

    name: str
    source: str
    patch_size: int
    dim: int
    depth: int
    heads: int
    head_dim: int
    mlp_dim: int
    parameters: int
    params: int  # the old key of `parameters`
    gmacs: float
    native_size: list[int]
    native_grid: list[int]
    grid: list[int]
    num_prefix_tokens: int
    num_tokens: int
    posenc: str
    pooling: str
    activation: str
    eps: float
    num_classes: int
    dtype: str
    position_table: str
    projection: int | None
    parts: dict[str, str]
    position_resample: NotRequired[str]
    native_grid_from: NotRequired[str]
    family: NotRequired[str]
    layout: NotRequired[str]
    layout_notes: NotRequired[list[str]]
    ignored_keys: NotRequired[list[str]]
    nonfinite_weights: NotRequired[dict[str, dict[str, int]]]


class SingleDoc(TypedDict):
    """The keys every single-image model command shares (`ModelBase._single_document`)."""

    command: str
    input: InputDoc
    patch_size: int
    grid: list[int]
    num_patches: int
    num_tokens: int
    normalize: str
    model: ModelDoc


class BatchCounts(TypedDict):
    """What every run over many images reports of itself (`BatchReport.document` but its outputs)."""

    images: int
    processed: int
    skipped: list[dict[str, str]]
    order: str
    batch_size: int
    workers: int
    seconds: float
    images_per_second: float | None


class BatchSummary(BatchCounts):
    """The keys every run over many images shares (`BatchReport.document`)."""

    outputs: dict[str, JSONValue]  # paths, counts and names, by backend and format


class BatchRun(BatchSummary):
    """A command's run over many images: the summary, and the statistics of what it wrote."""

    tensors: Tensors


@final
class ArrayOutput(TypedDict):
    array: str | None


@final
class PngOutputs(TypedDict):
    array: str | None
    png: str | None


@final
class PlotOutputs(TypedDict):
    array: str | None
    plot: str | None


# --- patchify, unpatchify -----------------------------------------------------------------------


@final
class PatchifyOutputs(TypedDict):
    array: str | None
    grid_png: str | None


class PatchLayout(TypedDict):
    """What patchify and unpatchify both report of one image's patches."""

    patch_size: int
    grid: list[int]
    num_patches: int
    patch_length: int
    order: str
    normalize: str
    tensors: Tensors


@final
class PatchifyDoc(PatchLayout):
    command: Literal["patchify"]
    input: InputDoc
    channels: list[ChannelStats]
    outputs: PatchifyOutputs


@final
class PatchifyBatchDoc(BatchRun):
    command: Literal["patchify"]
    patch_size: int
    order: str
    normalize: str


@final
class UnpatchifyInput(TypedDict):
    path: str


@final
class ImageOutput(TypedDict):
    image: str | None


@final
class UnpatchifyDoc(PatchLayout):
    command: Literal["unpatchify"]
    input: UnpatchifyInput
    outputs: ImageOutput


# --- embed, embed --text, classify --------------------------------------------------------------


@final
class EmbedDoc(SingleDoc):
    stage: str
    impl: str
    tensors: Tensors  # every stage
    outputs: ArrayOutput


@final
class EmbedBatchDoc(BatchRun):
    command: Literal["embed"]
    stage: str
    impl: str
    normalize: str
    patch_size: int
    model: ModelDoc


@final
class TextModelDoc(TypedDict):
    """The text tower's facts (`embed --text`)."""

    source: str
    text_layout: str
    text_library: str
    text_dim: int
    text_depth: int
    text_heads: int
    context_length: int
    embed_dim: int
    mask: str
    pooling: str
    tokenizer: str
    tokenizer_file: str | None
    notes: list[str]


@final
class PromptRow(TypedDict):
    text: str
    tokens: int
    truncated: bool
    norm: float


@final
class TextEmbedDoc(TypedDict):
    command: Literal["embed"]
    stage: Literal["text"]
    model: TextModelDoc
    prompts: list[PromptRow]
    shape: list[int]
    outputs: ArrayOutput


@final
class SourceDoc(TypedDict):
    source: str


@final
class ClassifyDoc(TypedDict):
    command: Literal["classify"]
    model: SourceDoc
    rule: str
    labels: list[str]
    logits: list[float] | list[list[float]]  # (K,) one image, (B, K) several
    probs: list[float] | list[list[float]]
    images: list[str]
    truncated: list[str]
    outputs: ArrayOutput


# --- posenc -------------------------------------------------------------------------------------


@final
class SimilarityOutputs(TypedDict):
    array: str | None
    similarity_png: str | None


@final
class PositionRow(TypedDict):
    index: int
    values: list[float]


@final
class PosencDoc(TypedDict):
    """A position table (learned or fixed)."""

    command: Literal["posenc"]
    input: None
    kind: str
    source: str
    patch_size: int
    grid: list[int]
    num_patches: int
    num_prefix_rows: int
    dim: int
    tensors: Tensors
    outputs: SimilarityOutputs
    resampled_from: NotRequired[list[int]]
    positions: NotRequired[list[PositionRow]]


@final
class RelbiasDoc(TypedDict):
    """A BEiT-style checkpoint's relative position bias of one layer."""

    command: Literal["posenc"]
    input: None
    kind: Literal["relative-bias"]
    source: str
    patch_size: int
    grid: list[int]
    num_patches: int
    num_prefix_rows: int
    dim: int
    layer: int
    shared: bool
    heads: int
    shape: list[int]
    patch: list[int]
    tensors: Tensors
    outputs: SimilarityOutputs


@final
class RopeDoc(TypedDict):
    """A rotary position embedding's angles."""

    command: Literal["posenc"]
    input: None
    kind: Literal["rope"]
    rope_variant: str
    source: str
    grid: list[int]
    num_patches: int
    num_prefix_rows: int
    dim: int
    angles_shape: list[int]
    periods: list[float]
    frequencies: list[float]
    pairing: str
    axes: str
    outputs: SimilarityOutputs


# --- attend -------------------------------------------------------------------------------------


@final
class HeadRow(TypedDict):
    """One selected layer × head of `attend`."""

    layer: int
    head: int | str  # an index, or a fusion of heads (mean, max, min)
    entropy: float
    max_weight: float
    max_patch: list[int]
    cls_weight: float | None
    mean_distance: float | None


@final
class AttendOutputs(TypedDict):
    array: str | None
    cosine: str | None
    qkv: str | None
    distance: str | None
    distance_png: str | None
    masks: str | None
    rollout: str | None
    rollout_png: str | None
    overlay: str | None


@final
class MasksDoc(TypedDict):
    threshold: float
    patches_per_head: list[int]


@final
class RolloutSummary(TypedDict):
    fusion: str
    discard_ratio: float
    discard_scope: str
    start_layer: int
    max_patch: list[int]
    max_weight: float
    prefix_weight: float


@final
class AttendDoc(SingleDoc):
    layers: list[int]
    head_selection: list[str]
    queries: list[int] | str  # token rows, "all", or a pooled row (probe, mean)
    query_names: str
    shape: list[int]
    axes: list[str]
    heads: list[HeadRow]
    tensors: Tensors  # attention, and cosine when asked
    outputs: AttendOutputs
    qkv_note: NotRequired[str]
    mean_distance: NotRequired[list[list[float]]]
    masks: NotRequired[MasksDoc]
    rollout: NotRequired[RolloutSummary]


@final
class DistanceOverall(TypedDict):
    mean: float
    spread: float


@final
class AttendBatchDoc(BatchRun):
    command: Literal["attend"]
    normalize: str
    patch_size: int
    model: ModelDoc
    layers: list[int]
    head_selection: list[str] | None
    axes: list[str]
    mean_distance: NotRequired[list[list[float]]]
    mean_distance_std: NotRequired[list[list[float]]]
    distance_images: NotRequired[int]
    mean_distance_overall: NotRequired[DistanceOverall]


# --- explain ------------------------------------------------------------------------------------


@final
class TopPatch(TypedDict):
    row: int
    col: int
    value: float


@final
class MethodPatches(TypedDict):
    method: str
    top_patches: list[TopPatch]


# "class" is a keyword: the functional form
ExplainSummary = TypedDict("ExplainSummary", {
    "method": str, "target": str, "score": float | None, "class": NotRequired[int], "label": NotRequired[str],
    "methods": NotRequired[list[MethodPatches]], "top_patches": NotRequired[list[TopPatch]],
})
ExplainSummary.__doc__ = "One image's `explain` object: method, target, score, class, top patches (per method for all)."


@final
class ExplainImage(ExplainSummary):
    """One image of a run over many: its path, then its summary."""

    path: str


@final
class ExplainOutputs(TypedDict):
    array: str | None
    overlay: str | None


@final
class ExplainDoc(SingleDoc):
    explain: ExplainSummary
    axes: list[str]
    shape: list[int]
    tensors: Tensors
    outputs: ExplainOutputs
    methods: NotRequired[list[str]]


@final
class ExplainRun(TypedDict):
    method: str
    target: str
    images: list[ExplainImage]


@final
class ExplainBatchDoc(BatchRun):
    command: Literal["explain"]
    normalize: str
    patch_size: int
    model: ModelDoc
    axes: list[str]
    explain: ExplainRun


# --- figures ------------------------------------------------------------------------------------


class AnyFigure(TypedDict):
    """What every figure's document has: its command and its two outputs."""

    command: str
    outputs: PngOutputs


@final
class FiltersDoc(TypedDict):
    command: str  # figures filters
    input: None
    patch_size: int
    model: ModelDoc
    weight_shape: list[int]
    explained_variance_ratio: list[float]
    tensors: Tensors
    outputs: PngOutputs


class FigureDoc(SingleDoc):
    """A figure of images: the single-image keys, and every image given (`inputs`)."""

    inputs: list[InputDoc]


@final
class PcaDoc(FigureDoc):
    foreground_threshold: float | None
    explained_variance_ratio: list[float]
    first_component_flipped: bool
    tensors: Tensors
    outputs: PngOutputs
    foreground_patches: NotRequired[list[int]]


@final
class PatchQuery(TypedDict):
    row: int
    col: int
    index: int


@final
class TextQuery(TypedDict):
    text: str


@final
class MostSimilar(TypedDict):
    row: int
    col: int
    similarity: float


@final
class SimilarDoc(FigureDoc):
    """figures similar: a patch against every patch (of the same image, or of --to's)."""

    query: PatchQuery
    target: str
    target_grid: list[int]
    layer: int
    norm: bool
    most_similar: MostSimilar
    tensors: Tensors
    outputs: PngOutputs


@final
class SimilarTextDoc(FigureDoc):
    """figures similar --text: every patch against a prompt."""

    query: TextQuery
    layer: int
    norm: bool
    joint_space: str
    most_similar: MostSimilar
    tensors: Tensors
    outputs: PngOutputs


@final
class OutlierRow(TypedDict):
    layer: int
    row: int
    col: int
    token: int
    norm: float
    class_attention: float | None


@final
class RegisterRow(TypedDict):
    layer: int
    register: int
    token: int
    norm: float
    class_attention: float | None


@final
class NormsDoc(FigureDoc):
    rule: str
    attention_row: str | None
    thresholds: list[float]
    outliers: list[OutlierRow]
    registers: list[RegisterRow]
    tensors: Tensors
    outputs: PngOutputs


FigureDocument = FiltersDoc | PcaDoc | SimilarDoc | SimilarTextDoc | NormsDoc


@final
class ShownTable(TypedDict):
    """A table a figure shows in the terminal (and a notebook): not part of the JSON."""

    title: str
    columns: list[str]
    rows: list[list[str | float]]


# --- view, info ---------------------------------------------------------------------------------


@final
class StorageRow(TypedDict):
    image: str
    layers: dict[str, str]  # layer → how its attention is stored (qk, rows)


@final
class TextScores(TypedDict):
    image: str
    probs: list[float]
    logits: list[float]


@final
class ViewText(TypedDict):
    prompts: list[str]
    rule: str
    method: str
    scores: list[TextScores]


@final
class ViewDoc(TypedDict):
    command: Literal["view"]
    output: str
    size_bytes: int
    size_mb: float
    images: list[str]
    layers: list[int]
    to: str | None
    model: ModelDoc
    max_map_error: float
    storage: list[StorageRow]
    estimated_size_bytes: int
    text: NotRequired[ViewText]


@final
class IgnoredSummary(TypedDict):
    text_tower: int
    other: list[str]


ClassLabels = TypedDict("ClassLabels", {"count": int, "from": str | None, "first": list[str]})


@final
class InfoDoc(TypedDict):
    command: Literal["info"]
    input: None
    patch_size: int
    grid: list[int]
    num_patches: int
    model: ModelDoc
    tensors: Tensors
    size: list[int]
    prefix_tokens: str
    size_note: NotRequired[str]
    preprocess: NotRequired[dict[str, JSONValue]]
    ignored_summary: NotRequired[IgnoredSummary]
    class_labels: NotRequired[ClassLabels]


# --- compare, probe -----------------------------------------------------------------------------


@final
class BestMatch(TypedDict):
    layer: int
    best_b: int
    score: float


@final
class StoredModelDoc(TypedDict):
    """The `model` a features file says wrote it (`dataset.file_metadata`)."""

    name: str
    source: str
    family: str | None
    weights: str | None
    weights_sha256: str | None
    seed: int | None
    dtype: str
    dim: int
    depth: int
    heads: int
    patch_size: int
    pooling: str
    posenc: str
    config_sha256: str


class Matrices(TypedDict):
    """compare's matrices, and the best-matching layer of B per layer of A."""

    similarity: dict[str, list[list[float]]]  # metric → (LA, LB)
    best: dict[str, list[BestMatch]]


class Comparison(Matrices):
    """The keys both kinds of `compare` share: the plan, the matrices and the best matches."""

    command: Literal["compare"]
    metrics: list[str]
    tokens: str
    samples: int
    layers_a: list[int]
    layers_b: list[int]
    self: bool
    cka_estimator: str | None
    topk: int
    cca_dim: int
    shape: list[int]


@final
class CompareDoc(Comparison, BatchCounts):
    """compare of two models' forward passes over images: the run's summary keys too."""

    outputs: PlotOutputs
    model_a: ModelDoc
    model_b: ModelDoc


@final
class CompareFeaturesDoc(Comparison):
    features: list[str]
    images: int
    processed: int
    model_a: StoredModelDoc
    model_b: StoredModelDoc
    outputs: PlotOutputs


@final
class ProbeSplit(TypedDict):
    folds: NotRequired[int]
    test_fraction: NotRequired[float]


@final
class LayerAccuracy(TypedDict):
    layer: int
    knn: float
    linear: float


@final
class BestLayer(TypedDict):
    layer: int
    accuracy: float


@final
class ProbeBest(TypedDict):
    knn: BestLayer
    linear: BestLayer


@final
class ProbeDoc(TypedDict):
    command: Literal["probe"]
    images: int
    processed: int
    classes: list[str]
    labels_from: str
    tokens: str
    layers: list[int]
    k: int
    temperature: float
    l2: float
    seed: int
    split: ProbeSplit
    test_images: int
    accuracy: list[LayerAccuracy]
    best: ProbeBest
    model: ModelDoc
    outputs: PlotOutputs


__all__ = [
    "AnyFigure", "ArrayOutput", "AttendBatchDoc", "AttendDoc", "AttendOutputs", "BatchCounts", "BatchRun",
    "BatchSummary",
    "BestMatch", "ChannelStats", "ClassLabels", "ClassifyDoc", "CompareDoc", "CompareFeaturesDoc", "Comparison",
    "EmbedBatchDoc", "EmbedDoc", "ExplainBatchDoc", "ExplainDoc", "ExplainImage", "ExplainOutputs", "ExplainRun",
    "ExplainSummary", "FigureDoc", "FigureDocument", "FiltersDoc", "HeadRow", "IgnoredSummary", "InfoDoc",
    "InputDoc", "JSONValue", "MasksDoc", "Matrices", "MethodPatches", "ModelDoc", "MostSimilar", "NormsDoc",
    "OutlierRow", "PatchQuery", "PatchLayout", "PatchifyBatchDoc", "PatchifyDoc", "PcaDoc", "PngOutputs", "PosencDoc",
    "PositionRow", "ProbeDoc", "PromptRow", "RegisterRow", "RelbiasDoc", "RolloutSummary", "RopeDoc", "ShownTable",
    "SimilarDoc", "SimilarTextDoc", "SingleDoc", "StoredModelDoc", "TensorStats", "Tensors", "TextEmbedDoc",
    "TextModelDoc", "TextQuery", "TopPatch", "UnpatchifyDoc", "ViewDoc", "ViewText",
]

"""What the commands return: numpy arrays and the JSON document (`to_json()`) the CLI prints or renders.

The lowest module of the API beside `display.py`: every command module and the CLI import their
result classes from here, and it imports no command (so no command module needs another's).
Arrays are numpy on the CPU; one image's have no batch axis, several images' a leading one.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

from vitcli.api.display import ShowsItself
from vitcli.api.documents import (
    AttendBatchDoc,
    AttendDoc,
    EmbedBatchDoc,
    EmbedDoc,
    ExplainBatchDoc,
    ExplainDoc,
    PatchifyBatchDoc,
    PatchifyDoc,
    PosencDoc,
    RelbiasDoc,
    RopeDoc,
    ShownTable,
    UnpatchifyDoc,
    ViewDoc,
)

if TYPE_CHECKING:
    import numpy as np

    from vitcli.api.images import FittedImage

# The JSON objects of the commands, as printed by `--json` (keys in api/documents.py and per command in docs/).
PatchifyDocument = PatchifyDoc | PatchifyBatchDoc | UnpatchifyDoc
EmbedDocument = EmbedDoc | EmbedBatchDoc
PosencDocument = PosencDoc | RelbiasDoc | RopeDoc
AttendDocument = AttendDoc | AttendBatchDoc
ExplainDocument = ExplainDoc | ExplainBatchDoc


@dataclass
class PatchifyResult(ShowsItself):
    """Patches of one image (N, P·P·C) or of many (B, N, P·P·C), and the command's JSON document."""

    array: "np.ndarray | None"  # None: several images written, not kept
    document: PatchifyDocument
    image: "FittedImage | None" = None  # the fitted image of a single image

    def to_json(self) -> PatchifyDocument:
        return self.document


@dataclass
class EmbedResult(ShowsItself):
    """What `embed` computed: arrays (numpy) and the JSON document the command prints."""

    stage: str
    # one image: every stage, no batch axis; several: {stage: (B, ...)} when kept (a list when sizes differ)
    arrays: "dict[str, np.ndarray | list[np.ndarray]]"
    document: EmbedDocument
    image: "FittedImage | None" = None  # the fitted image of a single image
    warnings: list[str] = field(default_factory=list)

    @property
    def array(self) -> "np.ndarray | list[np.ndarray] | None":
        """The chosen stage: (N, P·P·C), (N, D), (T, D) or (D,) for one image; a batch axis for several."""
        return self.arrays.get(self.stage)

    def to_json(self) -> EmbedDocument:
        return self.document


@dataclass
class PosencResult(ShowsItself):
    """The table (prefix rows + N, D), on the CPU (learned float32, fixed float64), and its document."""

    array: "np.ndarray"
    document: PosencDocument

    def to_json(self) -> PosencDocument:
        return self.document


@dataclass
class RopeResult(PosencResult):
    """A rotary embedding's angles (N, D/2) and their document."""

    document: RopeDoc


@dataclass
class AttendResult(ShowsItself):
    """What `attend` computed for one image (arrays without a batch axis) or for many (summaries)."""

    MAP: ClassVar[str | None] = "terminal_map"

    document: AttendDocument
    weights: "np.ndarray | None" = None  # (L, H_sel, Q, T) float32
    rollout: "np.ndarray | None" = None  # (T, T) float64
    rollout_row: "np.ndarray | None" = None  # (T,) float64: the query's row of the rollout
    distance: "np.ndarray | None" = None  # (L, H) pixels (several images: their mean)
    masks: "np.ndarray | None" = None  # (H, rows, cols) bool
    cosine: "np.ndarray | None" = None  # (L, H_sel, Q, T)
    qkv: "tuple[np.ndarray, np.ndarray, np.ndarray] | None" = None  # (q, k, v), each (L, H, T, d)
    terminal_map: "tuple[str, np.ndarray] | None" = None  # (title, (rows, cols) map) for the terminal heatmap
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> AttendDocument:
        return self.document


@dataclass
class ExplainResult(ShowsItself):
    """What `explain` computed: the map(s) and the JSON document the command prints."""

    MAP: ClassVar[str | None] = "maps"

    document: ExplainDocument
    maps: "np.ndarray | None" = None  # (rows, cols), (4, rows, cols) for all; a leading batch axis for several
    score: "float | np.ndarray | None" = None  # one image: a float; several: (B,)
    image: "FittedImage | None" = None  # the fitted image of a single image
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> ExplainDocument:
        return self.document


# FiltersDoc, PcaDoc, SimilarDoc | SimilarTextDoc or NormsDoc: each figure's own
FigureDoc = TypeVar("FigureDoc", bound=Mapping[str, object], covariant=True)


@dataclass
class FigureResult(ShowsItself, Generic[FigureDoc]):
    """One figure's array, the JSON document its command prints, and what the table lists."""

    MAP: ClassVar[str | None] = "heatmap"

    array: "np.ndarray"
    document: FigureDoc
    tables: list[ShownTable] = field(default_factory=list)  # for the terminal
    heatmap: "np.ndarray | None" = None  # (rows, cols) map for the terminal, when there is one
    images: "list[FittedImage]" = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> FigureDoc:
        return self.document

    def shown_tables(self) -> list[ShownTable]:
        return self.tables


@dataclass
class ViewResult(ShowsItself):
    """The written page: its path, size in bytes and JSON document."""

    path: str
    size: int
    document: ViewDoc
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> ViewDoc:
        return self.document


__all__ = ["AttendDocument", "AttendResult", "EmbedDocument", "EmbedResult", "ExplainDocument", "ExplainResult",
           "FigureResult", "PatchifyDocument", "PatchifyResult", "PosencDocument", "PosencResult", "RopeResult",
           "ViewResult"]

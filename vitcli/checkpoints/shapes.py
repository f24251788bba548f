"""Checkpoints described by shapes alone: a safetensors header read as JSON, tensors as `ShapeTensor`s.

Describing a checkpoint (`vitcli info`) needs the key names, shapes and dtypes only. A safetensors
file says all of them in its JSON header (a few kB before the data), so this module reads the header
and nothing else, without importing torch. A `ShapeTensor` answers what the family tables and
`infer_config` ask of a tensor (`.shape`, `.dtype`, `.dim()`, `.numel()`, concatenation, the
reshapes of `families/base.py`'s ops), so the same detection, key mapping and inference run on it.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from vitcli.errors import VitcliError

# safetensors dtype names → (torch-style name, bytes per element)
DTYPES = {"F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
          "F8_E4M3": ("float8_e4m3fn", 1), "F8_E5M2": ("float8_e5m2", 1), "I64": ("int64", 8), "I32": ("int32", 4),
          "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1), "U16": ("uint16", 2), "U32": ("uint32", 4),
          "U64": ("uint64", 8), "BOOL": ("bool", 1)}
FLOATING = {"float64", "float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2"}
MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own bound on a header


@dataclass(frozen=True)
class ShapeTensor:
    """A tensor's shape and dtype without its values: what describing a model needs of it."""

    shape: tuple[int, ...]
    dtype: str = "float32"  # torch's name without 'torch.'
    is_meta = True  # no values: nothing to scan for NaN (load.nonfinite_counts skips it)

    @classmethod
    def of(cls, t: Any) -> "ShapeTensor":
        """The shape and dtype of a torch tensor (its values are not read)."""
        return cls(tuple(int(n) for n in t.shape), str(t.dtype).removeprefix("torch."))

    def dim(self) -> int:
        return len(self.shape)

    def numel(self) -> int:
        return math.prod(self.shape)

    def is_floating_point(self) -> bool:
        return self.dtype in FLOATING

    def to(self, *args: Any, **kwargs: Any) -> "ShapeTensor":
        """Device moves keep the shape; a dtype given by name changes only the dtype."""
        dtype = kwargs.get("dtype", args[0] if args and not isinstance(args[0], str) else None)
        return ShapeTensor(self.shape, str(dtype).removeprefix("torch.")) if dtype is not None else self

    def reshape(self, *shape: int) -> "ShapeTensor":
        """torch's reshape on the shape alone (one -1 inferred); a count that does not fit is torch's RuntimeError."""
        want = list(shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape)
        if want.count(-1) == 1:
            known = math.prod(n for n in want if n != -1)
            want[want.index(-1)] = self.numel() // known if known else 0
        if math.prod(want) != self.numel():
            raise RuntimeError(f"shape {tuple(want)} is invalid for input of size {self.numel()}")
        return ShapeTensor(tuple(want), self.dtype)

    def permute(self, *dims: int) -> "ShapeTensor":
        return ShapeTensor(tuple(self.shape[d] for d in dims), self.dtype)

    def contiguous(self) -> "ShapeTensor":
        return self

    def t(self) -> "ShapeTensor":
        return ShapeTensor(self.shape[::-1], self.dtype)

    def __getitem__(self, rows: slice) -> "ShapeTensor":
        """Rows along dim 0 (the q3 / kv3 split of a stacked projection)."""
        return ShapeTensor((len(range(*rows.indices(self.shape[0]))), *self.shape[1:]), self.dtype)

    def __mul__(self, other: "ShapeTensor") -> "ShapeTensor":
        return self  # bias · mask: the bias's shape

    @staticmethod
    def cat(parts: Sequence["ShapeTensor"]) -> "ShapeTensor":
        """torch.cat(parts, 0) on shapes: the same trailing shape, rows added (torch's RuntimeError otherwise)."""
        if len({p.shape[1:] for p in parts}) != 1 or any(p.dim() == 0 for p in parts):
            raise RuntimeError("shapes cannot be concatenated along dim 0")
        return ShapeTensor((sum(p.shape[0] for p in parts), *parts[0].shape[1:]), parts[0].dtype)


def read_header(p: Path) -> tuple[dict[str, ShapeTensor], dict[str, str]]:
    """A safetensors file's tensors as shapes and its metadata, from the header alone; the header is
    checked as the safetensors library checks it (offsets contiguous, covering the data, sizes fitting
    the shapes), so a damaged file is the same one-line error as a full read."""
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(8)
        n = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < n <= min(MAX_HEADER_BYTES, size - 8):
            _bad(p, "header length out of range: truncated or not safetensors")
        text = f.read(n)
    try:
        from vitcli.checkpoints.bounds import parse_json

        header = parse_json(text.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        _bad(p, f"header is not JSON: {str(e)[:120]}")
    if not isinstance(header, dict):
        _bad(p, "header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        _bad(p, "__metadata__ must map names to strings")
    from vitcli.checkpoints.bounds import check_key_count

    check_key_count(p, len(header))
    tensors, spans = {}, []
    for key, entry in header.items():
        tensors[key], span = _entry(p, key, entry)
        spans.append(span)
    end = 0
    for begin, stop in sorted(spans):
        if begin != end:
            _bad(p, "tensor data offsets are not contiguous (a gap or overlap)")
        end = stop
    if end != size - 8 - n:
        _bad(p, f"the data holds {size - 8 - n:,} bytes, the header describes {end:,}: truncated or padded")
    return tensors, dict(metadata)


def _entry(p: Path, key: str, entry: object) -> tuple[ShapeTensor, tuple[int, int]]:
    """One header entry as a ShapeTensor and its (begin, end) byte span, checked."""
    if not isinstance(entry, dict) or entry.get("dtype") not in DTYPES:
        _bad(p, f"tensor {key!r:.60} has no known dtype")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        _bad(p, f"tensor {key!r:.60} has a malformed shape")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) and o >= 0 for o in offsets)
            and offsets[0] <= offsets[1]):
        _bad(p, f"tensor {key!r:.60} has malformed data offsets")
    name, width = DTYPES[entry["dtype"]]
    if math.prod(shape) * width != offsets[1] - offsets[0]:
        _bad(p, f"tensor {key!r:.60} holds {offsets[1] - offsets[0]:,} bytes, not the {math.prod(shape) * width:,} "
             "its shape needs")
    return ShapeTensor(tuple(shape), name), (offsets[0], offsets[1])


def _bad(p: Path, problem: str) -> NoReturn:
    raise VitcliError(str(p), f"not a readable safetensors file ({problem})")


__all__ = ["ShapeTensor", "read_header"]

"""Streaming outputs for many images: one `.npy` with a batch axis plus an index, or one file each.

Rows are written as they are computed, so memory is bounded by the batch, not the image count.
Everything goes to temporary names beside the target and is renamed into place by `commit()`;
`abort()` (or any exception inside `open_sink`) removes them and leaves earlier files untouched.

    with open_sink(output, output_dir, capacity=len(paths)) as sink:
        sink.add(rows, entries)   # rows (b, ...) for b images, entries: one dict each
        sink.skip(entry)          # an image that failed, with entry["error"]
"""

import json
import os
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vitcli.errors import VitcliError
from vitcli.io.arrays import _check_target, _os_problem, _umask
# A file name byte that is not UTF-8 (held as a surrogate, Python's surrogateescape) is written as the
# JSON escape \udcXX: the index stays valid UTF-8, and json.loads + os.fsencode give the bytes back.
JSON_NAMES = "backslashreplace"


def index_path(output: str) -> str:
    """`emb.npy` → `emb.index.jsonl` (any other name gets `.index.jsonl` appended)."""
    return (output[:-4] if output.lower().endswith(".npy") else output) + ".index.jsonl"


class Sink(Protocol):
    """Where the rows of a batch run go."""

    rows: int

    def add(self, rows: np.ndarray, entries: list[dict[str, Any]]) -> None: ...
    def skip(self, entry: dict[str, Any]) -> None: ...
    def commit(self) -> None: ...
    def abort(self) -> None: ...


class _Index:
    """The `.index.jsonl` lines, written to a temporary file as images finish."""

    def __init__(self, target: Path) -> None:
        fd, self.tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        self.file = os.fdopen(fd, "w", encoding="utf-8", errors=JSON_NAMES)
        self.target = target

    def write(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()


class ArraySink:
    """One `.npy` of shape (rows, ...) streamed to a temporary file, plus its index."""

    def __init__(self, output: str, capacity: int, index: Any = None) -> None:
        """`index(target)`: what writes the index lines (default: `.index.jsonl` beside the array)."""
        self.target = Path(output)
        _check_target(self.target)
        self.capacity, self.rows = capacity, 0
        self.row_shape: tuple[int, ...] | None = None
        self.dtype: np.dtype | None = None
        self.first_path = ""
        self.file: Any = None
        self.tmp: str | None = None
        self.index = _guard(output, index or (lambda: _Index(Path(index_path(output)))))

    def _open(self, rows: np.ndarray, path: str) -> None:
        """Create the temporary `.npy` with room for `capacity` rows shaped like these."""
        self.row_shape, self.dtype, self.first_path = rows.shape[1:], rows.dtype, path
        fd, self.tmp = _guard(str(self.target), lambda: tempfile.mkstemp(
            prefix=f".{self.target.name}.", suffix=".part", dir=self.target.parent))
        self.file = os.fdopen(fd, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(rows.dtype), "fortran_order": False,
                  "shape": (self.capacity, *self.row_shape)}
        np.lib.format.write_array_header_1_0(self.file, header)
        self.header_len = self.file.tell()

    def add(self, rows: np.ndarray, entries: list[dict[str, Any]]) -> None:
        """Append rows (b, ...) and their index lines (each gets its `row`)."""
        if self.file is None:
            self._open(rows, entries[0].get("path", ""))
        if rows.shape[1:] != self.row_shape or rows.dtype != self.dtype:
            raise VitcliError(entries[0].get("path", "?"), (
                f"gives shape {list(rows.shape[1:])} {rows.dtype}, but {self.first_path} gave "
                f"{list(self.row_shape or ())} {self.dtype}: one array needs one size (use a fixed --size, or --output-dir)"))
        _guard(str(self.target), lambda: self.file.write(np.ascontiguousarray(rows).data))
        for entry in entries:
            self.index.write({**entry, "row": self.rows})
            self.rows += 1

    def skip(self, entry: dict[str, Any]) -> None:
        self.index.write({**entry, "row": None})

    def commit(self) -> None:
        """Fix the header when images were skipped, fsync, rename the array and the index into place."""
        if self.file is None:
            raise VitcliError(str(self.target), "no image could be processed, nothing written")
        if self.rows != self.capacity:
            self._shrink()
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        self.index.close()
        mode = 0o666 & ~_umask()
        for tmp, target in ((self.index.tmp, self.index.target), (self.tmp, self.target)):
            os.chmod(tmp, mode)
            _guard(str(target), lambda: os.replace(tmp, target))  # noqa: B023

    def _shrink(self) -> None:
        """Rewrite the header for the rows actually written (same length) and cut the file there."""
        text = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": (self.rows, *self.row_shape)})
        pad = self.header_len - 10 - len(text) - 1
        self.file.seek(0)
        self.file.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", self.header_len - 10) + (text + " " * pad + "\n").encode("latin1"))
        row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.file.truncate(self.header_len + self.rows * row_bytes)

    def abort(self) -> None:
        for f in (self.file, self.index.file):
            if f is not None and not f.closed:
                f.close()
        for tmp in (self.tmp, self.index.tmp):
            _remove(tmp)


class FolderSink:
    """One `.npy` per image in a folder, plus `index.jsonl`; staged in a hidden folder until commit."""

    def __init__(self, folder: str, paths: list[str]) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise VitcliError(folder, "is not a folder")
        _guard(folder, lambda: self.folder.mkdir(parents=True, exist_ok=True))
        self.stage = Path(_guard(folder, lambda: tempfile.mkdtemp(prefix=".vitcli-", dir=self.folder)))
        self.names = output_names(paths)
        self.rows = 0
        self.index = open(self.stage / "index.jsonl", "w", encoding="utf-8", errors=JSON_NAMES)

    def add(self, rows: np.ndarray, entries: list[dict[str, Any]]) -> None:
        """Write each row (its own shape) to its own file in the staging folder."""
        for row, entry in zip(rows, entries):
            self.add_one(row, entry)

    def add_one(self, array: np.ndarray, entry: dict[str, Any]) -> None:
        """One image's array (any shape) to its own file; images of different sizes are fine here."""
        name = self.names[entry["path"]]
        dest = self.stage / name
        _guard(str(self.folder / name), lambda: (dest.parent.mkdir(parents=True, exist_ok=True),
                                                  np.save(dest, np.ascontiguousarray(array), allow_pickle=False)))
        self.index.write(json.dumps({**entry, "file": name}, ensure_ascii=False) + "\n")
        self.rows += 1

    def skip(self, entry: dict[str, Any]) -> None:
        self.index.write(json.dumps({**entry, "file": None}, ensure_ascii=False) + "\n")

    def commit(self) -> None:
        """Move every staged file into the folder (replacing older ones), then the index."""
        if self.rows == 0:
            raise VitcliError(str(self.folder), "no image could be processed, nothing written")
        self.index.close()
        mode = 0o666 & ~_umask()
        staged = sorted(p for p in self.stage.rglob("*") if p.is_file() and p.name != "index.jsonl")
        for p in [*staged, self.stage / "index.jsonl"]:
            rel = p.relative_to(self.stage)
            (self.folder / rel).parent.mkdir(parents=True, exist_ok=True)
            os.chmod(p, mode)
            _guard(str(self.folder / rel), lambda: os.replace(p, self.folder / rel))  # noqa: B023
        shutil.rmtree(self.stage, ignore_errors=True)

    def abort(self) -> None:
        if not self.index.closed:
            self.index.close()
        shutil.rmtree(self.stage, ignore_errors=True)


def output_names(paths: list[str]) -> dict[str, str]:
    """Input path → `.npy` name: its path below the inputs' common folder, suffix replaced."""
    absolute = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([os.path.dirname(a) for a in absolute]) if absolute else ""
    names = {p: str(Path(os.path.relpath(a, root)).with_suffix(".npy")) for p, a in zip(paths, absolute)}
    seen: dict[str, str] = {}
    for p, n in names.items():
        if n in seen:
            raise VitcliError(p, f"would write {n}, as {seen[n]} does: rename one, or use -o FILE.npy")
        seen[n] = p
    return names


@contextmanager
def open_sink(output: str | None, output_dir: str | None, paths: list[str]) -> Iterator[Sink | None]:
    """The sink for -o FILE.npy or --output-dir (None when neither); committed on success only."""
    if output and output_dir:
        raise VitcliError("--output-dir", "give either -o FILE.npy or --output-dir, not both")
    if output == "-":
        raise VitcliError("-o -", "several images cannot stream to standard output; give -o FILE.npy or --output-dir")
    if not output and not output_dir:
        yield None
        return
    sink: Sink = FolderSink(output_dir, paths) if output_dir else ArraySink(output, len(paths))  # type: ignore[arg-type]
    try:
        yield sink
        sink.commit()
    except BaseException:
        sink.abort()
        raise


def _guard(name: str, action: Any) -> Any:
    """Run `action()`, turning an OSError into the one-line error naming `name`."""
    try:
        return action()
    except OSError as e:
        raise VitcliError(name, f"cannot write: {_os_problem(e)}") from None


def _remove(path: str | None) -> None:
    if path:
        try:
            os.unlink(path)
        except OSError:
            pass

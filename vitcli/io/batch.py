"""Streaming outputs for many images: one `.npy` with a batch axis plus an index, or one file each.

Rows are written as they are computed, so memory is bounded by the batch, not the image count.
Everything goes to temporary names beside the target (vitcli.io.atomic) and is renamed into place
by `commit()`; `abort()` (or any exception inside `open_sink`) removes them and leaves earlier files
untouched. An --output-dir folder is built beside DIR and swapped in whole (`swap_folder`); index
lines are written in input order whatever order images fail in.

    with open_sink(output, output_dir, capacity=len(paths)) as sink:
        sink.add(rows, entries)   # rows (b, ...) for b images, entries: one dict each
        sink.skip(entry)          # an image that failed, with entry["error"]
"""

import json
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from vitcli.errors import VitcliError
from vitcli.io.atomic import (
    MARK,
    close_quietly,
    commit_file,
    discard,
    file_mode,
    guard,
    new_temp_file,
    new_temp_folder,
    swap_folder,
    sync_close,
)
from vitcli.io.checks import check_folder, check_target

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


class _Ordered:
    """Index lines kept in input order: a failed image is reported before the batch that precedes it."""

    def __init__(self, paths: list[str], write: Any) -> None:
        self.position: dict[str, list[int]] = {}
        for i, p in enumerate(paths):
            self.position.setdefault(p, []).append(i)
        self.write, self.cursor = write, 0
        self.waiting: dict[int, dict[str, Any]] = {}

    def put(self, entry: dict[str, Any]) -> None:
        slots = self.position.get(entry.get("path", ""))
        if not slots:
            return self.write(entry)
        self.waiting[slots.pop(0)] = entry
        while self.cursor in self.waiting:
            self.write(self.waiting.pop(self.cursor))
            self.cursor += 1

    def drain(self) -> None:
        for k in sorted(self.waiting):
            self.write(self.waiting.pop(k))


class _Index:
    """The `.index.jsonl` lines, written to a temporary file as images finish."""

    def __init__(self, target: Path) -> None:
        fd, self.tmp = new_temp_file(target)
        self.file = os.fdopen(fd, "w", encoding="utf-8", errors=JSON_NAMES)
        self.target = target

    def write(self, entry: dict[str, Any]) -> None:
        guard(self.target, lambda: self.file.write(json.dumps(entry, ensure_ascii=False) + "\n"))

    def close(self) -> None:
        guard(self.target, lambda: sync_close(self.file))


class ArraySink:
    """One `.npy` of shape (rows, ...) streamed to a temporary file, plus its index."""

    def __init__(self, output: str, capacity: int, index: Any = None, paths: list[str] | None = None) -> None:
        """`index(target)`: what writes the index lines (default: `.index.jsonl` beside the array)."""
        self.target = Path(output)
        check_target(self.target)
        self.capacity, self.rows = capacity, 0
        self.row_shape: tuple[int, ...] | None = None
        self.dtype: np.dtype | None = None
        self.first_path = ""
        self.file: Any = None
        self.tmp: str | None = None
        self.index = guard(output, index or (lambda: _Index(Path(index_path(output)))))
        self.lines = _Ordered(paths or [], self.index.write)

    def _open(self, rows: np.ndarray, path: str) -> None:
        """Create the temporary `.npy` with room for `capacity` rows shaped like these."""
        self.row_shape, self.dtype, self.first_path = rows.shape[1:], rows.dtype, path
        fd, self.tmp = new_temp_file(self.target)
        self.file = os.fdopen(fd, "wb")
        header = {"descr": np.lib.format.dtype_to_descr(rows.dtype), "fortran_order": False,
                  "shape": (self.capacity, *self.row_shape)}
        guard(self.target, lambda: np.lib.format.write_array_header_1_0(self.file, header))
        self.header_len = self.file.tell()

    def add(self, rows: np.ndarray, entries: list[dict[str, Any]]) -> None:
        """Append rows (b, ...) and their index lines (each gets its `row`)."""
        if self.file is None:
            self._open(rows, entries[0].get("path", ""))
        if rows.shape[1:] != self.row_shape or rows.dtype != self.dtype:
            raise VitcliError(entries[0].get("path", "?"), (
                f"gives shape {list(rows.shape[1:])} {rows.dtype}, but {self.first_path} gave "
                f"{list(self.row_shape or ())} {self.dtype}: one array needs one size (use a fixed --size, or "
                "--output-dir)"))
        guard(self.target, lambda: self.file.write(np.ascontiguousarray(rows).data))
        for entry in entries:
            self.lines.put({**entry, "row": self.rows})
            self.rows += 1

    def skip(self, entry: dict[str, Any]) -> None:
        self.lines.put({**entry, "row": None})

    def commit(self) -> None:
        """Fix the header when images were skipped, fsync, rename the index then the array into place."""
        if self.file is None or self.tmp is None:
            raise VitcliError(str(self.target), "no image could be processed, nothing written")
        self.lines.drain()
        if self.rows != self.capacity:
            guard(self.target, self._shrink)
        guard(self.target, lambda: sync_close(self.file))
        self.index.close()
        commit_file(self.index.tmp, self.index.target)
        commit_file(self.tmp, self.target)

    def _shrink(self) -> None:
        """Rewrite the header for the rows actually written (same length) and cut the file there."""
        if self.dtype is None or self.row_shape is None:
            raise ValueError("no rows were written")
        text = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
                     "shape": (self.rows, *self.row_shape)})
        pad = self.header_len - 10 - len(text) - 1
        self.file.seek(0)
        magic = b"\x93NUMPY\x01\x00" + struct.pack("<H", self.header_len - 10)
        self.file.write(magic + (text + " " * pad + "\n").encode("latin1"))
        row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.file.truncate(self.header_len + self.rows * row_bytes)

    def abort(self) -> None:
        """Throw the temporary files away; never raises (a full disk fails the closing flush too)."""
        close_quietly(self.file)
        close_quietly(getattr(self.index, "file", None))
        discard(self.tmp, getattr(self.index, "tmp", None))


class FolderSink:
    """One `.npy` per image plus `index.jsonl`, built in a new folder beside DIR and swapped in whole.

    DIR may be missing, empty, or an earlier run's output (every file listed in its index.jsonl);
    anything else in it is refused, since the commit replaces the folder as one unit."""

    def __init__(self, folder: str, paths: list[str]) -> None:
        self.shown = Path(folder)
        check_folder(folder)
        self.folder = Path(os.path.realpath(folder))  # through a symlink, the folder it names
        _check_replaceable(self.folder, folder)
        self.stage = new_temp_folder(self.folder)
        self.names = output_names(paths)
        self.rows = 0
        self.index = guard(self.shown / "index.jsonl",
                           # open for the whole run, closed by commit / abort
                           lambda: open(self.stage / "index.jsonl", "w", encoding="utf-8",  # noqa: SIM115
                                        errors=JSON_NAMES))
        self.lines = _Ordered(paths, self._line)

    def _line(self, entry: dict[str, Any]) -> None:
        guard(self.shown / "index.jsonl", lambda: self.index.write(json.dumps(entry, ensure_ascii=False) + "\n"))

    def add(self, rows: np.ndarray, entries: list[dict[str, Any]]) -> None:
        """Write each row (its own shape) to its own file in the staging folder."""
        for row, entry in zip(rows, entries, strict=True):
            self.add_one(row, entry)

    def add_one(self, array: np.ndarray, entry: dict[str, Any]) -> None:
        """One image's array (any shape) to its own file; images of different sizes are fine here."""
        name = self.names[entry["path"]]
        dest = self.stage / name

        def save() -> None:
            dest.parent.mkdir(parents=True, exist_ok=True)
            np.save(dest, np.ascontiguousarray(array), allow_pickle=False)

        guard(self.shown / name, save)
        self.lines.put({**entry, "file": name})
        self.rows += 1

    def skip(self, entry: dict[str, Any]) -> None:
        self.lines.put({**entry, "file": None})

    def commit(self) -> None:
        """Close the index, fsync, and swap the new folder in for the old one in one step."""
        if self.rows == 0:
            raise VitcliError(str(self.shown), "no image could be processed, nothing written")
        self.lines.drain()
        index = self.shown / "index.jsonl"
        guard(index, lambda: sync_close(self.index))
        mode = file_mode()
        for p in self.stage.rglob("*"):
            if p.is_file():
                guard(self.shown / p.relative_to(self.stage), lambda: os.chmod(p, mode))  # noqa: B023
        swap_folder(self.stage, self.folder)

    def abort(self) -> None:
        close_quietly(self.index)
        discard(str(self.stage))


def _check_replaceable(folder: Path, shown: str) -> None:
    """An existing output folder may hold only an earlier run's files (those its index lists)."""
    if not folder.is_dir():
        return
    listed = {"index.jsonl"}
    try:
        with open(folder / "index.jsonl", encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    name = json.loads(line).get("file")
                except (ValueError, AttributeError):
                    continue
                if isinstance(name, str):
                    listed.add(name)
    except OSError:
        pass
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not _temporary(d)]
        for file in files:
            rel = os.path.relpath(os.path.join(root, file), folder)
            if rel not in listed and not _temporary(file):
                raise VitcliError(shown, f"holds {rel}, which no earlier run wrote (it is not in its index.jsonl): "
                                  "--output-dir replaces the folder whole; give a new or empty folder")


def _temporary(name: str) -> bool:
    """A temporary name of vitcli's (this version's, or the staging names of earlier ones)."""
    return MARK in name or name.startswith(".vitcli-") or (name.startswith(".") and name.endswith(".part"))


def output_names(paths: list[str]) -> dict[str, str]:
    """Input path → `.npy` name: its path below the inputs' common folder, suffix replaced."""
    absolute = [os.path.abspath(p) for p in paths]
    root = os.path.commonpath([os.path.dirname(a) for a in absolute]) if absolute else ""
    names = {p: str(Path(os.path.relpath(a, root)).with_suffix(".npy")) for p, a in zip(paths, absolute, strict=True)}
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
    sink: Sink = FolderSink(output_dir, paths) if output_dir else ArraySink(str(output), len(paths), paths=paths)
    try:
        yield sink
        sink.commit()
    except BaseException:
        sink.abort()
        raise


def _guard(name: str, action: Any) -> Any:
    """Run `action()`, turning an OSError into the one-line error naming `name` (see vitcli.io.atomic)."""
    return guard(name, action)


def _remove(path: str | None) -> None:
    discard(path)

"""Rows of a batch run as Arrow tables: one Parquet row per image, streamed to a temporary file.

    sink = ParquetSink("emb.parquet", paths, meta)   # meta: the file's key-value metadata (JSON)
    sink.add(rows, entries); sink.skip(entry); sink.commit()

Columns: `path`, `row` (the image's position in the sorted input list), `embedding`
(`fixed_size_list<float32>[D]` for a (D,) row; a list of D-vectors for (T, D); its shape is in
the metadata; `embed --stage layers` writes one `layer_<block>` column of D-vectors per layer
instead, named in the metadata's `layer_columns`), `original_size`, `size`, `grid` ([H, W] int32 pairs), `sha256` of
the file and `error` (null when fine; a failed image has an error and no embedding). pyarrow is imported here
only, so vitcli runs without it until a Parquet output is asked for.
"""

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import numpy as np

from vitcli.errors import VitcliError
from vitcli.io.atomic import commit_file, discard, guard, new_temp_file
from vitcli.io.checks import check_target

ROW_GROUP = 1024  # rows buffered before a Parquet row group is written
META_KEY = b"vitcli"  # the file metadata key holding vitcli's JSON document


def pyarrow() -> Any:
    """The pyarrow module, or the one-line error that says how to install it."""
    try:
        import pyarrow as pa
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise VitcliError("--format",
                          "Parquet output needs pyarrow: pip install 'vitcli[ray]' or pip install pyarrow") from None
    return pa


def file_sha256(path: str) -> str | None:
    """The hex sha256 of a file's bytes (None when it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def layer_column(block: int) -> str:
    """The Parquet column of one block's features in `embed --stage layers` files: layer_0, layer_3, …"""
    return f"layer_{block}"


def layer_columns(meta: dict[str, Any]) -> list[str] | None:
    """One column per layer for `embed --stage layers` (its metadata names the blocks), else None (`embedding`)."""
    return [layer_column(i) for i in meta["layers"]] if meta.get("stage") == "layers" else None


def schema(row_shape: tuple[int, ...] | None, meta: dict[str, Any], with_embedding: bool = True) -> Any:
    """The Arrow schema for rows of `row_shape` ((D,), (T, D), or (L, D) split into layer columns), with vitcli's
    metadata."""
    pa = pyarrow()
    pair = pa.list_(pa.int32(), 2)
    fields = [pa.field("path", pa.string()), pa.field("row", pa.int64())]
    split = layer_columns(meta) if with_embedding else None
    if split:
        fields += [pa.field(c, embedding_type(row_shape[-1:] if row_shape else ())) for c in split]
    elif with_embedding:
        fields.append(pa.field("embedding", embedding_type(row_shape)))
    fields += [pa.field("original_size", pair), pa.field("size", pair), pa.field("grid", pair),
               pa.field("sha256", pa.string()), pa.field("error", pa.string())]
    shape = list(row_shape) if row_shape else None
    doc = {**meta, "embedding_shape": shape, **({"layer_columns": split} if split else {})} if with_embedding else meta
    return pa.schema(fields, metadata={META_KEY: json.dumps(doc, sort_keys=True).encode()})


def embedding_type(row_shape: tuple[int, ...] | None) -> Any:
    """fixed_size_list<float32>[D] for (D,); list<fixed_size_list<float32>[D]> for (T, D)."""
    pa = pyarrow()
    if not row_shape:
        return pa.list_(pa.float32())
    vector = pa.list_(pa.float32(), int(row_shape[-1]))
    return vector if len(row_shape) == 1 else pa.list_(vector)


def embedding_array(rows: np.ndarray | None, valid: list[bool], row_shape: tuple[int, ...]) -> Any:
    """(b, D) or (b, T, D) float32 → the Arrow column, null where `valid` is False."""
    pa = pyarrow()
    d = int(row_shape[-1])
    flat = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1) if rows is not None else np.zeros(0, np.float32)
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(flat, pa.float32()), d)  # (b·T, D) or (b, D)
    per = int(np.prod(row_shape[:-1], dtype=np.int64)) if len(row_shape) > 1 else 1
    offsets, mask, at = [], [], 0
    for ok in valid:
        offsets.append(at)
        mask.append(not ok)
        at += per if ok else 0
    offsets.append(at)
    mask_arr = pa.array(mask, pa.bool_())
    if len(row_shape) == 1:
        return _spread_fixed(vectors, valid, d) if not all(valid) else vectors
    return pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), vectors, mask=mask_arr)


def _spread_fixed(vectors: Any, valid: list[bool], d: int) -> Any:
    """Fixed-size vectors for the valid rows only → one per row, null where invalid."""
    pa = pyarrow()
    values = vectors.flatten().to_numpy(zero_copy_only=False).reshape(-1, d)
    full = np.zeros((len(valid), d), np.float32)
    full[np.array(valid, bool)] = values
    return pa.FixedSizeListArray.from_arrays(pa.array(full.reshape(-1)), d, mask=pa.array([not v for v in valid]))


class ParquetSink:
    """One Parquet file of one row per image (failed ones too), streamed to a temporary file."""

    def __init__(self, output: str, paths: list[str], meta: dict[str, Any], *, first_row: int = 0,
                 embedding: bool = True) -> None:
        pyarrow()
        self.target = Path(output)
        check_target(self.target)
        self.position = {p: first_row + i for i, p in enumerate(paths)}
        self.meta, self.embedding = meta, embedding
        self.rows = 0
        self.errors: list[dict[str, Any]] = []
        self.row_shape: tuple[int, ...] | None = None
        self.pending: list[tuple[np.ndarray | None, dict[str, Any]]] = []
        self.waiting: dict[int, tuple[np.ndarray | None, dict[str, Any]]] = {}  # arrived before an earlier row
        self.cursor = first_row  # the next row to write
        self.writer: Any = None
        self.tmp: str | None = None
        self.order: list[int | None] = []

    def add(self, rows: np.ndarray, entries: list[dict[str, Any]]) -> None:
        """Rows (b, ...) of b images and their index entries."""
        if self.row_shape is None:
            self.row_shape = tuple(rows.shape[1:])
        elif tuple(rows.shape[1:]) != self.row_shape and self.embedding:
            raise VitcliError(entries[0].get("path", "?"), (
                f"gives shape {list(rows.shape[1:])}, but earlier images gave {list(self.row_shape)}: "
                "one table needs one size (use a fixed --size)"))
        for row, entry in zip(rows, entries, strict=True):
            self._arrive(row, entry)
            self.rows += 1

    def skip(self, entry: dict[str, Any]) -> None:
        """A failed image: a row with its error and no embedding."""
        self.errors.append(entry)
        self._arrive(None, {**entry, "sha256": entry.get("sha256") or file_sha256(entry["path"])})

    def _arrive(self, row: np.ndarray | None, entry: dict[str, Any]) -> None:
        """Keep rows in input order: a failed image is reported before the batch that precedes it."""
        self.waiting[self.position.get(entry["path"], self.cursor)] = (row, entry)
        while self.cursor in self.waiting:
            self.pending.append(self.waiting.pop(self.cursor))
            self.cursor += 1
        if len(self.pending) >= ROW_GROUP:
            self._flush()

    def _flush(self) -> None:
        if not self.pending or (self.row_shape is None and self.embedding):
            return  # only failed images so far: wait for the first shape
        pa = pyarrow()
        if self.writer is None:
            import pyarrow.parquet as pq

            fd, self.tmp = _mkstemp(self.target)
            os.close(fd)
            self.writer = _guard(self.target,
                                 lambda: pq.ParquetWriter(self.tmp, schema(self.row_shape, self.meta, self.embedding)))
        entries = [e for _, e in self.pending]
        valid = [r is not None for r, _ in self.pending]
        columns = {"path": pa.array([e["path"] for e in entries], pa.string()),
                   "row": pa.array([self.position.get(e["path"]) for e in entries], pa.int64())}
        if self.embedding:
            columns.update(self._features(valid))
        for key in ("original_size", "size", "grid"):
            columns[key] = pa.array([e.get(key) for e in entries], pa.list_(pa.int32(), 2))
        columns["sha256"] = pa.array([e.get("sha256") for e in entries], pa.string())
        columns["error"] = pa.array([e.get("error") for e in entries], pa.string())
        table = pa.table(columns, schema=self.writer.schema)
        _guard(self.target, lambda: self.writer.write_table(table))
        self.order += [self.position.get(e["path"]) for e in entries]
        self.pending.clear()

    def _features(self, valid: list[bool]) -> dict[str, Any]:
        """The pending rows' feature columns: `embedding`, or one column per layer for stage layers."""
        pa = pyarrow()
        split = layer_columns(self.meta)
        if not self.row_shape:  # every image failed
            return {c: pa.nulls(len(valid), embedding_type(())) for c in split or ["embedding"]}
        stacked = np.stack([r for r, _ in self.pending if r is not None]) if any(valid) else None  # (b, ...)
        if not split:
            return {"embedding": embedding_array(stacked, valid, self.row_shape)}
        return {c: embedding_array(None if stacked is None else stacked[:, j], valid, self.row_shape[-1:])
                for j, c in enumerate(split)}  # (b, L, D) → L columns of (b, D)

    def commit(self) -> None:
        """Write the last rows, fsync, rename into place (a run where every image failed still has rows)."""
        if self.row_shape is None and self.embedding:
            if not self.errors:
                raise VitcliError(str(self.target), "no image could be processed, nothing written")
            self.row_shape = ()
        self.pending += [self.waiting.pop(k) for k in sorted(self.waiting)]
        self._flush()
        if self.writer is None:
            raise VitcliError(str(self.target), "no image could be processed, nothing written")
        tmp = self.tmp
        if tmp is None:
            raise VitcliError(str(self.target), "no image could be processed, nothing written")

        def close() -> None:
            self.writer.close()
            _fsync(tmp)

        _guard(self.target, close)
        commit_file(tmp, self.target)
        self.tmp = None

    def abort(self) -> None:
        if self.writer is not None:
            with suppress(Exception):  # the file is being thrown away
                self.writer.close()
        discard(self.tmp)


def read_meta(path: str) -> dict[str, Any]:
    """vitcli's metadata document of a Parquet file it wrote."""
    import pyarrow.parquet as pq

    return json.loads(pq.read_schema(path).metadata[META_KEY])


def _mkstemp(target: Path) -> tuple[int, str]:
    return new_temp_file(target)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _guard(target: Path, action: Any) -> Any:
    return guard(target, action)


class MetadataIndex:
    """clip-retrieval's `metadata_N.parquet`: one row per row of `img_emb_N.npy` (the index an ArraySink writes).

    Failed images have no row there, so they are left out (the manifest lists them)."""

    def __init__(self, target: Path, meta: dict[str, Any]) -> None:
        pyarrow()
        self.target, self.meta = target, meta
        self.entries: list[dict[str, Any]] = []
        fd, self.tmp = _mkstemp(target)
        os.close(fd)
        self.file = None

    def write(self, entry: dict[str, Any]) -> None:
        if entry.get("row") is not None:
            self.entries.append(entry)

    def close(self) -> None:
        import pyarrow.parquet as pq

        pa = pyarrow()
        e = self.entries
        pair = pa.list_(pa.int32(), 2)
        columns = {"image_path": pa.array([x["path"] for x in e], pa.string()),
                   "row": pa.array([x["row"] for x in e], pa.int64()),
                   **{k: pa.array([x.get(k) for x in e], pair) for k in ("original_size", "size", "grid")},
                   "sha256": pa.array([x.get("sha256") for x in e], pa.string())}
        table = pa.table(columns).replace_schema_metadata({META_KEY: json.dumps(self.meta, sort_keys=True).encode()})
        _guard(self.target, lambda: pq.write_table(table, self.tmp))
        _fsync(self.tmp)


def layer_files(source: str) -> list[str]:
    """The Parquet files of `embed --stage layers`: one .parquet file, or a folder's part-*.parquet shards."""
    p = Path(source)
    if p.is_dir():
        files = sorted(str(f) for f in p.glob("part-*.parquet"))
        if not files:
            raise VitcliError(source, "holds no part-*.parquet shards (embed --stage layers --output-dir DIR "
                              "--format parquet writes them)")
        return files
    if not p.is_file():
        raise VitcliError(source, "does not exist")
    return [source]


def layer_meta(files: list[str]) -> dict[str, Any]:
    """The metadata of `embed --stage layers` files (their layers, tokens and model), checked to be that."""
    try:
        meta = read_meta(files[0])
    except Exception:  # noqa: BLE001 - not Parquet, or not vitcli's: one line naming the file
        raise VitcliError(files[0], "is not a Parquet file vitcli wrote") from None
    if meta.get("stage") != "layers":
        raise VitcliError(files[0], f"holds embed's stage {meta.get('stage')!r}, not layers (embed --stage layers)")
    if meta.get("layer_columns") != layer_columns(meta):
        raise VitcliError(files[0], "holds every layer in one column (an older vitcli): run embed --stage layers again "
                          "for one column per layer")
    return meta


def layer_rows(files: list[str], rows: int, layers: list[int]) -> Iterator[tuple[list[str], np.ndarray]]:
    """(paths, (b, len(layers), D) float32) chunks of `rows` images (the last one shorter): only the
    chosen blocks' columns are read, failed images left out."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    names = [layer_column(i) for i in layers]
    paths: list[str] = []
    parts: list[np.ndarray] = []
    held = 0
    for f in files:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=max(rows, 64), columns=["path", *names]):
            batch = batch.filter(pc.is_valid(batch.column(names[0])))
            if not batch.num_rows:
                continue
            values = np.stack([_vectors(batch.column(c)) for c in names], 1)  # (b, L, D)
            paths += batch.column("path").to_pylist()
            parts.append(values)
            held += batch.num_rows
            while held >= rows:
                stacked = np.concatenate(parts)
                yield paths[:rows], stacked[:rows]
                paths, parts, held = paths[rows:], [stacked[rows:]], held - rows
    if held:
        yield paths, np.concatenate(parts)


def _vectors(column: Any) -> np.ndarray:
    """A fixed_size_list<float32>[D] column without nulls → (b, D) float32."""
    d = column.type.list_size
    return column.flatten().to_numpy(zero_copy_only=False).reshape(len(column), d)


def count_rows(files: list[str]) -> int:
    """Images with a feature in the files (failed ones left out)."""
    import pyarrow.parquet as pq

    return sum(pq.read_table(f, columns=["error"]).column("error").null_count for f in files)

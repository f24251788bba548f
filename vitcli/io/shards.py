"""A sharded run's folder: shard files committed one by one, and a manifest that says what is done.

    DIR/manifest.json   vitcli version, format, shard size, options, the inputs' hash, done shards
    DIR/inputs.tsv      the sorted input list: path, size, mtime_ns (what the hash covers)
    DIR/part-00000.parquet …                      (--format parquet)
    DIR/img_emb/img_emb_0.npy + metadata/metadata_0.parquet …   (--format npy-shards)

A shard is written to temporary names and renamed into place, then the manifest is replaced
(written whole, fsynced, renamed). A kill at any moment leaves every listed shard whole; a shard
renamed but not yet listed is recomputed (the same bytes) on --resume.
"""

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitcli.errors import VitcliError

MANIFEST, INPUTS = "manifest.json", "inputs.tsv"
FORMATS = ("parquet", "npy-shards")


def shard_files(fmt: str, k: int) -> list[str]:
    """The files of shard k, relative to the run's folder."""
    if fmt == "parquet":
        return [f"part-{k:05d}.parquet"]
    return [f"img_emb/img_emb_{k}.npy", f"metadata/metadata_{k}.parquet"]


def input_listing(paths: list[str]) -> str:
    """One line per input: path, size and mtime in ns (-1 -1 when it cannot be read)."""
    lines = []
    for p in paths:
        try:
            st = os.stat(p)
            lines.append(f"{p}\t{st.st_size}\t{st.st_mtime_ns}")
        except OSError:
            lines.append(f"{p}\t-1\t-1")
    return "\n".join(lines) + "\n"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` whole (vitcli.io.arrays' atomic writer: temporary file, fsync, rename), then fsync
    the folder so the rename itself survives a crash."""
    from vitcli.io.arrays import write_bytes

    write_bytes(str(path), lambda f: f.write(text.encode("utf-8")))
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


@dataclass
class Manifest:
    """The manifest of one run's folder, and the shards it lists as done."""

    folder: Path
    doc: dict[str, Any] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return self.doc["format"]

    @property
    def shard_size(self) -> int:
        return self.doc["shard_size"]

    def shard_count(self) -> int:
        return -(-self.doc["inputs"]["count"] // self.shard_size)

    def missing(self) -> list[int]:
        """Shards not yet listed as done, in order."""
        return [k for k in range(self.shard_count()) if str(k) not in self.doc["shards"]]

    def path(self, name: str) -> Path:
        return self.folder / name

    def commit(self, k: int, rows: int, skipped: list[dict[str, str]]) -> None:
        """List shard k as done (its files are in place): their hashes, its counts."""
        files = {name: _file_sha(self.path(name)) for name in shard_files(self.format, k)}
        self.doc["shards"][str(k)] = {"files": files, "rows": rows, "skipped": skipped}
        self.doc["complete"] = not self.missing()
        write_atomic(self.path(MANIFEST), json.dumps(self.doc, indent=1, ensure_ascii=False))

    def outputs(self) -> dict[str, Any]:
        """The JSON `outputs` of a sharded run."""
        return {"output_dir": str(self.folder), "manifest": str(self.path(MANIFEST)), "format": self.format,
                "shards": self.shard_count(),
                "files": [n for k in range(self.shard_count()) for n in shard_files(self.format, k)]}


def open_manifest(folder: str, paths: list[str], fmt: str, shard_size: int, options: dict[str, Any],
                  resume: bool, version: str) -> Manifest:
    """The run's manifest: a new one in an empty (or new) folder, or the old one after --resume checks."""
    if shard_size < 1:
        raise VitcliError("--shard-size", f"must be at least 1, got {shard_size}")
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise VitcliError(folder, "is not a folder")
    listing = input_listing(paths)
    doc = {"vitcli": version, "format": fmt, "shard_size": shard_size, "options": options,
           "inputs": {"count": len(paths), "sha256": _sha(listing.encode()), "list": INPUTS},
           "shards": {}, "complete": False}
    if (root / MANIFEST).exists():
        if not resume:
            raise VitcliError(folder,
                              f"holds a run already ({MANIFEST}); add --resume to continue it, or give a new folder")
        return _resumed(root, doc, listing)
    _check_fresh(root, fmt, len(paths), shard_size)
    try:
        for sub in ("", *({str(Path(n).parent) for n in shard_files(fmt, 0)} - {"."})):
            (root / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise VitcliError(folder, f"cannot write: {e.strerror or e}") from None
    write_atomic(root / INPUTS, listing)
    manifest = Manifest(root, doc)
    write_atomic(root / MANIFEST, json.dumps(doc, indent=1, ensure_ascii=False))
    return manifest


def _check_fresh(root: Path, fmt: str, count: int, shard_size: int) -> None:
    """A folder without a manifest must not hold shard files a new run would replace."""
    for k in range(-(-count // shard_size)):
        for name in shard_files(fmt, k):
            if (root / name).exists():
                raise VitcliError(str(root / name), f"exists but {root / MANIFEST} does not; "
                                  "move it away or give a new folder (nothing was written)")
        if k > 2:  # the first few are enough to catch an old run's folder
            break


def _resumed(root: Path, new: dict[str, Any], listing: str) -> Manifest:
    """The folder's manifest, checked against this run; stale temporary files removed."""
    where = str(root / MANIFEST)
    try:
        old = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
        old["shards"], old["options"], old["inputs"]["sha256"]  # noqa: B018 - the keys every manifest has
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise VitcliError(where,
                          f"cannot be read as a vitcli manifest ({type(e).__name__}); give a new folder") from None
    if old.get("vitcli") != new["vitcli"]:
        raise VitcliError(where, f"was written by vitcli {old.get('vitcli')}, this is {new['vitcli']}: "
                          "resume with that version, or give a new folder")
    for key, option in (("format", "--format"), ("shard_size", "--shard-size")):
        if old.get(key) != new[key]:
            raise VitcliError(option,
                              f"is {new[key]}, but the run in {root} used {old.get(key)}: resume with the same options")
    for key in sorted(set(old["options"]) | set(new["options"])):
        if old["options"].get(key) != new["options"].get(key):
            raise VitcliError(key,
                              f"is {new['options'].get(key)}, but the run in {root} used {old['options'].get(key)}: "
                              "resume with the same options, or give a new folder")
    if old["inputs"]["sha256"] != new["inputs"]["sha256"]:
        raise VitcliError(where, f"the inputs changed since the run began ({_difference(root / INPUTS, listing)}): "
                          "resume with the same inputs, or give a new folder")
    manifest = Manifest(root, old)
    for k, shard in old["shards"].items():
        for name, sha in shard["files"].items():
            if _file_sha(manifest.path(name)) != sha:
                raise VitcliError(str(manifest.path(name)),
                                  "differs from the manifest (damaged or changed since it was "
                                  f"written); delete it and remove shard {k} from {MANIFEST}, or give a new folder")
    _remove_stale(root)
    return manifest


def _difference(old_list: Path, listing: str) -> str:
    """'2 added, 1 removed, 1 changed' between the recorded list and this one."""
    try:
        old = dict(line.split("\t", 1) for line in old_list.read_text(encoding="utf-8").splitlines() if line)
    except (OSError, ValueError):
        return f"{old_list} is missing"
    new = dict(line.split("\t", 1) for line in listing.splitlines() if line)
    added, removed = len(new.keys() - old.keys()), len(old.keys() - new.keys())
    changed = sum(1 for p in new.keys() & old.keys() if new[p] != old[p])
    return f"{added} added, {removed} removed, {changed} changed"


def _remove_stale(root: Path) -> None:
    """Temporary files a killed run left behind: this version's only when their writer is dead
    (vitcli.io.atomic.sweep), older versions' hidden `.NAME.*.part` always."""
    from vitcli.io.atomic import MARK, sweep

    for sub in (root, root / "img_emb", root / "metadata"):
        if sub.is_dir():
            sweep(sub)
            for p in sub.glob(".*.part"):
                if MARK not in p.name:
                    _unlink(str(p))


def _file_sha(path: Path) -> str | None:
    from vitcli.io.parquet import file_sha256

    return file_sha256(str(path))


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)

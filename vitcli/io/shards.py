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
                  resume: bool, version: str, command: dict[str, Any] | None = None) -> Manifest:
    """The run's manifest: a new one in an empty (or new) folder, or the old one after --resume checks.
    `command`: the options as given on the command line (not compared: `--resume` reads them back)."""
    if shard_size < 1:
        raise VitcliError("--shard-size", f"must be at least 1, got {shard_size}")
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise VitcliError(folder, "is not a folder")
    listing = input_listing(paths)
    doc = {"vitcli": version, "format": fmt, "shard_size": shard_size, "options": options,
           "inputs": {"count": len(paths), "sha256": _sha(listing.encode()), "list": INPUTS},
           "shards": {}, "complete": False, "command": command}
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


def read_manifest_command(folder: str) -> dict[str, Any] | None:
    """The options a run in `folder` was begun with (its manifest's `command`); None when there is no
    manifest. The manifest is read and checked as `--resume` reads it (a FIFO, a huge or a damaged file is
    one line here, before any option is compared with it)."""
    root = Path(folder)
    if not (root / MANIFEST).exists() and not (root / MANIFEST).is_symlink():
        return None
    command = load_manifest(root).get("command")
    return command if isinstance(command, dict) else None


def _check_fresh(root: Path, fmt: str, count: int, shard_size: int) -> None:
    """A folder without a manifest must not hold shard files a new run would replace."""
    for k in range(-(-count // shard_size)):
        for name in shard_files(fmt, k):
            if (root / name).exists():
                raise VitcliError(str(root / name), f"exists but {root / MANIFEST} does not; "
                                  "move it away or give a new folder (nothing was written)")
        if k > 2:  # the first few are enough to catch an old run's folder
            break


MAX_MANIFEST_BYTES = 64 << 20  # a manifest lists its shards: ~300 bytes each, 200,000 shards at most


def read_run_file(path: Path, cap: int, what: str) -> str:
    """A run folder's text file, read as images and configs are: a FIFO, device or socket refused by os.stat
    before it is opened, a file larger than `cap` refused unread (OSError passes)."""
    from vitcli.checkpoints.bounds import read_text_capped
    from vitcli.io.files import check_readable

    check_readable(str(path), what)
    try:
        return read_text_capped(path, cap, what)
    except UnicodeDecodeError:
        raise VitcliError(str(path), f"is not UTF-8 text: not {what}; give a new folder") from None


def load_manifest(root: Path) -> dict[str, Any]:
    """The folder's manifest: read as every run file is (read_run_file) and checked as a schema; else one line."""
    from vitcli.checkpoints.bounds import parse_json

    where = str(root / MANIFEST)
    try:
        doc = parse_json(read_run_file(root / MANIFEST, MAX_MANIFEST_BYTES, "a vitcli manifest"))
    except (OSError, ValueError) as e:
        raise VitcliError(where,
                          f"cannot be read as a vitcli manifest ({type(e).__name__}); give a new folder") from None
    problem = manifest_problem(doc)
    if problem:
        raise VitcliError(where, f"is not a vitcli manifest: {problem}; give a new folder")
    assert isinstance(doc, dict)
    return doc


def _resumed(root: Path, new: dict[str, Any], listing: str) -> Manifest:
    """The folder's manifest, checked against this run; stale temporary files removed."""
    where = str(root / MANIFEST)
    old = load_manifest(root)
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
    if old["inputs"]["sha256"] != new["inputs"]["sha256"] or old["inputs"]["count"] != new["inputs"]["count"]:
        raise VitcliError(where, f"the inputs changed since the run began ({_difference(root / INPUTS, listing)}): "
                          "resume with the same inputs, or give a new folder")
    manifest = Manifest(root, old)
    for k, shard in old["shards"].items():
        for name, sha in shard["files"].items():
            _check_regular(manifest.path(name))
            if _file_sha(manifest.path(name)) != sha:
                raise VitcliError(str(manifest.path(name)),
                                  "differs from the manifest (damaged or changed since it was "
                                  f"written); delete it and remove shard {k} from {MANIFEST}, or give a new folder")
    _remove_stale(root)
    return manifest


def _check_regular(path: Path) -> None:
    """A shard the manifest lists must be a regular file (a FIFO would block its hash, /dev/zero never end)."""
    from vitcli.io.files import special_kind

    try:
        kind = special_kind(str(path))
    except OSError:
        return  # a missing shard differs from the manifest: said next
    if kind is not None:
        raise VitcliError(str(path), f"is {kind}, not a shard file; delete it and remove its shard from "
                          f"{MANIFEST}, or give a new folder")


def _difference(old_list: Path, listing: str) -> str:
    """'2 added, 1 removed, 1 changed' between the recorded list and this one (the recorded list read under a
    cap: a few times this run's list)."""
    try:
        text = read_run_file(old_list, 4 * len(listing.encode()) + (1 << 20), "an input list")
        old = dict(line.split("\t", 1) for line in text.splitlines() if line)
    except (OSError, ValueError):
        return f"{old_list} is missing"
    except VitcliError as e:
        return f"{old_list}: {e.problem}"
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


# ---- the manifest as a schema: every field a resume reads, with its type and range ---------------

MAX_INPUTS = 1 << 31  # inputs in one run
_HEX64 = frozenset("0123456789abcdef")


def _is_int(v: object, low: int, high: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= high


def _is_sha(v: object) -> bool:
    return isinstance(v, str) and len(v) == 64 and set(v) <= _HEX64


def manifest_problem(doc: object) -> str | None:
    """What makes `doc` not a manifest this version writes (types, ranges, counts, file names), or None."""
    if not isinstance(doc, dict):
        return "not a JSON object"
    fields = {"vitcli": str, "format": str, "options": dict, "inputs": dict, "shards": dict, "complete": bool}
    for key, kind in fields.items():
        if not isinstance(doc.get(key), kind):
            return f"'{key}' must be a {kind.__name__}"
    if doc["format"] not in FORMATS:
        return f"'format' must be one of {', '.join(FORMATS)}"
    if not _is_int(doc.get("shard_size"), 1, MAX_INPUTS):
        return f"'shard_size' must be a whole number from 1 to {MAX_INPUTS:,}"
    inputs = doc["inputs"]
    if (not _is_int(inputs.get("count"), 0, MAX_INPUTS) or not _is_sha(inputs.get("sha256"))
            or inputs.get("list") != INPUTS):
        return f"'inputs' must hold a count from 0 to {MAX_INPUTS:,}, a sha256 and list '{INPUTS}'"
    if not all(isinstance(k, str) for k in doc["options"]) or not all(
            v is None or isinstance(v, (str, int, float, bool)) for v in doc["options"].values()):
        return "'options' must map option names to plain values"
    command = _command_problem(doc.get("command"))
    if command:
        return f"'command' {command}"
    shards = -(-inputs["count"] // doc["shard_size"])
    for key, shard in doc["shards"].items():
        problem = _shard_problem(doc["format"], key, shard, shards, doc["shard_size"])
        if problem:
            return f"shard {key[:20]!r}: {problem}"
    return None


def _command_problem(command: object) -> str | None:
    """What is wrong with the recorded options (`command`: option name → text, number, flag or list of texts)."""
    if command is None:
        return None
    if not isinstance(command, dict) or not all(isinstance(k, str) for k in command):
        return "must map option names to values"
    for key, v in command.items():
        texts = isinstance(v, list) and all(isinstance(x, str) for x in v)
        if not isinstance(v, (str, int, float, bool)) and not texts:
            return f"option {key[:40]!r} must be a text, number, flag or list of texts"
    return None


def _shard_problem(fmt: str, key: str, shard: object, shards: int, size: int) -> str | None:
    """What is wrong with one entry of 'shards' (its number, its files, its counts), or None."""
    if not (key.isascii() and key.isdigit() and str(int(key)) == key and int(key) < shards):
        return f"shard numbers run from 0 to {shards - 1}"
    if not isinstance(shard, dict) or not isinstance(shard.get("files"), dict):
        return "must hold 'files', 'rows' and 'skipped'"
    if set(shard["files"]) != set(shard_files(fmt, int(key))) or not all(map(_is_sha, shard["files"].values())):
        return f"'files' must map {', '.join(shard_files(fmt, int(key)))} (inside the folder) to their sha256"
    if not _is_int(shard.get("rows"), 0, size):
        return f"'rows' must be a whole number from 0 to {size}"
    skipped = shard.get("skipped")
    if not isinstance(skipped, list) or len(skipped) > size or not all(
            isinstance(s, dict) and all(isinstance(v, str) for v in s.values()) for s in skipped):
        return f"'skipped' must list at most {size} entries of text"
    return None

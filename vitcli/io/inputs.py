"""Many inputs: paths, globs, folders and list files expanded to one sorted list; parallel decoding.

Only the standard library at import time (the CLI imports this before torch).

Order: every input is expanded (a folder to its image files, a glob to its matches, a list file to
its lines), duplicates are dropped and the whole list is sorted by path (plain string order), so
the same files give the same rows whatever order they were named in. A duplicate is the same file
by its resolved path (`a.jpg`, `./a.jpg`, a symbolic link to it, a folder and a glob both reaching
it): the first name in sorted order is kept. Folders and `**` never follow symbolic links to
folders, so a link loop cannot make the walk endless. FIFOs, sockets and devices found in a folder
or glob stay in the list and are refused (or skipped with --skip-errors) before anything opens
them (`vitcli.io.files.check_readable`).
"""

import contextlib
import fnmatch
import glob
import os
import stat
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from vitcli.errors import VitcliError

# Files a folder contributes (case-insensitive); a file named explicitly may have any extension.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp",
    ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico", ".jp2", ".j2k",
})
GLOB_CHARS = frozenset("*?[")

T = TypeVar("T")
S = TypeVar("S")


@dataclass
class Inputs:
    """The expanded, sorted paths, and whether the user asked for many (folder, glob, list, > 1)."""

    paths: list[str]
    many: bool


def expand_inputs(items: Iterable[str], recursive: bool = False, from_list: str | None = None) -> Inputs:
    """Paths, quoted globs, folders (`recursive`: and their sub-folders) and a list file → sorted paths."""
    items = list(items)
    found: list[str] = []
    many = len(items) > 1 or from_list is not None
    for item in items:
        if item == "-":
            found.append(item)
        elif os.path.isdir(item):
            found += _folder_images(item, recursive)
            many = True
        elif not os.path.exists(item) and GLOB_CHARS & set(item):
            found += _glob(item, recursive)
            many = True
        else:
            found.append(item)  # a missing file fails when it is decoded, with its own line
    if from_list is not None:
        found += read_list(from_list)
    paths = _once(found)
    if "-" in paths and len(paths) > 1:
        raise VitcliError("-", "standard input can only be the one image; give files for several")
    if not paths:
        raise VitcliError(items[0] if items else (from_list or "IMAGE"),
                          "no image files found" + _recursive_hint(items, recursive))
    return Inputs(paths, many)


def _recursive_hint(items: list[str], recursive: bool) -> str:
    """When the folders named hold images only in their sub-folders: say so and name -r."""
    if recursive:
        return ""
    deeper = sum(len(_folder_images(item, True)) for item in items if os.path.isdir(item))
    return f" (its sub-folders hold {deeper}: add -r to include them)" if deeper else ""


def _once(found: list[str]) -> list[str]:
    """Sorted paths, each file once by its resolved path (the first name in sorted order kept)."""
    seen: set[str] = set()
    out: list[str] = []
    for path in sorted(set(found)):
        key = path if path == "-" else os.path.realpath(path)
        if key not in seen:
            seen.add(key)
            out.append(path)
    return out


def _folder_images(folder: str, recursive: bool) -> list[str]:
    """Image files (by extension) in a folder, hidden files and folders left out."""
    out: list[str] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")] if recursive else []
        out += [os.path.join(root, f) for f in files
                if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_EXTENSIONS]
    return out


def _glob(pattern: str, recursive: bool) -> list[str]:
    """Files matching a quoted glob (`**` spans folders); a folder that matches gives its images."""
    matches = _glob_walk(pattern) if "**" in pattern.split(os.sep) else glob.glob(pattern)
    if not matches:
        raise VitcliError(pattern, "no file matches this pattern")
    out: list[str] = []
    for m in matches:
        out += _folder_images(m, recursive) if os.path.isdir(m) else [m]
    return out


def _glob_walk(pattern: str) -> list[str]:
    """glob's matches of a `**` pattern, found by a walk that never follows links to folders.

    glob.glob(recursive=True) follows them, so a link to a parent folder makes it endless. As in
    glob, `*` and `**` do not match names starting with '.', and `**` matches zero or more folders.
    """
    parts = pattern.split(os.sep)
    fixed = next(i for i, part in enumerate(parts) if GLOB_CHARS & set(part))
    root, rest = os.sep.join(parts[:fixed]) or ("/" if pattern.startswith(os.sep) else "."), parts[fixed:]
    prefix = "" if root == "." and not pattern.startswith("./") else root.rstrip(os.sep) + os.sep
    out = [root] if _matches(rest, []) else []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        names = os.path.relpath(folder, root).split(os.sep) if folder != root else []
        out += [prefix + os.sep.join([*names, n]) for n in [*dirs, *files] if _matches(rest, [*names, n])]
    return out


def _matches(parts: list[str], names: list[str]) -> bool:
    """Whether path components `names` match pattern components `parts` (`**`: zero or more)."""
    if not parts:
        return not names
    if parts[0] == "**":
        return any(_matches(parts[1:], names[i:]) for i in range(len(names) + 1)
                   if not any(n.startswith(".") for n in names[:i]))
    if not names or (names[0].startswith(".") and not parts[0].startswith(".")):
        return False
    return fnmatch.fnmatchcase(names[0], parts[0]) and _matches(parts[1:], names[1:])


MAX_LIST_LINE = 4096  # bytes: PATH_MAX on Linux; a longer line is no path (a device, a binary file)
MAX_LIST_LINES = 10_000_000
MAX_LIST_BYTES = 1 << 30


def read_list(path: str) -> list[str]:
    """One path per line ('-': standard input); blank lines and lines starting with # skipped.

    Read a line at a time, each at most MAX_LIST_LINE bytes, at most MAX_LIST_LINES lines and
    MAX_LIST_BYTES in all: a device or an endless stream stops at a bound instead of filling memory."""
    try:
        if path == "-":
            return _list_lines(getattr(sys.stdin, "buffer", sys.stdin), path)
        mode = os.stat(path).st_mode
        if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISSOCK(mode):
            raise VitcliError(path, "is a device, not a list of paths")
        with open(path, "rb") as f:
            return _list_lines(f, path)
    except FileNotFoundError:
        raise VitcliError(path, "no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise VitcliError(path, f"cannot read the list: {getattr(e, 'strerror', None) or e}") from None


def _list_lines(f, path: str) -> list[str]:
    """The kept lines of a binary stream, within the bounds of `read_list`."""
    out: list[str] = []
    total = 0
    for number in range(1, MAX_LIST_LINES + 2):
        raw = f.readline(MAX_LIST_LINE + 1)
        if not raw:
            return out
        if number > MAX_LIST_LINES:
            raise VitcliError(path, f"more than {MAX_LIST_LINES:,} lines: not a list of image paths")
        total += len(raw)
        if len(raw) > MAX_LIST_LINE and raw[-1:] not in (b"\n", "\n"):
            raise VitcliError(path, f"line {number:,} is longer than {MAX_LIST_LINE} bytes: not a path "
                              "(a device or a binary file?)")
        if total > MAX_LIST_BYTES:
            raise VitcliError(path, f"more than {MAX_LIST_BYTES >> 20:,} MiB: not a list of image paths")
        line = (raw.decode() if isinstance(raw, bytes) else raw).strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out  # pragma: no cover (the loop returns or raises)


def draft_size(requested: tuple[int, int] | None, fit: str) -> int | None:
    """The smallest side a JPEG may be decoded at: twice the longer side of the final size.

    Pillow's draft mode then decodes at 1/2, 1/4 or 1/8 scale only while the decoded image stays
    at least twice the resized image in each direction; a photo whose shorter side is below 4x the
    longer target side (below 896 px for 224) is decoded in full, exactly as without draft.
    `--size native` and `--fit strict` never draft.
    """
    if requested is None or fit == "strict":
        return None
    return 2 * max(requested)


@dataclass
class Decoded(Generic[T]):
    """One input after decoding: its position in the sorted list, and the value or the error."""

    index: int
    path: object  # the input decoded: a path, or what the caller gave (an item and its name)
    value: T | None
    error: VitcliError | None


def decode_all(paths: Sequence[S], decode: Callable[[S], T], workers: int, ahead: int,
               overlap: bool = True) -> Iterator[Decoded[T]]:
    """Run `decode` on every path in `workers` threads, yielding results in order.

    overlap=True: decoding runs on while the consumer works, at most `ahead` images ahead (memory
    stays bounded); right when the consumer is a GPU. overlap=False: `ahead` images at a time, all
    threads together, only while the consumer waits for them; right when the consumer is a CPU
    model that needs every core (running both at once slows the model more than decoding gains).
    A `VitcliError` is returned in `error`; any other exception propagates.
    """
    if workers <= 1:
        for i, path in enumerate(paths):
            yield _decode_one(i, path, decode)
        return
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vitcli-decode", initializer=_lower_priority)
    try:
        if not overlap:
            for start in range(0, len(paths), ahead):
                chunk = [pool.submit(_decode_one, i, p, decode) for i,
                         p in enumerate(paths[start:start + ahead], start)]
                for future in chunk:
                    yield future.result()
            return
        pending: list[Future[Decoded[T]]] = []
        for i, path in enumerate(paths):
            pending.append(pool.submit(_decode_one, i, path, decode))
            if len(pending) >= max(ahead, workers):
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


DECODE_NICE = 10  # Linux nice value of the decoding threads


def _lower_priority() -> None:
    """Decoding threads yield the CPU to the model's threads: they fill idle time, never stall a batch.

    On Linux a thread has its own nice value; elsewhere this does nothing.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICE)


def _decode_one(index: int, path: S, decode: Callable[[S], T]) -> Decoded[T]:
    try:
        return Decoded(index, path, decode(path), None)
    except VitcliError as e:
        return Decoded(index, path, None, e)


def default_workers() -> int:
    """Decoding threads: one per CPU core, at most 8."""
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))

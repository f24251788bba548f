"""Bounds on what a checkpoint may make vitcli read: capped text files, a tensor count, zip members'
declared sizes against the memory limit, members streamed into one buffer of their declared size.
"""

import json
import os
import stat
import zipfile
from pathlib import Path
from typing import cast

from vitcli.core.budget import format_bytes, memory_limit, over
from vitcli.errors import VitcliError

MAX_CONFIG_BYTES = 16 << 20  # a config file is kilobytes; a larger one is refused unread
MAX_INDEX_BYTES = 256 << 20  # a shard index lists every key: megabytes for the largest models


def read_text_capped(path: Path, cap: int, what: str) -> str:
    """A regular file's UTF-8 text, refused unread when it is larger than `cap` bytes (OSError passes).

    Checked with os.stat before it is opened: opening a FIFO blocks until a writer comes, and a link to
    /dev/zero never ends."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        raise VitcliError(str(path), f"not a regular file: a device, pipe or socket cannot hold {what}")
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise VitcliError(str(path), f"not a regular file: a device, pipe or socket cannot hold {what}")
        if st.st_size > cap:
            raise VitcliError(str(path), f"the file holds {format_bytes(st.st_size)}, more than {what} can "
                              f"({format_bytes(cap)} at most)")
        data = f.read(cap + 1)
    if len(data) > cap:  # grew while read
        raise VitcliError(str(path), f"more than {format_bytes(cap)}: more than {what} can hold")
    return data.decode("utf-8")


def parse_json(text: str | bytes) -> object:
    """json.loads, with nesting deeper than Python's stack (RecursionError) a ValueError like any other bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("nested too deeply (thousands of levels)") from None


# tensors in one checkpoint: 20× the largest real ViT checkpoints (CLIP bigG with its text tower, ~1,000)
MAX_KEYS = 20_000


def check_key_count(p: Path, n: int) -> None:
    """Refuse a checkpoint with more tensors than any ViT has, before they are made or scanned."""
    if n > MAX_KEYS:
        raise VitcliError(str(p), f"holds {n:,} tensors, more than any ViT checkpoint ({MAX_KEYS:,} at most; "
                          "the largest real ones hold about a thousand)")


MAX_PICKLE_BYTES = 256 << 20  # data.pkl describes the module tree: kilobytes to a few megabytes


def check_declared_sizes(p: Path, z: zipfile.ZipFile, limit: int | None = None) -> None:
    """The sizes the zip directory declares, before any member is inflated: all of them together
    under the memory limit (a 2 MB archive may declare gigabytes of zeros)."""
    total = sum(info.file_size for info in z.infolist())
    problem = over(total, memory_limit() if limit is None else limit,
                   f"inflating its {len(z.infolist()):,} members "
                   f"({format_bytes(sum(i.compress_size for i in z.infolist()))} compressed)")
    if problem:
        raise VitcliError(str(p), problem, needs="max_memory")


def read_member(z: zipfile.ZipFile, name: str, where: str, cap: int | None = None) -> bytearray:
    """One member into a buffer of its declared size, streamed (never more than it declares, never copied)."""
    info = z.getinfo(name)
    if cap is not None and info.file_size > cap:
        raise VitcliError(where, f"{name} declares {format_bytes(info.file_size)}, more than it can hold "
                          f"({format_bytes(cap)} at most)")
    buf = bytearray(info.file_size)
    view, done = memoryview(buf), 0
    with z.open(info) as opened:
        f = cast(zipfile.ZipExtFile, opened)
        while done < info.file_size:
            n = f.readinto(view[done:done + (1 << 20)])
            if not n:
                raise VitcliError(where, f"{name} is shorter than its declared {info.file_size} bytes")
            done += n
    return buf


__all__ = ["MAX_CONFIG_BYTES", "MAX_INDEX_BYTES", "MAX_KEYS", "MAX_PICKLE_BYTES", "check_declared_sizes",
           "check_key_count", "parse_json", "read_member", "read_text_capped"]

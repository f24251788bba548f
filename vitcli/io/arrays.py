"""Writing outputs so that nothing on disk is ever half-written.

Every file goes through vitcli.io.atomic: a temporary name in the target folder, renamed into
place only when complete, so an existing file is replaced by a whole new one or not at all.
`-` means standard output. Devices and pipes (e.g. /dev/full, /dev/null) are written directly, since they cannot be
renamed over.
"""

import io
import sys
from collections.abc import Callable
from typing import BinaryIO

import numpy as np

from vitcli.errors import VitcliError
from vitcli.io.atomic import atomic_file


def write_bytes(path: str, produce: Callable[[BinaryIO], object]) -> None:
    """Write through `produce(file)` atomically (see `vitcli.io.atomic.atomic_file`)."""
    with atomic_file(path) as f:
        produce(f)


def save_npy(path: str, array: np.ndarray) -> None:
    """Write one array as `.npy` to `path` or to standard output ('-')."""
    if path == "-":
        buf = io.BytesIO()  # np.save wants a seekable file for nothing, but pipes break on errors
        np.save(buf, array, allow_pickle=False)
        write_bytes(path, lambda f: f.write(buf.getvalue()))
        return
    write_bytes(path, lambda f: np.save(f, array, allow_pickle=False))


def save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write several named arrays as one `.npz`."""
    # numpy's stub types **kwds as if a name could be allow_pickle
    write_bytes(path, lambda f: np.savez(f, **arrays))  # type: ignore[arg-type]


def load_npy(path: str) -> np.ndarray:
    """Read an `.npy` array ('-' for standard input) with one-line errors; never unpickles."""
    from vitcli.io.files import check_readable

    try:
        if path == "-":
            from vitcli.core.budget import memory_limit
            from vitcli.io.images import _read_capped

            data = _read_capped(sys.stdin.buffer, path, (memory_limit(), "over the memory limit (--max-memory)"))
            return np.load(io.BytesIO(data), allow_pickle=False)
        check_readable(path, "an .npy file")  # a FIFO would block np.load's open
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise VitcliError(path, "no such file") from None
    except IsADirectoryError:
        raise VitcliError(path, "is a directory, not an .npy file") from None
    except (OSError, ValueError, EOFError) as e:
        raise VitcliError(path, f"not a readable .npy array ({e})") from None

"""Writing outputs so that nothing on disk is ever half-written.

Every file goes to a temporary name in the target folder and is renamed into place only when
complete, so an existing file is replaced by a whole new one or not at all. `-` means standard
output. Devices and pipes (e.g. /dev/full, /dev/null) are written directly, since they cannot be
renamed over.
"""

import io
import os
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np

from vitcli.errors import VitcliError


def _check_target(path: Path) -> None:
    """Fail early, with one line, when `path` cannot be an output file."""
    folder = path.parent
    if path.is_dir():
        raise VitcliError(str(path), "is a directory; give a file name")
    if not folder.exists():
        raise VitcliError(str(path), f"folder {folder} does not exist")
    if not folder.is_dir():
        raise VitcliError(str(path), f"{folder} is not a folder")


def _is_special(path: Path) -> bool:
    """True for devices, pipes and sockets, which are written in place."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode)


def _os_problem(e: OSError) -> str:
    """The OS's words for a failed write; numpy's short write (no errno) is a full device."""
    if e.errno is None and "requested and" in str(e):  # ndarray.tofile: "N requested and M written"
        return f"No space left on device ({str(e).replace('requested', 'bytes requested')})"
    return e.strerror or str(e)


@contextmanager
def atomic_writer(path: str) -> Iterator[BinaryIO]:
    """Yield a binary file; on success it replaces `path` whole, on any failure nothing changes."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    target = Path(path)
    _check_target(target)
    if _is_special(target):
        try:
            with open(target, "wb") as f:
                yield f
        except OSError as e:
            raise VitcliError(path, f"cannot write: {_os_problem(e)}") from None
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    except OSError as e:
        raise VitcliError(path, f"cannot write: {_os_problem(e)}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    except OSError as e:
        _remove(tmp)
        raise VitcliError(path, f"cannot write: {_os_problem(e)}") from None
    except BaseException:
        _remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass


def write_bytes(path: str, produce: Callable[[BinaryIO], None]) -> None:
    """Write through `produce(file)` atomically (see `atomic_writer`)."""
    with atomic_writer(path) as f:
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
    write_bytes(path, lambda f: np.savez(f, **arrays))


def load_npy(path: str) -> np.ndarray:
    """Read an `.npy` array ('-' for standard input) with one-line errors; never unpickles."""
    try:
        if path == "-":
            from vitcli.core.budget import memory_limit
            from vitcli.io.images import _read_capped

            data = _read_capped(sys.stdin.buffer, path, (memory_limit(), "over the memory limit (--max-memory)"))
            return np.load(io.BytesIO(data), allow_pickle=False)
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise VitcliError(path, "no such file") from None
    except IsADirectoryError:
        raise VitcliError(path, "is a directory, not an .npy file") from None
    except (OSError, ValueError, EOFError) as e:
        raise VitcliError(path, f"not a readable .npy array ({e})") from None

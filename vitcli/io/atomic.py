"""The one home of atomic writing: temporary names, commit by rename, clean-up, folder swaps.

Every output is built under a temporary name beside its target and renamed into place whole:

    .NAME.vitcli-tmp-HOST-PID-TAG.part   a file being written (NAME truncated to fit the folder)
    .NAME.vitcli-tmp-HOST-PID-TAG.new    an --output-dir folder being built beside NAME
    .NAME.vitcli-tmp-HOST-PID-TAG.old    an earlier NAME, swapped out and being removed

HOST is a hash of the host name and PID the writing process: `sweep(folder)` (run before any
temporary is made in a folder) removes those whose owner on this host is dead, e.g. killed with
SIGKILL. Failures and signals remove this process's own temporaries on the way out; clean-up and
folder swaps run with SIGINT / SIGTERM held back until they are done (`deferred_signals`).
"""

import atexit
import ctypes
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, BinaryIO

from vitcli.errors import VitcliError
from vitcli.io.checks import NAME_MAX, check_target, is_special, os_problem
from vitcli.signals import at_forced_exit, holding_exit

MARK = "vitcli-tmp"
HOST = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]
_PATTERN = re.compile(r"^\.(?P<name>.*)\.vitcli-tmp-(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-[0-9a-z]+"
                      r"\.(?P<kind>part|new|old)$", re.S)
_LIVE: set[str] = set()  # this process's temporaries, removed at exit if still there


# --- names and owners ------------------------------------------------------------------------------


def temp_name(name: str, kind: str = "part") -> str:
    """A hidden temporary name for `name`, carrying this host and pid; always short enough."""
    tail = f".{MARK}-{HOST}-{os.getpid()}-{secrets.token_hex(3)}.{kind}"
    room = NAME_MAX - 1 - len(tail)
    raw = os.fsencode(name)
    if len(raw) > room:
        raw = raw[:room] if kind == "part" else raw  # a folder's .old keeps its name whole (see sweep)
    return "." + os.fsdecode(raw) + tail


def _owner_dead(pid: int) -> bool:
    """True when no process `pid` runs here any more (a zombie counts as dead)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state in ("Z", "X")


def stale(entry_name: str) -> re.Match | None:
    """The parsed name when it is a temporary of a dead vitcli process on this host."""
    m = _PATTERN.match(entry_name)
    if m is None or m["host"] != HOST or not _owner_dead(int(m["pid"])):
        return None
    return m


def sweep(folder: str | Path) -> None:
    """Remove dead processes' temporaries in `folder`; an interrupted folder swap is rolled back."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for e in sorted(entries, key=lambda e: e.name.endswith(".new")):  # .old (rolled back) before .new
        m = stale(e.name)
        if m is None:
            continue
        path = os.path.join(folder, e.name)
        target = os.path.join(folder, m["name"])
        if m["kind"] == "old" and not os.path.lexists(target):
            _quietly(os.rename, path, target)  # the swap stopped between its two renames: roll back
        else:
            _remove_any(path)


def _remove_any(path: str) -> None:
    """Remove a file or a folder tree, ignoring errors."""
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        _quietly(os.unlink, path)
    _LIVE.discard(path)


def _remove_finally(path: str) -> None:
    """`_remove_any`, finished even when a signal interrupts it (then re-raised)."""
    try:
        _remove_any(path)
    except BaseException:
        _remove_any(path)
        raise


def _quietly(action: Any, *args: Any) -> None:
    with suppress(OSError):
        action(*args)


@atexit.register
def remove_temporaries() -> None:
    """Remove every temporary this process still holds (also for front ends that exit hard)."""
    for path in list(_LIVE):
        _remove_any(path)


at_forced_exit(remove_temporaries)  # the signal watchdog's os._exit skips atexit


# --- signals -------------------------------------------------------------------------------------


@contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while a clean-up or commit runs, then deliver the first one."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    saved = {}
    with holding_exit():  # nor may the signal watchdog end the process in the middle
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            if handler not in (signal.SIG_IGN, None):
                saved[sig] = handler
                signal.signal(sig, lambda signum, frame: caught.append(signum))
        try:
            yield
        finally:
            for sig, handler in saved.items():
                signal.signal(sig, handler)
    if caught:
        signal.raise_signal(caught[0])


# --- errors ------------------------------------------------------------------------------------


def write_error(name: str | Path, e: OSError) -> VitcliError:
    """The one-line error naming the file that could not be written."""
    return VitcliError(str(name), f"cannot write: {os_problem(e)}")


def guard(name: str | Path, action: Any) -> Any:
    """Run `action()`, turning an OSError into the one-line error naming `name`."""
    try:
        return action()
    except OSError as e:
        raise write_error(name, e) from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a new file gets from the umask (temporary files start private)."""
    return 0o666 & ~_umask()


def fsync_folder(folder: str | Path) -> None:
    """Make a rename in `folder` survive a crash (where the platform allows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- files ---------------------------------------------------------------------------------------


def new_temp_file(target: str | Path) -> tuple[int, str]:
    """Create (O_EXCL, private) a temporary file beside `target` after sweeping dead leftovers."""
    target = Path(target)
    sweep(target.parent)
    while True:
        tmp = str(target.parent / temp_name(target.name))
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600)
        except FileExistsError:
            continue
        except OSError as e:
            raise write_error(target, e) from None
        _LIVE.add(tmp)
        return fd, tmp


def sync_close(file: IO[Any]) -> None:
    """Flush, fsync and close a file written in full: its bytes are on disk before it is renamed."""
    file.flush()
    os.fsync(file.fileno())
    file.close()


def commit_file(tmp: str, target: str | Path) -> None:
    """Rename a complete (flushed, fsynced) temporary file over `target`."""

    def swap() -> None:
        os.chmod(tmp, file_mode())
        os.replace(tmp, target)

    guard(target, swap)
    _LIVE.discard(tmp)
    fsync_folder(Path(target).parent)


def discard(*paths: str | None) -> None:
    """Remove temporaries (files or folders), whatever signals arrive meanwhile."""
    with deferred_signals():
        for p in paths:
            if p:
                _remove_any(p)


def close_quietly(f: Any) -> None:
    """Close a file being thrown away: a failing flush (a full disk) must not stop the clean-up."""
    if f is None or getattr(f, "closed", False):
        return
    try:
        f.close()
    except Exception:  # noqa: BLE001 - the data is discarded anyway
        with suppress(OSError, ValueError):
            os.close(f.fileno())


@contextmanager
def atomic_file(path: str) -> Iterator[BinaryIO]:
    """Yield a binary file; on success it replaces `path` whole, on any failure nothing changes."""
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    check_target(path)
    if is_special(path):
        try:
            with open(path, "wb") as f:
                yield f
        except OSError as e:
            raise write_error(path, e) from None
        return
    fd, tmp = new_temp_file(path)
    f = os.fdopen(fd, "wb")
    try:
        try:
            yield f
            f.flush()
            os.fsync(f.fileno())
            f.close()
        except OSError as e:
            raise write_error(path, e) from None
        commit_file(tmp, path)
    except BaseException:
        close_quietly(f)
        discard(tmp)
        raise


# --- folders -------------------------------------------------------------------------------------


def new_temp_folder(target: str | Path) -> Path:
    """Create a private folder beside `target` (its parents made), where its new contents are built."""
    target = Path(target)
    guard(target, lambda: target.parent.mkdir(parents=True, exist_ok=True))
    sweep(target.parent)
    stage = target.parent / temp_name(target.name, "new")
    guard(target, lambda: os.mkdir(stage, 0o700))
    _LIVE.add(str(stage))
    return stage


def swap_folder(stage: Path, target: Path) -> None:
    """Put the folder `stage` at `target` in one step: a reader sees the old folder or the new one.

    No old folder: one rename. An old one: renameat2(RENAME_EXCHANGE) swaps them atomically (Linux);
    elsewhere the old one is renamed to `.old` and the new one into place, and a run killed between
    the two renames is rolled back by the next `sweep`. The old contents are then removed.
    """
    old: list[Path] = []  # the old folder once swapped out, under a temporary name
    try:
        with deferred_signals():
            _swap(stage, target, old)
    finally:  # outside the hold (thousands of old files may take a while), and also when a held signal comes
        for path in old:
            _remove_finally(str(path))


def _swap(stage: Path, target: Path, old: list[Path]) -> None:
    """The renames of `swap_folder`, appending the old folder's temporary path to `old`."""
    mode = os.stat(target).st_mode & 0o7777 if target.is_dir() else 0o777 & ~_umask()
    guard(target, lambda: os.chmod(stage, mode))
    if not target.exists():
        guard(target, lambda: os.rename(stage, target))
    elif _exchange(stage, target):
        old.append(stage)
    else:
        moved = target.parent / temp_name(target.name, "old")
        guard(target, lambda: os.rename(target, moved))
        _LIVE.add(str(moved))
        try:
            os.rename(stage, target)
        except OSError as e:
            _quietly(os.rename, moved, target)  # put the old folder back
            raise write_error(target, e) from None
        old.append(moved)
    _LIVE.discard(str(stage))
    fsync_folder(target.parent)


_RENAME_EXCHANGE, _AT_FDCWD = 2, -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically with renameat2; False where the system or filesystem cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL (filesystem without exchange), EOPNOTSUPP
        return False
    raise write_error(b, OSError(err, os.strerror(err)))

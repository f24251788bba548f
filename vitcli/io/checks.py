"""Checks that an output can be written, made before anything is written, and the OS's words for why not.

`check_target` / `check_folder` for one output file or folder; `check_outputs` for all of a
command's outputs at once (planned by vitcli.api.outputs, for both front ends): folders, names,
two outputs on one file, an output that is one of the inputs, an input inside an output folder.
Only the standard library: the writers of vitcli.io.atomic use these too.
"""

import errno
import os
import re
import stat
from pathlib import Path
from typing import Any

from vitcli.errors import VitcliError

NAME_MAX = 255  # bytes of one file name on every common filesystem


def os_problem(e: OSError) -> str:
    """The OS's words for a failed write; numpy's short write (no errno) is a full device."""
    if e.errno is None and "requested and" in str(e):  # ndarray.tofile: "N requested and M written"
        return f"{_short_write_cause()} ({str(e).replace('requested', 'bytes requested')})"
    coded = re.search(r"\[errno (\d+)\]", str(e))  # pyarrow: "Error writing bytes to file. Detail: [errno 28] …"
    if coded:
        return os.strerror(int(coded[1]))
    return e.strerror or str(e)


def _short_write_cause() -> str:
    """Why the OS wrote less than asked (numpy drops the errno): a file size limit, else a full disk."""
    try:
        import resource

        if resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY:
            return "File too large"
    except (ImportError, OSError, ValueError):
        pass
    return "No space left on device"


def check_target(path: str | Path) -> None:
    """Fail early, with one line, when `path` cannot become an output file."""
    path = Path(path)
    folder = path.parent
    if len(os.fsencode(path.name)) > NAME_MAX:
        raise VitcliError(str(path), f"cannot write: file name too long ({len(os.fsencode(path.name))} bytes)")
    try:
        os.stat(path)
    except OSError as e:
        if e.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise VitcliError(str(path), f"cannot write: {os_problem(e)}") from None
    if path.is_dir():
        raise VitcliError(str(path), "is a directory; give a file name")
    if not folder.exists():
        raise VitcliError(str(path), f"folder {folder} does not exist")
    if not folder.is_dir():
        raise VitcliError(str(path), f"{folder} is not a folder")
    if not is_special(path) and not os.access(folder, os.W_OK | os.X_OK):
        raise VitcliError(str(path), f"cannot write: {_why_not_writable(folder)}")
    if len(os.fsencode(path.name)) > _name_max(folder):
        raise VitcliError(str(path), f"cannot write: file name too long ({len(os.fsencode(path.name))} bytes)")


def check_folder(path: str | Path) -> None:
    """Fail early when `path` cannot become an output folder (it or its nearest existing parent)."""
    path = Path(path)
    long = [p.name for p in (path, *path.parents) if len(os.fsencode(p.name)) > NAME_MAX]
    if long:
        raise VitcliError(str(path), f"cannot write: folder name too long ({len(os.fsencode(long[0]))} bytes)")
    if path.exists() and not path.is_dir():
        raise VitcliError(str(path), "is not a folder")
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise VitcliError(str(path), f"{existing} is not a folder")
    writable = existing.parent if existing == path else existing  # the new folder is built beside the old
    if not os.access(writable, os.W_OK | os.X_OK):
        raise VitcliError(str(path), f"cannot write: {_why_not_writable(writable)}")


def _why_not_writable(folder: Path) -> str:
    """The OS's words for a folder this process cannot write in."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"Read-only file system (folder {folder})"
    except (OSError, AttributeError):
        pass
    return f"Permission denied (folder {folder} is not writable)"


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return NAME_MAX


def is_special(path: str | Path) -> bool:
    """True for devices, pipes and sockets, which are written in place."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def check_outputs(files: dict[str, str], folders: dict[str, str] | None = None, inputs: Any = ()) -> None:
    """Check each output (option → path) before anything is written: its folder and name, no two
    outputs on one file, none of them an input (which it would overwrite). '-' is standard output."""
    seen: dict[str, str] = {}
    for option, path in files.items():
        if path == "-":
            continue
        check_target(path)
        key = os.path.realpath(path)
        if key in seen:
            raise VitcliError(path, f"is named by both {seen[key]} and {option}: give each output its own file")
        seen[key] = option
    for path in (folders or {}).values():
        check_folder(path)
    refuse_inputs(files, inputs, folders)


def refuse_inputs(files: dict[str, str], inputs: Any, folders: dict[str, str] | None = None) -> None:
    """Refuse an output file that is one of the inputs (same device and inode: a symlink or hard
    link too), and an input inside an output folder (a run writes anywhere in it; FolderSink swaps
    it whole)."""
    written: dict[tuple[int, int], tuple[str, str]] = {}
    for option, path in files.items():
        ident = _file_id(path)
        if ident is not None:
            written[ident] = (option, path)
    folders = folders or {}
    roots = {os.path.realpath(path): option for option, path in folders.items()}
    if not written and not roots:
        return
    for item in inputs:
        if not isinstance(item, (str, Path)) or str(item) == "-":
            continue
        ident = _file_id(item)
        hit = written.get(ident) if ident is not None else None
        if hit is not None:
            raise VitcliError(hit[1],
                              f"{hit[0]} names an input ({item}); it would be overwritten: write to another file")
        real = os.path.realpath(item)
        for root, option in roots.items():
            if real == root or real.startswith(root.rstrip(os.sep) + os.sep):
                raise VitcliError(str(item), f"is inside {option} {folders[option]}, which the run writes "
                                  "into: give an output folder outside the inputs")


def _file_id(path: Any) -> tuple[int, int] | None:
    """(device, inode) of an existing regular file; None for '-', devices and missing paths."""
    if path == "-":
        return None
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    return (st.st_dev, st.st_ino) if stat.S_ISREG(st.st_mode) else None

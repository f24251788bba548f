"""Which paths may be opened for reading: regular files, and pipes handed over already open.

Only the standard library. Checked with `os.stat` before anything opens the path: opening a named
FIFO blocks until a writer appears (a decoding thread would hang), and a device or a socket never
ends or cannot be read as a file. A pipe reached through /dev/fd or /proc/self/fd (`<(curl …)`,
`/dev/stdin` on a pipe) is already open at both ends, so opening it never blocks: it is allowed.
"""

import os
import stat

from vitcli.errors import VitcliError

KINDS = {stat.S_ISFIFO: "a FIFO (named pipe)", stat.S_ISSOCK: "a socket", stat.S_ISCHR: "a device",
         stat.S_ISBLK: "a device", stat.S_ISDIR: "a directory"}


def special_kind(path: str) -> str | None:
    """What a non-regular file is ('a FIFO (named pipe)', 'a device', …), or None for a regular file.

    Raises OSError as os.stat does (a missing file, a name too long, permission denied)."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode) or (stat.S_ISFIFO(mode) and _open_pipe(path)):
        return None
    return next((kind for test, kind in KINDS.items() if test(mode)), "not a regular file")


def _open_pipe(path: str) -> bool:
    """True when `path` leads through symbolic links to an anonymous pipe ('pipe:[N]'), not a named FIFO."""
    for _ in range(40):
        try:
            target = os.readlink(path)
        except OSError:
            return False
        if target.startswith("pipe:["):
            return True
        path = os.path.join(os.path.dirname(path), target)
    return False


def check_readable(path: str, what: str = "an image file") -> None:
    """Refuse, with one line and without opening it, a path that is not a regular file."""
    try:
        kind = special_kind(path)
    except OSError:
        return  # the read itself reports a missing file, a name too long, … with its own words
    if kind is not None and kind != "a directory":
        hint = "; pipe it to standard input instead (cat FIFO | vitcli … -)" if "FIFO" in kind else ""
        raise VitcliError(path, f"is {kind}, not {what}{hint}")

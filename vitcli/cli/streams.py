"""Standard streams that fail with one line: closed, full or broken standard output; ASCII terminals.

Only the standard library. `prepare_streams()` (called by the CLI's main) makes

- a closed descriptor 0, 1 or 2 (`>&-`) point at /dev/null, so that no file opened later takes
  its number; writing to a closed standard output then fails as below;
- every write to standard output that the OS refuses (EPIPE: the reader went away, ENOSPC:
  `> /dev/full`, EBADF: closed) a `VitcliError` naming "standard output", not an OSError
  (which typer would swallow into a silent exit 1);
- characters that the stream's encoding cannot hold (`PYTHONIOENCODING=ascii`, a non-UTF-8 file
  name's surrogates) come out as ASCII look-alikes (→ as >), \\xNN for a byte of a name that was not UTF-8, else ?;
  never an error.
"""

import codecs
import contextlib
import errno
import io
import os
import sys
from typing import Any

from vitcli.errors import VitcliError

STDOUT = "standard output"
ERROR_HANDLER = "vitcli-ascii"
# One-character ASCII stand-ins (so that rich's column widths stay right) for what vitcli prints.
ASCII = {"→": ">", "←": "<", "×": "x", "…": ".", "·": ".", "–": "-", "—": "-", "≤": "<", "≥": ">", "±": "~",
         "≈": "~", "√": "v", "²": "2", "ᵀ": "T", "µ": "u", "°": "o", "█": "#", "▏": "|", "│": "|", "─": "-",
         "✓": "+", "✗": "x", "′": "'", "″": '"', "⋯": "."}


def _replace(error: UnicodeError) -> tuple[str, int]:
    """Codec error handler: ASCII look-alikes, a file name's undecodable byte as \\xNN, else '?'."""
    if not isinstance(error, UnicodeEncodeError):
        raise error
    bad = error.object[error.start:error.end]
    out = []
    for ch in bad:
        if ch in ASCII:
            out.append(ASCII[ch])
        elif 0xDC80 <= ord(ch) <= 0xDCFF:  # a byte that was not UTF-8 in a file name (surrogateescape)
            out.append(f"\\x{ord(ch) - 0xDC00:02x}")
        else:
            out.append("?")
    return "".join(out), error.end


codecs.register_error(ERROR_HANDLER, _replace)


class StreamError(VitcliError):
    """Standard output refused a write: one line naming it."""


def stream_error(e: OSError) -> StreamError:
    """The one-line error of a failed write to standard output."""
    if e.errno == errno.EPIPE:
        return StreamError(STDOUT, "closed by the reader (broken pipe); nothing more was written")
    if e.errno == errno.EBADF:
        return StreamError(STDOUT, "is closed; give -o FILE or open standard output")
    return StreamError(STDOUT, f"cannot write: {e.strerror or e}")


class _Guarded:
    """A stream whose write and flush turn OSError into `StreamError`; everything else is the stream's."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def write(self, data: Any) -> int:
        try:
            return self._stream.write(data)
        except OSError as e:
            raise stream_error(e) from None

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            raise stream_error(e) from None
        except ValueError:  # already closed
            pass

    @property
    def buffer(self) -> Any:
        """Bytes straight to the descriptor (BufferedWriter can drop an EPIPE after a partial write)."""
        try:
            fd = self._stream.fileno()
        except (OSError, ValueError, AttributeError):
            return _Guarded(self._stream.buffer)
        return _FdWriter(self, fd)


class _FdWriter:
    """Binary standard output written with os.write until every byte is out, or one StreamError."""

    def __init__(self, text: _Guarded, fd: int) -> None:
        self.text, self.fd = text, fd

    def write(self, data: Any) -> int:
        self.text.flush()  # text written before stays before
        view = memoryview(data).cast("B")
        done = 0
        try:
            while done < len(view):
                done += os.write(self.fd, view[done:])
        except OSError as e:
            raise stream_error(e) from None
        return done

    def flush(self) -> None:
        self.text.flush()

    def fileno(self) -> int:
        return self.fd

    def writable(self) -> bool:
        return True


class _Closed(io.RawIOBase):
    """What a closed standard output becomes: every write fails with EBADF."""

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise OSError(errno.EBADF, "Bad file descriptor")


def _reopen_closed_descriptors() -> bool:
    """Point closed descriptors 0-2 at /dev/null; True when standard output was closed."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    for fd in closed:
        null = os.open(os.devnull, os.O_RDWR)
        if null != fd:
            os.dup2(null, fd)
            os.close(null)
    if 0 in closed and sys.stdin is None:
        sys.stdin = open(0, closefd=False)  # noqa: SIM115 - the process's standard input, open until exit
    if 2 in closed or sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115 - standard error, open until exit
    return 1 in closed or sys.stdout is None


def _tolerant(stream: Any) -> None:
    """Characters the encoding cannot hold become look-alikes or escapes, not UnicodeEncodeError."""
    if hasattr(stream, "reconfigure") and getattr(stream, "errors", None) not in (ERROR_HANDLER,):
        with contextlib.suppress(ValueError, OSError):
            stream.reconfigure(errors=ERROR_HANDLER)


def prepare_streams() -> None:
    """Guard standard output and make both output streams tolerant (idempotent: once per process)."""
    if _reopen_closed_descriptors():
        sys.stdout = io.TextIOWrapper(io.BufferedWriter(_Closed()), encoding="utf-8", write_through=True)
    _tolerant(getattr(sys.stdout, "_stream", sys.stdout))
    _tolerant(sys.stderr)
    if not isinstance(sys.stdout, _Guarded):
        sys.stdout = _Guarded(sys.stdout)


def silence_stdout() -> None:
    """After a failed write: let the flush at exit go to /dev/null instead of failing again."""
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
    except OSError:
        pass
    stream = getattr(sys.stdout, "_stream", sys.stdout)
    if isinstance(getattr(getattr(stream, "buffer", None), "raw", None), _Closed):
        sys.stdout = _Guarded(open(1, "w", closefd=False))  # noqa: SIM115 - standard output, open until exit


def flush_stdout() -> None:
    """Flush standard output inside the run, so that a full or broken pipe is an error with one line."""
    if sys.stdout is not None:
        sys.stdout.flush()

"""SIGINT and SIGTERM end the process with 130 / 143 within a second, whatever its threads are doing.

Only the standard library: the console script installs this before the heavy imports. Before it,
from the first statements of vitcli/__init__.py on, the package's start-up guard ends a `vitcli`
command with the same line and code (nothing is written yet, so nothing to clean up).

The main thread turns the first signal into an exception (KeyboardInterrupt, `Terminated`), so
that atomic writers remove their temporary files on the way out. Python runs that handler only
between bytecodes of the main thread, so a long torch operation, or an interpreter exit that joins
a decoding thread blocked in a read, could delay the exit without bound. `arm_watchdog` starts a
thread that the signal itself wakes (`signal.set_wakeup_fd`): if the process is still alive
`GRACE` seconds later, it runs the `at_forced_exit` clean-ups, writes the one line and ends the
process with `os._exit`. Later signals are ignored: the process is already on its way out.
A commit that must not be cut in half (the renames of an `--output-dir` swap) runs under
`holding_exit()`: the watchdog waits for it to finish (it takes milliseconds) before it ends the process.
"""

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

GRACE = 0.5  # seconds the main thread has to unwind before the watchdog ends the process
CODES: dict[int, int] = {signal.SIGINT: 130, signal.SIGTERM: 143}
WORDS: dict[int, str] = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class Terminated(BaseException):
    """SIGTERM as an exception, so that atomic writers remove their temporary files on the way out."""


_state: dict[str, Any] = {"received": None, "announced": False, "holding": 0, "note": None}
_lock = threading.Lock()
_cleanups: list[Callable[[], None]] = []


def _on_signal(signum: int, frame: object) -> None:
    """The first SIGINT / SIGTERM raises in the main thread; later ones are ignored."""
    if _state["received"] is not None:
        return
    _state["received"] = signum
    raise KeyboardInterrupt() if signum == signal.SIGINT else Terminated()


def install_signal_handlers() -> None:
    """SIGINT → KeyboardInterrupt, SIGTERM → `Terminated` (a SIGINT ignored by the parent stays ignored).
    Installing them again keeps a signal already received (its exception may have been swallowed)."""
    if signal.getsignal(signal.SIGTERM) is not _on_signal:
        _state["received"], _state["announced"] = None, False
    signal.signal(signal.SIGTERM, _on_signal)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_signal)


def received() -> int | None:
    """The signal received since the handlers were installed, if any."""
    return _state["received"]


def drop_swallowed_signal(unraisable: "sys.UnraisableHookArgs") -> None:
    """`sys.unraisablehook`: a signal's exception raised inside a weakref callback or `__del__` cannot
    propagate ("Exception ignored in …"); print nothing (the watchdog and `received` still see it)."""
    if not isinstance(unraisable.exc_value, (KeyboardInterrupt, Terminated)):
        sys.__unraisablehook__(unraisable)


def announce(signum: int) -> int:
    """Write 'vitcli: interrupted' / 'vitcli: terminated' once (main thread or watchdog); the exit code."""
    with _lock:
        if not _state["announced"]:
            _state["announced"] = True
            try:
                if sys.stderr is not None:
                    sys.stderr.flush()
                note = _state["note"]() if _state["note"] is not None else ""
                os.write(2, f"vitcli: {WORDS[signum]}{f' ({note})' if note else ''}\n".encode())
            except OSError:
                pass
    return CODES[signum]


def at_forced_exit(cleanup: Callable[[], None]) -> Callable[[], None]:
    """Run `cleanup` if the watchdog has to end the process; returns a function that unregisters it."""
    _cleanups.append(cleanup)
    return lambda: _cleanups.remove(cleanup) if cleanup in _cleanups else None


@contextmanager
def interrupt_note(note: Callable[[], str]) -> Iterator[None]:
    """While this block runs, a signal's one line ends with `note()` (what was kept, how to go on); the note
    outlives a signal's exception, as the line is written once it has unwound."""
    _state["note"] = note
    try:
        yield
    except (KeyboardInterrupt, Terminated):
        raise
    except BaseException:
        _state["note"] = None
        raise
    _state["note"] = None


@contextmanager
def holding_exit() -> Iterator[None]:
    """Keep the watchdog from ending the process while this block runs (a commit of a few renames)."""
    with _lock:
        _state["holding"] += 1
    try:
        yield
    finally:
        with _lock:
            _state["holding"] -= 1


def arm_watchdog() -> None:
    """Start the watchdog thread (once per process; the main thread only)."""
    if _state.get("armed"):
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    threading.Thread(target=_watch, args=(read_end,), name="vitcli-watchdog", daemon=True).start()
    _state["armed"] = True


def _watch(read_end: int) -> None:
    """Wait for SIGINT or SIGTERM, give the main thread GRACE seconds, then end the process."""
    while True:
        signum = os.read(read_end, 1)[0]
        if signum in CODES:
            break
    threading.Event().wait(GRACE)
    while _state["holding"]:  # a commit in progress: let it finish
        threading.Event().wait(0.01)
    for cleanup in list(_cleanups):
        with suppress(Exception):
            cleanup()
    code = announce(_state["received"] or signum)
    with suppress(Exception):
        sys.stderr.flush()
    os._exit(code)

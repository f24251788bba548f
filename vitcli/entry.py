"""The `vitcli` console script: signal handlers and the watchdog first, then the heavy imports.

Importing the app loads typer, rich and the command modules (torch later): a Ctrl-C in that time
must give exit 130 and one line, like a Ctrl-C at any later moment, not a traceback. The package's
start-up guard (vitcli/__init__.py) covers the imports below; it is installed again here for a
wrapper script of another name, before any other import.
"""

from vitcli import _guard_start_up

_guard_start_up()

import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from contextlib import suppress  # noqa: E402

from vitcli.signals import (  # noqa: E402
    Terminated,
    announce,
    arm_watchdog,
    drop_swallowed_signal,
    install_signal_handlers,
    received,
)


def main() -> None:
    """Entry point of the `vitcli` console script and of `python -m vitcli`."""
    try:
        arm_watchdog()  # before the handlers: a signal whose exception is swallowed still ends the run
        install_signal_handlers()
        sys.unraisablehook = drop_swallowed_signal
        if "--debug" not in sys.argv[1:]:
            warnings.simplefilter("ignore")  # import-time warnings too (the CLI's main sets the filter again)
        from vitcli.cli import main as run

        run()
    except KeyboardInterrupt:
        _exit_now(announce(signal.SIGINT))
    except Terminated:
        _exit_now(announce(signal.SIGTERM))
    except SystemExit as e:
        if e.code in (130, 143):  # interrupted: the line is written, clean-ups ran while unwinding
            _exit_now(e.code)
        _exit_if_signalled()
        _finish(e.code)
    _exit_if_signalled()
    _finish(0)


def _finish(code: object) -> None:
    """Exit without tearing down the interpreter: the atexit handlers run and the streams are
    flushed, but torch's thousands of modules and objects are not freed one by one (0.3-0.7 s of
    a `vitcli embed` run on this machine; the memory goes back to the system at once)."""
    import atexit

    if isinstance(code, str):  # SystemExit("message"), as Python prints it
        sys.stderr.write(code + "\n")
    atexit._run_exitfuncs()  # a signal in a handler is "ignored" there: _exit_if_signalled ends with 130 / 143
    _exit_if_signalled()
    _exit_now(code if isinstance(code, int) else 0 if code is None else 1)


def _exit_if_signalled() -> None:
    """A run that ends normally after a signal whose exception was swallowed: still 130 / 143."""
    seen = received()
    if seen is not None:
        _exit_now(announce(seen))


def _exit_now(code: int) -> None:
    """Exit with `code` at once: no join of a decoding thread blocked in a read, and no re-raised
    SIGINT (CPython ends with -SIGINT when a KeyboardInterrupt once passed through PyRun_* code,
    even when it was handled)."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(Exception):
            stream.flush()
    os._exit(code)

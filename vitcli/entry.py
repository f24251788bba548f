"""The `vitcli` console script: signal handlers and the watchdog first, then the heavy imports.

Importing the app loads typer, rich and the command modules (torch later): a Ctrl-C in that time
must give exit 130 and one line, like a Ctrl-C at any later moment, not a traceback.
"""

import os
import signal
import sys
import warnings

from vitcli.signals import Terminated, announce, arm_watchdog, install_signal_handlers


def main() -> None:
    """Entry point of the `vitcli` console script and of `python -m vitcli`."""
    try:
        install_signal_handlers()
        arm_watchdog()
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
        raise


def _exit_now(code: int) -> None:
    """Exit with `code` at once: no join of a decoding thread blocked in a read, and no re-raised
    SIGINT (CPython ends with -SIGINT when a KeyboardInterrupt once passed through PyRun_* code,
    even when it was handled)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)

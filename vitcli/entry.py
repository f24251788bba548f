"""The `vitcli` console script: signal handlers and the watchdog first, then the heavy imports.

Importing the app loads typer, rich and the command modules (torch later): a Ctrl-C in that time
must give exit 130 and one line, like a Ctrl-C at any later moment, not a traceback.
"""

import signal
import sys
import warnings

from vitcli.signals import Terminated, announce, arm_watchdog, install_signal_handlers


def main() -> None:
    """Entry point of the `vitcli` console script and of `python -m vitcli`."""
    install_signal_handlers()
    arm_watchdog()
    if "--debug" not in sys.argv[1:]:
        warnings.simplefilter("ignore")  # import-time warnings too (the CLI's main sets the filter again)
    try:
        from vitcli.cli import main as run

        run()
    except KeyboardInterrupt:
        raise SystemExit(announce(signal.SIGINT)) from None
    except Terminated:
        raise SystemExit(announce(signal.SIGTERM)) from None

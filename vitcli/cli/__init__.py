"""The typer app: one module per subcommand, errors mapped to one line and an exit code.

Exit codes: 0 success, 1 bad input or failed check (one line naming the file and the problem),
2 wrong usage (typer/click), 130 interrupted (SIGINT), 143 terminated (SIGTERM). `--debug` anywhere
shows the traceback.
"""

import atexit
import gc
import os
import signal
import sys
import traceback
from typing import Annotated, Optional

import typer

from vitcli import __version__
from vitcli.cli import attend, embed, explain, figures, info, patchify, posenc
from vitcli.cli import view as view_cli

app = typer.Typer(
    name="vitcli",
    help="See what a Vision Transformer does to an image, one idea at a time.",
    epilog="Example:\n\n  vitcli patchify sample_images/chelsea.jpg --grid-png grid.png",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.command("patchify", help=patchify.HELP, epilog=patchify.EPILOG)(patchify.patchify_command)
app.command("embed", help=embed.HELP, epilog=embed.EPILOG)(embed.embed_command)
app.command("posenc", help=posenc.HELP, epilog=posenc.EPILOG)(posenc.posenc_command)
app.command("attend", help=attend.HELP, epilog=attend.EPILOG)(attend.attend_command)
app.command("info", help=info.HELP, epilog=info.EPILOG)(info.info_command)
app.command("explain", help=explain.HELP, epilog=explain.EPILOG)(explain.explain_command)
app.add_typer(figures.app, name="figures", help=figures.HELP)
app.command("view", help=view_cli.HELP, epilog=view_cli.EPILOG)(view_cli.view_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vitcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
) -> None:
    """See what a Vision Transformer does to an image, one idea at a time."""


def _fail(message: str, debug: bool) -> None:
    """One line on standard error (the traceback too with --debug), exit code 1."""
    if debug:
        traceback.print_exc()
    sys.stderr.write(f"vitcli: error: {message}\n")
    sys.stderr.flush()
    raise SystemExit(1)


class Terminated(BaseException):
    """SIGTERM as an exception, so that atomic writers remove their temporary files on the way out."""


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated()


def install_signal_handlers() -> None:
    """Turn SIGTERM into `Terminated` (SIGINT already raises KeyboardInterrupt)."""
    signal.signal(signal.SIGTERM, _raise_terminated)


def main() -> None:
    """Entry point of the `vitcli` console script."""
    from vitcli.errors import VitcliError

    install_signal_handlers()
    atexit.register(gc.freeze)  # at exit, no full collection over torch's objects: ~0.4 s sooner back to the shell
    debug = "--debug" in sys.argv[1:] or bool(os.environ.get("VITCLI_DEBUG"))
    args = [a for a in sys.argv[1:] if a != "--debug"]
    try:
        app(args=args, prog_name="vitcli")
    except VitcliError as e:
        _fail(e.render(cli=True), debug)
    except KeyboardInterrupt:
        sys.stderr.write("vitcli: interrupted\n")
        raise SystemExit(130) from None
    except Terminated:
        sys.stderr.write("vitcli: terminated\n")
        raise SystemExit(143) from None
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # silence the flush at exit
        raise SystemExit(1) from None
    except MemoryError:
        _fail("out of memory; try a smaller --size or fewer layers", debug)
    except Exception as e:  # a bug, not a bad input: still one line, the traceback with --debug
        _fail(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", debug)

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
from typing import Annotated

import typer

from vitcli import __version__
from vitcli.cli import attend, compare, embed, explain, figures, info, patchify, posenc, probe
from vitcli.cli import text as text_cli
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
app.command("classify", help=text_cli.HELP, epilog=text_cli.EPILOG)(text_cli.classify_command)
app.command("compare", help=compare.HELP, epilog=compare.EPILOG)(compare.compare_command)
app.command("probe", help=probe.HELP, epilog=probe.EPILOG)(probe.probe_command)
app.add_typer(figures.app, name="figures", help=figures.HELP)
app.command("view", help=view_cli.HELP, epilog=view_cli.EPILOG)(view_cli.view_command)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"vitcli {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool | None, typer.Option(
        "--version", callback=_version, is_eager=True, help="Print the version and exit.")] = None,
    max_memory: Annotated[str | None, typer.Option(
        "--max-memory", metavar="SIZE", show_default=False,
        help="Refuse, before allocating, what would need more memory than SIZE (8G, 500M, bytes); accepted anywhere "
             "on the command line. \\[default: 75% of the available memory]")] = None,
) -> None:
    """See what a Vision Transformer does to an image, one idea at a time."""


def _fail(message: str, debug: bool, code: int = 1) -> None:
    """One line on standard error (the traceback too with --debug), exit code `code` (1: bad input)."""
    if debug:
        traceback.print_exc()
    from vitcli.errors import one_line

    sys.stderr.write(f"vitcli: error: {one_line(message)}\n")
    sys.stderr.flush()
    raise SystemExit(code)


# One home for the signal handling, importable before typer and torch (the console script's entry).
from vitcli.signals import Terminated, announce, install_signal_handlers  # noqa: E402


def _quiet_warnings(debug: bool) -> None:
    """numpy, Pillow and torch warnings never reach the terminal; --debug shows them."""
    import warnings

    warnings.simplefilter("default" if debug else "ignore")


def _take_max_memory(args: list[str]) -> list[str]:
    """Remove `--max-memory SIZE` (anywhere, like --debug) and make SIZE the limit of this run."""
    from vitcli.core.budget import parse_memory, set_process_limit
    from vitcli.errors import VitcliError

    set_process_limit(None)
    rest, i = [], 0
    while i < len(args):
        a = args[i]
        if a == "--":
            rest += args[i:]
            break
        if a == "--max-memory" or a.startswith("--max-memory="):
            text = a.partition("=")[2] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
            i += 1 if "=" in a else 2
            try:
                set_process_limit(parse_memory(text))
            except ValueError as e:
                raise VitcliError("--max-memory", str(e) if text else "needs a size such as 8G or 500M") from None
            continue
        rest.append(a)
        i += 1
    return rest


def is_out_of_memory(e: BaseException) -> bool:
    """torch's allocator failing (a RuntimeError, not a MemoryError): "can't allocate memory", "not enough memory"."""
    text = str(e).lower()
    return isinstance(e, RuntimeError) and any(s in text for s in (
        "can't allocate memory", "cannot allocate memory", "not enough memory", "out of memory"))


def _run_app(args: list[str]) -> None:
    """The typer app; torch's out-of-memory RuntimeError becomes MemoryError (the same one line);
    then standard output flushed inside the run (a full or broken pipe is one line)."""
    from vitcli.cli.streams import flush_stdout

    try:
        app(args=args, prog_name="vitcli")
    except RuntimeError as e:
        if is_out_of_memory(e):
            raise MemoryError(str(e)) from e
        raise
    except SystemExit as e:
        if e.code in (0, None):
            flush_stdout()
        if e.code == 130:  # typer turns KeyboardInterrupt into a silent exit 130: say it, once
            announce(signal.SIGINT)
        raise
    flush_stdout()


def main() -> None:
    """Entry point of the `vitcli` console script."""
    from vitcli.cli.streams import StreamError, prepare_streams, silence_stdout
    from vitcli.errors import VitcliError

    install_signal_handlers()
    atexit.register(gc.freeze)  # at exit, no full collection over torch's objects: ~0.4 s sooner back to the shell
    debug = "--debug" in sys.argv[1:] or bool(os.environ.get("VITCLI_DEBUG"))
    args = [a for a in sys.argv[1:] if a != "--debug"]
    prepare_streams()
    _quiet_warnings(debug)
    try:
        _run_app(_take_max_memory(args))
    except StreamError as e:
        silence_stdout()
        _fail(e.render(cli=True), debug)
    except VitcliError as e:
        from vitcli.errors import UsageError

        _fail(e.render(cli=True), debug, 2 if isinstance(e, UsageError) else 1)
    except KeyboardInterrupt:
        raise SystemExit(announce(signal.SIGINT)) from None
    except Terminated:
        raise SystemExit(announce(signal.SIGTERM)) from None
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # silence the flush at exit
        raise SystemExit(1) from None
    except MemoryError:
        _fail("out of memory; try a smaller --size or fewer layers", debug)
    except OSError as e:  # a file the OS refused (a name too long, …) that no lower layer named: name it
        _exit_if_interrupted(e)
        if e.filename is None:
            _fail(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", debug)
        _fail(VitcliError(os.fsdecode(e.filename), e.strerror or str(e)).render(cli=True), debug)
    except Exception as e:  # a bug, not a bad input: still one line, the traceback with --debug
        _exit_if_interrupted(e)
        _fail(f"internal error: {type(e).__name__}: {e} (run with --debug for the traceback)", debug)


def _exit_if_interrupted(e: BaseException) -> None:
    """130 / 143 and the one line when `e` carries an interrupt (Python 3.11 wraps one raised in a
    class body's __set_name__ in a RuntimeError) or a signal came during the run: not an internal error."""
    from vitcli.signals import received

    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, (KeyboardInterrupt, Terminated)):
            raise SystemExit(announce(signal.SIGINT if isinstance(seen, KeyboardInterrupt) else signal.SIGTERM)
                             ) from None
        seen = seen.__cause__ or seen.__context__
    signum = received()
    if signum is not None:
        raise SystemExit(announce(signum)) from None

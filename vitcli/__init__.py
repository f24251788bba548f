"""vitcli: see what a Vision Transformer does to an image, one idea at a time.

    import vitcli
    model = vitcli.load_model("vit-s16")                      # or a checkpoint file, hf-hub:, timm:
    result = model.embed("cat.jpg", stage="pooled")           # result.array (384,), result.to_json()
    attn = model.attend(vitcli.load_images("cat.jpg", size=448), layer="all")

Names are imported on first use, so `import vitcli` (and `vitcli --help`) stays fast.

When this import is the start of the `vitcli` command (the console script, `python -m vitcli`),
its first statements install a start-up guard: SIGINT / SIGTERM end the process with 130 / 143
and one line until `vitcli.signals.install_signal_handlers` replaces it. A library import leaves
the signal handlers alone.
"""

import sys as _sys
from typing import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:  # what a type checker and an editor see; at run time `__getattr__` imports them on first use
    from vitcli.api import (
        BatchSpec,
        FittedImage,
        Images,
        ImageSpec,
        Model,
        load_images,
        load_model,
        patchify,
        posenc,
        unpatchify,
    )
    from vitcli.errors import UsageError, VitcliError


def _started_as_cli() -> bool:
    """True when the running program is the `vitcli` console script or `python -m vitcli`."""
    first = _sys.argv[0] if _sys.argv else ""
    if first == "-m":  # runpy sets argv[0] to the module's path only after importing its package
        args = _sys.orig_argv
        return "-mvitcli" in args or ("-m" in args and args[args.index("-m") + 1:][:1] == ["vitcli"])
    name = first.replace("\\", "/").rsplit("/", 1)[-1]
    return name in ("vitcli", "vitcli.exe", "vitcli-script.py", "vitcli-script.pyw")


def _on_start_up_signal(signum: int, frame: object) -> None:
    """Nothing is written yet: the one line and 130 / 143 at once, no KeyboardInterrupt traceback."""
    import os

    os.write(2, b"vitcli: interrupted\n" if signum == 2 else b"vitcli: terminated\n")
    os._exit(128 + signum)


def _guard_start_up() -> None:
    """Install the start-up guard for SIGINT (unless the parent ignores it) and SIGTERM."""
    import _signal  # built in: no file to import, unlike `signal` (enum)

    if _signal.getsignal(_signal.SIGINT) is not _signal.SIG_IGN:
        _signal.signal(_signal.SIGINT, _on_start_up_signal)
    _signal.signal(_signal.SIGTERM, _on_start_up_signal)


if _started_as_cli():
    _guard_start_up()

__version__ = "0.1.0"
_API = ("BatchSpec", "FittedImage", "ImageSpec", "Images", "Model", "load_images", "load_model", "patchify",
        "posenc", "unpatchify")
_ERRORS = ("UsageError", "VitcliError")
__all__ = ["BatchSpec", "FittedImage", "ImageSpec", "Images", "Model", "UsageError", "VitcliError", "__version__",
           "load_images", "load_model", "patchify", "posenc", "unpatchify"]  # _API, _ERRORS and the version


def __getattr__(name: str) -> object:
    """The public names, imported on first use."""
    if name in _API:
        import vitcli.api

        return getattr(vitcli.api, name)
    if name in _ERRORS:
        import vitcli.errors

        return getattr(vitcli.errors, name)
    raise AttributeError(f"module 'vitcli' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names and the loaded submodules, for tab completion (nothing is imported)."""
    return sorted({*__all__, *(n for n in globals() if not n.startswith("_"))})

"""Python values for the API's keywords: one parser per kind of value, one table of keywords.

Every public function (`load_model`, `load_images`, `patchify`, `posenc`, the `Model` commands) is
wrapped by `keywords(...)`: each keyword it takes is parsed by its parser before any work, so a
wrong value is one `VitcliError` naming the keyword (`layer` in Python, `--layer` in the shell),
never a raw `TypeError`. A parser returns the value the command works with: `layer=[3, 6]` becomes
the text '3,6' the shell gives, `output=Path(...)` a str. Text is taken as the shell gives it
(`layer='3,6'`, `query='5,4'`, one layer as `'1'` where an int is meant); numbers are numbers
(`discard_ratio='0.5'` is refused), numpy scalars included. `with_images` adds the image options of
`load_images` (size, fit, resample, …) to a command and forwards them to image loading. A keyword
without a parser is refused when the function is decorated, so none goes unchecked; a keyword the
function does not take is a VitcliError naming it.
"""

import functools
import inspect
import math
import numbers
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeGuard, TypeVar, cast, get_args

from vitcli.core.config import PosEncKind
from vitcli.core.select import whole as whole_number
from vitcli.errors import VitcliError, register_choices, register_flags

if TYPE_CHECKING:
    from vitcli.api.models import Model

P = ParamSpec("P")
R = TypeVar("R")
Parser = Callable[[str, object], object]  # (keyword, value) → the value the command uses
# The Python values the signatures advertise (the shell's text is accepted too).
Layers = int | Sequence[int] | str  # 3, [3, 6], range(2, 5), 'all', '3,6', '2:5'
Query = int | tuple[int, int] | str | None  # a token index, (row, col), 'cls', 'reg0', 'probe', 'mean', 'all'
Size = int | tuple[int, int] | str | None  # 448, (448, 640), 'native', '448x640'


def fail(name: str, value: object, wanted: str) -> VitcliError:
    """The one error for a value of the wrong kind: the keyword, the value (short) and what it takes."""
    return VitcliError("--" + name.replace("_", "-"), f"{value!r:.60} is not {wanted}")


def is_int(value: object) -> TypeGuard[numbers.Integral]:
    """A whole number that is no bool (numpy integers included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_number(value: object) -> TypeGuard[numbers.Real]:
    """A real number that is no bool (numpy numbers included)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def text(name: str, value: object) -> str | None:
    """None or text."""
    if value is None or isinstance(value, str):
        return value
    raise fail(name, value, "text")


def flag(name: str, value: object) -> bool | None:
    """True or False (None where the keyword allows 'not given')."""
    if value is None or isinstance(value, bool) or type(value).__name__ == "bool_":
        return None if value is None else bool(value)
    raise fail(name, value, "True or False")


def path(name: str, value: object) -> str | None:
    """None, a file name (str) or a path-like object → str."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise fail(name, value, "a file name (str or pathlib.Path)")


def path_or_flag(name: str, value: object) -> str | bool | None:
    """A file to write (str or Path), True (compute without writing), False or None."""
    return flag(name, value) if isinstance(value, bool) else path(name, value)


class Choice:
    """The parser of a keyword that is one of a Literal's (or a tuple's) words; None when optional."""

    def __init__(self, options: object, optional: bool = True) -> None:
        self.words: tuple[str, ...] = get_args(options) or (options if isinstance(options, tuple) else ())
        self.optional = optional

    def __call__(self, name: str, value: object) -> str | None:
        if value is None and self.optional:
            return None
        if isinstance(value, str) and value in self.words:
            return value
        if isinstance(value, str):
            raise VitcliError("--" + name.replace("_", "-"), f"'{value}' is not one of {', '.join(self.words)}")
        raise fail(name, value, "one of " + ", ".join(self.words))


def choice(options: object, optional: bool = True) -> Choice:
    """One of a Literal's (or a tuple's) words; None when optional."""
    return Choice(options, optional)


def number(low: float | None = None, high: float | None = None, *, whole: bool = False, below: bool = False,
           above: bool = False) -> Parser:
    """None or a finite number in [low, high] (`above`: low excluded, `below`: high excluded); `whole`: an int."""

    def parse(name: str, value: object) -> int | float | None:
        if value is None:
            return None
        kind = "a whole number" if whole else "a number"
        if is_int(value):
            got: int | float = int(value)
        elif is_number(value) and not whole:
            got = float(value)
        else:
            raise fail(name, value, kind)
        if not math.isfinite(got) or (low is not None and (got < low or above and got == low)) or \
                (high is not None and (got > high or below and got == high)):
            lo = "" if low is None else f"{'>' if above else '≥'} {low:g}"
            hi = "" if high is None else f"{'<' if below else '≤'} {high:g}"
            raise VitcliError("--" + name.replace("_", "-"),
                              f"must be {kind} {' and '.join(w for w in (lo, hi) if w)}, got {got!r}")
        return got

    return parse


def ranged(name: str, value: object) -> object:
    """A number whose range is in `ranges.RANGES` (numpy scalars made plain), checked there."""
    from vitcli.api.ranges import check_ranges

    value = int(value) if is_int(value) else float(value) if is_number(value) else value
    check_ranges(**{name: value})
    return value


def layers(name: str, value: object) -> str:
    """3, -1, [3, 6], range(2, 5), 'all' or the shell's text ('3,6', '2:5') → the text form."""
    if isinstance(value, str):
        return value
    if is_int(value):
        return str(int(value))
    if isinstance(value, (list, tuple, range)) and value and all(is_int(v) for v in value):
        return ",".join(str(int(v)) for v in value)
    raise fail(name, value, "a layer index, a list of them, 'all' or text such as '3,6' or '2:5'")


def heads(name: str, value: object) -> str:
    """A head index, a list of them, 'all', 'mean' | 'max' | 'min', or the shell's text → the text form."""
    try:
        return layers(name, value)
    except VitcliError:
        raise fail(name, value, "a head index, a list of them, 'all', 'mean', 'max' or 'min'") from None


def one_layer(name: str, value: object) -> int | None:
    """None or one layer index (negative from the end); the shell's text of one ('-1') is taken too."""
    if value is None:
        return None
    if is_int(value):
        return int(value)
    if isinstance(value, str) and whole_number(value) is not None:
        return whole_number(value)
    raise fail(name, value, "a layer index (an int)")


def query(name: str, value: object) -> str | None:
    """(row, col), a token index, a prefix name ('cls', 'reg0', 'probe', 'mean'), 'all' or 'R,C' → the text form."""
    if value is None or isinstance(value, str):
        return value
    if is_int(value):
        return str(int(value))
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        return f"{int(value[0])},{int(value[1])}"
    raise fail(name, value, "a query: (row, col), a token index, 'cls', 'dist', 'reg0'…, 'probe', 'mean' or 'all'")


def pair(name: str, value: object) -> tuple[int, int] | str | None:
    """None, (row, col) or the shell's 'R,C' → as given (the command reads both)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) for v in value):
        return (int(value[0]), int(value[1]))
    raise fail(name, value, "a (row, col) pair or text 'R,C'")


def pair_text(name: str, value: object) -> str | None:
    """None, (row, col) or 'R,C' → the shell's text 'R,C' (for commands that read only text)."""
    value = pair(name, value)
    return f"{value[0]},{value[1]}" if isinstance(value, tuple) else value


def size(name: str, value: object) -> int | tuple[int, int] | str | None:
    """None, 448, (448, 640), 'native' or the shell's '448' / '448x640' → as given (ints made plain)."""
    if value is None or isinstance(value, str):
        return value
    if is_int(value) and int(value) > 0:
        return int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(is_int(v) and int(v) > 0 for v in value):
        return (int(value[0]), int(value[1]))
    raise fail(name, value, "a size: N, (H, W) in pixels, 'HxW' or 'native'")


def memory(name: str, value: object) -> int | str | None:
    """None, bytes (an int) or text such as '8G'."""
    if value is None or isinstance(value, str):
        return value
    if is_int(value) and int(value) > 0:
        return int(value)
    raise fail(name, value, "a memory size: bytes (an int) or text such as '8G'")


def instance(kind: str) -> Parser:
    """None or an object of the class `kind` ('module:Name'), imported only when a value is given."""
    module, cls_name = kind.split(":")

    def parse(name: str, value: object) -> object:
        if value is None:
            return None
        import importlib

        if isinstance(value, getattr(importlib.import_module(module), cls_name)):
            return value
        raise fail(name, value, f"a {cls_name} (or None)")

    return parse


def callback(name: str, value: object) -> object:
    """None or an object the run reports to (a vitcli Progress or any callable)."""
    if value is None or callable(value) or hasattr(value, "update"):
        return value
    raise fail(name, value, "a progress reporter (or None)")


def sources(name: str, value: object) -> object:
    """None, or images: a file, folder or glob (str or Path), '-', a PIL image, a numpy array, `Images`, or
    a list of them."""
    if value is None:  # no second image (`to`), or the command's own message for no image
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if isinstance(item, os.PathLike):
            continue
        if not (isinstance(item, str) or hasattr(item, "shape") or type(item).__module__.startswith(("PIL", "vitcli"))):
            raise fail(name, item, "an image: a file name, a PIL image, a numpy array, or a list of them")
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (list, tuple)) and any(isinstance(v, os.PathLike) for v in value):
        return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
    return value


def model_spec(name: str, value: object) -> "str | Model":
    """A preset name, a checkpoint path (str or Path), 'hf-hub:…', 'timm:…', or a loaded Model."""
    if type(value).__name__ == "Model" and type(value).__module__.startswith("vitcli"):
        return cast("Model", value)  # checked by name: importing vitcli.api.models here would make a circle
    if isinstance(value, (str, os.PathLike)):
        return os.fspath(value)
    raise fail(name, value, "a preset name, a checkpoint path or a loaded Model")


def target(name: str, value: object) -> int | str | None:
    """None, a class index, or text ('top', a class name, 'class:…', 'patch:R,C', …)."""
    if value is None or isinstance(value, str):
        return value
    if is_int(value):
        return int(value)
    raise fail(name, value, "a target: a class index, 'top' or text such as 'class:cat'")


def prompts(name: str, value: object) -> str | list[str] | None:
    """None, one text, or a list (tuple) of texts → as given (a list for several)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    raise fail(name, value, "a text or a list of texts")


Fit = Literal["crop", "resize", "pad", "strict"]
Resample = Literal["bicubic", "bilinear", "nearest", "lanczos"]
Order = Literal["chw", "hwc"]
Normalize = Literal["raw", "none", "imagenet", "inception", "clip"]
Dtype = Literal["float32", "float16", "bfloat16", "float64"]
Format = Literal["npy", "parquet", "npy-shards"]  # a dataset run's files (DatasetSpec.format)
Backend = Literal["local", "ray"]  # where a dataset run runs (DatasetSpec.backend)

# The parser of each keyword by name; a function may override one (explain's `layer` is one layer).
KEYWORDS: dict[str, Parser] = {
    # images and models
    "images": sources, "image": sources, "to": sources, "sources": sources, "patches": sources,
    "spec": model_spec, "model": model_spec,
    "size": size, "fit": choice(Fit), "resample": choice(Resample), "background": text, "draft": flag,
    "recursive": flag, "from_list": path, "max_memory": memory, "device": text, "dtype": text,
    "seed": number(whole=True), "strict": flag, "class_token": flag, "posenc": choice(PosEncKind),
    "native_size": size, "activation": text, "online": flag, "family": text, "describe_only": flag,
    # what a command computes
    "stage": choice(("patches", "tokens", "input", "output", "pooled", "projected", "layers"), optional=False),
    "impl": choice(("conv", "linear"), optional=False), "normalize": text,
    "layer": layers, "layers": layers, "head": heads, "query": query,
    "rollout_fusion": text, "discard_ratio": number(), "discard_scope": text,
    "renorm": flag, "threshold": number(), "per_head": flag, "method": text, "target": target,
    "patch": pair, "pixel": pair, "norm": flag, "count": number(whole=True), "foreground_threshold": number(),
    "explain": flag, "kind": text, "grid": pair, "positions": text, "order": choice(Order, optional=False),
    "grid_size": pair,
    # text towers (api/text.py)
    "texts": prompts, "text": text, "labels": prompts, "labels_file": path, "template": text, "tokenizer": path,
    # what a command writes, and how it runs
    "output": path, "output_dir": path, "png": path, "grid_png": path, "overlay": path, "plot_distance": path,
    "similarity": path, "rollout": path_or_flag, "distance": path_or_flag, "masks": path_or_flag,
    "cosine": path_or_flag, "save_qkv": path_or_flag,
    "batch": instance("vitcli.api.runs:BatchSpec"), "dataset": instance("vitcli.api.dataset:DatasetSpec"),
    "keep": flag, "progress": callback,
}

# numbers whose range has its home in ranges.RANGES (discard_ratio's, threshold's and foreground_threshold's
# are checked by their commands)
KEYWORDS.update({name: ranged for name in ("patch_size", "dim", "depth", "heads", "mlp_ratio", "eps", "max_pixels",
                                          "max_patches", "k", "norm_threshold", "top", "start_layer")})
IMAGE_OPTIONS = ("size", "fit", "resample", "background", "max_pixels", "draft", "max_patches")


def _register(parsers: dict[str, Parser]) -> None:
    """The words of each choice keyword and the True-or-False keywords, so that messages spell '--stage layers'
    as "stage='layers'" and '--online' as 'online=True' in Python."""
    register_choices(**{n: p.words for n, p in parsers.items() if isinstance(p, Choice)})
    register_flags(*(n for n, p in parsers.items() if p is flag))


_register(KEYWORDS)
register_choices(format=get_args(Format), backend=get_args(Backend), dtype=get_args(Dtype))  # words of no keyword


Forward = Callable[[inspect.BoundArguments, dict[str, object]], None]


def keywords(*, extra: tuple[inspect.Parameter, ...] = (), forward: Forward | None = None,
             **overrides: Parser) -> "Callable[[Callable[P, R]], Callable[P, R]]":
    """Wrap a public function: each argument parsed by its keyword's parser before the call.

    `extra` keywords the function itself does not take are accepted and parsed too, then handed with
    the call's arguments to `forward` (`images.image_keywords`: the image options, forwarded to the
    loading of each image argument)."""
    if "with_images" in overrides:  # the old spelling: loud at import rather than image options dropped
        raise TypeError("keywords(with_images=...) is vitcli.api.images.image_keywords(...) now")

    def wrap(fn: "Callable[P, R]") -> "Callable[P, R]":
        signature = inspect.signature(fn)
        params = list(signature.parameters.values())
        added = [p for p in extra if p.name not in signature.parameters]
        parsers = {p.name: overrides.get(p.name) or KEYWORDS.get(p.name) for p in [*params, *added]
                   if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
        missing = sorted(n for n, parse in parsers.items() if parse is None)
        if missing:
            raise TypeError(f"{fn.__qualname__}: no parser for {', '.join(missing)} (vitcli/api/values.py)")
        parse_as = {n: parse for n, parse in parsers.items() if parse is not None}
        _register(parse_as)
        stray = sorted(set(overrides) - set(parsers))
        if stray:
            raise TypeError(f"{fn.__qualname__}: parsers for keywords it does not take: {', '.join(stray)}")
        # the image options go before a **kwargs catch-all
        tail = [p for p in params if p.kind == p.VAR_KEYWORD]
        shown = signature.replace(parameters=[*(p for p in params if p.kind != p.VAR_KEYWORD), *added, *tail])

        @functools.wraps(fn)
        def call(*args: object, **kwargs: object) -> R:  # fn's own arguments (parsed) and its result
            given = {n: kwargs.pop(n) for n in [p.name for p in added] if n in kwargs}
            bound = bind(fn, signature, args, kwargs)
            for n, value in list(bound.arguments.items()):
                if n in parse_as:
                    bound.arguments[n] = parse_as[n](n, value)
            parsed = {n: parse_as[n](n, v) for n, v in given.items()}
            if forward is not None:
                forward(bound, parsed)
            return cast("Callable[..., R]", fn)(*bound.args, **bound.kwargs)

        call.__signature__ = shown  # type: ignore[attr-defined]
        call.__vitcli_parsers__ = parsers  # type: ignore[attr-defined]
        return cast("Callable[P, R]", call)  # fn's parameters, each also taking what its parser reads

    return wrap


def bind(fn: Callable, signature: inspect.Signature, args: tuple, kwargs: dict[str, object]) -> inspect.BoundArguments:
    """The call's arguments by name; a keyword the function does not take is a VitcliError naming it."""
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = [n for n in kwargs if n not in signature.parameters and not takes_any]
    if unknown:
        raise VitcliError("--" + unknown[0].replace("_", "-"), f"is not a keyword of {fn.__name__}")
    try:
        return signature.bind_partial(*args, **kwargs)
    except TypeError as e:  # too many positional arguments, or one given twice
        raise VitcliError(fn.__name__, str(e)) from None


def check_forwarded(command: str, forwarded: dict[str, object], to: Callable, also: tuple[str, ...] = ()) -> None:
    """Keywords a command forwards (posenc's to `load_model`): each one `to` takes, parsed by its parser."""
    known = set(inspect.signature(to).parameters) | set(also)
    for n, value in forwarded.items():
        if n not in known:
            raise VitcliError("--" + n.replace("_", "-"), f"is not a keyword of {command} (nor of {to.__name__})")
        if n in KEYWORDS:
            KEYWORDS[n](n, value)


__all__ = ["IMAGE_OPTIONS", "KEYWORDS", "check_forwarded", "keywords"]

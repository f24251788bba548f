"""Parse attend's selections (layers, heads, queries) into indices on the true token layout.

Pure Python: the grid is the input's true (rows, cols) and prefix tokens come first, so a patch
(r, c) is token num_prefix + r·cols + c — never an index into a √N square.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

FUSIONS = ("mean", "max", "min")
PooledQuery = Literal["probe", "mean"]  # a query row that is no token: the attention-pool probe, the patch rows' mean
POOLED_QUERIES: tuple[str, ...] = ("probe", "mean")


_WHOLE = re.compile(r"\s*(-?[0-9]+)\s*")


def whole(text: str, signed: bool = True) -> int | None:
    """An ASCII whole number written as the shell writes one ('12', ' -3 '), else None. int() alone takes
    other scripts' digits ('٣'), underscores ('1_0') and '+', and fails with ValueError on '²'."""
    m = _WHOLE.fullmatch(text)
    if m is None or (not signed and m.group(1).startswith("-")):
        return None
    return int(m.group(1))


def _int(text: str, what: str) -> int:
    value = whole(text)
    if value is None:
        raise ValueError(f"'{text}' is not a {what}")
    return value


def _checked(index: int, size: int, what: str) -> int:
    if not -size <= index < size:
        raise ValueError(f"{what} {index} is out of range: there are {size} (0..{size - 1}, or -1 for the last)")
    return index % size


def parse_layers(text: str, depth: int) -> list[int]:
    """'all', 'I' (negative from the end), 'A:B' (Python slice, B excluded), or 'I,J,K' → sorted layers."""
    t = text.strip().lower()
    if t == "all":
        return list(range(depth))
    if ":" in t:
        parts = t.split(":")
        if len(parts) != 2:
            raise ValueError(f"'{text}' is not a range A:B")
        bounds = [_int(p, "layer") if p.strip() else None for p in parts]
        chosen = list(range(depth))[slice(*bounds)]
        if not chosen:
            raise ValueError(f"'{text}' selects no layer of {depth}")
        return chosen
    return sorted({_checked(_int(p, "layer"), depth, "layer") for p in t.split(",")})


@dataclass(frozen=True)
class HeadSelection:
    """Which heads to keep, or how to fuse them all into one."""

    heads: list[int]
    fusion: Literal["mean", "max", "min"] | None = None

    @property
    def labels(self) -> list[str]:
        return [self.fusion] if self.fusion else [str(h) for h in self.heads]


def parse_heads(text: str, heads: int) -> HeadSelection:
    """'all', 'I', 'I,J', or a fusion of all heads 'mean' | 'max' | 'min'."""
    t = text.strip().lower()
    if t == "all":
        return HeadSelection(list(range(heads)))
    if t in FUSIONS:
        return HeadSelection(list(range(heads)), t)  # type: ignore[arg-type]
    return HeadSelection(sorted({_checked(_int(p, "head index or mean|max|min"), heads, "head") for p in t.split(",")}))


def parse_query(text: str, grid: tuple[int, int], num_prefix: int, has_class_token: bool,
                names: Sequence[str] | None = None, also: Sequence[str] = ()) -> list[int] | None:
    """A prefix token by the name the tables print ('cls', 'dist', 'reg0'…) → its index; a token
    index 'I'; a patch 'R,C' on the true grid; 'all' → None (every token). `names` are the prefix
    tokens' names (default: 'cls' first when there is a class token); `also` lists the other words the
    caller accepts (for the message)."""
    t = text.strip().lower()
    tokens = num_prefix + grid[0] * grid[1]
    names = list(names) if names is not None else (["cls"] if has_class_token else [])
    if t == "all":
        return None
    if t in names:
        return [names.index(t)]
    if t == "cls":
        raise ValueError("this model has no class token: use a token index, a patch R,C"
                         + "".join(f", {a}" for a in also) + " or all")
    if "," in t:
        parts = t.split(",")
        if len(parts) != 2:
            raise ValueError(f"'{text}' is not a patch R,C")
        r, c = (_int(p, "patch row/column") for p in parts)
        r, c = _checked(r, grid[0], "patch row"), _checked(c, grid[1], "patch column")
        return [num_prefix + r * grid[1] + c]
    choices = ", ".join(["token index", "R,C", *names, *also])
    return [_checked(_int(t, f"{choices} or all"), tokens, "token")]


def token_name(token: int, grid: tuple[int, int], num_prefix: int, prefix_names: list[str]) -> str:
    """'cls', 'reg2', or 'patch (r, c)' for a token index."""
    if token < num_prefix:
        return prefix_names[token]
    r, c = divmod(token - num_prefix, grid[1])
    return f"patch ({r}, {c})"


def prefix_names(class_token: bool, distilled: bool, registers: int) -> list[str]:
    """Names of the prefix tokens in their order: cls, dist, reg0…"""
    return (["cls"] if class_token else []) + (["dist"] if distilled else []) + [f"reg{i}" for i in range(registers)]

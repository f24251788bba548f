"""Ranges of numeric options: one table, checked where the API receives them, each named by its option.

A value outside its range (0 patches, a NaN ratio, a negative epsilon) is one `VitcliError` naming
the option ('--dim' in the CLI, `dim` in Python) before any work, never a message about something
it caused later, whether or not the run uses the option. Upper limits that depend on memory are
checked elsewhere (before allocating). An option given (not None) that the chosen mode ignores is a
`UsageError` (`refuse_unused`): it names the option and what it works with.
"""

import math
from collections.abc import Mapping

from vitcli.errors import UsageError, VitcliError

# keyword → (option, kind, lowest, whether the lowest is allowed); kind "int" or "float" (finite)
RANGES: dict[str, tuple[str, str, float, bool]] = {
    "patch_size": ("--patch-size", "int", 1, True),
    "dim": ("--dim", "int", 1, True),
    "depth": ("--depth", "int", 1, True),
    "heads": ("--heads", "int", 1, True),
    "mlp_ratio": ("--mlp-ratio", "float", 0.0, False),
    "eps": ("--eps", "float", 0.0, False),
    "max_pixels": ("--max-pixels", "int", 1, True),
    "max_patches": ("--max-patches", "int", 1, True),
    "k": ("--k", "float", 0.0, True),
    "norm_threshold": ("--norm-threshold", "float", 0.0, True),
    "top": ("--top", "int", 1, True),
    "start_layer": ("--start-layer", "int", 0, True),
    "shard_size": ("--shard-size", "int", 1, True),
    "actors": ("--actors", "int", 1, True),
    "num_gpus": ("--num-gpus", "float", 0.0, True),
}


def check_ranges(**values: object) -> None:
    """Each given (not None) value within its range in RANGES, else one error naming its option."""
    for name, value in values.items():
        if value is None:
            continue
        option, kind, low, inclusive = RANGES[name]
        bound = f"at least {low:g}" if inclusive else f"greater than {low:g}"
        if kind == "int":
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise VitcliError(option, f"must be a whole number {bound}, got {value!r}")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value < low or (value == low and not inclusive):
            raise VitcliError(option, f"must be a finite number {bound}, got {value!r}")


def refuse_unused(works_with: str, given: Mapping[str, object]) -> None:
    """One UsageError for the first option (CLI name → value) given, not None, that this run ignores."""
    for option, value in given.items():
        if value is not None:
            raise UsageError(option, f"works with {works_with}; this run would ignore it")

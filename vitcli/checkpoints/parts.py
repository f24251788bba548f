"""Parts a checkpoint may carry that vitcli does not build: named, so the error says which part.

Keys left over after a family's table (no place in the core) are matched against these patterns;
each match names the part in the error (with --no-strict the keys are ignored as before, and a
note says the outputs will differ). A part that vitcli learns to build
gets a rule in its family's table, so its keys are no longer left over and its hint never fires.
"""

import re

PART_HINTS: tuple[tuple[str, str], ...] = (
    (r"\.mlp\.(w1|w2|w3|w12)\.", "a packed SwiGLU MLP (w12 / w3)"),
    (r"attn_pool\.pos_embed", "a position table inside the attention pool"),
)


def name_parts(leftover: list[str]) -> list[str]:
    """The part names that explain some of the leftover keys, each with its first key."""
    found = []
    for pattern, part in PART_HINTS:
        hit = next((k for k in leftover if re.search(pattern, k)), None)
        if hit is not None:
            found.append(f"{part} ({hit})")
    return found


__all__ = ["PART_HINTS", "name_parts"]

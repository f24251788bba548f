"""Parts a checkpoint may carry that vitcli does not build: named, so the error says which part.

Keys left over after a family's table (no place in the core) are matched against these patterns;
each match names the part in the error (with --no-strict the keys are ignored as before, and a
note says the outputs will differ). A part that vitcli learns to build
gets a rule in its family's table, so its keys are no longer left over and its hint never fires.
"""

import re

PART_HINTS: tuple[tuple[str, str], ...] = (
    (r"\.mlp\.(w1|w2|w3|w12)\.",
     "a SwiGLU MLP in a layout vitcli cannot place it in (packed SwiGLU w12 / w3, or w1 / w2 / w3)"),
    (r"attn_pool\.pos_embed", "a position table inside the attention pool"),
    # any other block key under an MLP or attention name that no rule took: a layout vitcli does not know
    (r"\.\d+\.(.+\.)?(mlp|ffn|feed_forward|intermediate|output|c_fc|c_proj)\.", "an MLP layout vitcli does not know"),
    (r"\.\d+\.(.+\.)?(attn|attention|self_attn|self_attention)\.", "an attention layout vitcli does not know"),
)


def name_parts(leftover: list[str]) -> list[str]:
    """The part names that explain the leftover keys (each key named by its first pattern), with their first keys."""
    found: dict[str, list[str]] = {}
    for key in leftover:
        part = next((part for pattern, part in PART_HINTS if re.search(pattern, key)), None)
        if part is not None:
            found.setdefault(part, []).append(key)
    return [f"{part} ({', '.join(keys[:3])}{', …' if len(keys) > 3 else ''})" for part, keys in found.items()]


__all__ = ["PART_HINTS", "name_parts"]

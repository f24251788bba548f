"""Sizes and grids written HxW ([H, W] or [rows, cols]): parsed without numpy or Pillow."""

from vitcli.errors import VitcliError


def parse_hw(text: str, option: str) -> tuple[int, int]:
    """'224' → (224, 224); '224x160' → (224, 160), always [H, W] (or [rows, cols]); positive."""
    from vitcli.core.select import whole

    parts = text.strip().lower().split("x")
    if len(parts) not in (1, 2) or not all((whole(p, signed=False) or 0) > 0 and p == p.strip() for p in parts):
        raise VitcliError(option, f"'{text}' is not N or HxW with positive whole numbers (e.g. 224 or 224x160)")
    return int(parts[0]), int(parts[-1])


def parse_size(text: str) -> tuple[int, int] | None:
    """`--size`: '224', '224x160' ([H, W]) or 'native' (None)."""
    return None if text.strip().lower() == "native" else parse_hw(text, "--size")

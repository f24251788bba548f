"""What a request costs in memory, estimated before anything is allocated, and the limit it must stay under.

The one home of the estimate (no torch import: `vitcli --help` and `info` stay fast):

  weights      parameters by formula × dtype bytes (`presets.formula_params(bound=True)`)
  activations  one forward pass under no_grad: the residual stream, the norm's output, qkv (3D)
               and its split, the attention output, the MLP hidden twice (fc1, its activation) and
               the stages a command keeps (patches, tokens, Z0, output): b·T·(15D + 4M) values,
               measured on this machine (`embed` of ViT-S/16 at 896 and 1344 px grows by 0.73× and 0.81×
               of the whole estimate, weights and image included), plus
               the attention scores filled one block of `WEIGHTS_BLOCK` at a time (as attention.py
               does) and any weights kept (b·H·Q·T a layer)
  images       H·W·3 bytes resized, a copy (crop, patches), and the float32 model input: 18 B a
               pixel, for each image of a batch
  gradients    `explain`'s pass (`backward_bytes`, vitcli.core.explain): every block's input kept,
               (L+1)·b·T·D, and for grad-rollout and attn-grad every block's A·V too, L·b·T·D; one
               block recomputed with autograd at a time, whose saved activations and their gradients
               are twice the no-grad block's; the tiled attention backward's threads (`tile_workers`),
               each with its tiles, one row block of Ā (b·TILE_ROWS·T, and for attn-grad a float64
               copy) and its own ∂y/∂K, ∂y/∂V sums (2·b·T·D) (rollout: `SCORE_COPIES` blocks of
               `WEIGHTS_BLOCK`); with a discard,
               attn-grad and rollout also hold each image's T×T product (`PRODUCT_BYTES` a pair of
               tokens and `DISCARD_BYTES` more)

The limit: `max_memory` when given (`--max-memory 8G`, `max_memory="500M"` or bytes), else
`DEFAULT_SHARE` of the memory this process may still take: /proc/meminfo's MemAvailable, or the
cgroup's memory.max minus memory.current when that is lower (a container). The share leaves room
for what the estimate leaves out (Python, torch's own pages, allocator slack).
"""

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vitcli.core.config import ViTConfig

DEFAULT_SHARE = 0.75  # of the available memory
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "float64": 8}
IMAGE_BYTES_PER_PIXEL = 3 + 3 + 12  # resized uint8, one copy, float32 (3, H, W) input
WEIGHTS_BLOCK = 1 << 23  # attention scores computed at once (vitcli.core.attention.WEIGHTS_BLOCK)
# float32 row blocks alive in explain's rollout: scores, A, their mean over heads, float64 copies of it
SCORE_COPIES = 5
TILE_ROWS, TILE_COLS, MAX_WORKERS = 512, 512, 8  # explain's tiled backward (vitcli.core.attention_grad)
TILE_COPIES = 3  # a tile's A, ∂y/∂A (then ∂y/∂S), the reader's (A ⊙ ∂y/∂A)⁺
ROWS_BYTES = 8  # attn-grad, per entry of a row block of Ā: analysis.rollout_rows' float64 copy
PRODUCT_BYTES = 40  # per (T, T) entry in analysis.rollout_step: float32 pieces and cat, float64 Ā, 0.5·Ā + 0.5·I, Â
DISCARD_BYTES = 24  # more per entry with --discard-ratio: the masked copy, topk's int64 indices, the mask
GRAD_METHODS = ("grad-rollout", "attn-grad", "gradcam")
UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)

_process_limit: int | None = None  # set by the CLI's --max-memory for the whole run


def parse_memory(text: str | int | float) -> int:
    """'8G', '500M', '1.5GiB', '123456' (bytes) → bytes; K, M, G, T are powers of 1024. ValueError if not."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = int(text)
    else:
        m = _SIZE.match(str(text))
        if not m:
            raise ValueError(f"'{text}' is not a size: use bytes or a number with K, M, G or T (e.g. 8G, 500M)")
        value = int(float(m.group(1)) * UNITS[m.group(2).lower()])
    if value <= 0:
        raise ValueError(f"'{text}' is not a positive size")
    return value


def set_process_limit(limit: int | None) -> None:
    """The limit for everything this process runs that is not given its own (the CLI's --max-memory)."""
    global _process_limit
    _process_limit = limit


def available_memory() -> int | None:
    """Bytes this process may still take: MemAvailable, or the cgroup's room when lower; None if unknown."""
    found = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        top = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if top != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
            found.append(max(0, int(top) - used))
    except (OSError, ValueError):
        pass
    return min(found) if found else None


def memory_limit(given: str | int | None = None) -> int:
    """The limit in bytes: `given`, else the CLI's --max-memory, else DEFAULT_SHARE of the available memory."""
    if given is not None:
        return parse_memory(given)
    if _process_limit is not None:
        return _process_limit
    room = available_memory()
    return int(DEFAULT_SHARE * room) if room else 1 << 62


def format_bytes(n: float) -> str:
    """1536 → '1.5 KiB'; three significant figures at most, binary units."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            text = str(int(n)) if unit == "B" else f"{n:.0f}" if n >= 100 else f"{n:.3g}"
            return f"{text} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"  # pragma: no cover


def over(need: int, limit: int, what: str) -> str | None:
    """The problem text when `what` needs more than `limit`, else None ({needs} names the limit's option)."""
    if need <= limit:
        return None
    return f"{what} needs {format_bytes(need)}, over the memory limit of {format_bytes(limit)} ({{needs}})"


def weight_bytes(c: "ViTConfig", dtype: str = "float32") -> int:
    """Bytes of the model's weights in `dtype`."""
    from vitcli.core.presets import formula_params

    return formula_params(c, bound=True) * DTYPE_BYTES.get(dtype, 4)


def forward_bytes(c, batch: int, size: tuple[int, int], dtype: str = "float32", kept: int = 0) -> int:
    """Bytes one forward pass of `batch` images of [H, W] adds to the weights: activations of one
    block at a time and the stages kept, one block of attention scores, the fitted images, and
    `kept` bytes of captures."""
    p = c.patch_size
    t = (size[0] // p) * (size[1] // p) + c.num_prefix_tokens
    e = DTYPE_BYTES.get(dtype, 4)
    tokens = batch * t * (15 * c.dim + 4 * c.mlp_dim) * e
    scores = min(batch * c.heads * t * t, 2 * WEIGHTS_BLOCK) * 4
    return tokens + scores + batch * image_bytes(size) + kept


def backward_bytes(c, batch: int, size: tuple[int, int], dtype: str = "float32", method: str = "grad-rollout",
                   discard: bool = False) -> int:
    """Bytes `explain` of `method` ("all": the largest of the four) on `batch` images of [H, W]
    adds to the weights: see the module's docstring (gradients)."""
    if method == "all":
        return max(backward_bytes(c, batch, size, dtype, m, discard) for m in (*GRAD_METHODS, "rollout"))
    p = c.patch_size
    t = (size[0] // p) * (size[1] // p) + c.num_prefix_tokens
    e = DTYPE_BYTES.get(dtype, 4)
    rows = method in ("grad-rollout", "attn-grad")  # the attention's backward in row blocks, A·V kept
    kept = (c.depth + 1 + c.depth * rows) * batch * t * c.dim * e
    block = batch * t * (15 * c.dim + 4 * c.mlp_dim) * e
    block = block if method == "rollout" else 2 * block  # rollout: Q, K, V of a block, no autograd
    row_block = batch * min(t, TILE_ROWS) * t * (4 + (ROWS_BYTES if method == "attn-grad" else 0))
    worker = TILE_COPIES * TILE_ROWS * TILE_COLS * 4 + row_block + 2 * batch * t * c.dim * e
    scores = (tile_workers() * worker if rows
              else SCORE_COPIES * min(batch * c.heads * t * t, WEIGHTS_BLOCK) * 4 if method == "rollout" else 0)
    product = batch * t * t * (PRODUCT_BYTES + DISCARD_BYTES) if method in ("attn-grad", "rollout") and discard else 0
    return kept + block + scores + product + batch * image_bytes(size)


def tile_workers() -> int:
    """Threads of explain's tiled backward at most: one a core (torch's default), MAX_WORKERS at most."""
    return min(os.cpu_count() or 1, MAX_WORKERS)


PAGE_COPIES = 4  # the view page's data at writing: arrays, their base64 text, the JSON text, its UTF-8 bytes
RECHECK_COPIES = 4  # float64 (H, T, T) arrays alive in view's check of the float16 rows: scores, exp, rows, |error|


def view_tab_bytes(c, tokens: int, layers: int) -> tuple[int, int]:
    """(transient, kept) bytes of one `view` tab at `tokens` tokens with `layers` layers embedded: attend's
    float32 weights of every layer and the float64 recheck of one layer (transient); the float16 rows, or
    Q and K, similarity and rollout tables the page keeps (at most rows: H·T² per layer)."""
    t2 = tokens * tokens
    transient = layers * c.heads * t2 * 4 + RECHECK_COPIES * c.heads * t2 * 8
    kept = layers * (c.heads * t2 * 2 + t2 * 2) + 2 * t2 * 2
    return transient, kept


def image_bytes(size: tuple[int, int]) -> int:
    """Bytes one image fitted to [H, W] takes on its way to the model (see IMAGE_BYTES_PER_PIXEL)."""
    return size[0] * size[1] * IMAGE_BYTES_PER_PIXEL


def attention_kept_bytes(batch: int, heads: int, queries: int, tokens: int, layers: int) -> int:
    """Attention weights kept: (layers, b, H, Q, T) float32."""
    return layers * batch * heads * queries * tokens * 4


__all__ = ["DEFAULT_SHARE", "PAGE_COPIES", "attention_kept_bytes", "available_memory", "backward_bytes",
           "format_bytes", "forward_bytes", "image_bytes", "memory_limit", "over", "parse_memory", "set_process_limit",
           "view_tab_bytes", "weight_bytes"]

"""PNG pictures: plain images, and the image with its patch grid and patch indices drawn on it."""

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from vitcli.io.arrays import write_bytes


def save_png(path: str, image: Image.Image | np.ndarray) -> None:
    """Write a PNG atomically (or to standard output for '-')."""
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    write_bytes(path, lambda f: image.save(f, format="PNG"))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's bundled scalable font at `size` pixels."""
    return ImageFont.load_default(size=size)


def grid_picture(pixels: np.ndarray, patch_size: int, min_cell: int = 40) -> Image.Image:
    """The image as fed in, scaled up (nearest) so every patch cell is ≥ `min_cell` pixels, with
    the patch grid drawn and each patch's row index (row-major, the row of the patch array)."""
    h, w = pixels.shape[:2]
    rows, cols = h // patch_size, w // patch_size
    scale = max(1, -(-min_cell // patch_size))
    cell = patch_size * scale
    img = Image.fromarray(pixels).resize((w * scale, h * scale), Image.Resampling.NEAREST).convert("RGBA")
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    for r in range(rows + 1):
        draw.line([(0, r * cell), (w * scale, r * cell)], fill=(255, 255, 255, 200), width=1)
    for c in range(cols + 1):
        draw.line([(c * cell, 0), (c * cell, h * scale)], fill=(255, 255, 255, 200), width=1)
    digits = len(str(rows * cols - 1))
    font = _font(max(8, min(cell // 3, int(cell * 1.6 / max(digits, 1)))))
    for index in range(rows * cols):
        r, c = divmod(index, cols)
        x, y = c * cell + cell / 2, r * cell + cell / 2
        text = str(index)
        box = draw.textbbox((x, y), text, font=font, anchor="mm")
        draw.rectangle(box, fill=(0, 0, 0, 140))
        draw.text((x, y), text, fill=(255, 255, 255, 255), font=font, anchor="mm")
    return Image.alpha_composite(img, overlay).convert("RGB")

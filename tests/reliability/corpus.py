"""Bad and awkward input files, generated on the fly (nothing binary is checked in)."""

import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "sample_images"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A 100-byte PNG whose header claims width × height pixels (a decompression bomb)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    """(H, W, 3) uint8 random pixels."""
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _encoded(fmt: str) -> bytes:
    path_bytes = {"JPEG": (SAMPLES / "chelsea.jpg").read_bytes()}
    if fmt in path_bytes:
        return path_bytes[fmt]
    import io

    buf = io.BytesIO()
    Image.fromarray(noise(64, 64)).save(buf, fmt)
    return buf.getvalue()


def bad_images(folder: Path) -> dict[str, tuple[Path, str]]:
    """name → (file, pattern the one-line error must match). Every file here must be refused."""
    folder.mkdir(parents=True, exist_ok=True)
    cases: dict[str, tuple[str, bytes | None, str]] = {
        "empty": ("empty.jpg", b"", "empty file"),
        "random bytes": ("random.jpg", np.random.default_rng(1).bytes(4096), "not an image"),
        "truncated jpeg": ("truncated.jpg", _encoded("JPEG")[: len(_encoded("JPEG")) // 2], "truncated"),
        "truncated png": ("truncated.png", _encoded("PNG")[: len(_encoded("PNG")) // 2], "truncated"),
        "png signature only": ("signature.png", b"\x89PNG\r\n\x1a\n", "not an image"),
        "decompression bomb": ("bomb.png", bomb_png(), "decompression bomb"),
        "bomb below 2x limit": ("bomb_warn.png", bomb_png(10_000, 10_000), "decompression bomb"),
    }
    out = {}
    for name, (file, data, words) in cases.items():
        (folder / file).write_bytes(data)
        out[name] = (folder / file, words)
    for name, (h, w) in {"1x1": (1, 1), "65535 wide x 1": (1, 65535), "1 x 65535 high": (65535, 1),
                         "smaller than a patch": (15, 300)}.items():
        path = folder / f"tiny_{h}x{w}.png"
        Image.new("RGB", (w, h), (10, 20, 30)).save(path)
        out[name] = (path, "smaller than one 16x16 patch")
    os.mkdir(folder / "x.jpg")
    out["directory"] = (folder / "x.jpg", "is a directory|no image files")  # batch mode reads folders
    return out


def animated_gif(path: Path) -> list[tuple[int, int, int]]:
    """A 3-frame 32×32 GIF (red, green, blue frames); returns the frame colours."""
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    frames = [Image.new("RGB", (32, 32), c) for c in colours]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return colours


def cmyk_jpeg(path: Path) -> None:
    """A 32×32 CMYK JPEG of pure red (C=0, M=255, Y=255, K=0)."""
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(path, quality=95)


def png16(path: Path) -> np.ndarray:
    """A 32×32 16-bit greyscale PNG: left half 65535, right half 0 (plus a mid-grey row); returns values."""
    values = np.zeros((32, 32), np.uint16)
    values[:, :16] = 65535
    values[0, 16:] = 32768
    img = Image.fromarray(values)
    assert img.mode == "I;16"
    img.save(path)
    return values


def palette_with_transparency(path: Path) -> None:
    """A 32×32 palette PNG: index 0 transparent (top half), index 1 blue (bottom half)."""
    img = Image.new("P", (32, 32), 0)
    img.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    img.paste(1, (0, 16, 32, 32))
    img.save(path, transparency=0)


def exif_rotated(path: Path) -> np.ndarray:
    """A 32 high × 64 wide picture stored turned (64 × 32) with EXIF orientation 6; returns it upright."""
    upright = np.zeros((32, 64, 3), np.uint8)
    upright[:, :32] = 255  # white left half, black right half
    upright[:16, 32:, 0] = 255  # red top-right quarter: tells every rotation and mirror apart
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # what a camera on its side stores
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    Image.fromarray(stored).save(path, quality=95, exif=exif)
    return upright

"""Regenerate the sample photos from scikit-image's bundled public-domain / CC0 data.

Run from the repository root: `python sample_images/make_samples.py` (needs scikit-image).
Not part of the package: it only documents where the shipped files come from.
"""

from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


def main() -> None:
    import skimage.data

    for name in PHOTOS:
        pixels = getattr(skimage.data, name)()  # (H, W, 3) uint8
        Image.fromarray(pixels).save(HERE / f"{name}.jpg", quality=92)
    write_exif_rotated(skimage.data.chelsea())


def write_exif_rotated(upright: np.ndarray) -> None:
    """Store the cat turned 90° counter-clockwise, tagged Orientation 6 ("rotate 90° clockwise to
    view"), as a camera held on its side does: only a loader that applies EXIF sees it upright."""
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # (451, 300, 3)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(HERE / "chelsea_exif_rotated.jpg", quality=92, exif=exif)


if __name__ == "__main__":
    main()

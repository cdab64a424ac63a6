"""Image files in and out, in one place: `read_image` (whole, decodable, at least 2 x 2 pixels; errors
name the file) and `write_image`, both RGB.

OpenCV decodes a truncated JPEG without an error (libjpeg fills the missing rows with grey and only
prints a warning): `check_photo_file` refuses it (and an empty file) first, naming the file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

JPEG_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg")
JPEG_START = b"\xff\xd8"
#: The JPEG end-of-image marker. Inside the compressed data every 0xFF byte is followed by 0x00, so a
#: file cut short ends without it.
JPEG_END = b"\xff\xd9"


def check_photo_file(path: Path) -> None:
    """Refuse an empty file and a truncated JPEG (ValueError naming ``path``); other files, and files
    that are not JPEG at all, are left to the decoder."""
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"{path}: the file is empty (0 bytes); replace it with the photo or drop the face")
    if path.suffix.lower() not in JPEG_SUFFIXES:
        return
    with path.open("rb") as handle:
        start = handle.read(len(JPEG_START))
        handle.seek(max(0, size - len(JPEG_END)))
        end = handle.read()
    if start != JPEG_START or end == JPEG_END:
        return
    problem = _pillow_problem(path)  # some cameras append data after the end marker: ask a full decoder
    if problem:
        raise ValueError(
            f"{path}: truncated JPEG ({problem}; the bottom of the photo is missing); "
            "copy the photo again or drop the face"
        )


def _pillow_problem(path: Path) -> str | None:
    """What Pillow's full decode of ``path`` says is wrong, or None. Pillow is matplotlib's dependency;
    it is only asked about the rare JPEG without the end marker."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.load()
    except OSError as error:
        return str(error)
    return None


def read_image(path: str | Path, source: str = "") -> np.ndarray:
    """Read a photo as (H, W, 3) uint8 RGB; fail with the file named (and ``source``, the annotation that
    named it, when given) if it is missing, empty, truncated, not an image or smaller than 2 x 2 pixels."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found" + (f" (annotated in {source})" if source else ""))
    check_photo_file(path)
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(
            f"{path}: cannot decode the image (corrupt or not an image); replace it or drop the face"
        )
    if min(image.shape[:2]) < 2:
        raise ValueError(
            f"{path}: image of {image.shape[1]}x{image.shape[0]} pixels is too small to hold a face; "
            "replace it or drop the face"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an (H, W, 3) uint8 RGB image (format from the suffix), making the folder; an OSError naming
    the file when it cannot."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write the picture")
    return path

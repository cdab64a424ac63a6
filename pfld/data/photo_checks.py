"""Checks that a photo file is whole and that a face's points belong to it, each naming the file.

OpenCV decodes a truncated JPEG without an error (libjpeg fills the missing rows with grey and only
prints a warning), and nothing else notices points given in another image's pixels: both would train
on a wrong face silently.
"""

from __future__ import annotations

from pathlib import Path

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


def check_points_in_photo(landmarks: np.ndarray, width: int, height: int, where: str) -> None:
    """Refuse points that cannot belong to a ``width`` x ``height`` photo (ValueError naming ``where``).

    A face cut by the photo's edge may have points a little outside it, so a point is refused only when
    it lies more than the photo's own width (x) or height (y) outside; and the centre of the labelled
    points' box must lie in the photo. Such points usually come from another resolution of the photo
    or from a swapped x and y. ``landmarks``: (K, 2) pixels, NaN = unlabelled.
    """
    labelled = landmarks[~np.isnan(landmarks[:, 0])]
    size = np.array([width, height], dtype=np.float64)
    far = np.flatnonzero(((landmarks < -size) | (landmarks > 2 * size - 1)).any(axis=1))
    advice = "are the points for another resolution of the photo, or x and y swapped?"
    if far.size:
        point = int(far[0])
        x, y = (float(v) for v in landmarks[point])
        raise ValueError(
            f"{where}: {far.size} points lie far outside the {width}x{height} photo, e.g. point {point} at "
            f"({x:.0f}, {y:.0f}); {advice}"
        )
    centre = (labelled.min(axis=0) + labelled.max(axis=0)) / 2
    if ((centre < -0.5) | (centre > size - 0.5)).any():
        raise ValueError(
            f"{where}: the face's centre ({centre[0]:.0f}, {centre[1]:.0f}) is outside the "
            f"{width}x{height} photo; {advice}"
        )

"""Checks that a face's points belong to its photo, naming the file: points given in another image's
pixels would otherwise train on a wrong face silently. (Whether the photo file itself is whole:
`pfld.io.images.check_photo_file`.)"""

from __future__ import annotations

import numpy as np


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

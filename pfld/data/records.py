"""One annotated face: where its image is, its points (some may be missing), who it is, its flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Fewest labelled points a face needs: two define its landmark box and so its crop.
MIN_LABELLED_POINTS = 2


@dataclass(frozen=True)
class FaceRecord:
    """An annotated face in a full image.

    Args:
        image_path: the photo the face is in.
        landmarks: (K, 2) float32, x then y, 0-based pixel coordinates of ``image_path`` (the centre of
            the top-left pixel is (0, 0)). A point that is not labelled is NaN in both coordinates.
        identity: who the face belongs to (a photo or person id), for identity-disjoint splits.
        flags: optional data-set attributes, e.g. ``{"expression": True, "occlusion": False}``.
        source: where the annotation came from (file and line), quoted in error messages.
        box: optional (4,) float32 face box given by the data set, ``x_min, y_min, x_max, y_max`` pixels.
    """

    image_path: Path
    landmarks: np.ndarray
    identity: str
    flags: dict[str, bool] = field(default_factory=dict)
    source: str = ""
    box: np.ndarray | None = None

    def __post_init__(self) -> None:
        where = self.source or str(self.image_path)
        points = self.landmarks
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"{where}: landmarks must have shape (K, 2), got {points.shape}")
        if np.isinf(points).any():
            raise ValueError(f"{where}: landmarks contain infinite coordinates")
        nan = np.isnan(points)
        half = np.flatnonzero(nan[:, 0] != nan[:, 1])
        if half.size:
            raise ValueError(
                f"{where}: point {int(half[0])} has one coordinate missing (NaN) but not the other"
            )
        if int((~nan[:, 0]).sum()) < MIN_LABELLED_POINTS:
            raise ValueError(
                f"{where}: {int((~nan[:, 0]).sum())} labelled points; a face needs at least {MIN_LABELLED_POINTS}"
            )
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float32)
            if box.shape != (4,) or not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
                raise ValueError(
                    f"{where}: face box must be finite x_min, y_min, x_max, y_max, got {self.box}"
                )
            object.__setattr__(self, "box", box)

    @property
    def num_points(self) -> int:
        return int(self.landmarks.shape[0])

    @property
    def visible(self) -> np.ndarray:
        """(K,) bool: which points are labelled."""
        return ~np.isnan(self.landmarks[:, 0])

"""One annotated face: where its image is, its points, who it is, and any attribute flags."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class FaceRecord:
    """An annotated face in a full image.

    Args:
        image_path: the photo the face is in.
        landmarks: (K, 2) float32, x then y, 0-based pixel coordinates of ``image_path``.
        identity: who the face belongs to (a photo or person id), for identity-disjoint splits.
        flags: optional data-set attributes, e.g. ``{"expression": True, "occlusion": False}``.
        source: where the annotation came from (file and line), quoted in error messages.
    """

    image_path: Path
    landmarks: np.ndarray
    identity: str
    flags: dict[str, bool] = field(default_factory=dict)
    source: str = ""

    def __post_init__(self) -> None:
        where = self.source or str(self.image_path)
        if self.landmarks.ndim != 2 or self.landmarks.shape[1] != 2:
            raise ValueError(f"{where}: landmarks must have shape (K, 2), got {self.landmarks.shape}")
        if not np.isfinite(self.landmarks).all():
            raise ValueError(f"{where}: landmarks contain NaN or infinite coordinates")

    @property
    def num_points(self) -> int:
        return int(self.landmarks.shape[0])

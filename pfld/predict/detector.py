"""Face detection that works offline: dlib's HOG detector, built into the `dlib-bin` wheel (no model file,
no download). Any callable RGB image -> list of `Detection` can replace it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Detection:
    """A detected face: ``box`` (4,) x_min, y_min, x_max, y_max in 0-based photo pixels, and a score."""

    box: np.ndarray
    score: float


class FaceDetector(Protocol):
    name: str

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """(H, W, 3) uint8 RGB -> the faces found, best first."""
        ...


def _import_dlib():
    try:
        import dlib
    except ImportError as error:
        raise ImportError(
            f"the face detector needs dlib ({error}); install it with: pip install dlib-bin "
            '(or pip install -e ".[predict]")'
        ) from error
    return dlib


class DlibHogDetector:
    """dlib's frontal-face HOG + linear SVM detector (Dlib 20).

    Args:
        upsample: times the photo is doubled before detection (1 finds faces down to about 40 px; each
            step costs about 4x the time).
        min_score: detections scoring below this are dropped (dlib's own threshold is 0).
        min_size: faces whose box is smaller than this many pixels (longer side) are dropped: PFLD
            crops of them would be mostly interpolation.
    """

    name = "dlib-hog"

    def __init__(self, upsample: int = 1, min_score: float = 0.0, min_size: float = 24.0) -> None:
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        self._detector = _import_dlib().get_frontal_face_detector()
        self.upsample, self.min_score, self.min_size = upsample, min_score, min_size

    def __call__(self, image: np.ndarray) -> list[Detection]:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an (H, W, 3) uint8 RGB image, got {image.shape} {image.dtype}")
        rectangles, scores, _ = self._detector.run(np.ascontiguousarray(image), self.upsample, self.min_score)
        found = [
            Detection(
                # dlib's rectangles are inclusive pixel indices: the box's outer edges are half a pixel out
                np.array([r.left() - 0.5, r.top() - 0.5, r.right() + 0.5, r.bottom() + 0.5], np.float64),
                float(score),
            )
            for r, score in zip(rectangles, scores, strict=True)
        ]
        found = [d for d in found if max(d.box[2] - d.box[0], d.box[3] - d.box[1]) >= self.min_size]
        return sorted(found, key=lambda d: -d.score)


def box_iou(first: np.ndarray, second: np.ndarray) -> float:
    """Intersection over union of two (4,) x_min, y_min, x_max, y_max boxes."""
    low = np.maximum(first[:2], second[:2])
    high = np.minimum(first[2:], second[2:])
    intersection = float(np.prod(np.clip(high - low, 0, None)))
    areas = float(np.prod(first[2:] - first[:2])) + float(np.prod(second[2:] - second[:2]))
    union = areas - intersection
    return intersection / union if union > 0 else 0.0

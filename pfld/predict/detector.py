"""Face detectors that work offline, behind one interface (RGB image -> list of `Detection`):

- ``blazeface`` (default): MediaPipe's BlazeFace short- and full-range models with tiles for small faces
  (`pfld.predict.blazeface`; weights in the repository, LiteRT interpreter from `ai-edge-litert`). Finds
  profile and tilted faces.
- ``dlib``: dlib's frontal-face HOG detector, built into the `dlib-bin` wheel (no model file).

`create_detector(name)` builds either; each carries the `BoxMapping` fitted for its boxes (``mapping``).
Any callable with a ``name`` and a ``mapping`` can replace them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from pfld.predict.box_mapping import DLIB_HOG_MAPPING, BoxMapping

#: the detectors `create_detector` builds; the first is the default
DETECTORS = ("blazeface", "dlib")


@dataclass(frozen=True)
class Detection:
    """A detected face: ``box`` (4,) x_min, y_min, x_max, y_max in 0-based photo pixels, and a score."""

    box: np.ndarray
    score: float


class FaceDetector(Protocol):
    name: str
    #: the detector box -> landmark box mapping fitted for this detector's boxes
    mapping: BoxMapping

    def __call__(self, image: np.ndarray) -> list[Detection]:
        """(H, W, 3) uint8 RGB -> the faces found, best first."""
        ...


def _import_dlib():
    try:
        import dlib
    except ImportError as error:
        raise ImportError(
            f"the dlib face detector needs dlib ({error}); install it with: pip install dlib-bin "
            '(or pip install -e ".[predict]"), or use --detector blazeface'
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
    mapping = DLIB_HOG_MAPPING

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


def create_detector(name: str = DETECTORS[0], **options: Any) -> FaceDetector:
    """The detector called ``name`` (one of `DETECTORS`) with its options (`BlazeFaceDetector`'s or
    `DlibHogDetector`'s). A missing optional dependency raises ImportError naming the install command
    and the other detector."""
    if name == "blazeface":
        from pfld.predict.blazeface import BlazeFaceDetector

        return BlazeFaceDetector(**options)
    if name == "dlib":
        return DlibHogDetector(**options)
    raise ValueError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")


def box_iou(first: np.ndarray, second: np.ndarray) -> float:
    """Intersection over union of two (4,) x_min, y_min, x_max, y_max boxes."""
    low = np.maximum(first[:2], second[:2])
    high = np.minimum(first[2:], second[2:])
    intersection = float(np.prod(np.clip(high - low, 0, None)))
    areas = float(np.prod(first[2:] - first[:2])) + float(np.prod(second[2:] - second[:2]))
    union = areas - intersection
    return intersection / union if union > 0 else 0.0

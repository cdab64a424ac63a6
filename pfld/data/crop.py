"""The one crop policy used in training, evaluation, export and demos.

A face crop is the square centred on the centre of the landmarks' bounding box, with side
``crop_scale`` x the longer side of that box (default 1.2). Parts of the square outside the photo
are filled with black. Pixel coordinates are 0-based with pixel centres on integers; the model's
coordinates are ``(pixel + 0.5) / crop_side``, so 0 and 1 are the crop's edges.
"""

from __future__ import annotations

import cv2
import numpy as np


def square_box(landmarks: np.ndarray, crop_scale: float = 1.2) -> np.ndarray:
    """(K, 2) pixels -> (3,) float32 ``[centre_x, centre_y, side]`` of the square face crop."""
    if crop_scale <= 0:
        raise ValueError(f"crop_scale must be positive, got {crop_scale}")
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    centre = (low + high) / 2.0
    side = float((high - low).max()) * crop_scale
    if side <= 0:
        raise ValueError("landmarks span no area: cannot derive a face crop")
    return np.array([centre[0], centre[1], side], dtype=np.float32)


def crop_matrix(box: np.ndarray, out_size: int, margin: float = 1.0) -> np.ndarray:
    """(2, 3) affine map from photo pixels to the pixels of an ``out_size`` square showing the box
    enlarged ``margin`` times about its centre: the box's edges land on the crop's edges (-0.5 and
    out_size - 0.5 in pixel-centre coordinates)."""
    centre_x, centre_y, side = (float(v) for v in box)
    side *= margin
    zoom = out_size / side
    return np.array(
        [
            [zoom, 0.0, (side / 2 - centre_x) * zoom - 0.5],
            [0.0, zoom, (side / 2 - centre_y) * zoom - 0.5],
        ],
        dtype=np.float64,
    )


def warp_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine map to (K, 2) points."""
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def crop_face(
    image: np.ndarray, landmarks: np.ndarray, out_size: int, crop_scale: float = 1.2, margin: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the policy's square (enlarged ``margin`` times) out of a photo, resized to ``out_size``.

    Returns the (out_size, out_size, C) crop and the (K, 2) landmarks in its pixels.
    """
    matrix = crop_matrix(square_box(landmarks, crop_scale), out_size, margin)
    crop = cv2.warpAffine(
        image,
        matrix,
        (out_size, out_size),
        flags=cv2.INTER_AREA if matrix[0, 0] < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return crop, warp_points(landmarks, matrix)


def to_unit(points: np.ndarray, crop_side: float) -> np.ndarray:
    """Crop pixels -> model coordinates in [0, 1] of the crop."""
    return ((points + 0.5) / crop_side).astype(np.float32)


def from_unit(points: np.ndarray, crop_side: float) -> np.ndarray:
    """Model coordinates in [0, 1] of the crop -> crop pixels."""
    return (points * crop_side - 0.5).astype(np.float32)

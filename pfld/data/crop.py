"""The one crop policy used in training, evaluation, export and demos.

A face crop is the square centred on the centre of the landmarks' bounding box, with side
``crop_scale`` x the longer side of that box (default 1.2); unlabelled (NaN) points are left out of
the box. Data preparation may instead start from a data set's own face box (``box_source="dataset"``):
the same rule applied to that box. Parts of the square outside the photo are filled with black. Pixel coordinates are 0-based with pixel centres on integers; the model's
coordinates are ``(pixel + 0.5) / crop_side``, so 0 and 1 are the crop's edges.
"""

from __future__ import annotations

import cv2
import numpy as np


def landmark_box(landmarks: np.ndarray) -> np.ndarray:
    """(K, 2) pixels (NaN = unlabelled) -> (4,) ``x_min, y_min, x_max, y_max`` of the labelled points."""
    labelled = landmarks[~np.isnan(landmarks).any(axis=1)]
    if len(labelled) < 2:
        raise ValueError("fewer than two labelled points: cannot derive a face crop")
    return np.concatenate([labelled.min(axis=0), labelled.max(axis=0)])


def square_box(landmarks: np.ndarray, crop_scale: float = 1.2) -> np.ndarray:
    """(K, 2) pixels (NaN = unlabelled) -> (3,) float32 ``[centre_x, centre_y, side]`` of the square crop."""
    return square_from_box(landmark_box(landmarks), crop_scale)


def square_from_box(box: np.ndarray, crop_scale: float = 1.2) -> np.ndarray:
    """(4,) ``x_min, y_min, x_max, y_max`` pixels -> (3,) float32 ``[centre_x, centre_y, side]``: the
    square on the box's centre whose side is ``crop_scale`` x the box's longer side."""
    if crop_scale <= 0:
        raise ValueError(f"crop_scale must be positive, got {crop_scale}")
    low, high = np.asarray(box[:2], dtype=np.float64), np.asarray(box[2:], dtype=np.float64)
    centre = (low + high) / 2.0
    side = float((high - low).max()) * crop_scale
    if not side > 0:
        raise ValueError(f"the face box {np.round(box, 1).tolist()} spans no area: cannot derive a face crop")
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


def image_points(crop_points: np.ndarray, box: np.ndarray, out_size: int, margin: float = 1.0) -> np.ndarray:
    """Inverse of `crop_matrix`: (K, 2) pixels of the ``out_size`` crop of ``box`` (see `crop_matrix`)
    -> (K, 2) float64 pixels of the photo. With `from_unit` it maps a model's output back to the photo."""
    matrix = cv2.invertAffineTransform(crop_matrix(box, out_size, margin))
    return np.asarray(crop_points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def warp_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine map to (K, 2) points."""
    return (points @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)


def crop_face(
    image: np.ndarray,
    landmarks: np.ndarray,
    out_size: int,
    crop_scale: float = 1.2,
    margin: float = 1.0,
    box: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the policy's square (enlarged ``margin`` times) out of a photo, resized to ``out_size``.

    The square comes from the landmarks, or from ``box`` (x_min, y_min, x_max, y_max) when given.
    Returns the (out_size, out_size, C) crop and the (K, 2) landmarks in its pixels (NaN stays NaN).
    """
    square = square_box(landmarks, crop_scale) if box is None else square_from_box(box, crop_scale)
    return cut_square(image, square, out_size, margin), warp_points(
        landmarks, crop_matrix(square, out_size, margin)
    )


def cut_square(image: np.ndarray, square: np.ndarray, out_size: int, margin: float = 1.0) -> np.ndarray:
    """The (out_size, out_size, C) picture of ``square`` (centre_x, centre_y, side) enlarged ``margin``
    times, black outside the photo (see `crop_matrix`)."""
    matrix = crop_matrix(square, out_size, margin)
    return cv2.warpAffine(
        image,
        matrix,
        (out_size, out_size),
        flags=cv2.INTER_AREA if matrix[0, 0] < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def to_unit(points: np.ndarray, crop_side: float) -> np.ndarray:
    """Crop pixels -> model coordinates in [0, 1] of the crop."""
    return ((points + 0.5) / crop_side).astype(np.float32)


def from_unit(points: np.ndarray, crop_side: float) -> np.ndarray:
    """Model coordinates in [0, 1] of the crop -> crop pixels."""
    return (points * crop_side - 0.5).astype(np.float32)

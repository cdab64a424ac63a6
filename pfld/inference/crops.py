"""A landmark model on square crops of a photo, with training's crop rule: cut each square, normalise,
run, map the points back to the photo, and optionally crop again around them (refine).

Used by the photo pipeline (`pfld.predict.Predictor`) and by pseudo-labelling (`pfld.teacher`), which
treats each stored face image as a photo when it was cut another way than the model's crops.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pfld.data.crop import cut_square, from_unit, image_points, square_box
from pfld.data.normalize import grey
from pfld.inference.models import LandmarkModel


def normalise(crops: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(N, S, S, 3) uint8 RGB -> (N, C, S, S) float32 model input, ``(pixel / 255 - mean) / std``;
    C = len(mean): 3, or 1 for a grey model, whose crops become their luma (`pfld.data.normalize.grey`)."""
    pixels = crops.astype(np.float32)
    pixels = grey(pixels) if len(mean) == 1 else pixels
    scaled = (pixels / 255.0 - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    return np.ascontiguousarray(scaled.transpose(0, 3, 1, 2))


def run_on_squares(
    model: LandmarkModel, image: np.ndarray, squares: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """``model`` on the (N, 3) ``[centre_x, centre_y, side]`` squares of an (H, W, 3) uint8 RGB image:
    (N, K, 2) points in [0, 1] of each crop, and the pose (N, 3) radians or None."""
    spec = model.spec
    crops = np.stack([cut_square(image, square, spec.input_size) for square in squares])
    return model(normalise(crops, spec.mean, spec.std))


def to_photo(units: np.ndarray, squares: np.ndarray, size: int) -> np.ndarray:
    """(N, K, 2) model units of the ``size`` px crops of ``squares`` -> (N, K, 2) photo pixels."""
    return np.stack([image_points(from_unit(u, size), s, size) for u, s in zip(units, squares, strict=True)])


def refined_landmarks(
    model: LandmarkModel, image: np.ndarray, squares: np.ndarray, refine: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """Run ``model`` on ``squares``, then ``refine`` more passes, each on the training crop of the last
    pass's points. Returns the photo points (N, K, 2), the last pass's units and pose (radians or
    None), its squares (N, 3), and how far the last pass moved the points (N,), in crop sides (None
    without refining)."""
    size, crop_scale = model.spec.input_size, model.spec.crop_scale
    units, pose = run_on_squares(model, image, squares)
    points, shifts = to_photo(units, squares, size), None
    for _ in range(refine):
        squares = np.stack([square_box(p.astype(np.float32), crop_scale) for p in points])
        units, pose = run_on_squares(model, image, squares)
        before, points = points, to_photo(units, squares, size)
        shifts = np.linalg.norm(points - before, axis=2).mean(axis=1) / squares[:, 2]
    return points, units, pose, squares, shifts


__all__ = ["normalise", "refined_landmarks", "run_on_squares", "to_photo"]

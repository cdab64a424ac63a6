"""Kaggle facial keypoints: the 15 points of test.csv's 96 x 96 grey faces, and the files Kaggle takes.

The whole image is the crop, as in training on ``python -m data kaggle``'s faces (crop scale 1.0 of the
image itself, no face detector): each image is resized to the model's input (when that is not 96 px),
normalised by its `ModelSpec` (`pfld.inference.crops.normalise`: grey models get the luma, which is the
grey value itself; RGB models the grey replicated), and the model's [0, 1] crop units become 0-based
pixels of the 96 x 96 image, Kaggle's coordinates.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import cv2
import numpy as np

from pfld.data.crop import from_unit
from pfld.data.readers.kaggle import ID_COLUMN, IMAGE_COLUMN, SIDE, kaggle_columns
from pfld.inference.crops import normalise
from pfld.inference.models import LandmarkModel
from pfld.io.atomic import atomic_write_text

KAGGLE_SCHEME = "kaggle15"
KAGGLE_POINTS = 15


def is_kaggle_test(path: str | Path) -> bool:
    """Whether ``path`` is a CSV whose header names ``ImageId`` and ``Image`` (Kaggle's test.csv)."""
    path = Path(path)
    if path.suffix.lower() != ".csv" or not path.is_file():
        return False
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(io.StringIO(handle.readline())), [])
    return {ID_COLUMN, IMAGE_COLUMN} <= {cell.strip() for cell in header}


def check_kaggle_model(model: LandmarkModel, where: str) -> None:
    """Refuse a model that does not predict kaggle15's 15 points (``where`` names the model file)."""
    spec = model.spec
    if spec.num_points != KAGGLE_POINTS:
        raise ValueError(
            f"{where} predicts {spec.num_points} points ({spec.scheme}); Kaggle's test faces need the "
            f"{KAGGLE_POINTS} {KAGGLE_SCHEME} points: train one with experiment=kaggle15"
        )
    if spec.scheme != KAGGLE_SCHEME:
        raise ValueError(
            f"{where} predicts 15 points of scheme {spec.scheme!r}, not {KAGGLE_SCHEME!r}: its points "
            "are not Kaggle's columns"
        )


def predict_kaggle_points(model: LandmarkModel, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """(N, 96, 96) uint8 grey faces -> (N, 15, 2) float32 x, y in 0-based pixels of the 96 x 96 image.

    ``model`` is any `LandmarkModel` (checkpoint or ONNX) of `KAGGLE_POINTS` points; its input size may
    differ from 96 (the image is resized to it) and it may be grey or RGB."""
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or images.dtype != np.uint8:
        raise ValueError(f"expected (N, {SIDE}, {SIDE}) uint8 grey images, got {images.shape} {images.dtype}")
    spec = model.spec
    if spec.num_points != KAGGLE_POINTS:
        raise ValueError(f"the model predicts {spec.num_points} points, not Kaggle's {KAGGLE_POINTS}")
    size = spec.input_size
    interpolation = cv2.INTER_AREA if size < SIDE else cv2.INTER_LINEAR
    points = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        if size != SIDE:
            chunk = np.stack(
                [cv2.resize(image, (size, size), interpolation=interpolation) for image in chunk]
            )
        crops = np.repeat(chunk[..., None], 3, axis=3)  # (B, S, S, 3): RGB, as every crop is
        units, _ = model(normalise(crops, spec.mean, spec.std))  # (B, 15, 2) in [0, 1] of the image
        points.append(from_unit(np.asarray(units, np.float32), SIDE))
    return np.concatenate(points) if points else np.zeros((0, KAGGLE_POINTS, 2), np.float32)


def by_image_id(points: np.ndarray, image_ids: np.ndarray, where: str) -> np.ndarray:
    """(N, 15, 2) points of faces with these ``image_ids`` -> (max id, 15, 2), row ``id - 1`` for each
    face (NaN for ids test.csv lacks), as `pfld.evaluation.kaggle.write_submission` reads them."""
    ids = np.asarray(image_ids, np.int64)
    if (ids < 1).any():
        raise ValueError(f"{where}: ImageId {int(ids.min())} is not a positive whole number")
    unique, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{where}: ImageId {int(unique[counts > 1][0])} appears more than once")
    ordered = np.full((int(ids.max()), *points.shape[1:]), np.nan, np.float32)
    ordered[ids - 1] = points
    return ordered


def write_kaggle_points(points: np.ndarray, image_ids: np.ndarray, out_csv: str | Path) -> None:
    """``ImageId`` and the 30 kaggle15 columns (``left_eye_center_x``, ...), one row per face, pixels."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([ID_COLUMN, *kaggle_columns()])
    for image_id, face in zip(image_ids, np.asarray(points).reshape(len(points), -1), strict=True):
        writer.writerow([int(image_id), *(f"{float(v):.4f}" for v in face)])
    atomic_write_text(Path(out_csv), out.getvalue())

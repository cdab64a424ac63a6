"""Pictures of faces with their points, for a person to check data and augmentation."""

from __future__ import annotations

import cv2
import numpy as np

from pfld.data.crop import from_unit
from pfld.data.dataset import LandmarkDataset
from pfld.data.schemes import LandmarkScheme


def draw_landmarks(
    image: np.ndarray,
    landmarks: np.ndarray,
    scheme: LandmarkScheme | None = None,
    color: tuple[int, int, int] = (0, 255, 0),
    scale: int = 3,
    visible: np.ndarray | None = None,
) -> np.ndarray:
    """Draw (K, 2) unit-coordinate points on an RGB crop, enlarged ``scale`` times. The subject's
    right-side points (first of each flip pair) are red, left-side ones blue, the rest ``color``;
    points whose ``visible`` (K,) entry is False, and NaN points (a model's points mapped to a scheme
    with points it does not give), are not drawn."""
    side = image.shape[0] * scale
    canvas = cv2.resize(image, (side, side), interpolation=cv2.INTER_NEAREST).copy()
    pixels = from_unit(landmarks, side)
    right = {i for i, _ in scheme.flip_pairs} if scheme else set()
    left = {j for _, j in scheme.flip_pairs} if scheme else set()
    for index, (x, y) in enumerate(pixels):
        if (visible is not None and not visible[index]) or not np.isfinite((x, y)).all():
            continue
        dot = (255, 0, 0) if index in right else (0, 0, 255) if index in left else color
        cv2.circle(canvas, (round(x), round(y)), max(2, scale), dot, -1, cv2.LINE_AA)
    return canvas


def augmentation_grid(
    dataset: LandmarkDataset, count: int = 8, repeats: int = 4, seed: int = 0
) -> np.ndarray:
    """A (rows = faces, columns = augmented draws) RGB mosaic of samples with their points."""
    rng = np.random.default_rng(seed)
    faces = rng.choice(len(dataset), size=min(count, len(dataset)), replace=False)
    rows = []
    for face in faces:
        tiles = []
        for _ in range(repeats):
            sample = dataset[int(face)]
            tiles.append(
                draw_landmarks(
                    sample["image"].numpy(),
                    sample["landmarks"].numpy(),
                    dataset.scheme,
                    visible=sample["visible"].numpy(),
                )
            )
        rows.append(np.hstack(tiles))
    return np.vstack(rows)

"""Face crops prepared once, in memory: each photo is read and cut once, not every epoch.

Each face is stored as the policy crop (see `pfld.data.crop`) enlarged by ``margin`` and resized so
that the policy crop is exactly ``input_size`` pixels, leaving a border for augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from pfld.data.crop import crop_face, to_unit
from pfld.data.records import FaceRecord


@dataclass(frozen=True)
class FaceCache:
    """N prepared faces.

    images: (N, S, S, 3) uint8 RGB loose crops, S = input_size + 2 * border.
    landmarks: (N, K, 2) float32 pixels of the loose crops.
    """

    images: np.ndarray
    landmarks: np.ndarray
    records: tuple[FaceRecord, ...]
    input_size: int
    border: int

    def __len__(self) -> int:
        return len(self.records)

    @property
    def margin(self) -> float:
        """How much larger than the policy crop the stored crops are."""
        return self.images.shape[1] / self.input_size

    def unit_landmarks(self) -> np.ndarray:
        """(N, K, 2) landmarks in [0, 1] of the policy crop (no augmentation)."""
        return to_unit(self.landmarks - self.border, self.input_size)


def load_image(path: Path, source: str = "") -> np.ndarray:
    """Read a photo as (H, W, 3) uint8 RGB; fail with the file named if it is missing or corrupt."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found" + (f" (annotated in {source})" if source else ""))
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot decode the image (corrupt or not an image)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def build_face_cache(
    records: Sequence[FaceRecord],
    input_size: int,
    crop_scale: float = 1.2,
    margin: float = 1.5,
    workers: int = 2,
    description: str = "preparing faces",
) -> FaceCache:
    """Read every photo once and keep its loose face crop; shows a progress bar."""
    if not records:
        raise ValueError(f"{description}: no faces to prepare (empty split)")
    if margin < 1.0:
        raise ValueError(f"margin must be at least 1, got {margin}")
    border = round(input_size * (margin - 1.0) / 2.0)
    side = input_size + 2 * border

    def prepare(record: FaceRecord) -> tuple[np.ndarray, np.ndarray]:
        image = load_image(record.image_path, record.source)
        return crop_face(image, record.landmarks, side, crop_scale, side / input_size)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        crops = list(tqdm(pool.map(prepare, records), total=len(records), desc=description, unit="face"))
    images = np.stack([c[0] for c in crops])
    landmarks = np.stack([c[1] for c in crops]).astype(np.float32)
    return FaceCache(images, landmarks, tuple(records), input_size, border)

"""Calibration data for static int8 quantisation: real, normalised crops fed to onnxruntime's calibrator.

A batch is (N, C, S, S) float32 (C = 3, RGB, or 1, grey), normalised exactly as the model's input (see
`export.onnx_export`); a single image (C, S, S) is treated as a batch of one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import torch
from onnxruntime.quantization import CalibrationDataReader
from torch.utils.data import Dataset

from pfld.data.normalize import CHANNELS, model_input
from pfld.inference.models import INPUT_NAME


def as_batch(images: np.ndarray) -> np.ndarray:
    """(C, S, S) or (N, C, S, S) -> (N, C, S, S) float32, contiguous, C 3 (RGB) or 1 (grey); anything
    else is refused."""
    array = np.asarray(images)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[1] not in CHANNELS or array.shape[0] == 0:
        raise ValueError(
            f"a calibration batch must be (N, C, S, S) or (C, S, S) with C 3 or 1, got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise TypeError(f"calibration images must be normalised floats, got dtype {array.dtype}")
    if not np.isfinite(array).all():
        raise ValueError("a calibration batch holds NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)


class ImageCalibrationReader(CalibrationDataReader):
    """Feeds batches of normalised crops to onnxruntime's calibrator under the model's input name.

    The batches are read once at construction (calibration sets are small: 256 crops of 112 px are
    about 38 MB), so the reader can be rewound and knows how many images it holds (`count`).
    """

    def __init__(self, batches: Iterable[np.ndarray], input_name: str = INPUT_NAME) -> None:
        self.input_name = input_name
        self.batches = [as_batch(batch) for batch in batches]
        if not self.batches:
            raise ValueError("no calibration images: the calibration iterable is empty")
        sizes = {batch.shape[1:] for batch in self.batches}
        if len(sizes) > 1:
            raise ValueError(f"calibration batches disagree on the image shape: {sorted(sizes)}")
        self._next = 0

    @property
    def count(self) -> int:
        """Number of calibration images."""
        return sum(len(batch) for batch in self.batches)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, S, S) of every image."""
        return tuple(self.batches[0].shape[1:])  # type: ignore[return-value]

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next batch as onnxruntime feeds, or None when all have been given."""
        if self._next >= len(self.batches):
            return None
        self._next += 1
        return {self.input_name: self.batches[self._next - 1]}

    def rewind(self) -> None:
        self._next = 0

    def __len__(self) -> int:
        return len(self.batches)


def calibration_indices(length: int, count: int) -> np.ndarray:
    """(min(count, length),) distinct indices spread evenly over a data set of `length` samples, from 0."""
    if count < 1:
        raise ValueError(f"the calibration count must be at least 1, got {count}")
    if length < 1:
        raise ValueError("the calibration data set is empty")
    count = min(count, length)
    return np.arange(count) * length // count


def calibration_batches(dataset: Dataset, count: int, batch_size: int = 32) -> Iterator[np.ndarray]:
    """Batches (<= batch_size, C, S, S) float32 of the "image" of `count` samples of `dataset`, taken at
    evenly spaced indices (deterministic; every sample if `count` exceeds its length).

    Pass a data set without augmentation (the evaluation transform) so the crops are what the phone
    will see; its uint8 crops are normalised with its ``mean`` and ``std`` (`pfld.data.normalize`; one
    value each: a grey model's luma).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    indices = calibration_indices(len(dataset), count)  # type: ignore[arg-type]
    for start in range(0, len(indices), batch_size):
        crops = torch.stack([dataset[int(i)]["image"] for i in indices[start : start + batch_size]])
        yield as_batch(model_input(crops, dataset.mean, dataset.std).contiguous().numpy())

"""A torch Dataset over a `FaceCache`: augmented crop, landmarks, Euler angles and face classes."""

from __future__ import annotations

import os
from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from pfld.data.attributes import face_classes
from pfld.data.cache import FaceCache
from pfld.data.crop import to_unit
from pfld.data.schemes import LandmarkScheme
from pfld.geometry import landmarks_to_euler

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class LandmarkDataset(Dataset):
    """Samples are dicts of tensors:

    image: (3, S, S) float32, RGB normalised by ``mean``/``std`` (after scaling to [0, 1]);
    landmarks: (K, 2) float32, x then y in [0, 1] of the crop (may fall outside after augmentation);
    angles: (3,) float32 yaw, pitch, roll in radians, fitted to the augmented landmarks;
    classes: (C,) float32 0/1 membership in `pfld.data.attributes.FACE_CLASSES`.
    """

    def __init__(
        self,
        faces: FaceCache,
        transform: A.Compose,
        scheme: LandmarkScheme,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        profile_yaw_deg: float = 30.0,
        head_pitch_deg: float = 20.0,
    ) -> None:
        if faces.landmarks.shape[1] != scheme.num_points:
            raise ValueError(
                f"scheme {scheme.name!r} has {scheme.num_points} points but the faces have "
                f"{faces.landmarks.shape[1]} (first face: {faces.records[0].source})"
            )
        self.faces = faces
        self.transform = transform
        self.scheme = scheme
        self.input_size = faces.input_size
        self.mean, self.std = tuple(mean), tuple(std)
        self.scale = (1.0 / (255.0 * np.asarray(std, dtype=np.float32))).reshape(1, 1, 3)
        self.shift = (np.asarray(mean, dtype=np.float32) / np.asarray(std, dtype=np.float32)).reshape(1, 1, 3)
        self.profile_yaw_deg = profile_yaw_deg
        self.head_pitch_deg = head_pitch_deg
        self._seeded_in_process: int | None = None

    def _seed_transform(self) -> None:
        """Seed albumentations once per process from torch's seed: the run's seed in the main process,
        base seed + worker id in a DataLoader worker. albumentations 2.x keeps its own generator, which
        `seed_everything` does not reach and forked workers would share, replaying one augmentation
        sequence in every worker."""
        if self._seeded_in_process != os.getpid():
            self.transform.set_random_seed(torch.initial_seed() % 2**32)
            self._seeded_in_process = os.getpid()

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self._seed_transform()
        out = self.transform(image=self.faces.images[index], keypoints=self.faces.landmarks[index])
        points = np.asarray(out["keypoints"], dtype=np.float32)[:, :2]  # (K, 2) crop pixels
        angles_deg = landmarks_to_euler(points, self.scheme, float(self.input_size))
        classes = face_classes(
            angles_deg, self.faces.records[index].flags, self.profile_yaw_deg, self.head_pitch_deg
        )
        image = out["image"].astype(np.float32) * self.scale - self.shift  # (S, S, 3)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "landmarks": torch.from_numpy(to_unit(points, self.input_size)),
            "angles": torch.from_numpy(np.deg2rad(angles_deg).astype(np.float32)),
            "classes": torch.from_numpy(classes),
        }

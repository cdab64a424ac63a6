"""A torch Dataset over a `FaceCache`: augmented crop, landmarks, Euler angles and face classes."""

from __future__ import annotations

import os
from collections.abc import Sequence

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from pfld.data.attributes import face_classes, fit_angles
from pfld.data.cache import FaceCache
from pfld.data.crop import to_unit
from pfld.data.schemes import LandmarkScheme

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class LandmarkDataset(Dataset):
    """Samples are dicts of tensors:

    image: (3, S, S) float32, RGB normalised by ``mean``/``std`` (after scaling to [0, 1]);
    landmarks: (K, 2) float32, x then y in [0, 1] of the crop (may fall outside after augmentation);
        an unlabelled point holds 0.5 (the crop's centre), a placeholder that ``visible`` masks out;
    visible: (K,) bool, True where the point is labelled;
    angles: (3,) float32 yaw, pitch, roll in radians, fitted to the augmented landmarks (0 if unknown);
    pose_valid: () bool, False when the pose could not be fitted (too few labelled reference points);
    classes: (C,) float32 0/1 membership in `pfld.data.attributes.FACE_CLASSES`;
    index: () int64, the face's position in the dataset (see `sources_of`).
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
        if faces.num_points != scheme.num_points:
            raise ValueError(
                f"scheme {scheme.name!r} has {scheme.num_points} points but the faces have "
                f"{faces.num_points} (first face: {faces.sources[0]})"
            )
        self.faces = faces
        self.transform = transform
        self.scheme = scheme
        self.input_size = faces.crop_size
        # (N, K, 3): x, y, labelled; unlabelled points sit at the crop's centre so augmentation can move
        # them like any other point, and the third column travels with them through the flip permutation
        centre = (faces.images.shape[1] - 1) / 2.0
        visible = faces.visible
        self.keypoints = np.concatenate(
            [np.where(visible[..., None], faces.landmarks, centre), visible[..., None]], axis=2
        ).astype(np.float32)
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
        out = self.transform(image=np.asarray(self.faces.images[index]), keypoints=self.keypoints[index])
        keypoints = np.asarray(out["keypoints"], dtype=np.float32)  # (K, 3) crop pixels + labelled
        visible = keypoints[:, 2] > 0.5
        points = np.where(visible[:, None], keypoints[:, :2], np.nan)  # (K, 2) crop pixels
        angles_deg = fit_angles(points, self.scheme, float(self.input_size))
        pose_valid = bool(np.isfinite(angles_deg).all())
        classes = face_classes(
            angles_deg, self.faces.face_flags(index), self.profile_yaw_deg, self.head_pitch_deg
        )
        image = out["image"].astype(np.float32) * self.scale - self.shift  # (S, S, 3)
        landmarks = np.where(visible[:, None], to_unit(points, self.input_size), 0.5).astype(np.float32)
        angles = np.deg2rad(angles_deg) if pose_valid else np.zeros(3)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),
            "landmarks": torch.from_numpy(landmarks),
            "visible": torch.from_numpy(visible),
            "angles": torch.from_numpy(angles.astype(np.float32)),
            "pose_valid": torch.tensor(pose_valid),
            "classes": torch.from_numpy(classes),
            "index": torch.tensor(index, dtype=torch.int64),
        }

    def sources_of(self, indices: Sequence[int]) -> list[str]:
        """Where the faces at ``indices`` were annotated (file and line, or image), for messages."""
        return [str(self.faces.sources[int(i)]) for i in indices]

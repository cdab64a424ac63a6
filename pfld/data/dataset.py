"""A torch Dataset over a `FaceCache`: augmented uint8 crop, landmarks, Euler angles and face classes."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from pfld.data.attributes import PoseThresholds, augmented_angles, class_memberships, fit_angles
from pfld.data.cache import PSEUDO, FaceCache
from pfld.data.crop import to_unit
from pfld.data.normalize import IMAGENET_MEAN, IMAGENET_STD
from pfld.data.sampling import sample_seed
from pfld.data.schemes import LandmarkScheme
from pfld.data.transforms import FaceTransform


class LandmarkDataset(Dataset):
    """Samples are dicts of tensors:

    image: (S, S, 3) uint8 RGB crop; `pfld.data.normalize.model_input` makes a batch of them the model's
        input with this dataset's ``mean`` and ``std`` (done on the batch, not per sample);
    landmarks: (K, 2) float32, x then y in [0, 1] of the crop (may fall outside after augmentation);
        an unlabelled point holds 0.5 (the crop's centre), a placeholder that ``visible`` masks out;
    visible: (K,) bool, True where the point is labelled;
    angles: (3,) float32 yaw, pitch, roll in radians: the face's angles, fitted once when it was
        prepared, updated for the sample's rotation and flip (`augmented_angles`), or fitted again to
        the sample's points when ``augmentation.yaw_deg`` turned it (a flat face turned by t reads as a
        head turned by about t / 2; the head's turn where the re-fit fails); 0 if unknown;
    pose_valid: () bool, False when the pose could not be fitted (too few labelled reference points);
    classes: (C,) float32 0/1 membership in `pfld.data.attributes.FACE_CLASSES` (fixed per face:
        rotation and flip change neither |yaw| nor pitch; the turn of ``augmentation.yaw_deg`` does, and
        the face keeps its own class);
    index: () int64, the face's position in the dataset (see `sources_of`);
    teacher, teacher_visible: (K, 2) and (K,) like landmarks and visible, a teacher model's points for
        distillation, only when the faces carry them (`FaceCache.teacher`); the transform must then flip
        2K points (the teacher's after the K).
    pseudo: (K,) bool, True where a point's label came from a model (`FaceCache.point_sources`), only
        when the faces carry sources; renumbered with the points on a flip (the transform's
        ``flip_permutation``), for a loss that weighs pseudo-labels differently (``pseudo_weight``).
    convention, flipped: () int64 and () bool, the face's annotation convention (its train source's,
        `pfld.training.conventions`) and whether the crop was mirrored, only when ``conventions`` is given.
    """

    def __init__(
        self,
        faces: FaceCache,
        transform: FaceTransform,
        scheme: LandmarkScheme,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        profile_yaw_deg: float = 30.0,
        head_pitch_deg: float = 20.0,
        augment_seed: int = 0,
        conventions: np.ndarray | None = None,
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
        self.mean, self.std = tuple(mean), tuple(std)
        classes = class_memberships(faces, PoseThresholds(profile_yaw_deg, head_pitch_deg))
        self.classes = torch.from_numpy(classes)  # (N, C)
        self.pose_valid = torch.from_numpy(np.isfinite(faces.angles).all(axis=1))  # (N,)
        self.indices = torch.arange(len(faces), dtype=torch.int64)
        self._seeded_in_process: int | None = None
        self.augment_seed = int(augment_seed)
        if conventions is not None and len(conventions) != len(faces):
            raise ValueError(f"{len(conventions)} conventions for {len(faces)} faces")
        self.conventions = None if conventions is None else torch.as_tensor(conventions, dtype=torch.int64)

    def _seed_transform(self) -> None:
        """Seed the transform once per process from torch's seed: the run's seed in the main process,
        base seed + worker id in a DataLoader worker (forked workers would otherwise share one
        generator and replay one augmentation sequence in every worker)."""
        if self._seeded_in_process != os.getpid():
            self.transform.set_random_seed(torch.initial_seed() % 2**32)
            self._seeded_in_process = os.getpid()

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, torch.Tensor]:
        """A sample by index (augmentation drawn from the process's generator), or by the ``(epoch,
        index)`` key of `pfld.data.sampling.EpochSampler`: its augmentation seeded from the key and
        ``augment_seed``, the same whichever process draws it and whatever came before."""
        if isinstance(key, tuple | list):
            epoch, index = (int(k) for k in key)
            self.transform.set_random_seed(sample_seed(self.augment_seed, epoch, index))
        else:
            index = int(key)
            self._seed_transform()
        points = self.faces.landmarks[index]
        teacher = self.faces.teacher
        if teacher is not None:
            points = np.concatenate([points, teacher[index]])
        out = self.transform(np.asarray(self.faces.images[index]), points)
        k = self.faces.num_points
        visible = ~np.isnan(out.points[:, 0])
        unit = np.where(visible[:, None], to_unit(out.points, self.input_size), 0.5).astype(np.float32)
        landmarks, visible = unit[:k], visible[:k]
        pose_valid = self.pose_valid[index]
        angles = np.zeros(3)
        if pose_valid:
            angles = np.deg2rad(
                augmented_angles(self.faces.angles[index], out.rotation_deg, out.flipped, out.yaw_deg)
            )
            if out.yaw_deg:  # a flat face's turn is not a head's: re-fit, as the face's angles were made
                refit = fit_angles(out.points[:k], self.scheme, float(self.input_size))
                angles = refit if np.isfinite(refit).all() else angles
        extras = {}
        if teacher is not None:
            extras["teacher"] = torch.from_numpy(unit[k:])
            extras["teacher_visible"] = torch.from_numpy(~np.isnan(out.points[k:, 0]))
        if self.conventions is not None:
            extras["convention"] = self.conventions[index]
            extras["flipped"] = torch.tensor(out.flipped)
        if self.faces.point_sources is not None:
            pseudo = self.faces.point_sources[index] == PSEUDO
            if out.flipped:
                pseudo = pseudo[self._flip_permutation(k)]
            extras["pseudo"] = torch.from_numpy(pseudo & visible)
        return {
            "image": torch.from_numpy(out.image),
            "landmarks": torch.from_numpy(landmarks),
            "visible": torch.from_numpy(visible),
            "angles": torch.from_numpy(angles.astype(np.float32)),
            "pose_valid": pose_valid,
            "classes": self.classes[index],
            "index": self.indices[index],
        } | extras

    def _flip_permutation(self, k: int) -> np.ndarray:
        """The transform's renumbering of the first ``k`` points on a flip."""
        permutation = getattr(self.transform, "flip_permutation", None)
        if permutation is None:
            raise ValueError(
                f"{type(self.transform).__name__} flipped a face but has no flip_permutation to renumber "
                "its pseudo-label flags with"
            )
        permutation = np.asarray(permutation)[:k]
        if len(permutation) != k or permutation.max() >= k:
            raise ValueError(
                f"the transform's flip_permutation does not renumber the {k} points among themselves"
            )
        return permutation

    def sources_of(self, indices: Sequence[int]) -> list[str]:
        """Where the faces at ``indices`` were annotated (file and line, or image), for messages."""
        return [str(self.faces.sources[int(i)]) for i in indices]

"""The LightningDataModule: gather prepared faces (or prepare them in memory), serve augmented batches."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from pfld.cpu_budget import AUTO, WorkerLoader, plan_cpu, single_threaded_worker
from pfld.data.attributes import FACE_CLASSES, PoseThresholds, class_memberships, with_pose_flag
from pfld.data.cache import FaceCache, concat_faces
from pfld.data.dataset import LandmarkDataset
from pfld.data.mixed import DerivedPoints, derived_points, extended_scheme, map_faces
from pfld.data.normalize import IMAGENET_MEAN, IMAGENET_STD, channel_values
from pfld.data.sampling import EpochSampler
from pfld.data.schemes import LandmarkScheme
from pfld.data.schemes.mapping import SchemeMapping
from pfld.data.sources import FaceSource, gather, mapping_for, source_names, subset_masks
from pfld.data.splits import split_by_identity
from pfld.data.transforms import build_eval_transform, build_train_transform
from pfld.data.weighting import checked_conventions, checked_weighting, oversampled, repeated, share_weights
from pfld.metrics import NORMALIZATION_MODES


class LandmarkDataModule(L.LightningDataModule):
    """Training and validation faces from any number of annotation sources.

    Args:
        train: callables returning faces (Hydra ``_partial_: true`` targets): prepared splits
            (`pfld.data.store.load_faces`, made by ``python -m data``) or readers of `pfld.data.readers`,
            whose faces are then cropped in memory at every run (fine for small sets).
        val: the same for validation; if empty, ``val_fraction`` of the training identities are held out.
            Each source is a subset of the validation faces (`val_subsets`), e.g. 300W's common and
            challenging sets.
        val_names: names of the ``val`` sources in reports; by default each source's folder name
            (prepared splits) or file stem (CSV readers), made unique.
        scheme: what the points mean (flip partners, eye corners, pose reference points). Prepared
            training splits of another scheme (e.g. five-point MTFL faces for a 68-point model) are
            related to it by a scheme mapping (`pfld.data.schemes.mapping`, see `pfld.data.mixed`).
        mappings: mapping files (YAML) for such splits, beside the shipped ones (which they override).
        train_shares: the share of each ``train`` source in the batches (normalised to sum 1), drawn
            with replacement; None: every face once per epoch (shares proportional to the sources' sizes).
            E.g. ``[1, 1, 1, 0.5]`` gives a large set of five-point faces a third of each batch.
        train_repeats: times each ``train`` source's faces are listed in an epoch (positive integers;
            None: once each). Nothing is drawn: each copy is seen once an epoch with its own augmentation,
            so a cleaner source weighs more at no loss of the others' faces (``[2, 1, 1]`` in
            ``data=shared``: Helen's 300W photos twice an epoch). Not combined with ``train_shares``.
        train_conventions: each ``train`` source's annotation convention: 0 the reference (what the
            model learns to predict), 1, 2, ... others, each corrected by a learned training-only
            adapter (`pfld.training.conventions`); None: one convention.
        oversample: class name (`FACE_CLASSES`, e.g. ``profile``) -> factor: training faces of that
            class are drawn ``factor`` times as often (below 1: less often; with replacement; a face in
            several listed classes takes the largest factor), on top of ``train_shares``. None: no
            class is favoured.
        num_points: K the rest of the config (the model) expects; must equal the scheme's.
        input_size: side of the model's input in pixels.
        channels: the model's input channels: 3 (RGB) or 1 (grey). The crops stay RGB; a grey model's
            batches are turned to luma where they are normalised (`pfld.data.normalize.model_input`).
        crop_scale: the crop policy's scale (see `pfld.data.crop`).
        margin: how much border the prepared crops keep for augmentation (1.5 = 25% each side).
        batch_size: faces per batch.
        num_workers: DataLoader worker processes (single-threaded), or ``"auto"``: chosen from the
            free cores (`pfld.cpu_budget.plan_cpu`; `train` decides it with the accelerator in mind).
        pin_memory: page-locked batches for a fast, asynchronous copy to a GPU.
        augmentation: keyword arguments of `pfld.data.transforms.FaceAugmentation`.
        profile_yaw_deg, head_pitch_deg: thresholds of the pose classes (see `face_classes`).
        normalization: what divides the NME: ``inter_ocular`` (the scheme's outer eye corners),
            ``inter_pupil`` (its pupils) or ``box`` (the square root of the landmark box's area).
    """

    def __init__(
        self,
        train: Sequence[FaceSource],
        scheme: LandmarkScheme,
        val: Sequence[FaceSource] = (),
        num_points: int | None = None,
        val_fraction: float = 0.1,
        input_size: int = 112,
        channels: int = 3,
        crop_scale: float = 1.2,
        margin: float = 1.5,
        batch_size: int = 64,
        num_workers: int | str = AUTO,
        persistent_workers: bool = True,
        pin_memory: bool = False,
        augmentation: dict[str, Any] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        profile_yaw_deg: float = 30.0,
        head_pitch_deg: float = 20.0,
        normalization: str = "inter_ocular",
        seed: int = 0,
        val_names: Sequence[str] | None = None,
        mappings: Sequence[str] = (),
        train_shares: Sequence[float] | None = None,
        oversample: Mapping[str, float] | None = None,
        train_repeats: Sequence[int] | None = None,
        train_conventions: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if not train:
            raise ValueError("data.train lists no annotation source")
        if num_points is not None and num_points != scheme.num_points:
            raise ValueError(
                f"data.num_points is {num_points} but the scheme {scheme.name!r} has {scheme.num_points} points"
            )
        if normalization not in NORMALIZATION_MODES:
            raise ValueError(
                f"data.normalization must be one of {NORMALIZATION_MODES}, got {normalization!r}"
            )
        if normalization == "inter_pupil" and scheme.pupils is None:
            raise ValueError(
                f"data.normalization is inter_pupil but the scheme {scheme.name!r} declares no pupils"
            )
        self.normalization = normalization
        if input_size % 16 or input_size < 64:
            raise ValueError(f"input_size must be a multiple of 16 and at least 64, got {input_size}")
        self.train_sources, self.val_sources = list(train), list(val)
        if val_names is not None and len(val_names) != len(self.val_sources):
            raise ValueError(
                f"data.val_names has {len(val_names)} names for {len(self.val_sources)} val sources"
            )
        self.val_names = list(val_names) if val_names is not None else source_names(self.val_sources)
        self.scheme = scheme
        self.mapping_files = [str(m) for m in mappings]
        self.train_shares, self.train_repeats, self.oversample = checked_weighting(
            len(self.train_sources), train_shares, train_repeats, oversample
        )
        self.train_conventions = checked_conventions(train_conventions, len(self.train_sources))
        #: (N,) the sampling weight of each training face (``train_shares``, ``oversample``), or None.
        self.sample_weights: np.ndarray | None = None
        #: (epoch, batches trained in it by all processes) of a checkpoint saved inside an epoch
        #: (`pfld.training.preemption.ResumeState` sets it, and leaves it None for an epoch's end).
        self.resume_position: tuple[int, int] | None = None
        #: The extra training targets of splits of other schemes (see `pfld.data.mixed`), and the scheme
        #: of the training faces: the model's, with those targets appended (the same when there are none).
        self.derived = DerivedPoints(np.zeros((0, scheme.num_points)))
        self.train_scheme = scheme
        self.val_fraction, self.seed = val_fraction, seed
        self.input_size, self.crop_scale, self.margin = input_size, crop_scale, margin
        self.batch_size, self.persistent_workers, self.pin_memory = batch_size, persistent_workers, pin_memory
        if num_workers != AUTO and (
            isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0
        ):
            raise ValueError(f"data.num_workers must be '{AUTO}' or an integer >= 0, got {num_workers!r}")
        self.num_workers: int | str = num_workers
        self.augmentation = dict(augmentation or {})
        build_train_transform(input_size, scheme.flip_permutation, **self.augmentation)  # bad keys fail here
        #: one value per input channel: three RGB ones become their luma for a grey model
        self.mean = channel_values(mean, channels, "data.mean")
        self.std = channel_values(std, channels, "data.std")
        self.channels = channels
        self.profile_yaw_deg, self.head_pitch_deg = profile_yaw_deg, head_pitch_deg
        self.train_faces: FaceCache | None = None
        self.val_faces: FaceCache | None = None
        #: name -> (N,) bool: which validation faces came from each ``val`` source (empty when the
        #: validation faces are held out of the training sources)
        self.val_subsets: dict[str, np.ndarray] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.train_faces is not None:
            return
        train = self._gather_train()
        if self.val_sources:
            parts = self._gather_each(self.val_sources, "val")
            val = concat_faces(parts)
            self.val_subsets = subset_masks(self.val_names, [len(part) for part in parts])
        else:
            train_indices, val_indices = split_by_identity(train.identities, self.val_fraction, self.seed)
            train, val = train.subset(train_indices), train.subset(val_indices)
            if self.sample_weights is not None:
                self.sample_weights = self.sample_weights[train_indices]
            self.face_conventions = self.face_conventions[train_indices]
            k = self.scheme.num_points
            sources = None if val.point_sources is None else val.point_sources[:, :k]
            teacher = None if val.teacher is None else val.teacher[:, :k]
            val = replace(val, landmarks=val.landmarks[:, :k], point_sources=sources, teacher=teacher)
        shared = set(train.identities.tolist()) & set(val.identities.tolist())
        if shared and stage in (None, "fit"):  # scoring alone (evaluate, export) reads val for itself
            print(
                f"warning: {len(shared)} identities are in both training and validation, e.g. {min(shared)}"
            )
        self.train_faces, self.val_faces = train, val

    def _gather_train(self) -> FaceCache:
        """All training faces, at this module's input size, in the model's scheme (plus the derived
        points of splits of other schemes), as one `FaceCache`."""
        parts = self._gather_each(self.train_sources, "train", other_schemes=True)
        mappings = [self._mapping_for(part) for part in parts]
        self.derived = derived_points([m for m in mappings if m is not None], self.scheme)
        self.train_scheme = extended_scheme(self.scheme, self.derived)
        if self.derived.count or any(m is not None for m in mappings):
            names = ", ".join(sorted({m.source.name for m in mappings if m is not None}))
            print(
                f"training on {self.scheme.name} faces and {names} faces mapped to {self.scheme.name} "
                f"({self.derived.count} derived points)"
            )
        parts = [
            map_faces(part, mapping, self.derived) for part, mapping in zip(parts, mappings, strict=True)
        ]
        conventions = self.train_conventions or [0] * len(parts)
        if self.train_repeats is not None:
            parts = repeated(parts, self.train_repeats)
            conventions = [c for c, r in zip(conventions, self.train_repeats, strict=True) for _ in range(r)]
        #: (N,) each training face's annotation convention (its source's ``train_conventions`` label)
        self.face_conventions = np.concatenate([np.full(len(p), c) for p, c in zip(parts, conventions)])
        if self.train_shares is not None:
            self.sample_weights = share_weights([len(part) for part in parts], self.train_shares)
        faces = concat_faces(with_pose_flag(parts, self.pose_thresholds))
        if self.oversample:
            self.sample_weights = oversampled(
                faces, self.sample_weights, self.oversample, self.pose_thresholds
            )
        return faces

    def _mapping_for(self, faces: FaceCache) -> SchemeMapping | None:
        return mapping_for(faces, self.scheme, self.mapping_files)

    def _gather_each(
        self, sources: Sequence[FaceSource], split: str, other_schemes: bool = False
    ) -> list[FaceCache]:
        """The faces of each source of a split, at this module's input size, in source order."""
        return gather(
            sources, split, self.scheme, self.input_size, self.crop_scale, self.margin, other_schemes
        )

    def _dataset(self, faces: FaceCache | None, train: bool) -> LandmarkDataset:
        faces = self._require(faces)
        scheme = self.train_scheme if faces is self.train_faces else self.scheme
        permutation = scheme.flip_permutation
        if faces.teacher is not None:  # the teacher's points ride along after the K (see LandmarkDataset)
            permutation = np.concatenate([permutation, permutation + scheme.num_points])
        transform = (
            build_train_transform(self.input_size, permutation, **self.augmentation)
            if train
            else build_eval_transform(self.input_size)
        )
        return LandmarkDataset(
            faces,
            transform,
            scheme,
            self.mean,
            self.std,
            self.profile_yaw_deg,
            self.head_pitch_deg,
            augment_seed=self.seed,
            conventions=self.face_conventions if train and self.train_conventions else None,
        )

    @property
    def workers(self) -> int:
        """The number of DataLoader workers: ``num_workers``, or for ``"auto"`` the CPU plan's."""
        if self.num_workers == AUTO:
            self.num_workers = plan_cpu("cpu", threads=torch.get_num_threads()).workers
        return int(self.num_workers)

    def _loader(self, faces: FaceCache | None, train: bool) -> DataLoader:
        workers = self.workers
        sampler = None
        if train:  # the order and the augmentation of each epoch from (seed, epoch): exact resumes
            sampler = EpochSampler(len(self._require(faces)), self.seed, self.sample_weights)
            if self.resume_position is not None:
                epoch, batches = self.resume_position
                sampler.start_at(epoch, batches * self.batch_size)
                self.resume_position = None
        return WorkerLoader(
            self._dataset(faces, train),
            batch_size=self.batch_size,
            shuffle=False,
            sampler=sampler,
            drop_last=train and len(faces) > self.batch_size,
            num_workers=workers,
            persistent_workers=self.persistent_workers and workers > 0,
            worker_init_fn=single_threaded_worker if workers > 0 else None,
            pin_memory=self.pin_memory,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_faces, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_faces, train=False)

    def eval_dataset(self, split: str) -> LandmarkDataset:
        """The ``"train"`` or ``"val"`` faces with the evaluation transform (no augmentation): the crops a
        deployed model sees, e.g. for int8 calibration. Call `setup` first."""
        faces = {"train": self.train_faces, "val": self.val_faces}
        if split not in faces:
            raise ValueError(f"split must be 'train' or 'val', got {split!r}")
        return self._dataset(faces[split], train=False)

    def mean_shape(self) -> np.ndarray:
        """(K, 2) the training faces' mean landmarks (over the faces where each point is labelled) in
        [0, 1] of the crop."""
        unit = self._require(self.train_faces).unit_landmarks()[:, : self.scheme.num_points]
        never = np.flatnonzero(np.isnan(unit[..., 0]).all(axis=0))
        if never.size:
            raise ValueError(f"points {never.tolist()} are labelled in no training face")
        return np.nanmean(unit, axis=0).astype(np.float32)

    @property
    def normalization_pair(self) -> tuple[int, int]:
        """The NME's pair of points: the pupils for inter_pupil, else the outer eye corners (also for
        "box", which does not use it, so that export and inference always find a pair)."""
        if self.normalization == "inter_pupil":
            return self.scheme.pupils  # type: ignore[return-value]  # checked in __init__
        return self.scheme.eye_corners

    @property
    def num_conventions(self) -> int:
        """How many annotation conventions the train sources use (1 without ``train_conventions``)."""
        return max(self.train_conventions or [0]) + 1

    @property
    def pose_thresholds(self) -> PoseThresholds:
        return PoseThresholds(self.profile_yaw_deg, self.head_pitch_deg)

    def class_counts(self) -> np.ndarray:
        """(C,) number of training faces (unaugmented) in each of `FACE_CLASSES`; 0 where none is."""
        return (
            class_memberships(self._require(self.train_faces), self.pose_thresholds)
            .sum(axis=0)
            .astype(np.int64)
        )

    def class_fractions(self) -> np.ndarray:
        """(C,) fraction of training faces in each of `FACE_CLASSES` (unaugmented), floored at one face
        (1 / N): augmentation can move a face into a class no unaugmented face is in, which then gets
        the largest weight, N, rather than an infinite one."""
        memberships = class_memberships(self._require(self.train_faces), self.pose_thresholds)
        return np.maximum(memberships.mean(axis=0), 1.0 / len(memberships)).astype(np.float32)

    @staticmethod
    def _require(faces: FaceCache | None) -> FaceCache:
        if faces is None:
            raise RuntimeError("call setup() before asking for data or its statistics")
        return faces


__all__ = ["FACE_CLASSES", "LandmarkDataModule"]

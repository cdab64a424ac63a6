"""Prepared faces: each photo is read and cut once, then kept as arrays (in memory or memory-mapped).

Each face is stored as the policy crop (see `pfld.data.crop`) enlarged by ``margin`` and resized so
that the policy crop is exactly ``crop_size`` pixels, leaving a border for augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import cv2
import numpy as np
from tqdm.auto import tqdm

from pfld.data.attributes import fitted_angles_deg
from pfld.data.crop import crop_face, to_unit
from pfld.data.photo_checks import check_points_in_photo
from pfld.data.records import FaceRecord
from pfld.data.schemes import LandmarkScheme
from pfld.io.images import read_image

#: Where a face's crop box comes from: its labelled landmarks, the data set's own face box, or the box of
#: the model scheme's landmarks estimated from the face's few points (`FaceRecord.box`, see
#: `pfld.data.mixed.estimate_box`).
BOX_SOURCES: tuple[str, ...] = ("landmarks", "dataset", "estimated")

#: Where a point came from (`FaceCache.point_sources`).
POINT_SOURCES: tuple[str, ...] = ("unlabelled", "annotated", "pseudo")
UNLABELLED, ANNOTATED, PSEUDO = 0, 1, 2


@dataclass(frozen=True)
class FaceCache:
    """N prepared faces, as parallel arrays.

    images: (N, S, S, 3) uint8 RGB loose crops, S = crop_size + 2 * border (may be a read-only memmap).
    landmarks: (N, K, 2) float32 pixels of the loose crops; NaN = not labelled.
    angles: (N, 3) float32 yaw, pitch, roll in degrees of the unaugmented face; NaN = unknown.
    identities, sources: (N,) str: who the face is (for identity-disjoint splits), where it was annotated.
    flags: (N, F) bool data-set attributes named by ``flag_names`` (e.g. WFLW's six).
    crop_size: side of the policy crop in stored pixels; border: stored pixels around it on each side.
    crop_scale, box_source: how the policy crop was derived (see `pfld.data.crop`).
    scheme: the name of the points' landmark scheme; "" when not recorded (splits prepared before it was).
    point_sources: (N, K) uint8 where each point came from (`POINT_SOURCES`: 0 unlabelled, 1 annotated,
        2 pseudo-label from a model, see `pfld.teacher.pseudo_label`), or None: every labelled point annotated.
    teacher: (N, K, 2) float32 a teacher model's points for every face in the same pixels (NaN = none),
        for distillation (`pfld.teacher.pseudo_label`), or None.
    """

    images: np.ndarray
    landmarks: np.ndarray
    angles: np.ndarray
    identities: np.ndarray
    sources: np.ndarray
    flags: np.ndarray
    flag_names: tuple[str, ...]
    crop_size: int
    border: int
    crop_scale: float = 1.2
    box_source: str = "landmarks"
    scheme: str = ""
    point_sources: np.ndarray | None = None
    teacher: np.ndarray | None = None

    def __post_init__(self) -> None:
        n, side = len(self.images), self.crop_size + 2 * self.border
        if self.images.shape[1:] != (side, side, 3) or self.images.dtype != np.uint8:
            raise ValueError(f"images must be (N, {side}, {side}, 3) uint8, got {self.images.shape}")
        if self.landmarks.ndim != 3 or self.landmarks.shape[0] != n or self.landmarks.shape[2] != 2:
            raise ValueError(f"FaceCache.landmarks must have shape ({n}, K, 2), got {self.landmarks.shape}")
        expected = {
            "angles": (self.angles, (n, 3)),
            "identities": (self.identities, (n,)),
            "sources": (self.sources, (n,)),
            "flags": (self.flags, (n, len(self.flag_names))),
        }
        if self.point_sources is not None:
            expected["point_sources"] = (self.point_sources, self.landmarks.shape[:2])
        if self.teacher is not None:
            expected["teacher"] = (self.teacher, self.landmarks.shape)
        for name, (array, shape) in expected.items():
            if array.shape != shape:
                raise ValueError(f"FaceCache.{name} must have shape {shape}, got {array.shape}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def num_points(self) -> int:
        return int(self.landmarks.shape[1])

    @property
    def margin(self) -> float:
        """How much larger than the policy crop the stored crops are."""
        return self.images.shape[1] / self.crop_size

    @property
    def visible(self) -> np.ndarray:
        """(N, K) bool: which points are labelled."""
        return ~np.isnan(self.landmarks[..., 0])

    def unit_landmarks(self) -> np.ndarray:
        """(N, K, 2) landmarks in [0, 1] of the policy crop (no augmentation); NaN = not labelled."""
        return to_unit(self.landmarks - self.border, self.crop_size)

    def sources_of_points(self) -> np.ndarray:
        """(N, K) uint8 `POINT_SOURCES` codes: ``point_sources``, or annotated wherever labelled."""
        if self.point_sources is not None:
            return self.point_sources
        return np.where(self.visible, ANNOTATED, UNLABELLED).astype(np.uint8)

    def face_flags(self, index: int) -> dict[str, bool]:
        return {name: bool(v) for name, v in zip(self.flag_names, self.flags[index], strict=True)}

    def subset(self, indices: Sequence[int] | np.ndarray) -> FaceCache:
        """The faces at ``indices`` (images are copied out of a memmap)."""
        idx = np.asarray(indices, dtype=np.int64)
        return replace(
            self,
            images=self.images[idx],
            landmarks=self.landmarks[idx],
            angles=self.angles[idx],
            identities=self.identities[idx],
            sources=self.sources[idx],
            flags=self.flags[idx],
            point_sources=None if self.point_sources is None else self.point_sources[idx],
            teacher=None if self.teacher is None else self.teacher[idx],
        )

    def resized(self, crop_size: int) -> FaceCache:
        """The same faces with the policy crop at ``crop_size`` pixels (same margin); shows a bar."""
        if crop_size == self.crop_size:
            return self
        zoom = crop_size / self.crop_size
        border = round(self.border * zoom)
        side = crop_size + 2 * border
        zoom_exact = side / self.images.shape[1]
        interpolation = cv2.INTER_AREA if zoom_exact < 1 else cv2.INTER_LINEAR
        images = np.stack(
            [
                cv2.resize(image, (side, side), interpolation=interpolation)
                for image in tqdm(self.images, desc=f"resizing faces to {crop_size}", unit="face")
            ]
        )

        def scaled(points: np.ndarray) -> np.ndarray:
            return ((points + 0.5) * zoom_exact - 0.5).astype(np.float32)

        teacher = None if self.teacher is None else scaled(self.teacher)
        return replace(
            self,
            images=images,
            landmarks=scaled(self.landmarks),
            crop_size=crop_size,
            border=border,
            teacher=teacher,
        )


def concat_faces(caches: Sequence[FaceCache]) -> FaceCache:
    """One cache of all faces; the caches must agree on point count, crop size and border."""
    if not caches:
        raise ValueError("no faces to concatenate")
    first = caches[0]
    for cache in caches[1:]:
        layout, expected = _layout(cache), _layout(first)
        if layout != expected:
            raise ValueError(f"cannot combine prepared faces with different layouts: {layout} vs {expected}")
    if len(caches) == 1:
        return first
    names = tuple(dict.fromkeys(n for c in caches for n in c.flag_names))
    flags = np.zeros((sum(len(c) for c in caches), len(names)), dtype=bool)
    start = 0
    for cache in caches:
        for column, name in enumerate(cache.flag_names):
            flags[start : start + len(cache), names.index(name)] = cache.flags[:, column]
        start += len(cache)
    return FaceCache(
        images=np.concatenate([c.images for c in caches]),
        landmarks=np.concatenate([c.landmarks for c in caches]),
        angles=np.concatenate([c.angles for c in caches]),
        identities=np.concatenate([c.identities for c in caches]),
        sources=np.concatenate([c.sources for c in caches]),
        flags=flags,
        flag_names=names,
        crop_size=first.crop_size,
        border=first.border,
        crop_scale=first.crop_scale,
        box_source=first.box_source,
        scheme=first.scheme if all(c.scheme == first.scheme for c in caches) else "",
        point_sources=None
        if all(c.point_sources is None for c in caches)
        else np.concatenate([c.sources_of_points() for c in caches]),
        teacher=None
        if all(c.teacher is None for c in caches)
        else np.concatenate(
            [
                np.full(c.landmarks.shape, np.nan, np.float32) if c.teacher is None else c.teacher
                for c in caches
            ]
        ),
    )


def _layout(faces: FaceCache) -> str:
    # An estimated landmark box (a partially labelled face of another scheme, see pfld.data.mixed) is
    # the same kind of box as the landmarks' own.
    box = "landmarks" if faces.box_source == "estimated" else faces.box_source
    return (
        f"{faces.num_points} points, crop {faces.crop_size} px + {faces.border} px border, "
        f"crop_scale {faces.crop_scale} of the {box} box"
    )


def crop_record(
    record: FaceRecord, crop_size: int, border: int, crop_scale: float, box_source: str = "landmarks"
) -> tuple[np.ndarray, np.ndarray]:
    """Read a face's photo and cut its loose crop: ((S, S, 3) uint8, (K, 2) crop pixels)."""
    if box_source not in BOX_SOURCES:
        raise ValueError(f"box_source must be one of {BOX_SOURCES}, got {box_source!r}")
    if box_source != "landmarks" and record.box is None:
        raise ValueError(f"{record.source}: box_source {box_source!r} but the annotation has no face box")
    side = crop_size + 2 * border
    image = read_image(record.image_path, record.source)
    where = f"{record.source} ({record.image_path.name})" if record.source else str(record.image_path)
    check_points_in_photo(record.landmarks, image.shape[1], image.shape[0], where)
    box = None if box_source == "landmarks" else record.box
    return crop_face(image, record.landmarks, side, crop_scale, side / crop_size, box=box)


def build_face_cache(
    records: Sequence[FaceRecord],
    crop_size: int,
    scheme: LandmarkScheme | None = None,
    crop_scale: float = 1.2,
    margin: float = 1.5,
    box_source: str = "landmarks",
    workers: int = 2,
    description: str = "preparing faces",
) -> FaceCache:
    """Read every photo once and keep its loose face crop, with a progress bar.

    With ``scheme``, each face's Euler angles are fitted once. A face whose photo is missing or corrupt
    raises (`pfld.data.prepare` is the path that skips and counts bad faces instead).
    """
    if not records:
        raise ValueError(f"{description}: no faces to prepare (empty split)")
    border = border_for(crop_size, margin)

    def prepare(record: FaceRecord) -> tuple[np.ndarray, np.ndarray]:
        return crop_record(record, crop_size, border, crop_scale, box_source)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        crops = list(tqdm(pool.map(prepare, records), total=len(records), desc=description, unit="face"))
    faces = faces_from_crops(records, crops, crop_size, border, scheme)
    return replace(faces, crop_scale=crop_scale, box_source=box_source)


def border_for(crop_size: int, margin: float) -> int:
    """Stored pixels on each side of a ``crop_size`` policy crop for a loose crop ``margin`` times larger."""
    if margin < 1.0:
        raise ValueError(f"margin must be at least 1, got {margin}")
    return round(crop_size * (margin - 1.0) / 2.0)


def faces_from_crops(
    records: Sequence[FaceRecord],
    crops: Sequence[tuple[np.ndarray, np.ndarray]],
    crop_size: int,
    border: int,
    scheme: LandmarkScheme | None = None,
) -> FaceCache:
    """Assemble a `FaceCache` from records and their loose crops; fits the Euler angles with ``scheme``."""
    landmarks = np.stack([c[1] for c in crops]).astype(np.float32)
    if scheme is None:
        angles = np.full((len(records), 3), np.nan, dtype=np.float32)
    else:
        angles = fitted_angles_deg(landmarks - border, scheme, float(crop_size))
    names = tuple(dict.fromkeys(n for r in records for n in r.flags))
    flags = np.array([[bool(r.flags.get(n, False)) for n in names] for r in records], dtype=bool)
    return FaceCache(
        images=np.stack([c[0] for c in crops]),
        landmarks=landmarks,
        angles=angles.astype(np.float32),
        identities=np.array([r.identity for r in records], dtype=str),
        sources=np.array([r.source or str(r.image_path) for r in records], dtype=str),
        flags=flags.reshape(len(records), len(names)),
        flag_names=names,
        crop_size=crop_size,
        border=border,
        scheme="" if scheme is None else scheme.name,
    )

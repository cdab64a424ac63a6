"""Landmark schemes as data: point groups, left/right flip partners, normalisation and pose points.

"Left" and "right" are the subject's: the subject's right eye appears on the image's left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

#: Named reference landmarks used to fit the 3D mean face (see `pfld.geometry.MEAN_FACE_3D`).
POSE_REFERENCE_NAMES: tuple[str, ...] = (
    "right_brow_outer",
    "right_brow_inner",
    "left_brow_inner",
    "left_brow_outer",
    "right_eye_outer",
    "right_eye_inner",
    "left_eye_inner",
    "left_eye_outer",
    "nose_right",
    "nose_left",
    "mouth_right",
    "mouth_left",
    "lower_lip_center",
    "chin",
)


@dataclass(frozen=True)
class LandmarkScheme:
    """What the K points of a data set mean.

    Args:
        name: short identifier, e.g. ``"ibug68"``.
        num_points: K.
        groups: group name -> point indices (jaw, brows, eyes...), for plots and per-part errors.
        flip_pairs: (subject's right, subject's left) point pairs that swap under a horizontal flip;
            points in no pair map to themselves.
        normalization: the two point indices whose distance normalises the NME (outer eye corners).
        pose_reference: name from `POSE_REFERENCE_NAMES` -> point index, for Euler-angle fitting.
    """

    name: str
    num_points: int
    groups: dict[str, tuple[int, ...]]
    flip_pairs: tuple[tuple[int, int], ...]
    normalization: tuple[int, int]
    pose_reference: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = self.num_points
        if k < 3:
            raise ValueError(f"scheme {self.name!r}: num_points must be at least 3, got {k}")
        used = [i for pair in self.flip_pairs for i in pair]
        all_indices = used + list(self.normalization) + list(self.pose_reference.values())
        all_indices += [i for members in self.groups.values() for i in members]
        bad = sorted({i for i in all_indices if not 0 <= i < k})
        if bad:
            raise ValueError(f"scheme {self.name!r}: indices {bad} outside 0..{k - 1}")
        if len(used) != len(set(used)):
            raise ValueError(f"scheme {self.name!r}: a point appears in more than one flip pair")
        unknown = sorted(set(self.pose_reference) - set(POSE_REFERENCE_NAMES))
        if unknown:
            raise ValueError(f"scheme {self.name!r}: unknown pose reference names {unknown}")
        if self.normalization[0] == self.normalization[1]:
            raise ValueError(f"scheme {self.name!r}: normalization needs two different points")

    @cached_property
    def flip_permutation(self) -> np.ndarray:
        """(K,) int64, read-only: after a horizontal flip, point i takes the mirrored position of point perm[i]."""
        perm = np.arange(self.num_points)
        for i, j in self.flip_pairs:
            perm[i], perm[j] = j, i
        perm.flags.writeable = False
        return perm

    @cached_property
    def pose_reference_indices(self) -> np.ndarray:
        """(R,) int64, read-only: point indices in the order of `pose_reference_names`."""
        indices = np.array([self.pose_reference[n] for n in self.pose_reference_names], dtype=np.int64)
        indices.flags.writeable = False
        return indices

    @cached_property
    def pose_reference_names(self) -> tuple[str, ...]:
        """The pose reference names this scheme provides, in `POSE_REFERENCE_NAMES` order."""
        return tuple(n for n in POSE_REFERENCE_NAMES if n in self.pose_reference)


def _mirror(left: range | list[int], right: range | list[int]) -> list[tuple[int, int]]:
    return list(zip(left, right, strict=True))


def ibug_68() -> LandmarkScheme:
    """The 68-point iBUG scheme of 300W (0-based): 0-16 jaw, 17-21 right brow, 22-26 left brow,
    27-35 nose, 36-41 right eye, 42-47 left eye, 48-67 mouth. Inter-ocular: 36 and 45."""
    pairs = (
        _mirror(range(8), range(16, 8, -1))  # jaw
        + _mirror(range(17, 22), range(26, 21, -1))  # brows
        + _mirror([31, 32], [35, 34])  # nostrils
        + _mirror([36, 37, 38, 39, 40, 41], [45, 44, 43, 42, 47, 46])  # eyes
        + _mirror([48, 49, 50, 59, 58], [54, 53, 52, 55, 56])  # outer lips
        + _mirror([60, 61, 67], [64, 63, 65])  # inner lips
    )
    return LandmarkScheme(
        name="ibug68",
        num_points=68,
        groups={
            "jaw": tuple(range(17)),
            "right_brow": tuple(range(17, 22)),
            "left_brow": tuple(range(22, 27)),
            "nose": tuple(range(27, 36)),
            "right_eye": tuple(range(36, 42)),
            "left_eye": tuple(range(42, 48)),
            "mouth": tuple(range(48, 68)),
        },
        flip_pairs=tuple(pairs),
        normalization=(36, 45),
        pose_reference={
            "right_brow_outer": 17,
            "right_brow_inner": 21,
            "left_brow_inner": 22,
            "left_brow_outer": 26,
            "right_eye_outer": 36,
            "right_eye_inner": 39,
            "left_eye_inner": 42,
            "left_eye_outer": 45,
            "nose_right": 31,
            "nose_left": 35,
            "mouth_right": 48,
            "mouth_left": 54,
            "lower_lip_center": 57,
            "chin": 8,
        },
    )


def custom_scheme(
    name: str,
    num_points: int,
    flip_pairs: list[list[int]],
    normalization: list[int],
    groups: dict[str, list[int]] | None = None,
    pose_reference: dict[str, int] | None = None,
) -> LandmarkScheme:
    """A scheme from plain config values (lists), for data sets we do not ship a scheme for."""
    return LandmarkScheme(
        name=name,
        num_points=num_points,
        groups={k: tuple(v) for k, v in (groups or {}).items()},
        flip_pairs=tuple((int(a), int(b)) for a, b in flip_pairs),
        normalization=(int(normalization[0]), int(normalization[1])),
        pose_reference=dict(pose_reference or {}),
    )

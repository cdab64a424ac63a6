"""The `LandmarkScheme` dataclass: what the K points of a data set mean.

"Left" and "right" are the subject's: the subject's right eye appears on the image's left.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

#: Named reference landmarks used to fit the 3D mean face (see `pfld.data.geometry.MEAN_FACE_3D`).
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

#: A scheme declares no pose reference points, or at least this many (fewer cannot fit a 3D pose).
MIN_POSE_REFERENCE_POINTS = 6


def _is_index(value: object) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


@dataclass(frozen=True)
class LandmarkScheme:
    """What the K points of a data set mean.

    Args:
        name: short identifier, e.g. ``"ibug68"``.
        num_points: K.
        groups: group name -> point indices (jaw, brows, eyes...), for plots and per-part errors.
        flip_pairs: (subject's right, subject's left) point pairs that swap under a horizontal flip;
            points in no pair map to themselves.
        eye_corners: (right, left) outer eye corners; their distance normalises the NME (inter-ocular).
        pupils: (right, left) pupils or eye centres, when the scheme has them.
        pose_reference: name from `POSE_REFERENCE_NAMES` -> point index, for Euler-angle fitting.
        point_names: K point names, or empty when the points are only numbered.
    """

    name: str
    num_points: int
    groups: dict[str, tuple[int, ...]]
    flip_pairs: tuple[tuple[int, int], ...]
    eye_corners: tuple[int, int]
    pupils: tuple[int, int] | None = None
    pose_reference: dict[str, int] = field(default_factory=dict)
    point_names: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        k, where = self.num_points, f"scheme {self.name!r}"
        if not _is_index(k) or k < 3:
            raise ValueError(f"{where}: num_points must be an integer of at least 3, got {k!r}")
        if self.point_names and len(self.point_names) != k:
            raise ValueError(f"{where}: {len(self.point_names)} point_names but num_points is {k}")
        repeated = sorted({n for n in self.point_names if self.point_names.count(n) > 1})
        if repeated:
            raise ValueError(f"{where}: point_names repeat {repeated}")
        self._check_indices(where)
        used = [i for pair in self.flip_pairs for i in pair]
        selfish = [a for a, b in self.flip_pairs if a == b]
        if selfish:
            raise ValueError(f"{where}: points {selfish} are paired with themselves in flip_pairs")
        twice = sorted({i for i in used if used.count(i) > 1})
        if twice:
            raise ValueError(f"{where}: points {twice} appear in more than one flip pair")
        if self.eye_corners[0] == self.eye_corners[1]:
            raise ValueError(f"{where}: eye_corners need two different points, got {list(self.eye_corners)}")
        if self.pupils is not None and self.pupils[0] == self.pupils[1]:
            raise ValueError(f"{where}: pupils need two different points, got {list(self.pupils)}")
        unknown = sorted(set(self.pose_reference) - set(POSE_REFERENCE_NAMES))
        if unknown:
            raise ValueError(
                f"{where}: unknown pose reference names {unknown}; known: {list(POSE_REFERENCE_NAMES)}"
            )
        if 0 < len(self.pose_reference) < MIN_POSE_REFERENCE_POINTS:
            raise ValueError(
                f"{where}: pose_reference has {len(self.pose_reference)} points; head pose needs at least "
                f"{MIN_POSE_REFERENCE_POINTS} (or give none, and switch the pose branch off)"
            )
        points = list(self.pose_reference.values())
        shared = sorted({i for i in points if points.count(i) > 1})
        if shared:
            raise ValueError(f"{where}: pose reference names share points {shared}; each needs its own point")

    def _check_indices(self, where: str) -> None:
        """Every index is an integer in 0..K-1, and the pairs have two members."""
        if any(len(pair) != 2 for pair in self.flip_pairs):
            raise ValueError(f"{where}: every flip pair needs exactly two points, got {self.flip_pairs}")
        if len(self.eye_corners) != 2 or (self.pupils is not None and len(self.pupils) != 2):
            raise ValueError(f"{where}: eye_corners and pupils need exactly two points each")
        named = {
            "flip_pairs": [i for pair in self.flip_pairs for i in pair],
            "eye_corners": list(self.eye_corners),
            "pupils": list(self.pupils or ()),
            "pose_reference": list(self.pose_reference.values()),
            "groups": [i for members in self.groups.values() for i in members],
        }
        for what, indices in named.items():
            bad = [i for i in indices if not _is_index(i) or not 0 <= i < self.num_points]
            if bad:
                raise ValueError(f"{where}: {what} indices {bad} outside 0..{self.num_points - 1}")

    @property
    def normalization(self) -> tuple[int, int]:
        """The two point indices whose distance normalises the NME: the outer eye corners."""
        return self.eye_corners

    @property
    def has_pose(self) -> bool:
        """Whether the scheme declares pose reference points (so head pose can be fitted)."""
        return bool(self.pose_reference)

    @cached_property
    def flip_permutation(self) -> np.ndarray:
        """(K,) int64, read-only: after a horizontal flip, point i takes the mirrored place of perm[i]."""
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


def custom_scheme(
    name: str,
    num_points: int,
    flip_pairs: list[list[int]],
    normalization: list[int],
    groups: dict[str, list[int]] | None = None,
    pose_reference: dict[str, int] | None = None,
    pupils: list[int] | None = None,
) -> LandmarkScheme:
    """A scheme from plain config values (lists); ``normalization`` is the (right, left) outer eye corners.

    For a scheme kept in a file, prefer a YAML file and `load_scheme`, which checks more.
    """
    return LandmarkScheme(
        name=name,
        num_points=num_points,
        groups={k: tuple(int(i) for i in v) for k, v in (groups or {}).items()},
        flip_pairs=tuple((int(a), int(b)) for a, b in flip_pairs),
        eye_corners=(int(normalization[0]), int(normalization[1])),
        pupils=None if pupils is None else (int(pupils[0]), int(pupils[1])),
        pose_reference={str(k): int(v) for k, v in (pose_reference or {}).items()},
    )

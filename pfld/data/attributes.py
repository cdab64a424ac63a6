"""Head pose and the paper's face classes, which weight the PFLD loss: every face belongs to at least one.

Pose classes come from the Euler angles (or a data set's own pose flag); expression and occlusion
only from a data set's flags: where a data set has no such flag, the class is simply absent (zero).
A face whose pose cannot be fitted (too few labelled reference points) counts as frontal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from pfld.data.geometry import euler_angles, rotation_matrix, rotation_to_euler
from pfld.data.schemes import MIN_POSE_REFERENCE_POINTS, LandmarkScheme

if TYPE_CHECKING:
    from pfld.data.cache import FaceCache

FACE_CLASSES: tuple[str, ...] = ("profile", "frontal", "head_up", "head_down", "expression", "occlusion")


def fit_angles(points: np.ndarray, scheme: LandmarkScheme, crop_size: float) -> np.ndarray:
    """(K, 2) crop pixels (NaN = unlabelled) -> (3,) float64 yaw, pitch, roll in radians, or NaN when
    the scheme has no pose reference points, fewer than the minimum are labelled, or the fit fails.
    (Prepared files and `FaceCache.angles` keep degrees: `fitted_angles_deg`.)"""
    unknown = np.full(3, np.nan, dtype=np.float64)
    if not scheme.has_pose:
        return unknown
    indices = scheme.pose_reference_indices
    labelled = ~np.isnan(points[indices]).any(axis=1)
    if labelled.sum() < MIN_POSE_REFERENCE_POINTS:
        return unknown
    names = tuple(n for n, keep in zip(scheme.pose_reference_names, labelled, strict=True) if keep)
    try:
        return euler_angles(points[indices[labelled]], names, crop_size)
    except ValueError:
        return unknown


def fitted_angles_deg(landmarks: np.ndarray, scheme: LandmarkScheme, crop_size: float) -> np.ndarray:
    """(N, K, 2) crop pixels -> (N, 3) float32 `fit_angles` in degrees, the unit prepared files and
    `pfld.data.cache.FaceCache.angles` keep (the dataset turns them into radians for training)."""
    return np.rad2deg(np.stack([fit_angles(points, scheme, crop_size) for points in landmarks])).astype(
        np.float32
    )


def augmented_angles(
    angles_deg: np.ndarray, rotation_deg: float, flipped: bool, yaw_deg: float = 0.0
) -> np.ndarray:
    """(3,) yaw, pitch, roll in degrees of a face -> the same after its crop was rotated by
    ``rotation_deg`` (counter-clockwise as seen, about the crop's centre), then mirrored if ``flipped``
    (see `pfld.data.transforms.augmentation_matrix`), then turned by ``yaw_deg`` about the camera's
    vertical axis (`pfld.data.transforms.yaw_homography`); NaN stays NaN.

    Exact for the crop's pinhole camera (`pfld.data.geometry`): an in-plane rotation about the principal
    point is a rotation of the camera about its optical axis, which only changes roll (applied last,
    ``R = Rz(roll) Rx(-pitch) Ry(-yaw)``), and a mirror negates yaw and roll. The turn multiplies the
    head's rotation by ``Ry(-yaw_deg)`` on the camera's side (yaw alone when pitch and roll are 0); it is
    the head's rotation, while the image is warped as for a flat face, so a re-fit of the warped points
    reads a smaller turn (measured in ``tests/pfld/data/test_augmented_angles.py``). The augmentation's
    scale and shift are ignored: under the crop's camera they move the fitted angles by a fraction of a
    degree (measured there too).
    """
    yaw, pitch, roll = (float(a) for a in angles_deg)
    roll = (roll - rotation_deg + 180.0) % 360.0 - 180.0
    if flipped:
        yaw, roll = -yaw, -roll
    if yaw_deg and not np.isnan([yaw, pitch, roll]).any():
        turned = rotation_matrix(math.radians(yaw_deg), 0.0, 0.0) @ rotation_matrix(
            *np.radians([yaw, pitch, roll])
        )
        yaw, pitch, roll = np.degrees(rotation_to_euler(turned))
    return np.array([yaw, pitch, roll], dtype=np.float32)


def face_classes(
    angles_deg: np.ndarray,
    flags: Mapping[str, bool] | None = None,
    profile_yaw_deg: float = 30.0,
    head_pitch_deg: float = 20.0,
) -> np.ndarray:
    """(3,) yaw, pitch, roll in degrees (NaN = unknown) + optional flags -> (C,) float32 0/1 membership
    in `FACE_CLASSES`.

    profile: |yaw| > profile_yaw_deg, or the data set's ``pose`` flag where it has one; frontal: not
    profile (so the two cover every face); head_up / head_down: pitch above +head_pitch_deg / below
    -head_pitch_deg; expression / occlusion: the data set's flags of those names.
    """
    flags = flags or {}
    yaw, pitch = float(angles_deg[0]), float(angles_deg[1])
    profile = bool(flags["pose"]) if "pose" in flags else abs(yaw) > profile_yaw_deg
    membership = (
        profile,
        not profile,
        pitch > head_pitch_deg,
        pitch < -head_pitch_deg,
        bool(flags.get("expression", False)),
        bool(flags.get("occlusion", False)),
    )
    return np.asarray(membership, dtype=np.float32)


@dataclass(frozen=True)
class PoseThresholds:
    """Degrees at which a face counts as profile (|yaw|) and head up / down (pitch)."""

    profile_yaw_deg: float = 30.0
    head_pitch_deg: float = 20.0


def with_pose_flag(
    parts: Sequence[FaceCache], thresholds: PoseThresholds = PoseThresholds()
) -> list[FaceCache]:
    """Parts about to be combined into one training set: when some carry a data set's ``pose`` flag
    (which decides their profile class) and others do not, the others get the flag their angles give
    (|yaw| > the profile threshold), so that combining them does not mark all of them frontal."""
    if not any("pose" in part.flag_names for part in parts):
        return list(parts)
    out = []
    for part in parts:
        if "pose" not in part.flag_names:
            profile = np.abs(part.angles[:, 0]) > thresholds.profile_yaw_deg  # NaN (unknown): False
            part = replace(
                part,
                flags=np.concatenate([part.flags, profile[:, None]], axis=1),
                flag_names=(*part.flag_names, "pose"),
            )
        out.append(part)
    return out


def class_memberships(faces: FaceCache, thresholds: PoseThresholds = PoseThresholds()) -> np.ndarray:
    """(N, C) float32 0/1 memberships in `FACE_CLASSES` from the stored angles and flags.

    Augmentation does not change them: a rotation only changes roll and a flip the sign of yaw."""
    return np.stack(
        [
            face_classes(
                faces.angles[i], faces.face_flags(i), thresholds.profile_yaw_deg, thresholds.head_pitch_deg
            )
            for i in range(len(faces))
        ]
    ).reshape(len(faces), len(FACE_CLASSES))

"""Head pose and the paper's face classes, which weight the PFLD loss: every face belongs to at least one.

Pose classes come from the Euler angles (or a data set's own pose flag); expression and occlusion
only from a data set's flags: where a data set has no such flag, the class is simply absent (zero).
A face whose pose cannot be fitted (too few labelled reference points) counts as frontal.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from pfld.data.schemes import MIN_POSE_REFERENCE_POINTS, LandmarkScheme
from pfld.geometry import euler_angles

FACE_CLASSES: tuple[str, ...] = ("profile", "frontal", "head_up", "head_down", "expression", "occlusion")


def fit_angles(points: np.ndarray, scheme: LandmarkScheme, crop_size: float) -> np.ndarray:
    """(K, 2) crop pixels (NaN = unlabelled) -> (3,) float32 yaw, pitch, roll in degrees, or NaN when
    the scheme has no pose reference points, fewer than the minimum are labelled, or the fit fails."""
    unknown = np.full(3, np.nan, dtype=np.float32)
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

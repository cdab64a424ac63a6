"""The paper's face classes, which weight the PFLD loss: every face belongs to at least one.

Pose classes come from the Euler angles (or a data set's own pose flag); expression and occlusion
only from a data set's flags: where a data set has no such flag, the class is simply absent (zero).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

FACE_CLASSES: tuple[str, ...] = ("profile", "frontal", "head_up", "head_down", "expression", "occlusion")


def face_classes(
    angles_deg: np.ndarray,
    flags: Mapping[str, bool] | None = None,
    profile_yaw_deg: float = 30.0,
    head_pitch_deg: float = 20.0,
) -> np.ndarray:
    """(3,) yaw, pitch, roll in degrees (+ optional flags) -> (C,) float32 0/1 membership in `FACE_CLASSES`.

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

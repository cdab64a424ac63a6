"""Helpers only the tests use: the mean face projected at a known pose, a pose fit of a whole scheme's
landmarks, the mean difference between two ONNX models' landmarks, and the small schemes' points
derived from 68 iBUG points (written here apart from the mappings the code uses, as the tests' own
account of them)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from pfld.data.geometry import MEAN_FACE_3D, camera_matrix, rotation_matrix
from pfld.data.schemes import POSE_REFERENCE_NAMES


def _default_distance() -> float:
    """Distance (cm) at which the frontal mean face spans half the crop when f = crop_size."""
    points = np.array(list(MEAN_FACE_3D.values()))
    return 2.0 * float((points[:, :2].max(axis=0) - points[:, :2].min(axis=0)).max())


def project_mean_face(
    yaw: float,
    pitch: float,
    roll: float,
    crop_size: float,
    names: Sequence[str] = POSE_REFERENCE_NAMES,
    distance: float | None = None,
) -> np.ndarray:
    """Rotated mean face -> (R, 2) float64 crop pixels of the named points.

    The face's centroid sits on the optical axis ``distance`` cm away (default: the frontal face spans
    about half the crop); angles in degrees, in `pfld.geometry`'s convention.
    """
    model = np.array([MEAN_FACE_3D[name] for name in names], dtype=np.float64)  # (R, 3)
    depth = _default_distance() if distance is None else float(distance)
    camera = model @ rotation_matrix(*np.radians([yaw, pitch, roll])).T + np.array(
        [0.0, 0.0, depth]
    )  # (R, 3)
    if np.any(camera[:, 2] <= 0):
        raise ValueError(f"distance {depth} puts part of the face behind the camera")
    k = camera_matrix(crop_size)
    return camera[:, :2] / camera[:, 2:] * k[0, 0] + k[:2, 2]


def mean_abs_difference(fp32_path: str | Path, int8_path: str | Path, batches: Iterable[np.ndarray]) -> float:
    """Mean |int8 - fp32| over all landmark coordinates (crop units, [0, 1]) on `batches` of normalised
    crops (N, 3, S, S), run in onnxruntime on the CPU."""
    from export.calibration import as_batch  # onnxruntime: imported only where needed
    from pfld.inference.models import OUTPUT_NAME, onnx_session

    sessions = [onnx_session(p) for p in (fp32_path, int8_path)]
    input_name = sessions[0].get_inputs()[0].name
    total, n = 0.0, 0
    for batch in batches:
        reference, quantised = (s.run([OUTPUT_NAME], {input_name: as_batch(batch)})[0] for s in sessions)
        total += float(np.abs(quantised - reference).sum())  # (N, K, 2) summed
        n += reference.size
    if n == 0:
        raise ValueError("no batches to compare")
    return total / n


# Points of the small schemes as they sit on a 68-point iBUG face (centres are means of the eye contours).
_RIGHT_EYE, _LEFT_EYE = list(range(36, 42)), list(range(42, 48))
FROM_IBUG68: dict[str, list[list[int]]] = {
    "five_point": [_RIGHT_EYE, _LEFT_EYE, [30], [48], [54]],
    "kaggle15": [
        _LEFT_EYE,
        _RIGHT_EYE,
        [42],
        [45],
        [39],
        [36],
        [22],
        [26],
        [21],
        [17],
        [30],
        [54],
        [48],
        [51],
        [57],
    ],
}


def from_ibug68(points: np.ndarray, scheme: str) -> np.ndarray:
    """(..., 68, 2) iBUG points -> (..., S, 2) points of ``scheme`` (a key of `FROM_IBUG68`)."""
    return np.stack([points[..., members, :].mean(axis=-2) for members in FROM_IBUG68[scheme]], axis=-2)

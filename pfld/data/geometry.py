"""Head pose (yaw, pitch, roll) from 2D landmarks: fit a 3D mean face with `cv2.solvePnP`.

Camera: a pinhole whose focal length is the crop's side (fx = fy = crop_size pixels), principal point
at the crop's centre ``((crop_size - 1) / 2, (crop_size - 1) / 2)`` (0-based pixels, pixel centres on
integers, as in `pfld.data.crop`), no distortion.

Frame (OpenCV camera convention, right-handed): x to the image's right, y down the image, z away from
the camera. `MEAN_FACE_3D` is given in this frame, in cm, centred on its centroid, for a frontal face:
the subject's right features have x < 0, brows have smaller y than the chin, the nose has smaller z
(is nearer the camera) than the outer brows.

Sign convention (angles in radians, as everywhere inside pfld; degrees only in files and text):
    yaw   > 0: the subject turns toward the image's right (the subject's left); the nose moves right.
    pitch > 0: the subject looks up (chin up); the nose moves up the image.
    roll  > 0: the face rotates clockwise in the image as the viewer sees it (y down); the subject's
               right eye (on the image's left) moves up.
A horizontal mirror (x -> crop_size - 1 - x plus the scheme's flip permutation) negates yaw and roll
and keeps pitch.

Rotation order: with Rx, Ry, Rz the usual right-handed rotations about the camera axes,

    R = Rz(roll) @ Rx(-pitch) @ Ry(-yaw),      camera_point = R @ face_point + t.

Yaw is applied first (about the face's own vertical axis), roll last (in the image plane), so an
in-plane rotation of the crop only changes roll. Pitch is the middle angle: the decomposition is
unique for |pitch| < 90, and yaw may reach +-180 (profiles are fine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import cv2
import numpy as np

from pfld.data.schemes import MIN_POSE_REFERENCE_POINTS, POSE_REFERENCE_NAMES

# The 14-point mean face used by many head-pose repos (cm; x toward the subject's right, y up, z toward
# the viewer: a left-handed frame). Kept for provenance; converted once below.
_SOURCE_FACE: dict[str, tuple[float, float, float]] = {
    "right_brow_outer": (6.825897, 6.760612, 4.402142),
    "right_brow_inner": (1.330353, 7.122144, 6.903745),
    "left_brow_inner": (-1.330353, 7.122144, 6.903745),
    "left_brow_outer": (-6.825897, 6.760612, 4.402142),
    "right_eye_outer": (5.311432, 5.485328, 3.987654),
    "right_eye_inner": (1.789930, 5.393625, 4.413414),
    "left_eye_inner": (-1.789930, 5.393625, 4.413414),
    "left_eye_outer": (-5.311432, 5.485328, 3.987654),
    "nose_right": (2.005628, 1.409845, 6.165652),
    "nose_left": (-2.005628, 1.409845, 6.165652),
    "mouth_right": (2.774015, -2.080775, 5.048531),
    "mouth_left": (-2.774015, -2.080775, 5.048531),
    "lower_lip_center": (0.000000, -3.116408, 6.097667),
    "chin": (0.000000, -7.415691, 4.070434),
}


def _to_camera_frame(source: dict[str, tuple[float, float, float]]) -> dict[str, tuple[float, float, float]]:
    """Source frame -> OpenCV frame: every axis flips (x right, y down, z away), then centre."""
    points = -np.array([source[n] for n in POSE_REFERENCE_NAMES], dtype=np.float64)  # (14, 3)
    points -= points.mean(axis=0)
    return {n: (float(x), float(y), float(z)) for n, (x, y, z) in zip(POSE_REFERENCE_NAMES, points)}


#: Mean face in cm, OpenCV camera frame (x right, y down, z away), centred, frontal; see module doc.
MEAN_FACE_3D: dict[str, tuple[float, float, float]] = _to_camera_frame(_SOURCE_FACE)


def camera_matrix(crop_size: float) -> np.ndarray:
    """(3, 3) float64 intrinsics: fx = fy = crop_size, principal point at the crop's centre."""
    if not crop_size > 0:
        raise ValueError(f"crop_size must be positive, got {crop_size}")
    c = (crop_size - 1.0) / 2.0
    return np.array([[crop_size, 0.0, c], [0.0, crop_size, c], [0.0, 0.0, 1.0]], dtype=np.float64)


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Radians -> (3, 3) float64 ``R = Rz(roll) @ Rx(-pitch) @ Ry(-yaw)`` (face frame -> camera)."""
    y, p, r = yaw, pitch, roll
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    ry = np.array([[cy, 0.0, -sy], [0.0, 1.0, 0.0], [sy, 0.0, cy]])  # Ry(-yaw)
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, sp], [0.0, -sp, cp]])  # Rx(-pitch)
    rz = np.array([[cr, -sr, 0.0], [sr, cr, 0.0], [0.0, 0.0, 1.0]])  # Rz(roll)
    return rz @ rx @ ry


def rotation_to_euler(rotation: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (3,) float64 radians (yaw, pitch, roll); inverse of `rotation_matrix`."""
    r = np.asarray(rotation, dtype=np.float64)
    pitch = -math.asin(max(-1.0, min(1.0, r[2, 1])))
    yaw = math.atan2(r[2, 0], r[2, 2])
    roll = math.atan2(-r[0, 1], r[1, 1])
    return np.array([yaw, pitch, roll], dtype=np.float64)


@lru_cache(maxsize=64)
def _model_points(names: tuple[str, ...]) -> np.ndarray:
    """(R, 3) float64 mean-face points for the names; raises on unknown names."""
    unknown = [n for n in names if n not in MEAN_FACE_3D]
    if unknown:
        raise ValueError(f"unknown pose reference names {unknown}; known: {list(POSE_REFERENCE_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"pose reference names repeat: {list(names)}")
    points = np.array([MEAN_FACE_3D[n] for n in names], dtype=np.float64)
    points.flags.writeable = False
    return points


def euler_angles(points_2d: np.ndarray, names: Sequence[str], crop_size: float) -> np.ndarray:
    """(R, 2) crop pixels of the named reference points -> (3,) float64 radians (yaw, pitch, roll).

    Fits `MEAN_FACE_3D` with iterative (Levenberg-Marquardt) PnP from two starts, a frontal face at the
    distance implied by the points' spread and SQPnP's global solution, and keeps the fit with the
    face in front of the camera and the smaller reprojection error: a frontal face gives angles near
    zero (never a 180-degree flipped solution) and extreme poses do not stall in a local minimum.
    """
    image = np.asarray(points_2d, dtype=np.float64)
    if image.ndim != 2 or image.shape[1] != 2:
        raise ValueError(f"points_2d must be (R, 2), got shape {image.shape}")
    if len(names) != len(image):
        raise ValueError(f"{len(image)} points but {len(names)} names")
    if len(image) < MIN_POSE_REFERENCE_POINTS:
        raise ValueError(
            f"need at least {MIN_POSE_REFERENCE_POINTS} reference points for pose, got {len(image)}"
        )
    if not np.isfinite(image).all():
        raise ValueError("points_2d contains NaN or infinite values")
    model = _model_points(tuple(names))
    k = camera_matrix(crop_size)
    best, best_error = None, math.inf
    for rvec, tvec in _pose_seeds(model, image, k):
        ok, rvec, tvec = cv2.solvePnP(
            model, image, k, None, rvec, tvec, useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE
        )
        rotation = cv2.Rodrigues(rvec)[0]
        camera = model @ rotation.T + tvec.T  # (R, 3)
        if not ok or not np.isfinite(camera).all() or np.any(camera[:, 2] <= 0):
            continue
        error = float(((camera[:, :2] / camera[:, 2:] * k[0, 0] + k[:2, 2] - image) ** 2).sum())
        if error < best_error:
            best, best_error = rotation, error
    if best is None:
        raise ValueError("pose fit failed: no solution with the face in front of the camera")
    return rotation_to_euler(best)


def _pose_seeds(model: np.ndarray, image: np.ndarray, k: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Starting (rvec, tvec) pairs for the iterative fit: a frontal face placed from the points' centroid
    and spread (so frontal faces come out near zero), and SQPnP's global solution (for extreme poses)."""
    spread_image = float(np.sqrt(((image - image.mean(axis=0)) ** 2).sum(axis=1).mean()))
    spread_model = float(np.sqrt(((model[:, :2] - model[:, :2].mean(axis=0)) ** 2).sum(axis=1).mean()))
    if spread_image <= 1e-9:
        raise ValueError("reference points coincide: cannot fit a pose")
    depth = k[0, 0] * spread_model / spread_image
    offset = (image.mean(axis=0) - k[:2, 2]) * depth / k[0, 0] - model[:, :2].mean(axis=0)
    seeds = [(np.zeros((3, 1)), np.array([[offset[0]], [offset[1]], [depth]]))]
    try:
        ok, rvec, tvec = cv2.solvePnP(model, image, k, None, flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:
        ok = False
    if ok:
        seeds.append((rvec, tvec))
    return seeds

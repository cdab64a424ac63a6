import albumentations as A
import numpy as np
import pytest

from pfld.data.schemes import ibug_68
from pfld.data.transforms import SymmetricHorizontalFlip, build_eval_transform, build_train_transform

SCHEME = ibug_68()


def _flip(image, keypoints):
    transform = A.Compose(
        [SymmetricHorizontalFlip(SCHEME.flip_permutation, p=1.0)],
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )
    out = transform(image=image, keypoints=keypoints)
    return out["image"], np.asarray(out["keypoints"])[:, :2]


def test_flip_swaps_partners_and_twice_is_identity():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    points = rng.uniform(0, 111, (68, 2)).astype(np.float32)
    flipped_image, flipped = _flip(image, points)
    # point 36 (subject's right outer eye corner) now sits where 45 was, mirrored about pixel centres
    np.testing.assert_allclose(flipped[36], [111 - points[45, 0], points[45, 1]], atol=1e-4)
    np.testing.assert_allclose(flipped[30], [111 - points[30, 0], points[30, 1]], atol=1e-4)
    back_image, back = _flip(flipped_image, flipped)
    np.testing.assert_array_equal(back_image, image)
    np.testing.assert_allclose(back, points, atol=1e-4)


def test_flip_keeps_right_points_on_the_image_left(embedded_dir):
    from pfld.data.cache import build_face_cache
    from pfld.data.readers import read_landmark_csv

    faces = build_face_cache(read_landmark_csv(embedded_dir / "train.csv")[:20], 112, margin=1.0)
    for image, points in zip(faces.images, faces.landmarks, strict=True):
        _, flipped = _flip(image, points)
        assert (flipped[36, 0] < flipped[45, 0]) == (points[36, 0] < points[45, 0])


def test_flip_rejects_a_wrong_point_count():
    transform = A.Compose(
        [SymmetricHorizontalFlip(SCHEME.flip_permutation, p=1.0)],
        keypoint_params=A.KeypointParams(format="xy", remove_invisible=False),
    )
    with pytest.raises(ValueError, match="68 points, got 5"):
        transform(image=np.zeros((20, 20, 3), np.uint8), keypoints=np.ones((5, 2), np.float32))


def test_train_transform_keeps_every_point_and_moves_them_with_the_image():
    image = np.zeros((168, 168, 3), dtype=np.uint8)
    image[40:43, 100:103] = 255
    points = np.full((68, 2), [101.0, 41.0], dtype=np.float32)
    points[0] = [-50, -50]  # far outside: must survive
    transform = build_train_transform(
        112, 1.5, SCHEME.flip_permutation, flip=0.0, color=0.0, blur=0.0, occlusion=0.0, grayscale=0.0
    )
    for _ in range(5):
        out = transform(image=image, keypoints=points)
        keypoints = np.asarray(out["keypoints"])
        assert out["image"].shape == (112, 112, 3) and keypoints.shape[0] == 68
        ys, xs = np.nonzero(out["image"][:, :, 0] > 100)
        if len(xs):
            np.testing.assert_allclose([xs.mean(), ys.mean()], keypoints[5, :2], atol=1.5)


def test_eval_transform_is_the_centre_crop():
    image = np.arange(168 * 168 * 3, dtype=np.uint8).reshape(168, 168, 3)
    points = np.array([[28.0, 28.0]] * 68, dtype=np.float32)
    out = build_eval_transform(112)(image=image, keypoints=points)
    np.testing.assert_array_equal(out["image"], image[28:140, 28:140])
    np.testing.assert_allclose(np.asarray(out["keypoints"])[0, :2], [0, 0])

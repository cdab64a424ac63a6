import numpy as np
import pytest

from pfld.data.schemes import ibug_68
from pfld.data.transforms import (
    CentreCrop,
    FaceAugmentation,
    augmentation_matrix,
    build_eval_transform,
    build_train_transform,
    flip_points,
    yaw_homography,
)

SCHEME = ibug_68()
STILL = {
    "rotate_deg": 0.0,
    "scale": (1.0, 1.0),
    "shift": 0.0,
    "color": 0.0,
    "blur": 0.0,
    "occlusion": 0.0,
    "grayscale": 0.0,
}


def _flipped(image: np.ndarray, points: np.ndarray):
    out = FaceAugmentation(image.shape[0], SCHEME.flip_permutation, **{**STILL, "flip": 1.0})(image, points)
    return out.image, out.points


def test_flip_swaps_partners_and_twice_is_identity():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (112, 112, 3), dtype=np.uint8)
    points = rng.uniform(0, 111, (68, 2)).astype(np.float32)
    flipped_image, flipped = _flipped(image, points)
    np.testing.assert_array_equal(flipped_image, image[:, ::-1])  # a pure mirror, no resampling
    # point 36 (subject's right outer eye corner) now sits where 45 was, mirrored about pixel centres
    np.testing.assert_allclose(flipped[36], [111 - points[45, 0], points[45, 1]], atol=1e-4)
    np.testing.assert_allclose(flipped[30], [111 - points[30, 0], points[30, 1]], atol=1e-4)
    back_image, back = _flipped(flipped_image, flipped)
    np.testing.assert_array_equal(back_image, image)
    np.testing.assert_allclose(back, points, atol=1e-4)
    np.testing.assert_allclose(flip_points(points, 112, SCHEME.flip_permutation), flipped, atol=1e-4)


def test_flip_keeps_right_points_on_the_image_left(embedded_dir):
    from pfld.data.cache import build_face_cache
    from pfld.data.readers import read_landmark_csv

    faces = build_face_cache(read_landmark_csv(embedded_dir / "train.csv")[:20], 112, margin=1.0)
    for image, points in zip(faces.images, faces.landmarks, strict=True):
        _, flipped = _flipped(image, points)
        assert (flipped[36, 0] < flipped[45, 0]) == (points[36, 0] < points[45, 0])


def test_flip_rejects_a_wrong_point_count():
    with pytest.raises(ValueError, match="68 points, got 5"):
        _flipped(np.zeros((20, 20, 3), np.uint8), np.ones((5, 2), np.float32))
    with pytest.raises(ValueError, match="68 points, got 5"):
        flip_points(np.ones((5, 2)), 20, SCHEME.flip_permutation)


def test_train_transform_keeps_every_point_and_moves_them_with_the_image():
    """A lit 3x3 square moves with the point on it through every rotation, zoom, shift and flip."""
    image = np.zeros((168, 168, 3), dtype=np.uint8)
    image[40:43, 100:103] = 255
    points = np.full((68, 2), [101.0, 41.0], dtype=np.float32)
    points[0] = [-50, -50]  # far outside: must survive
    points[1] = np.nan  # unlabelled: stays so
    transform = build_train_transform(
        112, SCHEME.flip_permutation, flip=0.5, color=0.0, blur=0.0, occlusion=0.0, grayscale=0.0
    )
    seen = 0
    for _ in range(20):
        out = transform(image, points)
        assert (
            out.image.shape == (112, 112, 3) and out.image.dtype == np.uint8 and out.points.shape == (68, 2)
        )
        assert np.isnan(out.points[SCHEME.flip_permutation[1] if out.flipped else 1]).all()
        assert np.isfinite(out.points[SCHEME.flip_permutation[0] if out.flipped else 0]).all()
        ys, xs = np.nonzero(out.image[:, :, 0] > 100)
        if len(xs):
            seen += 1
            np.testing.assert_allclose([xs.mean(), ys.mean()], out.points[5], atol=1.0)
    assert seen >= 10


def test_the_turn_moves_points_with_the_image_and_keeps_the_other_draws():
    """With ``yaw_deg`` a lit square still moves with its point (one perspective warp), and the turn is
    drawn after the other numbers of a sample: its rotation, zoom, shift and flip are those of the same
    seed without it."""
    image = np.zeros((168, 168, 3), dtype=np.uint8)
    image[40:43, 120:123] = 255  # far right of the centre, where the turn moves it most
    points = np.full((68, 2), [121.0, 41.0], dtype=np.float32)
    settings = {"flip": 0.5, "color": 0.0, "blur": 0.0, "occlusion": 0.0, "grayscale": 0.0}
    turned, plain = (
        build_train_transform(112, SCHEME.flip_permutation, **settings, yaw_deg=y) for y in (30, 0)
    )
    seen, turns = 0, []
    for seed in range(20):  # seeded per sample, as training's sampler does
        turned.set_random_seed(seed)
        plain.set_random_seed(seed)
        out, without = turned(image, points), plain(image, points)
        assert (out.rotation_deg, out.flipped) == (without.rotation_deg, without.flipped)
        assert without.yaw_deg == 0.0 and -30 <= out.yaw_deg <= 30
        turns.append(abs(out.points[5, 0] - without.points[5, 0]))
        ys, xs = np.nonzero(out.image[:, :, 0] > 100)
        if len(xs):
            seen += 1
            np.testing.assert_allclose([xs.mean(), ys.mean()], out.points[5], atol=1.0)
    assert seen >= 10 and max(turns) > 3  # the turn moved the point, and the image with it


def test_a_positive_turn_pushes_the_image_right_away():
    """Positive yaw (the nose toward the image's right) shrinks the right side and grows the left,
    about the crop's centre, which stays put; vertical lines stay vertical."""
    h = yaw_homography(112, 30.0)
    c = 55.5

    def move(x, y):
        p = h @ [x, y, 1.0]
        return p[:2] / p[2]

    np.testing.assert_allclose(move(c, c), [c, c], atol=1e-9)
    np.testing.assert_allclose(move(c, 10.0), [c, 10.0], atol=1e-9)
    right, left = move(c + 40, c)[0] - c, c - move(c - 40, c)[0]
    assert 0 < right < 40 * np.cos(np.radians(30)) < left
    top, bottom = move(c + 40, c - 20), move(c + 40, c + 20)
    assert top[0] == pytest.approx(bottom[0]) and bottom[1] - top[1] < 40  # farther, so smaller


def test_augmentation_matrix_is_the_centre_crop_when_still():
    matrix = augmentation_matrix(168, 112)
    np.testing.assert_allclose(matrix, [[1, 0, -28], [0, 1, -28]])
    rotated = augmentation_matrix(168, 112, rotation_deg=90)
    # counter-clockwise as seen: a point right of the centre goes above it (y down)
    np.testing.assert_allclose(rotated @ [83.5 + 10, 83.5, 1], [55.5, 55.5 - 10], atol=1e-9)
    flipped = augmentation_matrix(168, 112, flipped=True)
    np.testing.assert_allclose(flipped @ [28, 28, 1], [111, 0], atol=1e-9)


def test_eval_transform_is_the_centre_crop():
    image = np.arange(168 * 168 * 3, dtype=np.uint8).reshape(168, 168, 3)
    points = np.array([[28.0, 28.0]] * 68, dtype=np.float32)
    out = build_eval_transform(112)(image, points)
    np.testing.assert_array_equal(out.image, image[28:140, 28:140])
    np.testing.assert_allclose(out.points[0], [0, 0])
    assert out.rotation_deg == 0.0 and not out.flipped
    with pytest.raises(ValueError, match="no centred 112-pixel policy crop"):
        CentreCrop(112)(image[:, :167], points)


def test_the_still_warp_equals_the_centre_crop():
    """With every step off, the one warp of training is exactly the evaluation crop."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (168, 168, 3), dtype=np.uint8)
    points = rng.uniform(0, 167, (68, 2)).astype(np.float32)
    trained = FaceAugmentation(112, SCHEME.flip_permutation, **{**STILL, "flip": 0.0})(image, points)
    evaluated = CentreCrop(112)(image, points)
    np.testing.assert_array_equal(trained.image, evaluated.image)
    np.testing.assert_allclose(trained.points, evaluated.points, atol=1e-4)


def test_same_seed_same_draws_and_photometric_steps_follow_it():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 255, (168, 168, 3), dtype=np.uint8)
    points = rng.uniform(0, 167, (68, 2)).astype(np.float32)
    everything = {"color": 1.0, "blur": 1.0, "occlusion": 1.0, "grayscale": 0.5}
    runs = []
    for _ in range(2):
        transform = FaceAugmentation(112, SCHEME.flip_permutation, **everything)
        transform.set_random_seed(11)
        runs.append([transform(image, points) for _ in range(3)])
    for first, second in zip(*runs, strict=True):
        np.testing.assert_array_equal(first.image, second.image)
        np.testing.assert_array_equal(first.points, second.points)
    assert not np.array_equal(runs[0][0].image, runs[0][1].image)


def test_unknown_or_bad_augmentation_settings_are_refused():
    with pytest.raises(ValueError, match=r"unknown data.augmentation keys \['rotation'\]"):
        build_train_transform(112, SCHEME.flip_permutation, rotation=10)
    with pytest.raises(ValueError, match="augmentation.flip is a probability"):
        build_train_transform(112, SCHEME.flip_permutation, flip=2)
    with pytest.raises(ValueError, match="augmentation.scale"):
        build_train_transform(112, SCHEME.flip_permutation, scale=(1.1, 0.9))
    with pytest.raises(ValueError, match=r"augmentation.yaw_deg is a turn in degrees in \[0, 90\)"):
        build_train_transform(112, SCHEME.flip_permutation, yaw_deg=-5)


def test_colour_matrix_is_torchvisions_jitter_in_one_pass(embedded_dir):
    import cv2

    from pfld.data.cache import build_face_cache
    from pfld.data.readers import read_landmark_csv
    from pfld.data.transforms import LUMA, color_matrix

    crops = build_face_cache(read_landmark_csv(embedded_dir / "val.csv")[:6], 112, margin=1.0).images
    image = crops[0].astype(np.float64)
    grey = image @ LUMA  # (S, S)
    mean_grey = float(grey.mean())

    def apply(matrix: np.ndarray, picture: np.ndarray = image) -> np.ndarray:
        return picture @ matrix[:, :3].T + matrix[:, 3]

    np.testing.assert_allclose(apply(color_matrix(1, 1, 1, 0, mean_grey)), image, atol=1e-9)
    np.testing.assert_allclose(apply(color_matrix(1.3, 1, 1, 0, mean_grey)), 1.3 * image, atol=1e-9)
    np.testing.assert_allclose(
        apply(color_matrix(1, 0.7, 1, 0, mean_grey)), 0.7 * image + 0.3 * mean_grey, atol=1e-9
    )
    np.testing.assert_allclose(
        apply(color_matrix(1, 1, 0.7, 0, mean_grey)), 0.7 * image + 0.3 * grey[..., None], atol=1e-9
    )
    greys = np.repeat(np.linspace(0, 255, 7)[:, None], 3, axis=1)
    np.testing.assert_allclose(apply(color_matrix(1, 1, 1, 0.05, 0), greys), greys, atol=1e-9)
    # the hue turn approximates an HSV hue shift: at the largest turn used, 18 degrees, about 5 levels
    differences = []
    for crop in crops:
        hsv = cv2.cvtColor(crop, cv2.COLOR_RGB2HSV_FULL).astype(int)
        hsv[..., 0] = (hsv[..., 0] + round(0.05 * 256)) % 256
        shifted = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB_FULL).astype(int)
        ours = cv2.transform(crop, color_matrix(1, 1, 1, 0.05, 0)).astype(int)
        differences.append(np.abs(ours - shifted).mean())
    assert np.mean(differences) < 7.0, differences

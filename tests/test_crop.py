import numpy as np
import pytest

from pfld.data.crop import crop_face, crop_matrix, from_unit, square_box, to_unit, warp_points


def test_square_box_is_centred_and_scaled():
    points = np.array([[10, 20], [50, 40], [30, 30]], dtype=np.float32)
    np.testing.assert_allclose(square_box(points, 1.2), [30, 30, 48])


def test_box_edges_map_to_unit_square_edges():
    points = np.array([[10, 20], [50, 60]], dtype=np.float32)
    matrix = crop_matrix(square_box(points, 1.0), out_size=112)
    np.testing.assert_allclose(to_unit(warp_points(points, matrix), 112), [[0, 0], [1, 1]], atol=1e-6)


def test_unit_round_trip():
    points = np.random.default_rng(0).uniform(0, 111, (10, 2)).astype(np.float32)
    np.testing.assert_allclose(from_unit(to_unit(points, 112), 112), points, atol=1e-4)


def test_crop_face_moves_pixels_with_points():
    """A bright dot under a landmark stays under the warped landmark, for zoom in and out."""
    image = np.zeros((300, 400, 3), dtype=np.uint8)
    points = np.array([[120, 80], [260, 90], [200, 230], [151, 141]], dtype=np.float32)
    image[140:143, 150:153] = 255  # dot centred on the last point
    for out_size in (64, 224):
        crop, warped = crop_face(image, points, out_size, crop_scale=1.2, margin=1.5)
        ys, xs = np.nonzero(crop[:, :, 0] > 40)
        weights = crop[ys, xs, 0].astype(np.float64)
        centre = np.array([np.average(xs, weights=weights), np.average(ys, weights=weights)])
        np.testing.assert_allclose(centre, warped[-1], atol=0.6)


def test_crop_outside_photo_is_black():
    image = np.full((50, 50, 3), 200, dtype=np.uint8)
    points = np.array([[0, 0], [20, 20]], dtype=np.float32)
    crop, _ = crop_face(image, points, 40, crop_scale=2.0)
    assert crop[0, 0].max() == 0 and crop[-1, -1].max() == 200


def test_degenerate_landmarks_fail():
    with pytest.raises(ValueError, match="no area"):
        square_box(np.zeros((5, 2), dtype=np.float32))

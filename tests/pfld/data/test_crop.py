import cv2
import numpy as np
import pytest

from pfld.data.crop import crop_face, crop_matrix, from_unit, image_points, square_box, to_unit, warp_points


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


@pytest.mark.parametrize(("out_size", "margin"), [(112, 1.0), (64, 1.5), (256, 1.0)])
def test_points_to_crop_to_unit_and_back_to_the_photo(out_size: int, margin: float) -> None:
    """The deployment round trip: photo pixels -> crop pixels -> model units -> crop pixels -> photo pixels."""
    points = np.random.default_rng(out_size).uniform(-20, 500, (68, 2)).astype(np.float32)
    box = square_box(points, 1.2)
    units = to_unit(warp_points(points, crop_matrix(box, out_size, margin)), out_size)
    back = image_points(from_unit(units, out_size), box, out_size, margin)
    np.testing.assert_allclose(back, points, atol=2e-3)  # float32 of pixel values up to 500


def test_pixel_centres_sit_at_half_pixels_of_the_crop() -> None:
    """A single lit pixel, cropped without scaling at a whole-pixel offset, lands on exactly one crop
    pixel i, whose centre is (i + 0.5) / size in model units; and it maps back to the lit pixel."""
    image = np.zeros((100, 120, 3), dtype=np.uint8)
    image[25, 40] = 255  # x = 40, y = 25 (0-based, pixel centres on integers)
    box = np.array([50.5, 40.5, 64.0])  # centre (50.5, 40.5), side 64: crop x = photo x - 19, y = y - 9
    (warped,) = warp_points(np.array([[40.0, 25.0]], np.float32), crop_matrix(box, 64))
    crop = cv2.warpAffine(image, crop_matrix(box, 64), (64, 64), flags=cv2.INTER_LINEAR)
    assert list(zip(*np.nonzero(crop[:, :, 0]))) == [(16, 21)]  # row 25 - 9, column 40 - 19
    assert crop[16, 21, 0] == 255
    np.testing.assert_allclose(warped, [21, 16], atol=1e-6)
    np.testing.assert_allclose(to_unit(warped[None], 64), [[21.5 / 64, 16.5 / 64]], atol=1e-7)
    np.testing.assert_allclose(image_points(warped[None], box, 64), [[40, 25]], atol=1e-6)

"""Kaggle "Facial Keypoints Detection": both readers, their errors, `python -m data kaggle`, submissions.

Fixture: tests/data/kaggle, six Helen training faces and two AFW test faces in both layouts, written by
scripts/make_kaggle_fixture.py (see tests/data/README.md).
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

from pfld.cli.data import KAGGLE_IMAGES
from pfld.cli.data import main as data_main
from pfld.data.readers.kaggle import (
    kaggle_columns,
    kaggle_records,
    read_kaggle_csv,
    read_kaggle_npz,
    read_kaggle_test,
)
from pfld.data.schemes import load_scheme
from pfld.data.store import load_faces
from pfld.evaluation.kaggle import write_submission
from tests.conftest import FIXTURES
from tests.helpers import from_ibug68

KAGGLE = FIXTURES / "kaggle"
TRAINING, TEST, LOOKUP = KAGGLE / "training.csv", KAGGLE / "test.csv", KAGGLE / "IdLookupTable.csv"
NPZ, KEYPOINTS = KAGGLE / "face_images.npz", KAGGLE / "facial_keypoints.csv"
#: The four points most Kaggle faces have: left and right eye centre, nose tip, bottom lip.
CORE = [0, 1, 10, 14]


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def _write_rows(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def _faces68(split: str) -> tuple[list[list[str]], np.ndarray]:
    """faces68.csv's rows of ``split`` and their (N, 68, 2) points in pixels of the 96 px crop."""
    rows = [row for row in _rows(KAGGLE / "faces68.csv")[1:] if row[0] == split]
    return rows, np.array([row[6:] for row in rows], dtype=np.float64).reshape(len(rows), 68, 2)


def test_training_csv_reads_every_face_with_missing_points_as_nan():
    faces = read_kaggle_csv(TRAINING)
    assert len(faces) == 6 and faces.images.shape == (6, 96, 96) and faces.images.dtype == np.uint8
    labelled = ~np.isnan(faces.landmarks[..., 0])  # (6, 15)
    only_core = np.zeros(15, dtype=bool)
    only_core[CORE] = True
    assert sum((face == only_core).all() for face in labelled) == 4, "Kaggle's usual four points"
    assert labelled.all(axis=1).sum() == 1 and faces.missing_points == 45
    assert faces.sources[0] == f"{TRAINING}:2" and faces.image_ids.tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(faces.landmarks[0, 0], [67.63, 36.8386])  # left_eye_center of line 2
    pixels = _rows(TRAINING)[1][-1].split()
    assert faces.images[0, 0, 1] == int(pixels[1]) and faces.images[0, 1, 0] == int(pixels[96]), "row-major"
    assert list(kaggle_columns()) == _rows(TRAINING)[0][:-1]


def test_npz_variant_reads_the_same_faces():
    from_csv, from_npz = read_kaggle_csv(TRAINING), read_kaggle_npz(NPZ)
    np.testing.assert_array_equal(from_npz.images, from_csv.images)
    np.testing.assert_array_equal(from_npz.landmarks, from_csv.landmarks)
    assert from_npz.sources[5] == f"{KEYPOINTS}:7"


def test_npz_array_may_have_any_name_and_dtype(tmp_path):
    with np.load(NPZ) as data:
        images = data["face_images"]
    np.savez(tmp_path / "faces.npz", whatever=images.astype(np.float64))
    shutil.copy(KEYPOINTS, tmp_path / "points.csv")
    faces = read_kaggle_npz(tmp_path / "faces.npz", tmp_path / "points.csv")
    np.testing.assert_array_equal(faces.images, np.moveaxis(images, 2, 0))


def test_test_csv_has_ids_and_no_points():
    faces = read_kaggle_test(TEST)
    assert len(faces) == 2 and faces.image_ids.tolist() == [1, 2] and np.isnan(faces.landmarks).all()


def _broken_training(tmp_path: Path, line: int, column: str, edit) -> Path:
    rows = _rows(TRAINING)
    index = rows[0].index(column)
    rows[line - 1][index] = edit(rows[line - 1][index])
    return _write_rows(tmp_path / "training.csv", rows)


@pytest.mark.parametrize(
    ("line", "column", "edit", "message"),
    [
        (4, "Image", lambda text: text.rsplit(" ", 1)[0], r"training.csv:4: Image has 9215 pixel values, expected 9216"),
        (3, "Image", lambda text: "12 x7 " + text.split(" ", 2)[2], r"training.csv:3: Image pixel 2 is 'x7', not a number"),
        (2, "Image", lambda text: "300 " + text.split(" ", 1)[1], r"training.csv:2: Image pixel 1 is 300, outside 0-255"),
        (5, "nose_tip_y", lambda _: "4l.5", r"training.csv:5: nose_tip_y is '4l.5', not a number"),
        (6, "nose_tip_y", lambda _: "", r"training.csv:6: nose_tip has one coordinate and not the other"),
    ],
)  # fmt: skip
def test_bad_training_rows_name_file_line_and_problem(tmp_path, line, column, edit, message):
    path = _broken_training(tmp_path, line, column, edit)
    with pytest.raises(ValueError, match=message):
        read_kaggle_csv(path)
    reported = []
    faces = read_kaggle_csv(path, on_error=reported.append)  # or reported and skipped
    assert len(faces) == 5 and len(reported) == 1 and f"training.csv:{line}" in reported[0]


def test_missing_coordinate_column_is_named(tmp_path):
    rows = _rows(TRAINING)
    index = rows[0].index("mouth_left_corner_y")
    path = _write_rows(tmp_path / "training.csv", [row[:index] + row[index + 1 :] for row in rows])
    with pytest.raises(ValueError, match=r"training.csv:1: the header has no column mouth_left_corner_y"):
        read_kaggle_csv(path)
    rows = [row[:index] + row[index + 1 :] for row in _rows(KEYPOINTS)]
    with pytest.raises(ValueError, match=r"facial_keypoints.csv:1: .*no column mouth_left_corner_y"):
        read_kaggle_npz(NPZ, _write_rows(tmp_path / "facial_keypoints.csv", rows))


def test_bad_test_csv_rows(tmp_path):
    rows = _rows(TEST)
    rows[2][1] = rows[2][1] + " 7"
    with pytest.raises(ValueError, match=r"test.csv:3: Image has 9217 pixel values"):
        read_kaggle_test(_write_rows(tmp_path / "test.csv", rows))
    rows = _rows(TEST)
    rows[1][0] = "one"
    with pytest.raises(ValueError, match=r"test.csv:2: ImageId 'one' is not a positive whole number"):
        read_kaggle_test(_write_rows(tmp_path / "test.csv", rows))
    with pytest.raises(ValueError, match=r"test.csv:1: the header has no column ImageId"):
        read_kaggle_test(_write_rows(tmp_path / "test.csv", [["Id", "Image"], *rows[1:]]))


def test_bad_npz_variant(tmp_path):
    rows = _rows(KEYPOINTS)
    with pytest.raises(ValueError, match=r"face_images.npz: 6 images, but .*facial_keypoints.csv has 5 rows"):
        read_kaggle_npz(NPZ, _write_rows(tmp_path / "facial_keypoints.csv", rows[:-1]))
    rows[3][rows[0].index("left_eye_center_x")] = "left"
    with pytest.raises(
        ValueError, match=r"facial_keypoints.csv:4: left_eye_center_x is 'left', not a number"
    ):
        read_kaggle_npz(NPZ, _write_rows(tmp_path / "facial_keypoints.csv", rows))
    with np.load(NPZ) as data:
        images = data["face_images"]
    np.savez(tmp_path / "two.npz", a=images, b=images)
    with pytest.raises(ValueError, match=r"two.npz: holds 2 arrays \(a, b\); expected exactly one"):
        read_kaggle_npz(tmp_path / "two.npz", KEYPOINTS)
    np.savez(tmp_path / "first.npz", face_images=np.moveaxis(images, 2, 0))
    with pytest.raises(ValueError, match=r"first.npz: array 'face_images' has shape \(6, 96, 96\)"):
        read_kaggle_npz(tmp_path / "first.npz", KEYPOINTS)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match=r"junk.npz: not a readable npz file"):
        read_kaggle_npz(tmp_path / "junk.npz", KEYPOINTS)


def test_a_face_too_sparse_to_crop_is_reported(tmp_path):
    faces = read_kaggle_csv(TRAINING)
    faces.landmarks[2, 1:] = np.nan  # one labelled point left
    reported = []
    records = kaggle_records(faces, tmp_path, on_error=reported.append)
    assert len(records) == 5 and "training.csv:4: 1 labelled points" in reported[0]


@pytest.mark.parametrize("layout", ["csv", "npz"])
def test_python_m_data_kaggle_prepares_every_face(tmp_path, capsys, layout):
    train = TRAINING if layout == "csv" else NPZ
    manifest = data_main(["kaggle", "--train", str(train), "--test", str(TEST), "--out", str(tmp_path)])
    assert manifest["settings"]["scheme"] == "kaggle15" and manifest["splits"]["train"]["faces"] == 6
    assert manifest["settings"]["crop_policy"] == {
        "crop_size": 96, "crop_scale": 1.0, "margin": 1.0, "box_source": "dataset"
    }  # fmt: skip
    faces, read = load_faces(tmp_path / "train"), read_kaggle_csv(TRAINING)
    assert faces.images.shape == (6, 96, 96, 3) and faces.border == 0
    np.testing.assert_array_equal(faces.images, np.repeat(read.images[..., None], 3, axis=3))
    np.testing.assert_allclose(faces.landmarks, read.landmarks, atol=1e-4)  # the crop is the image
    out = capsys.readouterr().out
    assert "6 training faces (0 skipped), 5 of them with missing points; 45 of 90 points missing" in out
    assert "test: 2 faces, not prepared" in out
    assert not (tmp_path / KAGGLE_IMAGES).exists()


def test_submission_round_trip(tmp_path):
    _, points68 = _faces68("test")
    truth = from_ibug68(points68, "kaggle15")
    truth[1, 10] = [-3.0, 120.0]  # a nose tip predicted outside the image is clipped to it
    count = write_submission(truth, LOOKUP, tmp_path / "submission.csv")
    lookup, written = _rows(LOOKUP), _rows(tmp_path / "submission.csv")
    assert count == len(lookup) - 1 == 38 and written[0] == ["RowId", "Location"]
    columns = list(kaggle_columns())
    for (row_id, image_id, feature, _), (out_id, location) in zip(lookup[1:], written[1:], strict=True):
        expected = np.clip(truth[int(image_id) - 1].reshape(-1)[columns.index(feature)], 0, 96)
        assert out_id == row_id and float(location) == pytest.approx(expected, abs=1e-4)
    assert ["nose_tip_x", "nose_tip_y"] == [r[2] for r in lookup[1:] if r[1] == "2" and "nose" in r[2]]
    assert {float(r[1]) for r in written[-8:]} >= {0.0, 96.0}


def test_submission_errors_name_the_line(tmp_path):
    predictions = np.full((2, 15, 2), 48.0)
    rows = _rows(LOOKUP)
    rows[2][2] = "nose_x"
    with pytest.raises(
        ValueError, match=r"IdLookupTable.csv:3: FeatureName 'nose_x' is not a kaggle15 column"
    ):
        write_submission(predictions, _write_rows(tmp_path / "IdLookupTable.csv", rows), tmp_path / "s.csv")
    rows = _rows(LOOKUP)
    rows[5][1] = "3"
    with pytest.raises(ValueError, match=r"IdLookupTable.csv:6: ImageId 3 is outside 1..2"):
        write_submission(predictions, _write_rows(tmp_path / "IdLookupTable.csv", rows), tmp_path / "s.csv")
    with pytest.raises(ValueError, match=r"x.csv:2: ImageId 2 is outside 1..1"):
        write_submission(
            predictions[:1], _write_rows(tmp_path / "x.csv", [rows[0], rows[-1]]), tmp_path / "s.csv"
        )
    with pytest.raises(ValueError, match=r"shape \(N, 15, 2\)"):
        write_submission(np.zeros((2, 68, 2)), LOOKUP, tmp_path / "s.csv")
    assert not (tmp_path / "s.csv").exists()


def test_fixture_points_agree_with_their_68_point_annotation():
    rows, points68 = _faces68("train")
    derived = from_ibug68(points68, "kaggle15")
    faces = read_kaggle_csv(TRAINING)
    labelled = ~np.isnan(faces.landmarks)
    np.testing.assert_allclose(faces.landmarks[labelled], derived[labelled], atol=1e-3)
    scheme = load_scheme("kaggle15")
    right, left = (list(side) for side in zip(*scheme.flip_pairs, strict=True))
    assert (derived[:, right, 0] < derived[:, left, 0]).all(), "the subject's left has the larger x"
    assert [int(row[1]) for row in rows] == [1, 2, 3, 4, 5, 6]


def test_fixture_68_points_are_the_shared_annotation_in_the_crop(shared_dir):
    for split in ("train", "test"):
        rows, points68 = _faces68(split)
        for row, points in zip(rows, points68, strict=True):
            body = (shared_dir / row[2]).read_text().split("{")[1].split("}")[0]
            photo = np.asarray(body.split(), dtype=np.float64).reshape(68, 2) - 1.0  # .pts is 1-based
            left, top, side = (float(v) for v in row[3:6])
            expected = (photo - [left, top] + 0.5) * (96 / side) - 0.5
            np.testing.assert_allclose(points, expected, atol=1e-3, err_msg=row[2])

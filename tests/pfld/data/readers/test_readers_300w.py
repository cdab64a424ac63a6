"""`read_300w`: the standard splits over a 300W-layout fixture folder (tests/data/300w)."""

import shutil

import cv2
import numpy as np
import pytest

from pfld.data.readers import read_300w, read_coco_keypoints
from tests.conftest import FIXTURES

ROOT = FIXTURES / "300w"


def test_split_composition():
    counts = {split: len(read_300w(ROOT, split)) for split in ("train", "common", "challenging", "full")}
    assert counts == {"train": 6, "common": 2, "challenging": 2, "full": 4}
    train = read_300w(ROOT, "train")
    assert [r.identity for r in train] == [
        "afw/111076519",  # two faces of one photo share it
        "afw/111076519",
        "helen/trainset/100032540",
        "helen/trainset/1002681492",
        "lfpw/trainset/image_0001",  # LFPW: the whole stem, not "image"
        "lfpw/trainset/image_0002",
    ]
    full = read_300w(ROOT, "full")
    assert [r.identity for r in full] == [
        "helen/testset/1004467229",
        "lfpw/testset/image_0001",
        "ibug/image_003",
        "ibug/image_006",
    ]
    assert not {r.identity for r in train} & {r.identity for r in full}
    assert all(r.landmarks.shape == (68, 2) and r.image_path.is_file() for r in train + full)
    assert [r.identity for r in read_300w(ROOT, "common")] == [r.identity for r in full[:2]]


def test_points_are_zero_based_pixels_of_the_downscaled_image():
    """ibug/image_003_1 is mmpose's 300W indoor_029 (0-based COCO), downscaled, written 1-based."""
    coco = {r.image_path.name: r for r in read_coco_keypoints(FIXTURES / "coco" / "300w" / "test_300w.json")}
    source = coco["indoor_029.png"]
    (record, _) = read_300w(ROOT, "challenging")
    assert record.image_path.name == "image_003_1.jpg"
    (height, width), (small_height, small_width) = (
        cv2.imread(str(p)).shape[:2] for p in (source.image_path, record.image_path)
    )
    scale = np.asarray([small_width / width, small_height / height], dtype=np.float32)
    np.testing.assert_allclose(record.landmarks, (source.landmarks + 0.5) * scale - 0.5, atol=2e-3)


def test_missing_subset_folder_is_named(tmp_path):
    shutil.copytree(ROOT, tmp_path / "300W")
    shutil.rmtree(tmp_path / "300W" / "lfpw" / "testset")
    assert len(read_300w(tmp_path / "300W", "train")) == 6
    with pytest.raises(FileNotFoundError, match=r"'common' needs the folder\(s\) .*300W/lfpw/testset"):
        read_300w(tmp_path / "300W", "common")
    with pytest.raises(FileNotFoundError, match=r"nowhere: 300W folder not found"):
        read_300w(tmp_path / "nowhere", "train")
    with pytest.raises(ValueError, match=r"unknown 300W split 'test'"):
        read_300w(ROOT, "test")


def test_bad_file_is_skipped_and_reported(tmp_path):
    shutil.copytree(ROOT, tmp_path / "300W")
    (tmp_path / "300W" / "ibug" / "image_006_1.pts").write_text("1 2\n3 4\n")
    with pytest.raises(ValueError, match=r"image_006_1\.pts: expected 68 points, found 2"):
        read_300w(tmp_path / "300W", "full")
    messages: list[str] = []
    records = read_300w(tmp_path / "300W", "full", on_error=messages.append)
    assert len(records) == 3 and len(messages) == 1 and "image_006_1.pts" in messages[0]

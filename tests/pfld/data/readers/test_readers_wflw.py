"""`read_wflw` / `read_wflw_split` on a WFLW-layout fixture made from mmpose's WFLW faces."""

import shutil

import numpy as np
import pytest

from pfld.data.readers import read_coco_keypoints, read_wflw, read_wflw_split
from tests.conftest import FIXTURES

ROOT = FIXTURES / "wflw"
TRAIN = ROOT / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / "list_98pt_rect_attr_train.txt"


def test_split_reads_points_box_flags_and_path():
    (face,) = read_wflw_split(ROOT, "train")
    assert (
        face.image_path
        == ROOT / "WFLW_images" / "36--Football" / "36_Football_americanfootball_ball_36_415.jpg"
    )
    assert face.image_path.is_file()
    assert face.identity == "36--Football/36_Football_americanfootball_ball_36_415.jpg"
    assert face.source == f"{TRAIN}:1"
    assert face.landmarks.shape == (98, 2) and face.visible.all()
    np.testing.assert_allclose(face.landmarks[0], [440.696106, 132.732559], atol=1e-4)  # 0-based, as given
    np.testing.assert_allclose(face.box, [432.3053162, 113.7500775, 532.9947938, 214.8250155], atol=1e-3)
    # made-up flags (tests/data/README.md)
    assert face.flags == {
        "pose": False,
        "expression": True,
        "illumination": False,
        "make_up": False,
        "occlusion": True,
        "blur": False,
    }
    test = read_wflw_split(ROOT, "test")
    assert len(test) == 3 and len({r.identity for r in test}) == 1  # three faces of one photo
    assert [r.flags["blur"] for r in test] == [False, True, False]


def test_matches_the_coco_json_it_was_made_from():
    wflw = read_wflw_split(ROOT, "test") + read_wflw_split(ROOT, "train")
    coco = read_coco_keypoints(FIXTURES / "coco" / "wflw" / "test_wflw.json")
    by_first_point = {tuple(np.round(r.landmarks[0], 3)): r for r in coco}
    for record in wflw:
        twin = by_first_point[tuple(np.round(record.landmarks[0], 3))]
        assert twin.image_path.name == record.image_path.name
        np.testing.assert_allclose(record.landmarks, twin.landmarks, atol=1e-4)
        np.testing.assert_allclose(record.box, twin.box, atol=1e-3)


def _lines() -> list[str]:
    return TRAIN.read_text().splitlines()


def test_errors_name_file_and_line(tmp_path):
    good = _lines()[0]
    fields = good.split()
    short = " ".join(fields[:2] + fields[4:])  # one point fewer
    flag = " ".join(fields[:-2] + ["2", fields[-1]])
    word = " ".join(["x"] + fields[1:])
    lost = " ".join(fields[:-1] + ["36--Football/missing.jpg"])
    cases = {
        short: r"bad\.txt:2: expected 98 points, found 97",
        flag: r"bad\.txt:2: flag blur must be 0 or 1, got '2'",
        word: r"bad\.txt:2: 'x' is not a number",
        lost: r"bad\.txt:2: image .*missing\.jpg not found",
    }
    bad = tmp_path / "bad.txt"
    for line, message in cases.items():
        bad.write_text(f"{good}\n{line}\n")
        with pytest.raises((ValueError, FileNotFoundError), match=message):
            read_wflw(bad, ROOT / "WFLW_images")


def test_bad_lines_are_skipped_and_reported(tmp_path):
    good = _lines()[0]
    bad = tmp_path / "list.txt"
    bad.write_text(f"{good}\n\n{' '.join(good.split()[2:])}\n{good}\n")
    messages: list[str] = []
    records = read_wflw(bad, ROOT / "WFLW_images", on_error=messages.append)
    assert [r.source for r in records] == [f"{bad}:1", f"{bad}:4"]
    assert len(messages) == 1 and f"{bad}:3: expected 98 points, found 97" in messages[0]
    bad.write_text("\n")
    with pytest.raises(ValueError, match=r"list\.txt: no faces read"):
        read_wflw(bad, ROOT / "WFLW_images", on_error=messages.append)


def test_split_says_where_it_looked(tmp_path):
    shutil.copytree(ROOT, tmp_path / "WFLW")
    (
        tmp_path
        / "WFLW"
        / "WFLW_annotations"
        / "list_98pt_rect_attr_train_test"
        / "list_98pt_rect_attr_test.txt"
    ).unlink()
    assert len(read_wflw_split(tmp_path / "WFLW", "train")) == 1
    with pytest.raises(
        FileNotFoundError, match=r"list_98pt_rect_attr_test\.txt: WFLW test annotation file not found"
    ):
        read_wflw_split(tmp_path / "WFLW", "test")
    shutil.rmtree(tmp_path / "WFLW" / "WFLW_images")
    with pytest.raises(FileNotFoundError, match=r"WFLW_images: WFLW image folder not found \(looked in"):
        read_wflw_split(tmp_path / "WFLW", "train")
    with pytest.raises(ValueError, match="unknown WFLW split 'val'"):
        read_wflw_split(ROOT, "val")

"""`read_coco_keypoints` on mmpose's COCO-style face fixtures (WFLW 98, 300W 68, COFW 29 points)."""

import json
from pathlib import Path

import numpy as np
import pytest

from pfld.data.readers import read_coco_keypoints
from tests.conftest import FIXTURES

COCO = FIXTURES / "coco"


@pytest.mark.parametrize(("name", "faces", "points"), [("wflw", 4, 98), ("300w", 2, 68), ("cofw", 2, 29)])
def test_reads_each_fixture(name, faces, points):
    records = read_coco_keypoints(COCO / name / f"test_{name}.json")
    assert len(records) == faces
    assert all(r.landmarks.shape == (points, 2) and r.visible.all() for r in records)
    assert all(r.image_path.is_file() and r.image_path.parent == COCO / name for r in records)
    assert all(r.box is not None for r in records)


def test_box_identity_and_values():
    records = read_coco_keypoints(COCO / "wflw" / "test_wflw.json", num_points=98)
    first = records[0]
    assert first.identity == "36_Football_americanfootball_ball_36_415.jpg"
    np.testing.assert_allclose(first.landmarks[0], [440.696106, 132.732559], atol=1e-4)
    # bbox [x, y, w, h] -> x_min, y_min, x_max, y_max
    np.testing.assert_allclose(first.box, [432.3053162, 113.7500775, 532.9947938, 214.8250155], atol=1e-3)
    assert first.source.endswith("test_wflw.json: annotations[0] (id 2)")
    assert len({r.identity for r in records[1:]}) == 1  # three faces of one photo


def _cofw_copy(tmp_path: Path, edit) -> Path:
    data = json.loads((COCO / "cofw" / "test_cofw.json").read_text())
    edit(data)
    path = tmp_path / "cofw.json"
    path.write_text(json.dumps(data))
    return path


def test_v_zero_is_not_labelled(tmp_path):
    def hide(data):
        keypoints = data["annotations"][0]["keypoints"]
        for point in (0, 3):
            keypoints[3 * point : 3 * point + 3] = [0, 0, 0]

    records = read_coco_keypoints(_cofw_copy(tmp_path, hide), COCO / "cofw")
    assert np.flatnonzero(~records[0].visible).tolist() == [0, 3]
    assert np.isnan(records[0].landmarks[[0, 3]]).all()
    assert records[1].visible.all()


def test_wrong_count_is_reported_and_skipped(tmp_path):
    def cut(data):
        data["annotations"][1]["keypoints"] = data["annotations"][1]["keypoints"][:-3]

    path = _cofw_copy(tmp_path, cut)
    with pytest.raises(
        ValueError, match=r"cofw\.json: annotations\[1\] \(id 1805\): expected 29 points, found 28"
    ):
        read_coco_keypoints(path, COCO / "cofw")
    messages: list[str] = []
    (record,) = read_coco_keypoints(path, COCO / "cofw", on_error=messages.append)
    assert record.image_path.name == "001766.jpg" and len(messages) == 1 and "found 28" in messages[0]
    with pytest.raises(ValueError, match=r"expected 28 points, found 29"):
        read_coco_keypoints(path, COCO / "cofw", num_points=28)


def test_file_errors(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"cofw\.json: annotations\[0\] \(id 1766\): image .*001766\.jpg not found"
    ):
        read_coco_keypoints(_cofw_copy(tmp_path, lambda data: None))  # images not beside this copy
    (tmp_path / "broken.json").write_text('{"images": [],\n "annotations": [}')
    with pytest.raises(ValueError, match=r"broken\.json:2: not valid JSON"):
        read_coco_keypoints(tmp_path / "broken.json")
    (tmp_path / "none.json").write_text('{"images": [], "annotations": []}')
    with pytest.raises(ValueError, match=r"none\.json: no faces read"):
        read_coco_keypoints(tmp_path / "none.json")

"""Landmark schemes: the shipped YAML files, their left/right pairs on real faces, and refused files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from pfld.data.schemes import (
    MIN_POSE_REFERENCE_POINTS,
    POSE_REFERENCE_NAMES,
    LandmarkScheme,
    available_schemes,
    custom_scheme,
    ibug_68,
    load_scheme,
)
from tests.conftest import FIXTURES, SHARED
from tests.helpers import FROM_IBUG68, from_ibug68

SHIPPED = ("cofw29", "five_point", "ibug68", "kaggle15", "wflw98")


def _coco_faces(relative: str) -> np.ndarray:
    """(N, K, 2) keypoints of a COCO-style fixture in tests/data/coco or ../shared; skips when absent."""
    for path in (FIXTURES / "coco" / relative, SHARED / "fixtures" / "mmpose" / relative):
        if path.is_file():
            annotations = json.loads(path.read_text())["annotations"]
            return np.stack(
                [np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2] for a in annotations]
            )
    pytest.skip(f"fixture {relative} not found in tests/data/coco or {SHARED}")


def _embedded_faces(embedded_dir: Path, count: int = 50) -> np.ndarray:
    """(N, 68, 2) real iBUG faces from the embedded sample."""
    from pfld.data.readers import read_landmark_csv

    return np.stack([r.landmarks for r in read_landmark_csv(embedded_dir / "train.csv")[:count]])


def _mirror_residual(face: np.ndarray, perm: np.ndarray, eyes: tuple[int, int]) -> float:
    """Mean distance, in inter-ocular units, between a face and its mirror image (x -> -x, points
    permuted), after the best similarity alignment: small when the flip partners are right."""
    target = face - face.mean(axis=0)
    mirrored = face * np.array([-1.0, 1.0])
    mirrored = mirrored[perm] - mirrored[perm].mean(axis=0)
    u, s, vt = np.linalg.svd(mirrored.T @ target)
    if np.linalg.det(u @ vt) < 0:  # a rotation, not a reflection, or any face would mirror onto itself
        u[:, -1], s[-1] = -u[:, -1], -s[-1]
    fitted = s.sum() / (mirrored**2).sum() * mirrored @ (u @ vt)
    return float(
        np.linalg.norm(fitted - target, axis=1).mean() / np.linalg.norm(face[eyes[0]] - face[eyes[1]])
    )


def _assert_pairs_mirror(faces: np.ndarray, scheme: LandmarkScheme) -> None:
    """Right partners have the smaller x on every face; mirroring with the permutation fits the face."""
    right, left = (list(side) for side in zip(*scheme.flip_pairs, strict=True))
    assert (faces[:, right, 0] < faces[:, left, 0]).all(), "a subject's-right point is right of its partner"
    residual = np.median([_mirror_residual(f, scheme.flip_permutation, scheme.eye_corners) for f in faces])
    unflipped = np.median(
        [_mirror_residual(f, np.arange(scheme.num_points), scheme.eye_corners) for f in faces]
    )
    assert residual < 0.12 and unflipped > 2 * residual, (residual, unflipped)


def test_ibug68_flip_is_an_involution_that_swaps_eyes():
    perm = ibug_68().flip_permutation
    assert sorted(perm) == list(range(68))
    np.testing.assert_array_equal(perm[perm], np.arange(68))
    assert perm[36] == 45 and perm[45] == 36
    assert perm[0] == 16 and perm[8] == 8 and perm[30] == 30 and perm[48] == 54 and perm[62] == 62


def test_ibug68_keeps_the_pairs_of_the_python_definition():
    def mirror(right: range | list[int], left: range | list[int]) -> list[tuple[int, int]]:
        return list(zip(right, left, strict=True))

    pairs = (
        mirror(range(8), range(16, 8, -1))
        + mirror(range(17, 22), range(26, 21, -1))
        + mirror([31, 32], [35, 34])
        + mirror([36, 37, 38, 39, 40, 41], [45, 44, 43, 42, 47, 46])
        + mirror([48, 49, 50, 59, 58], [54, 53, 52, 55, 56])
        + mirror([60, 61, 67], [64, 63, 65])
    )
    assert ibug_68().flip_pairs == tuple(pairs)
    assert ibug_68() is load_scheme("ibug68")  # cached


def test_ibug68_pairs_are_left_right_mirrors_on_a_frontal_face(embedded_dir):
    """On real, roughly frontal faces, flip partners sit on opposite sides of the face's midline."""
    scheme = ibug_68()
    faces = _embedded_faces(embedded_dir)
    midline = faces[:, [27, 28, 29, 30, 33, 51, 57, 8], 0].mean(axis=1, keepdims=True)
    right, left = zip(*scheme.flip_pairs, strict=True)
    assert (np.median(faces[:, list(right), 0] - midline, axis=0) < 0).all()
    assert (np.median(faces[:, list(left), 0] - midline, axis=0) > 0).all()
    residual = np.median([_mirror_residual(f, scheme.flip_permutation, scheme.eye_corners) for f in faces])
    assert residual < 0.12


def test_ibug68_metadata():
    scheme = ibug_68()
    assert scheme.normalization == (36, 45) == scheme.eye_corners
    assert scheme.pose_reference_names == POSE_REFERENCE_NAMES
    assert len(set(scheme.pose_reference_indices)) == len(POSE_REFERENCE_NAMES)
    assert sum(len(g) for g in scheme.groups.values()) == 68


def test_available_schemes():
    assert set(SHIPPED) <= set(available_schemes())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scheme_is_consistent(name: str):
    scheme = load_scheme(name)
    k = scheme.num_points
    assert scheme.name == name
    perm = scheme.flip_permutation
    np.testing.assert_array_equal(perm[perm], np.arange(k))
    assert not perm.flags.writeable
    assert perm[scheme.eye_corners[0]] == scheme.eye_corners[1]
    if scheme.pupils is not None:
        assert perm[scheme.pupils[0]] == scheme.pupils[1]
    assert not scheme.point_names or len(scheme.point_names) == k
    for right, left in scheme.flip_pairs:  # named points agree with their pair's sides
        if scheme.point_names:
            assert "right" in scheme.point_names[right] and "left" in scheme.point_names[left]
    pose = scheme.pose_reference
    for name_ in pose:  # a right pose point's partner is the matching left one
        if name_.startswith("right_") and name_.replace("right_", "left_") in pose:
            assert perm[pose[name_]] == pose[name_.replace("right_", "left_")]
    assert scheme.has_pose == (len(pose) >= MIN_POSE_REFERENCE_POINTS)
    assert sorted(i for g in scheme.groups.values() for i in g) == list(range(k))  # groups partition


def test_wflw98_metadata():
    scheme = load_scheme("wflw98")
    perm = scheme.flip_permutation
    assert perm[60] == 72 and perm[96] == 97 and perm[16] == 16 and perm[54] == 54 and perm[85] == 85
    assert scheme.eye_corners == (60, 72) and scheme.pupils == (96, 97)
    tracked = [33, 38, 50, 46, 60, 64, 68, 72, 55, 59, 76, 82, 85, 16]  # the PFLD repos' TRACKED_POINTS
    assert scheme.pose_reference_names == POSE_REFERENCE_NAMES
    assert scheme.pose_reference_indices.tolist() == tracked


def test_other_shipped_metadata():
    cofw = load_scheme("cofw29")
    assert cofw.eye_corners == (8, 9) and cofw.pupils == (16, 17) and len(cofw.pose_reference) == 14
    five = load_scheme("five_point")
    assert not five.has_pose and five.eye_corners == five.pupils == (0, 1)
    assert five.flip_permutation.tolist() == [1, 0, 2, 4, 3]
    kaggle = load_scheme("kaggle15")
    assert kaggle.has_pose and len(kaggle.pose_reference_names) == 11
    assert kaggle.eye_corners == (5, 3) and kaggle.pupils == (1, 0)
    assert kaggle.point_names[0] == "left_eye_center" and kaggle.point_names[14] == "mouth_center_bottom_lip"


def test_wflw98_pairs_mirror_on_real_faces():
    _assert_pairs_mirror(_coco_faces("wflw/test_wflw.json"), load_scheme("wflw98"))


def test_cofw29_pairs_mirror_on_real_faces():
    faces = _coco_faces("cofw/test_cofw.json")
    scheme = load_scheme("cofw29")
    _assert_pairs_mirror(faces, scheme)

    def width(i: int, j: int) -> np.ndarray:
        return np.abs(faces[:, i, 0] - faces[:, j, 0])

    # the NME's points are the outer eye corners: wider apart than the pupils, then the inner corners
    assert (width(8, 9) > width(16, 17)).all() and (width(16, 17) > width(10, 11)).all()


@pytest.mark.parametrize("name", sorted(FROM_IBUG68))
def test_small_schemes_mirror_on_faces_derived_from_ibug(embedded_dir, name: str):
    faces68 = _embedded_faces(embedded_dir)
    faces = from_ibug68(faces68, name)
    scheme = load_scheme(name)
    right, left = (list(side) for side in zip(*scheme.flip_pairs, strict=True))
    assert (np.median(faces[:, right, 0] - faces[:, left, 0], axis=0) < 0).all()
    residual = np.median([_mirror_residual(f, scheme.flip_permutation, scheme.eye_corners) for f in faces])
    assert residual < 0.12


def test_kaggle15_pose_on_a_face_derived_from_ibug(embedded_dir):
    from pfld.data.attributes import fit_angles

    face68 = _embedded_faces(embedded_dir, count=1)[0]
    face = from_ibug68(face68, "kaggle15")
    low, high = face68.min(axis=0), face68.max(axis=0)
    side = float((high - low).max())
    offset = (side - 1) / 2 - (low + high) / 2
    full = np.degrees(fit_angles(face68 + offset, ibug_68(), side))
    partial = np.degrees(fit_angles(face + offset, load_scheme("kaggle15"), side))
    assert np.isfinite(partial).all() and np.abs(partial - full).max() < 15, (full, partial)


def test_a_scheme_without_pose_points_has_no_angles_and_refuses_the_pfld_loss(tmp_path: Path):
    """No pose reference points: the fit gives NaN angles (faces left out of the pose term, never
    weighted zero), and training with the PFLD loss, which needs angles, is refused with the way out."""
    from pfld.data.attributes import fit_angles
    from pfld.training.loop import switch_off_pose_if_unavailable
    from tests.conftest import compose_train

    five = load_scheme("five_point")
    assert np.isnan(fit_angles(np.zeros((5, 2)), five, 112)).all()
    with pytest.raises(ValueError, match="scheme 'five_point' declares no pose reference points.*loss=l1"):
        switch_off_pose_if_unavailable(compose_train(["loss=pfld"], tmp_path), five)
    cfg = compose_train([], tmp_path)
    switch_off_pose_if_unavailable(cfg, five)
    assert cfg.model.auxiliary is False


def test_flip_partner_is_an_alternative_to_flip_pairs(tmp_path: Path):
    import pfld.data.schemes

    data = yaml.safe_load((Path(pfld.data.schemes.__file__).parent / "kaggle15.yaml").read_text())
    del data["flip_pairs"]
    data["flip_partner"] = [1, 0, 4, 5, 2, 3, 8, 9, 6, 7, 10, 12, 11, 13, 14]
    path = tmp_path / "partner.yaml"
    path.write_text(yaml.safe_dump(data))
    scheme = load_scheme(path)
    np.testing.assert_array_equal(scheme.flip_permutation, load_scheme("kaggle15").flip_permutation)
    assert load_scheme(str(path)) is scheme  # a path string loads the same file, cached


def test_custom_scheme_from_config_values():
    scheme = custom_scheme("five", 5, flip_pairs=[[0, 1], [3, 4]], normalization=[0, 1], pupils=[0, 1])
    np.testing.assert_array_equal(scheme.flip_permutation, [1, 0, 2, 4, 3])
    assert scheme.eye_corners == scheme.normalization == scheme.pupils == (0, 1) and not scheme.has_pose


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flip_pairs": [[0, 9]], "normalization": [0, 1]}, "outside"),
        ({"flip_pairs": [[0, 1], [1, 2]], "normalization": [0, 1]}, "more than one flip pair"),
        ({"flip_pairs": [[2, 2]], "normalization": [0, 1]}, "paired with themselves"),
        ({"flip_pairs": [], "normalization": [2, 2]}, "two different"),
        ({"flip_pairs": [], "normalization": [0, 1], "pose_reference": {"ear": 1}}, "unknown pose reference"),
        ({"flip_pairs": [], "normalization": [0, 1], "pupils": [0, 7]}, "pupils indices"),
    ],
)
def test_bad_schemes_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        custom_scheme("bad", 5, **kwargs)


_VALID = {
    "name": "tiny",
    "num_points": 6,
    "point_names": ["right_eye", "left_eye", "nose", "mouth_right", "mouth_left", "chin"],
    "flip_pairs": [[0, 1], [3, 4]],
    "eye_corners": [0, 1],
    "groups": {"eyes": [0, 1]},
}
_POSE6 = dict(zip(POSE_REFERENCE_NAMES[4:10], range(6), strict=True))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, r"unknown keys \['colour'\]; allowed keys: \['name'"),
        ({"eye_corners": None}, r"missing required keys \['eye_corners'\]"),
        ({"name": None}, r"missing required keys \['name'\]"),
        ({"num_points": 7}, "num_points is 7 but point_names has 6"),
        ({"num_points": "6"}, "num_points must be an integer"),
        ({"flip_partner": [1, 0, 2, 4, 3, 5]}, "exactly one of flip_pairs"),
        ({"flip_pairs": None, "flip_partner": [1, 0, 2, 4, 3, 9]}, r"flip_partner: indices \[9\] outside"),
        ({"flip_pairs": None, "flip_partner": [1, 2, 0, 3, 4, 5]}, "flip_partner is not symmetric"),
        ({"flip_pairs": None, "flip_partner": [1, 0]}, "flip_partner must have 6 entries"),
        ({"flip_pairs": [[0, 1], [1, 4]]}, r"points \[1\] appear in more than one flip pair"),
        ({"flip_pairs": [[0, 1], [3, 3]]}, r"points \[3\] are paired with themselves"),
        ({"flip_pairs": [[0, 1, 2]]}, r"flip_pairs\[0\] must have 2 entries"),
        ({"eye_corners": [1, 1]}, "eye_corners need two different points"),
        ({"eye_corners": [0, 6]}, r"eye_corners: indices \[6\] outside 0..5"),
        ({"eye_corners": [0]}, "eye_corners must have 2 entries"),
        ({"eye_corners": [0, 1.5]}, "eye_corners must be a list of integer"),
        ({"pupils": [0, 8]}, r"pupils: indices \[8\] outside"),
        ({"groups": {"eyes": [0, 10]}}, r"groups.eyes: indices \[10\] outside"),
        (
            {"pose_reference": {**_POSE6, "ear": 5}},
            r"unknown pose reference names \['ear'\]; known: \['right_brow",
        ),
        (
            {"pose_reference": dict(list(_POSE6.items())[:5])},
            "pose_reference has 5 points; head pose needs at least 6",
        ),
        ({"pose_reference": {**_POSE6, "chin": 9}}, r"pose_reference: indices \[9\] outside"),
        ({"pose_reference": {**_POSE6, "chin": 0}}, r"pose reference names share points \[0\]"),
    ],
)
def test_bad_scheme_files_are_refused(tmp_path: Path, change: dict, message: str):
    data = {k: v for k, v in {**_VALID, **change}.items() if v is not None}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ValueError, match=message) as caught:
        load_scheme(path)
    assert str(path.resolve()) in str(caught.value)


def test_valid_scheme_file_loads_with_and_without_pose(tmp_path: Path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(_VALID))
    assert not load_scheme(path).has_pose
    path = tmp_path / "tiny_pose.yml"
    path.write_text(yaml.safe_dump({**_VALID, "pose_reference": _POSE6}))
    assert load_scheme(str(path)).pose_reference_names == POSE_REFERENCE_NAMES[4:10]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: tiny\nname: again\n", "key 'name' given twice"),
        ("- just\n- a list\n", "must hold a mapping"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_malformed_scheme_files_are_refused(tmp_path: Path, text: str, message: str):
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        load_scheme(path)
    assert str(path.resolve()) in str(caught.value)


def test_unknown_scheme_names_list_the_shipped_ones(tmp_path: Path):
    with pytest.raises(ValueError, match=r"unknown landmark scheme 'ibug_69'.*'wflw98'"):
        load_scheme("ibug_69")
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_scheme(tmp_path / "missing.yaml")

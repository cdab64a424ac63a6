import numpy as np
import pytest

from pfld.data.schemes import POSE_REFERENCE_NAMES, custom_scheme, ibug_68


def test_ibug68_flip_is_an_involution_that_swaps_eyes():
    perm = ibug_68().flip_permutation
    assert sorted(perm) == list(range(68))
    np.testing.assert_array_equal(perm[perm], np.arange(68))
    assert perm[36] == 45 and perm[45] == 36
    assert perm[0] == 16 and perm[8] == 8 and perm[30] == 30 and perm[48] == 54 and perm[62] == 62


def test_ibug68_pairs_are_left_right_mirrors_on_a_frontal_face(embedded_dir):
    """On real, roughly frontal faces, flip partners sit on opposite sides of the face's midline."""
    from pfld.data.readers import read_landmark_csv

    scheme = ibug_68()
    faces = np.stack([r.landmarks for r in read_landmark_csv(embedded_dir / "train.csv")[:50]])
    midline = faces[:, [27, 28, 29, 30, 33, 51, 57, 8], 0].mean(axis=1, keepdims=True)
    right, left = zip(*scheme.flip_pairs, strict=True)
    assert (np.median(faces[:, list(right), 0] - midline, axis=0) < 0).all()
    assert (np.median(faces[:, list(left), 0] - midline, axis=0) > 0).all()


def test_ibug68_metadata():
    scheme = ibug_68()
    assert scheme.normalization == (36, 45)
    assert scheme.pose_reference_names == POSE_REFERENCE_NAMES
    assert len(set(scheme.pose_reference_indices)) == len(POSE_REFERENCE_NAMES)
    assert sum(len(g) for g in scheme.groups.values()) == 68


def test_custom_scheme_from_config_values():
    scheme = custom_scheme("five", 5, flip_pairs=[[0, 1], [3, 4]], normalization=[0, 1])
    np.testing.assert_array_equal(scheme.flip_permutation, [1, 0, 2, 4, 3])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"flip_pairs": [[0, 9]], "normalization": [0, 1]}, "outside"),
        ({"flip_pairs": [[0, 1], [1, 2]], "normalization": [0, 1]}, "more than one flip pair"),
        ({"flip_pairs": [], "normalization": [2, 2]}, "two different"),
        ({"flip_pairs": [], "normalization": [0, 1], "pose_reference": {"ear": 1}}, "unknown pose reference"),
    ],
)
def test_bad_schemes_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        custom_scheme("bad", 5, **kwargs)

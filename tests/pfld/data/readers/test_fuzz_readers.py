"""Every reader, fed random bytes, truncated files, wrong columns, huge numbers and wrong encodings,
either returns well-formed faces or raises the documented error (ValueError, or FileNotFoundError for a
missing file) naming the file: never another exception, a hang or a silently wrong face."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pfld.data.readers import read_coco_keypoints, read_landmark_csv, read_pts, read_pts_folder, read_wflw
from pfld.data.readers.mtfl import read_attributes
from pfld.data.records import FaceRecord
from pfld.data.schemes import load_scheme
from pfld.data.schemes.mapping import read_mapping
from tests.conftest import FIXTURES, ROOT

FUZZ = settings(
    max_examples=int(os.environ.get("PFLD_FUZZ_EXAMPLES", "60")),
    deadline=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

#: A few valid files of each format, to truncate and mutate.
VALID = {
    "pts": next((FIXTURES / "300w").rglob("*.pts")).read_bytes(),
    "csv": (ROOT / "data" / "embedded" / "val.csv").read_bytes()[:4000],
    "scheme": (ROOT / "pfld" / "data" / "schemes" / "kaggle15.yaml").read_bytes(),
    "mapping": (ROOT / "pfld" / "data" / "schemes" / "mappings" / "five_point-ibug68.yaml").read_bytes(),
    "attributes": b"file,gender,smiling,glasses,head_pose\nimages/a.jpg,1,2,2,3\nimages/b.jpg,2,1,1,5\n",
    "wflw": (" ".join(["10.5"] * 196) + " 1 2 50 60 0 1 0 0 0 1 a/b.jpg\n").encode(),
    "coco": json.dumps(
        {
            "images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}],
            "annotations": [{"id": 1, "image_id": 1, "keypoints": [10, 20, 2] * 5, "num_keypoints": 5}],
            "categories": [{"id": 1, "name": "face", "keypoints": [str(i) for i in range(5)]}],
        }
    ).encode(),
}


def _mutations(valid: bytes) -> st.SearchStrategy[bytes]:
    """Random bytes; the valid file truncated; with a random span replaced; with numbers made huge,
    negative or not numbers; in another encoding."""
    huge = st.sampled_from([b"1e308", b"-1e400", b"nan", b"inf", b"99999999999999999999", b"x", b"", b","])
    return st.one_of(
        st.binary(max_size=600),
        st.integers(0, len(valid)).map(lambda n: valid[:n]),
        st.tuples(st.integers(0, len(valid)), st.integers(0, 40), st.binary(max_size=40)).map(
            lambda t: valid[: t[0]] + t[2] + valid[t[0] + t[1] :]
        ),
        st.tuples(st.integers(0, len(valid)), huge).map(lambda t: valid[: t[0]] + t[1] + valid[t[0] :]),
        st.just(valid.decode("utf-8", "replace").encode("utf-16")),
        st.just(valid.replace(b",", b";")),
        st.just(valid.replace(b" ", b"\t\t")),
    )


def _check(
    read: Callable[[Path], object], path: Path, content: bytes, documented=(ValueError, FileNotFoundError)
):
    """Run ``read`` on ``content``: a result passes `_well_formed`; an error is documented and names the file."""
    path.write_bytes(content)
    try:
        result = read(path)
    except documented as error:
        assert path.name in str(error) or str(path.parent) in str(error), (
            f"{type(error).__name__} without the file: {error}"
        )
        return
    _well_formed(result)


def _well_formed(result: object) -> None:
    records = result if isinstance(result, list) else []
    for record in records:
        if isinstance(record, FaceRecord):
            points = record.landmarks
            assert points.ndim == 2 and points.shape[1] == 2 and not np.isinf(points).any()
            assert (np.isnan(points[:, 0]) == np.isnan(points[:, 1])).all()
    if isinstance(result, np.ndarray):
        assert result.ndim == 2 and result.shape[1] == 2 and np.isfinite(result).all()


@pytest.fixture(scope="module")
def folder():
    path = Path(tempfile.mkdtemp(prefix="pfld-fuzz-"))
    (path / "images").mkdir()
    shutil.copy(
        ROOT / "data" / "embedded" / "images" / min((ROOT / "data" / "embedded" / "images").iterdir()).name,
        path / "a.jpg",
    )
    yield path
    shutil.rmtree(path)


@FUZZ
@given(content=_mutations(VALID["pts"]))
def test_pts_files(folder, content):
    _check(lambda p: read_pts(p, num_points=68), folder / "face.pts", content)
    _check(
        lambda p: read_pts_folder(p.parent, num_points=68, on_error=lambda m: None),
        folder / "face.pts",
        content,
    )


@FUZZ
@given(content=_mutations(VALID["csv"]))
def test_landmark_csvs(folder, content):
    _check(lambda p: read_landmark_csv(p, image_dir=folder, num_points=68), folder / "faces.csv", content)
    _check(lambda p: read_landmark_csv(p, folder, 68, on_error=lambda m: None), folder / "faces.csv", content)


@FUZZ
@given(content=_mutations(VALID["wflw"]))
def test_wflw_lists(folder, content):
    _check(lambda p: read_wflw(p, folder), folder / "list.txt", content)
    _check(lambda p: read_wflw(p, folder, on_error=lambda m: None), folder / "list.txt", content)


@FUZZ
@given(content=_mutations(VALID["coco"]))
def test_coco_json(folder, content):
    _check(lambda p: read_coco_keypoints(p, image_dir=folder), folder / "faces.json", content)
    _check(lambda p: read_coco_keypoints(p, folder, on_error=lambda m: None), folder / "faces.json", content)


@FUZZ
@given(content=_mutations(VALID["scheme"]))
def test_scheme_yaml(folder, content):
    _check(load_scheme, folder / "scheme.yaml", content)


@FUZZ
@given(content=_mutations(VALID["mapping"]))
def test_mapping_yaml(folder, content):
    _check(read_mapping, folder / "mapping.yaml", content)


@FUZZ
@given(content=_mutations(VALID["attributes"]))
def test_mtfl_attributes(folder, content):
    _check(read_attributes, folder / "attributes.csv", content)

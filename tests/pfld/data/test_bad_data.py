"""Bad data, in one place: every kind of bad face is refused with its file and problem named when faces
are read for training, and skipped and counted by `python -m data`; an empty split or a scheme whose
point count differs from the data's stops before training starts.

The faces are four of the embedded sample, written as a 300W-style folder of ``.pts`` files (1-based)
beside their photos; each case spoils the second one, ``face1``.
"""

from __future__ import annotations

import re
import shutil
import struct
import zlib
from collections.abc import Callable
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import pytest

from pfld.cli.data import main as prepare_main
from pfld.data.datamodule import LandmarkDataModule
from pfld.data.readers import read_landmark_csv, read_pts_folder
from pfld.data.schemes import custom_scheme, ibug_68
from tests.conftest import EMBEDDED, TINY_TRAINING, compose_train

FACES = 4


def write_pts(path: Path, points: np.ndarray) -> None:
    """(K, 2) 0-based pixels -> a 300W `.pts` file (1-based); NaN and inf are written as such."""
    body = "\n".join(f"{x + 1:.3f} {y + 1:.3f}" for x, y in points)
    path.write_text(f"version: 1\nn_points: {len(points)}\n{{\n{body}\n}}\n")


@pytest.fixture
def faces(tmp_path: Path) -> Path:
    """A folder of FACES good faces: face<i>.pts beside face<i>.jpg."""
    folder = tmp_path / "faces"
    folder.mkdir()
    for index, record in enumerate(read_landmark_csv(EMBEDDED / "train.csv")[:FACES]):
        shutil.copy(record.image_path, folder / f"face{index}.jpg")
        write_pts(folder / f"face{index}.pts", record.landmarks)
    return folder


def _points(folder: Path) -> np.ndarray:
    lines = (folder / "face1.pts").read_text().splitlines()[3:-1]
    return np.array([[float(v) for v in line.split()] for line in lines]) - 1.0


def _png_of_zero_pixels() -> bytes:
    """A PNG whose header declares 0 x 0 pixels (no encoder writes one; a broken tool might)."""
    header = struct.pack(">IIBBBBB", 0, 0, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + header
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(header))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    )


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _replace_point(folder: Path, index: int, value: tuple[float, float]) -> None:
    points = _points(folder)
    points[index] = value
    write_pts(folder / "face1.pts", points)


def _zero_pixels(folder: Path) -> None:
    (folder / "face1.jpg").unlink()
    (folder / "face1.png").write_bytes(_png_of_zero_pixels())


def _far_outside(folder: Path) -> None:
    height, width = cv2.imread(str(folder / "face1.jpg")).shape[:2]
    _replace_point(folder, 30, (20.0 * width, 20.0 * height))  # e.g. a point of a 20x larger photo


#: (id, how face1 is spoiled, what the message must say: the file, then the problem)
CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("missing image", lambda f: (f / "face1.jpg").unlink(), r"face1\.pts: no image beside it"),
    ("not an image", lambda f: (f / "face1.jpg").write_text("a text file"), r"face1\.jpg: cannot decode"),
    ("truncated jpeg", lambda f: _truncate(f / "face1.jpg"), r"face1\.jpg: truncated JPEG"),
    ("empty file", lambda f: (f / "face1.jpg").write_bytes(b""), r"face1\.jpg: the file is empty"),
    ("0 pixels", _zero_pixels, r"face1\.png: cannot decode"),
    (
        "1 pixel",
        lambda f: cv2.imwrite(str(f / "face1.jpg"), np.zeros((1, 1, 3), np.uint8)),
        r"face1\.jpg: image of 1x1 pixels is too small",
    ),
    (
        "67 points",
        lambda f: write_pts(f / "face1.pts", _points(f)[:67]),
        r"face1\.pts: expected 68 points, found 67",
    ),
    ("NaN coordinate", lambda f: _replace_point(f, 5, (np.nan, np.nan)), r"face1\.pts: NaN coordinates"),
    ("infinite coordinate", lambda f: _replace_point(f, 5, (np.inf, 3.0)), r"face1\.pts: infinite"),
    ("point far outside", _far_outside, r"face1\.pts \(face1\.jpg\): 1 points lie far outside the \d+x\d+"),
]


def _datamodule(folder: Path, scheme=None, num_points: int | None = 68) -> LandmarkDataModule:
    source = partial(read_pts_folder, folder, num_points=num_points)
    return LandmarkDataModule(
        train=[source], val=[source], scheme=scheme or ibug_68(), batch_size=2, num_workers=0
    )


@pytest.mark.parametrize(("spoil", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_training_data_refuses_a_bad_face_naming_file_and_problem(faces, spoil, message):
    spoil(faces)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        _datamodule(faces).setup("fit")


@pytest.mark.parametrize(("spoil", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_preparation_skips_and_counts_a_bad_face(faces, tmp_path, spoil, message, capsys):
    spoil(faces)
    manifest = prepare_main(["pts", "--split", f"train={faces}", "--out", str(tmp_path / "out")])
    assert manifest["splits"]["train"]["faces"] == FACES - 1
    assert manifest["splits"]["train"]["skipped"] == 1
    [skipped] = manifest["skipped"]
    assert re.search(message, skipped["problem"]), skipped
    assert "skipped 1 faces" in capsys.readouterr().out


def test_the_good_faces_pass(faces, tmp_path):
    """The cases above fail because of their spoiling, not because of the fixture."""
    _datamodule(faces).setup("fit")
    manifest = prepare_main(["pts", "--split", f"train={faces}", "--out", str(tmp_path / "out")])
    assert manifest["splits"]["train"] == manifest["splits"]["train"] | {"faces": FACES, "skipped": 0}


def test_an_empty_split_stops_before_training(faces, tmp_path):
    header_only = tmp_path / "empty.csv"
    header_only.write_text((EMBEDDED / "train.csv").read_text().splitlines()[0] + "\n")
    cfg = compose_train([*TINY_TRAINING, f"data.train.0.csv_path={header_only}"], tmp_path / "run")
    from pfld.training.loop import train

    with pytest.raises(ValueError, match=r"empty\.csv: no faces read"):
        train(cfg)
    assert not (tmp_path / "run" / "checkpoints").exists(), "no Trainer was started"
    with pytest.raises(
        ValueError, match=r"the train split is empty: .*list.* gave no faces; check data\.train"
    ):
        LandmarkDataModule(train=[list], scheme=ibug_68(), num_workers=0).setup("fit")
    for number in range(FACES):  # a split whose every face is bad is an error, not an empty set
        (faces / f"face{number}.jpg").unlink()
    with pytest.raises(ValueError, match=rf"{faces}: no faces read \({FACES} bad entries skipped\)"):
        prepare_main(["pts", "--split", f"train={faces}", "--out", str(tmp_path / "out")])


def test_a_scheme_whose_point_count_differs_from_the_data(faces, tmp_path):
    five = custom_scheme("five", 5, flip_pairs=[[0, 1]], normalization=[0, 1])
    with pytest.raises(
        ValueError, match=r"face0\.pts: 68 points, but the scheme 'five' has 5; set data\.scheme"
    ):
        _datamodule(faces, scheme=five, num_points=None).setup("fit")
    with pytest.raises(
        ValueError, match=rf"no faces read \({FACES} bad entries.*e\.g\. .*expected 98 points, found 68"
    ):
        prepare_main(["pts", "--split", f"train={faces}", "--scheme", "wflw98", "--out", str(tmp_path / "o")])

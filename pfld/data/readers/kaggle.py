"""Kaggle's "Facial Keypoints Detection" faces: 96 x 96 grey images with up to 15 points (`kaggle15`).

Two layouts:
- the competition's ``training.csv``: the 30 coordinate columns (``left_eye_center_x``,
  ``left_eye_center_y``, ... in `kaggle15` order, matched by name) and ``Image``, 9,216 space-separated
  grey values 0-255 (96 x 96, row-major); ``test.csv``: ``ImageId,Image`` (no points);
- the npz variant: ``face_images.npz`` with one array of shape (96, 96, N) (images along the LAST axis,
  under any key) and ``facial_keypoints.csv`` beside it: the same 30 columns, row i for image i.

Coordinates are 0-based pixels of the 96 x 96 image (the centre of the top-left pixel is (0, 0)), as
Kaggle's are; taken as they are. An empty (or ``nan``) cell is a missing point: every face is kept, its
missing points NaN (unlabelled, ignored by the masked loss). Errors name the file and the 1-based line.

`kaggle_records` turns the faces into `FaceRecord`s for the preparation pipeline, which reads photos
from files: it writes each image as a grey PNG (read back as RGB, the grey replicated to 3 channels, as
every prepared set stores its crops) and gives each face the whole image as its face box.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from pfld.data.readers.common import (
    ENTRY_ERRORS,
    OnError,
    existing_file,
    is_number,
    read_text,
    skip_or_raise,
)
from pfld.data.records import FaceRecord
from pfld.data.schemes import load_scheme
from pfld.io.images import write_image

SIDE = 96  # Kaggle's images are 96 x 96
PIXELS = SIDE * SIDE
IMAGE_COLUMN = "Image"
ID_COLUMN = "ImageId"
_MISSING = {"", "nan"}


@cache
def kaggle_columns() -> tuple[str, ...]:
    """The 30 coordinate columns, ``<point>_x, <point>_y`` for each `kaggle15` point in index order."""
    return tuple(f"{name}_{axis}" for name in load_scheme("kaggle15").point_names for axis in "xy")


@dataclass(frozen=True)
class KaggleFaces:
    """N faces of one Kaggle file.

    images: (N, 96, 96) uint8 grey, row-major as in the file.
    landmarks: (N, 15, 2) float32, x then y, 0-based pixels of the image; NaN = missing (all NaN for
        test.csv, which has no points).
    sources: (N,) where each face is written, ``<file>:<line>`` (1-based, the header is line 1).
    image_ids: (N,) int64 ``ImageId`` of test.csv, else the 1-based face number in the file.
    """

    images: np.ndarray
    landmarks: np.ndarray
    sources: tuple[str, ...]
    image_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.images)

    @property
    def missing_points(self) -> int:
        """How many of the N x 15 points are missing."""
        return int(np.isnan(self.landmarks[..., 0]).sum())


def read_kaggle_csv(path: str | Path, on_error: OnError | None = None) -> KaggleFaces:
    """Kaggle's ``training.csv`` (30 coordinate columns and ``Image``; see the module).

    Args:
        on_error: None raises on a bad row; else each bad row's message is passed to it and skipped.
    """
    path = existing_file(path, "Kaggle training CSV")
    faces = []
    for number, (where, cells) in enumerate(_rows(path, (*kaggle_columns(), IMAGE_COLUMN), on_error), 1):
        try:
            faces.append((_pixels(cells[IMAGE_COLUMN], where), _points(cells, where), where, number))
        except ENTRY_ERRORS as error:
            skip_or_raise(error, on_error)
    return _faces(faces, path)


def read_kaggle_test(path: str | Path, on_error: OnError | None = None) -> KaggleFaces:
    """Kaggle's ``test.csv`` (``ImageId,Image``): the faces to predict, with no points (all NaN)."""
    path = existing_file(path, "Kaggle test CSV")
    unlabelled = np.full((15, 2), np.nan, np.float32)
    faces = []
    for where, cells in _rows(path, (ID_COLUMN, IMAGE_COLUMN), on_error):
        try:
            text = cells[ID_COLUMN].strip()
            if not text.isdigit():
                raise ValueError(f"{where}: ImageId {text!r} is not a positive whole number")
            faces.append((_pixels(cells[IMAGE_COLUMN], where), unlabelled, where, int(text)))
        except ENTRY_ERRORS as error:
            skip_or_raise(error, on_error)
    return _faces(faces, path)


def read_kaggle_npz(
    npz_path: str | Path, keypoints_csv: str | Path | None = None, on_error: OnError | None = None
) -> KaggleFaces:
    """The npz variant: ``face_images.npz`` (one (96, 96, N) array) and ``facial_keypoints.csv``
    (default: beside the npz), row i of which holds the points of image i."""
    npz_path = existing_file(npz_path, "face images npz")
    csv_path = npz_path.parent / "facial_keypoints.csv" if keypoints_csv is None else Path(keypoints_csv)
    csv_path = existing_file(csv_path, "facial keypoints CSV")
    images = _npz_images(npz_path)
    rows = list(_rows(csv_path, kaggle_columns(), on_error, count_skipped=True))
    if len(rows) != images.shape[2]:
        raise ValueError(
            f"{npz_path}: {images.shape[2]} images, but {csv_path} has {len(rows)} rows of points; "
            "row i of the CSV must hold the points of image i"
        )
    faces = []
    for index, (where, cells) in enumerate(rows):
        if cells is None:  # a bad row, reported and skipped by _rows: its image goes with it
            continue
        try:
            faces.append((images[:, :, index], _points(cells, where), where, index + 1))
        except ENTRY_ERRORS as error:
            skip_or_raise(error, on_error)
    return _faces(faces, csv_path)


def kaggle_records(
    faces: KaggleFaces, image_dir: str | Path, on_error: OnError | None = None
) -> list[FaceRecord]:
    """Write each face's image to ``image_dir/<n>.png`` and return its `FaceRecord`: the points as read,
    the whole 96 x 96 image as the face box, the face's own line as its identity (Kaggle names no one).

    A face with fewer than two labelled points cannot be cropped by the pipeline: it is reported (or
    raises, without ``on_error``) and left out.
    """
    image_dir = Path(image_dir)
    whole = np.array([-0.5, -0.5, SIDE - 0.5, SIDE - 0.5], np.float32)  # pixel edges of the image
    records = []
    for number, (image, points, where) in enumerate(zip(faces.images, faces.landmarks, faces.sources), 1):
        path = image_dir / f"{number:05d}.png"
        try:
            records.append(FaceRecord(path, points, identity=where, source=where, box=whole))
        except ValueError as error:
            skip_or_raise(error, on_error)
            continue
        write_image(path, np.repeat(image[:, :, None], 3, axis=2))
    return records


def _rows(
    path: Path, columns: tuple[str, ...], on_error: OnError | None, count_skipped: bool = False
) -> Iterator[tuple[str, dict[str, str] | None]]:
    """(``<file>:<line>``, cells by column) for each data row; the header must name ``columns``.

    A row of the wrong length is reported (or raises) and skipped, or with ``count_skipped`` yielded with
    None cells so that row numbers still count faces."""
    with io.StringIO(read_text(path, "Kaggle CSV"), newline="") as handle:
        reader = csv.reader(handle)
        header = [cell.strip() for cell in next(reader, [])]
        missing = [column for column in columns if column not in header]
        if missing:
            raise ValueError(
                f"{path}:1: the header has no column {', '.join(missing[:3])}"
                f"{f' (and {len(missing) - 3} more)' if len(missing) > 3 else ''}; expected {', '.join(columns[:2])}, ..."
            )
        index = {column: header.index(column) for column in columns}
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not row:
                continue
            if len(row) != len(header):
                error = ValueError(f"{where}: {len(row)} cells, but the header has {len(header)} columns")
                skip_or_raise(error, on_error)
                if count_skipped:
                    yield where, None
                continue
            yield where, {column: row[i] for column, i in index.items()}


def _pixels(text: str, where: str) -> np.ndarray:
    """The ``Image`` cell -> (96, 96) uint8, row-major."""
    values = text.split()
    if len(values) != PIXELS:
        raise ValueError(
            f"{where}: Image has {len(values)} pixel values, expected {PIXELS} ({SIDE} x {SIDE} grey)"
        )
    try:
        pixels = np.array(values, dtype=np.float32)
    except ValueError:
        bad = next(i for i, value in enumerate(values) if not is_number(value))
        raise ValueError(f"{where}: Image pixel {bad + 1} is {values[bad]!r}, not a number") from None
    outside = np.flatnonzero(~((pixels >= 0) & (pixels <= 255)))
    if outside.size:
        raise ValueError(f"{where}: Image pixel {outside[0] + 1} is {values[outside[0]]}, outside 0-255")
    return np.round(pixels).astype(np.uint8).reshape(SIDE, SIDE)


def _points(cells: dict[str, str], where: str) -> np.ndarray:
    """The 30 coordinate cells -> (15, 2) float32; an empty or ``nan`` cell is missing (NaN)."""
    values = []
    for column in kaggle_columns():
        text = cells[column].strip()
        if text.lower() in _MISSING:
            values.append(np.nan)
            continue
        try:
            values.append(float(text))
        except ValueError:
            raise ValueError(f"{where}: {column} is {text!r}, not a number") from None
    points = np.asarray(values, dtype=np.float32).reshape(-1, 2)
    if np.isinf(points).any():
        raise ValueError(f"{where}: infinite coordinates")
    half = np.flatnonzero(np.isnan(points[:, 0]) != np.isnan(points[:, 1]))
    if half.size:
        name = kaggle_columns()[2 * int(half[0])].removesuffix("_x")
        raise ValueError(f"{where}: {name} has one coordinate and not the other")
    return points


def _npz_images(path: Path) -> np.ndarray:
    """The npz's one array, checked to be (96, 96, N) with values in 0-255 -> uint8."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: not a readable npz file ({error})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise ValueError(f"{path}: a single .npy array, not an npz file (save it with numpy.savez)")  # noqa: TRY004
    with data:
        names = list(data.files)
        if len(names) != 1:
            raise ValueError(
                f"{path}: holds {len(names)} arrays ({', '.join(names) or 'none'}); expected exactly one, "
                "the (96, 96, N) images"
            )
        images = data[names[0]]
    if images.ndim != 3 or images.shape[:2] != (SIDE, SIDE):
        raise ValueError(
            f"{path}: array {names[0]!r} has shape {images.shape}; expected ({SIDE}, {SIDE}, N), the "
            "images along the last axis"
        )
    if not np.issubdtype(images.dtype, np.number) or images.shape[2] == 0:
        raise ValueError(f"{path}: array {names[0]!r} holds no grey images ({images.dtype}, {images.shape})")
    if not ((images >= 0) & (images <= 255)).all():
        raise ValueError(f"{path}: array {names[0]!r} has values outside 0-255 (or NaN)")
    return np.round(images).astype(np.uint8) if images.dtype != np.uint8 else images


def _faces(faces: list[tuple[np.ndarray, np.ndarray, str, int]], path: Path) -> KaggleFaces:
    if not faces:
        raise ValueError(f"{path}: no faces read")
    images, landmarks, sources, ids = zip(*faces, strict=True)
    return KaggleFaces(np.stack(images), np.stack(landmarks), tuple(sources), np.asarray(ids, np.int64))

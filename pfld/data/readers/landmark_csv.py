"""Landmark CSVs: `file,x0,y0,...,x{K-1},y{K-1}` rows in 0-based pixels (ytf68, our embedded sample,
Kaggle-style partially labelled sets).

A point that is not labelled has both its cells empty or `nan` (any case); it becomes NaN.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from pfld.data.readers.common import (
    ENTRY_ERRORS,
    IMAGE_SUFFIXES,
    OnError,
    check_points,
    existing_dir,
    existing_file,
    identity_from_stem,
    is_number,
    read_text,
    require_faces,
    skip_or_raise,
)
from pfld.data.records import FaceRecord


def read_landmark_csv(
    csv_path: str | Path,
    image_dir: str | Path | None = None,
    num_points: int = 68,
    on_error: OnError | None = None,
) -> list[FaceRecord]:
    """The faces of a landmark CSV; images are looked up in `image_dir` (default: the CSV's folder).

    A first row whose file cell names no image (e.g. ``file``, or empty as in pandas' index header of
    ytf68), or none of whose coordinate cells is a number, is taken as a header. The identity is the
    file stem without a trailing `_<digits>` (ytf `<name>_<frame>`).

    Args:
        on_error: None raises on a bad row; else each bad row's message is passed to it and skipped.
    """
    csv_path = existing_file(csv_path, "landmark CSV")
    image_dir = existing_dir(image_dir if image_dir is not None else csv_path.parent, "image folder")
    records, skipped = [], 0
    with io.StringIO(read_text(csv_path, "landmark CSV"), newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or (number == 1 and _is_header(row)):
                continue
            try:
                records.append(_parse_row(row, image_dir, num_points, f"{csv_path}:{number}"))
            except ENTRY_ERRORS as error:
                skip_or_raise(error, on_error)
                skipped += 1
    return require_faces(records, csv_path, skipped)


def _parse_row(row: list[str], image_dir: Path, num_points: int, where: str) -> FaceRecord:
    if len(row) != 1 + 2 * num_points:
        raise ValueError(
            f"{where}: expected a file name and {2 * num_points} coordinates "
            f"({num_points} points), got {len(row) - 1} coordinates ({(len(row) - 1) / 2:g} points)"
        )
    name = row[0].strip()
    if not name:
        raise ValueError(f"{where}: empty file name")
    values = [_coordinate(text, where, column) for column, text in enumerate(row[1:], start=2)]
    landmarks = np.asarray(values, dtype=np.float32).reshape(-1, 2)  # (K, 2)
    check_points(landmarks, num_points, where, missing=True)
    return FaceRecord(image_dir / name, landmarks, identity_from_stem(Path(name).stem), source=where)


def _coordinate(text: str, where: str, column: int) -> float:
    """A cell -> float; an empty cell is NaN (not labelled)."""
    text = text.strip()
    if not text:
        return float("nan")
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{where}: column {column}: {text!r} is not a number") from None


def _is_header(row: list[str]) -> bool:
    names_image = row[0].strip().lower().endswith(IMAGE_SUFFIXES)
    return not names_image or not any(is_number(v) for v in row[1:])

"""Readers that turn annotation files into `FaceRecord`s: 300W `.pts` folders and landmark CSVs.

Every reader returns 0-based pixel coordinates and fails with the file (and line) at fault.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from pfld.data.records import FaceRecord

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".ppm")


def identity_from_stem(stem: str) -> str:
    """`<photo or person>_<NN>` -> `<photo or person>` (300W `<photo>_<face>`, ytf `<name>_<frame>`)."""
    head, sep, tail = stem.rpartition("_")
    return head if sep and tail.isdigit() else stem


def read_pts(path: str | Path, num_points: int | None = None) -> np.ndarray:
    """Read a 300W `.pts` file -> (K, 2) float32, converted from 300W's 1-based to 0-based pixels."""
    path = Path(path)
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    try:
        start, end = lines.index("{"), lines.index("}")
    except ValueError:
        raise ValueError(f"{path}: not a .pts file (no '{{' ... '}}' block)") from None
    declared = next((ln.split(":")[1] for ln in lines[:start] if ln.startswith("n_points")), None)
    points = []
    for number, line in enumerate(lines[start + 1 : end], start=start + 2):
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected 'x y', got {line!r}")
        try:
            points.append((float(fields[0]), float(fields[1])))
        except ValueError:
            raise ValueError(f"{path}:{number}: not a number in {line!r}") from None
    landmarks = np.asarray(points, dtype=np.float32).reshape(-1, 2) - 1.0
    if declared is not None and int(declared) != len(landmarks):
        raise ValueError(f"{path}: header says n_points {int(declared)} but {len(landmarks)} points follow")
    _check_points(landmarks, num_points, str(path))
    return landmarks


def read_pts_folder(folder: str | Path, num_points: int = 68) -> list[FaceRecord]:
    """All `<stem>.pts` + `<stem>.<image suffix>` pairs of a folder (300W layout), sorted by name."""
    folder = _existing_dir(folder)
    records = []
    for pts in sorted(folder.glob("*.pts")):
        image = next((pts.with_suffix(s) for s in IMAGE_SUFFIXES if pts.with_suffix(s).exists()), None)
        if image is None:
            raise FileNotFoundError(f"{pts}: no image beside it (looked for {', '.join(IMAGE_SUFFIXES)})")
        records.append(
            FaceRecord(image, read_pts(pts, num_points), identity_from_stem(pts.stem), source=str(pts))
        )
    if not records:
        raise ValueError(f"{folder}: no .pts files found")
    return records


def read_landmark_csv(
    csv_path: str | Path, image_dir: str | Path | None = None, num_points: int = 68
) -> list[FaceRecord]:
    """A CSV of `file,x0,y0,...,x{K-1},y{K-1}` rows in 0-based pixels (ytf68 and our embedded sample).

    A first row whose file cell names no image (e.g. ``file`` or empty, pandas' index header as in
    ytf68) or with a coordinate cell that is not a number is taken as a header. Images are looked up in
    `image_dir` (default: the CSV's folder).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"{csv_path}: landmark CSV not found")
    image_dir = _existing_dir(image_dir if image_dir is not None else csv_path.parent)
    records = []
    with csv_path.open(newline="") as handle:
        for number, row in enumerate(csv.reader(handle), start=1):
            if not row or (number == 1 and _is_header(row)):
                continue
            where = f"{csv_path}:{number}"
            if len(row) != 1 + 2 * num_points:
                raise ValueError(
                    f"{where}: expected a file name and {2 * num_points} coordinates "
                    f"({num_points} points), got {len(row) - 1} coordinates"
                )
            try:
                landmarks = np.asarray([float(v) for v in row[1:]], dtype=np.float32).reshape(-1, 2)
            except ValueError:
                raise ValueError(f"{where}: a coordinate is not a number") from None
            _check_points(landmarks, num_points, where)
            image = image_dir / row[0]
            records.append(FaceRecord(image, landmarks, identity_from_stem(Path(row[0]).stem), source=where))
    if not records:
        raise ValueError(f"{csv_path}: no faces in the file")
    return records


def _check_points(landmarks: np.ndarray, num_points: int | None, where: str) -> None:
    if num_points is not None and len(landmarks) != num_points:
        raise ValueError(f"{where}: expected {num_points} points, found {len(landmarks)}")
    if not np.isfinite(landmarks).all():
        raise ValueError(f"{where}: NaN or infinite coordinates")


def _existing_dir(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    return folder


def _is_header(row: list[str]) -> bool:
    names_image = row[0].strip().lower().endswith(IMAGE_SUFFIXES)
    return not names_image or not all(_is_number(v) for v in row[1:])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True

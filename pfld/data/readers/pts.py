"""300W `.pts` files and folders of `.pts` + image pairs.

Convention: 300W `.pts` coordinates are 1-based (the centre of the top-left pixel is (1, 1)); the
readers subtract 1 and return 0-based pixels, as `FaceRecord` wants.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from pfld.data.readers.common import (
    ENTRY_ERRORS,
    OnError,
    check_points,
    existing_dir,
    existing_file,
    identity_from_stem,
    image_beside,
    parse_float,
    read_text,
    require_faces,
    skip_or_raise,
)
from pfld.data.records import FaceRecord


def read_pts(path: str | Path, num_points: int | None = None) -> np.ndarray:
    """A `.pts` file -> (K, 2) float32, 0-based pixels (the file's 1-based values minus 1).

    Either the 300W layout (`version: 1`, `n_points: K`, `{`, K lines `x y`, `}`) or a headerless file
    of just `x y` lines.
    """
    path = existing_file(path, ".pts file")
    lines = [
        (number, line.strip()) for number, line in enumerate(read_text(path, ".pts file").splitlines(), 1)
    ]
    lines = [(number, line) for number, line in lines if line]
    texts = [line for _, line in lines]
    declared = None
    if "{" in texts:
        start = texts.index("{")
        if "}" not in texts[start:]:
            raise ValueError(f"{path}: '{{' without a closing '}}'")
        end = start + texts[start:].index("}")
        declared = next((t.split(":", 1)[1].strip() for t in texts[:start] if t.startswith("n_points")), None)
        body = lines[start + 1 : end]
    elif lines and _is_xy(texts[0]):
        body = lines  # headerless: only `x y` lines
    else:
        raise ValueError(f"{path}: not a .pts file (no '{{' ... '}}' block and no 'x y' lines)")
    points = []
    for number, line in body:
        fields = line.split()
        if len(fields) != 2:
            raise ValueError(f"{path}:{number}: expected 'x y', got {line!r}")
        points.append([parse_float(field, f"{path}:{number}") for field in fields])
    landmarks = np.asarray(points, dtype=np.float32).reshape(-1, 2) - 1.0
    if declared is not None and _count(declared, path) != len(landmarks):
        raise ValueError(f"{path}: header says n_points {declared} but {len(landmarks)} points follow")
    check_points(landmarks, num_points, str(path))
    return landmarks


def _count(text: str, path: Path) -> int:
    """The header's ``n_points`` value: a whole number, else a ValueError naming the file."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{path}: n_points must be a whole number, got {text!r}") from None


def read_pts_folder(
    folder: str | Path,
    num_points: int | None = 68,
    identity: Callable[[str], str] = identity_from_stem,
    on_error: OnError | None = None,
) -> list[FaceRecord]:
    """All `<stem>.pts` + `<stem>.<image suffix>` pairs of a folder (300W layout), sorted by name.

    Args:
        identity: file stem -> identity; the default drops a trailing `_<digits>` (300W `<photo>_<face>`).
        on_error: None raises on a bad file; else each bad file's message is passed to it and the file
            skipped.
    """
    folder = existing_dir(folder)
    files = sorted(folder.glob("*.pts"))
    if not files:
        raise ValueError(f"{folder}: no .pts files found")
    records, skipped = [], 0
    for pts in files:
        try:
            landmarks = read_pts(pts, num_points)
            records.append(FaceRecord(image_beside(pts), landmarks, identity(pts.stem), source=str(pts)))
        except ENTRY_ERRORS as error:
            skip_or_raise(error, on_error)
            skipped += 1
    return require_faces(records, folder, skipped)


def _is_xy(line: str) -> bool:
    """Whether ``line`` is two numbers (the first line of a headerless `.pts`)."""
    fields = line.split()
    try:
        [float(field) for field in fields]
    except ValueError:
        return False
    return len(fields) == 2

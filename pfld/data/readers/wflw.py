"""WFLW's `list_98pt_rect_attr_{train,test}.txt` annotation files.

One face a line: 196 numbers (x0 y0 ... x97 y97), 4 numbers of the face box (x_min y_min x_max y_max),
6 flags (pose, expression, illumination, make-up, occlusion, blur) as 0/1, then the image path
relative to `WFLW_images/`. WFLW coordinates are taken as 0-based pixels, as given.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pfld.data.readers.common import (
    ENTRY_ERRORS,
    OnError,
    existing_dir,
    existing_file,
    parse_float,
    read_text,
    require_faces,
    skip_or_raise,
)
from pfld.data.records import FaceRecord

NUM_POINTS = 98
FLAG_NAMES: tuple[str, ...] = ("pose", "expression", "illumination", "make_up", "occlusion", "blur")
SPLITS: tuple[str, ...] = ("train", "test")
_NUMBERS = 2 * NUM_POINTS + 4 + len(FLAG_NAMES)  # before the image path


def read_wflw(
    annotation_file: str | Path, image_dir: str | Path, on_error: OnError | None = None
) -> list[FaceRecord]:
    """The faces of a WFLW annotation file, with their box and six attribute flags.

    Args:
        image_dir: the `WFLW_images/` folder the paths in the file are relative to.
        on_error: None raises on a bad line; else each bad line's message is passed to it and skipped.

    The identity of a face is its image path (the photo): faces of one photo share it.
    """
    annotation_file = existing_file(annotation_file, "WFLW annotation file")
    image_dir = existing_dir(image_dir, "WFLW image folder")
    records, skipped = [], 0
    for number, line in enumerate(read_text(annotation_file, "WFLW list").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(_parse_line(line, image_dir, f"{annotation_file}:{number}"))
        except ENTRY_ERRORS as error:
            skip_or_raise(error, on_error)
            skipped += 1
    return require_faces(records, annotation_file, skipped)


def read_wflw_split(root: str | Path, split: str, on_error: OnError | None = None) -> list[FaceRecord]:
    """The `train` or `test` faces of a WFLW folder holding `WFLW_annotations/` and `WFLW_images/`."""
    if split not in SPLITS:
        raise ValueError(f"unknown WFLW split {split!r}; expected one of {', '.join(SPLITS)}")
    root = existing_dir(root, "WFLW folder")
    annotations = (
        root / "WFLW_annotations" / "list_98pt_rect_attr_train_test" / f"list_98pt_rect_attr_{split}.txt"
    )
    if not annotations.is_file():
        raise FileNotFoundError(f"{annotations}: WFLW {split} annotation file not found (looked in {root})")
    images = root / "WFLW_images"
    if not images.is_dir():
        raise FileNotFoundError(f"{images}: WFLW image folder not found (looked in {root})")
    return read_wflw(annotations, images, on_error)


def _parse_line(line: str, image_dir: Path, where: str) -> FaceRecord:
    fields = line.split()
    numbers, path = fields[:-1], fields[-1]
    if len(numbers) != _NUMBERS:
        found = (len(numbers) - 4 - len(FLAG_NAMES)) / 2
        raise ValueError(
            f"{where}: expected {NUM_POINTS} points, found {found:g} ({len(numbers)} numbers before the "
            f"image path; expected {_NUMBERS}: x y per point, 4 box numbers, {len(FLAG_NAMES)} flags)"
        )
    values = np.asarray([parse_float(v, where) for v in numbers[: 2 * NUM_POINTS + 4]], dtype=np.float32)
    landmarks, box = values[: 2 * NUM_POINTS].reshape(NUM_POINTS, 2), values[2 * NUM_POINTS :]
    if not np.isfinite(landmarks).all():
        raise ValueError(f"{where}: NaN or infinite coordinates")
    flags = {}
    for name, text in zip(FLAG_NAMES, numbers[2 * NUM_POINTS + 4 :]):
        if text not in ("0", "1"):
            raise ValueError(f"{where}: flag {name} must be 0 or 1, got {text!r}")
        flags[name] = text == "1"
    image = image_dir / path
    if not image.is_file():
        raise FileNotFoundError(f"{where}: image {image} not found")
    return FaceRecord(image, landmarks, identity=path, flags=flags, source=where, box=box)

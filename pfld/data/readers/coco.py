"""COCO-style keypoint json files, as mmpose ships its face data sets (WFLW, 300W, COFW, ...).

`images: [{id, file_name}]`, `annotations: [{image_id, keypoints: [x, y, v] * K, bbox: [x, y, w, h]}]`.
`v == 0` marks a point that is not labelled (NaN in the record); any other `v` is labelled, whether
visible or occluded. Coordinates are taken as 0-based pixels, as given.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from pfld.data.readers.common import (
    ENTRY_ERRORS,
    OnError,
    check_points,
    existing_dir,
    existing_file,
    read_text,
    require_faces,
    skip_or_raise,
)
from pfld.data.records import FaceRecord


def read_coco_keypoints(
    json_path: str | Path,
    image_dir: str | Path | None = None,
    num_points: int | None = None,
    on_error: OnError | None = None,
) -> list[FaceRecord]:
    """The annotated faces of a COCO keypoint json, in annotation order.

    Args:
        image_dir: the folder `file_name`s are relative to (default: the json's folder).
        num_points: points per face; None: the most common count in the file.
        on_error: None raises on a bad annotation; else each bad annotation's message is passed to it
            and the annotation skipped.

    The identity of a face is its image's `file_name` (the photo); the box is `x_min, y_min, x_max, y_max`.
    """
    json_path = existing_file(json_path, "COCO keypoint json")
    image_dir = existing_dir(image_dir if image_dir is not None else json_path.parent, "image folder")
    try:
        data = json.loads(read_text(json_path, "COCO json"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{json_path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(data, dict) or not {"images", "annotations"} <= data.keys():
        raise ValueError(f"{json_path}: not a COCO keypoint file (needs 'images' and 'annotations')")
    try:
        files = {image["id"]: image["file_name"] for image in data["images"]}
    except (KeyError, TypeError):
        files = None
    if (
        files is None
        or not isinstance(data["images"], list)
        or not all(isinstance(f, str) for f in files.values())
    ):
        raise ValueError(f"{json_path}: every entry of 'images' needs an 'id' and a 'file_name' (a string)")
    annotations = data["annotations"]
    if not isinstance(annotations, list):
        raise ValueError(f"{json_path}: 'annotations' must be a list, got {type(annotations).__name__}")  # noqa: TRY004
    if num_points is None:
        counts = Counter(len(a.get("keypoints") or ()) // 3 for a in annotations if isinstance(a, dict))
        num_points = counts.most_common(1)[0][0] if counts else None
    records, skipped = [], 0
    for index, annotation in enumerate(annotations):
        where = f"{json_path}: annotations[{index}]"
        if isinstance(annotation, dict) and "id" in annotation:
            where += f" (id {annotation['id']})"
        try:
            records.append(_parse_annotation(annotation, files, image_dir, num_points, where))
        except ENTRY_ERRORS as error:
            skip_or_raise(error, on_error)
            skipped += 1
    return require_faces(records, json_path, skipped)


def _parse_annotation(
    annotation: Any, files: dict[Any, str], image_dir: Path, num_points: int | None, where: str
) -> FaceRecord:
    try:
        keypoints = np.asarray(annotation["keypoints"], dtype=np.float64)
        image_id = annotation["image_id"]
        bbox = annotation.get("bbox")
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where}: needs 'image_id' and numeric 'keypoints' [x, y, v] * K") from None
    if keypoints.ndim != 1 or keypoints.size % 3:
        raise ValueError(f"{where}: keypoints must be [x, y, v] * K, got {keypoints.size} numbers")
    keypoints = keypoints.reshape(-1, 3)
    landmarks = keypoints[:, :2].astype(np.float32)  # (K, 2)
    landmarks[keypoints[:, 2] == 0] = np.nan
    check_points(landmarks, num_points, where, missing=True)
    box = None
    if bbox:
        try:
            x, y, width, height = np.asarray(bbox, dtype=np.float32).reshape(4)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: bbox must be [x, y, width, height], got {bbox!r}") from None
        box = np.asarray([x, y, x + width, y + height], dtype=np.float32)
    if image_id not in files:
        raise ValueError(f"{where}: image_id {image_id!r} is not in 'images'")
    image = image_dir / files[image_id]
    if not image.is_file():
        raise FileNotFoundError(f"{where}: image {image} not found")
    return FaceRecord(image, landmarks, identity=files[image_id], source=where, box=box)

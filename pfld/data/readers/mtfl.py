"""MTFL (Zhang et al., ECCV 2014) as shipped in ``../shared/data/mtfl5``: five points and attributes.

``train.csv``: ``file,x0,y0,...,x4,y4`` in 0-based pixels, in the `five_point` order (subject's right eye
centre, left eye centre, nose tip, right mouth corner, left mouth corner). ``attributes.csv``:
``file,gender,smiling,glasses,head_pose`` with MTFL's codes (smiling and glasses 1 yes, 2 no; head pose
1 left profile, 2 left, 3 frontal, 4 right, 5 right profile).

Flags: ``pose`` (head pose 1 or 5, the paper's profile class), ``expression`` (smiling) and ``glasses``.
Identities: the person for LFW photos (``lfw_<First_Last>_<NNNN>.jpg``), the photo for web ones.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from pfld.data.readers.common import (
    ENTRY_ERRORS,
    OnError,
    existing_file,
    read_text,
    require_faces,
    skip_or_raise,
)
from pfld.data.readers.landmark_csv import read_landmark_csv
from pfld.data.records import FaceRecord

ATTRIBUTE_COLUMNS: tuple[str, ...] = ("file", "gender", "smiling", "glasses", "head_pose")
_YES, _NO = "1", "2"
PROFILE_POSES: tuple[str, ...] = ("1", "5")


def read_mtfl(root: str | Path, on_error: OnError | None = None) -> list[FaceRecord]:
    """The faces of ``root/train.csv`` with the flags of ``root/attributes.csv`` (see the module)."""
    root = Path(root)
    records = read_landmark_csv(root / "train.csv", image_dir=root, num_points=5, on_error=on_error)
    attributes = read_attributes(root / "attributes.csv")
    faces, skipped = [], 0
    for record in records:
        name = record.image_path.relative_to(root).as_posix()
        try:
            flags = attributes.get(name)
            if flags is None:
                raise ValueError(f"{record.source}: {name} has no row in {root / 'attributes.csv'}")
        except ENTRY_ERRORS as error:
            skip_or_raise(error, on_error)
            skipped += 1
            continue
        stem = record.image_path.stem
        identity = record.identity if stem.startswith("lfw_") else stem
        faces.append(FaceRecord(record.image_path, record.landmarks, identity, flags, record.source))
    return require_faces(faces, root / "train.csv", skipped)


def read_attributes(path: Path) -> dict[str, dict[str, bool]]:
    """``attributes.csv`` -> file name -> flags; a malformed file raises naming the line."""
    path = existing_file(path, "MTFL attributes file")
    flags: dict[str, dict[str, bool]] = {}
    with io.StringIO(read_text(path, "MTFL attributes file"), newline="") as handle:
        rows = csv.reader(handle)
        header = next(rows, None)
        if header is None or tuple(c.strip() for c in header) != ATTRIBUTE_COLUMNS:
            raise ValueError(f"{path}:1: expected the header {','.join(ATTRIBUTE_COLUMNS)}, got {header}")
        for number, row in enumerate(rows, start=2):
            if not row:
                continue
            cells = [c.strip() for c in row]
            if len(cells) != len(ATTRIBUTE_COLUMNS):
                raise ValueError(
                    f"{path}:{number}: expected {len(ATTRIBUTE_COLUMNS)} columns, got {len(cells)}"
                )
            name, _gender, smiling, glasses, pose = cells
            for column, value, allowed in (
                ("smiling", smiling, (_YES, _NO)),
                ("glasses", glasses, (_YES, _NO)),
                ("head_pose", pose, ("1", "2", "3", "4", "5")),
            ):
                if value not in allowed:
                    raise ValueError(
                        f"{path}:{number}: {column} must be one of {list(allowed)}, got {value!r}"
                    )
            if name in flags:
                raise ValueError(f"{path}:{number}: {name} is listed twice")
            flags[name] = {
                "pose": pose in PROFILE_POSES,
                "expression": smiling == _YES,
                "glasses": glasses == _YES,
            }
    return flags

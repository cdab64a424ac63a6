"""Kaggle "Facial Keypoints Detection" submissions: ``RowId,Location`` rows for an ``IdLookupTable.csv``.

The lookup table (``RowId,ImageId,FeatureName,Location``; Location empty) asks, row by row, for one
coordinate of one test face: ``ImageId`` is 1-based into ``test.csv``'s rows (read them with
`pfld.data.readers.kaggle.read_kaggle_test`), ``FeatureName`` one of the 30 kaggle15 columns
(``left_eye_center_x``, ...). Predictions are in 0-based pixels of the 96 x 96 test image (a model whose
crop is the whole image gives them as ``pfld.data.crop.from_unit(points, 96)``); Locations are clipped
to [0, 96].
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from pfld.data.readers.kaggle import SIDE, kaggle_columns
from pfld.io.atomic import atomic_write_text

LOOKUP_COLUMNS: tuple[str, ...] = ("RowId", "ImageId", "FeatureName")


def write_submission(predictions: np.ndarray, lookup_csv: str | Path, out_csv: str | Path) -> int:
    """Write ``out_csv`` (``RowId,Location``, one row per lookup row, in its order); returns the row count.

    Args:
        predictions: (N, 15, 2) x then y, 0-based pixels of the 96 x 96 images of test.csv's N rows, in
            their order (ImageId i is ``predictions[i - 1]``).
        lookup_csv: Kaggle's ``IdLookupTable.csv``; an unknown FeatureName, an ImageId outside 1..N or a
            RowId or ImageId that is not a whole number raises, naming the file and line.
    """
    lookup_csv = Path(lookup_csv)
    points = np.asarray(predictions, dtype=np.float64)
    if points.ndim != 3 or points.shape[1:] != (15, 2):
        raise ValueError(f"predictions must have shape (N, 15, 2) in kaggle15 order, got {points.shape}")
    if not lookup_csv.is_file():
        raise FileNotFoundError(f"{lookup_csv}: Kaggle IdLookupTable not found")
    flat = points.reshape(len(points), -1)  # (N, 30) in the columns' order
    column = {name: i for i, name in enumerate(kaggle_columns())}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["RowId", "Location"])
    count = 0
    with lookup_csv.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        header = [cell.strip() for cell in next(reader, [])]
        missing = [name for name in LOOKUP_COLUMNS if name not in header]
        if missing:
            raise ValueError(f"{lookup_csv}:1: the header has no column {', '.join(missing)}")
        at = {name: header.index(name) for name in LOOKUP_COLUMNS}
        for row in reader:
            if not row:
                continue
            where = f"{lookup_csv}:{reader.line_num}"
            if len(row) != len(header):
                raise ValueError(f"{where}: {len(row)} cells, but the header has {len(header)} columns")
            row_id, image_id = (
                _whole(row[at["RowId"]], "RowId", where),
                _whole(row[at["ImageId"]], "ImageId", where),
            )
            feature = row[at["FeatureName"]].strip()
            if feature not in column:
                raise ValueError(
                    f"{where}: FeatureName {feature!r} is not a kaggle15 column "
                    f"({', '.join(kaggle_columns()[:2])}, ..., {kaggle_columns()[-1]})"
                )
            if not 1 <= image_id <= len(points):
                raise ValueError(
                    f"{where}: ImageId {image_id} is outside 1..{len(points)} (the predicted test faces)"
                )
            value = flat[image_id - 1, column[feature]]
            if not np.isfinite(value):
                raise ValueError(f"{where}: the prediction of {feature} for ImageId {image_id} is {value}")
            writer.writerow([row_id, f"{float(np.clip(value, 0.0, SIDE)):.4f}"])
            count += 1
    if not count:
        raise ValueError(f"{lookup_csv}: no rows to answer")
    atomic_write_text(Path(out_csv), out.getvalue())
    return count


def _whole(text: str, name: str, where: str) -> int:
    text = text.strip()
    if not text.isdigit():
        raise ValueError(f"{where}: {name} {text!r} is not a positive whole number")
    return int(text)

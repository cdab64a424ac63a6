"""A labelled validation set and a complete-faces training set for the derived Kaggle files.

    .venv/bin/python scripts/kaggle_validation.py                  # in data/kaggle_300w

From the files ``scripts/make_kaggle_fixture.py`` wrote in ``--folder``:

  validation.csv         the test faces (test.csv, AFW) in training.csv's layout (30 kaggle15 columns and
                         Image) with all 15 points, derived from faces68.csv's 68 points by the fixture
                         script's own ``kaggle_points`` (scripts/mappings/kaggle15-ibug68.yaml)
  training_complete.csv  the rows of training.csv with all 30 cells filled (what ``dropna`` keeps)

faces68.csv keeps the 68 points to 4 decimals, so a derived point can differ from the fixture's own by
up to 1e-4 px; the training rows are checked against it.

    .venv/bin/python scripts/kaggle_validation.py --check-pseudo data/kaggle_pseudo/train

instead scores a pseudo-labelled split (``python -m data pseudo-label --keep-scheme``) of training.csv
against the points the fixture removed: the error of its pseudo points (mean distance over the inter-pupil
distance, per face, then the mean over faces; the validation NME's normaliser) and that its annotated
points are training.csv's.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from make_kaggle_fixture import COLUMNS, ROOT, coordinates, kaggle_points, write_csv


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def points68(row: dict[str, str]) -> np.ndarray:
    return np.asarray([[float(row[f"x{i}"]), float(row[f"y{i}"])] for i in range(68)])


def check_pseudo(split: Path, folder: Path) -> dict[str, float]:
    """Score ``split``'s pseudo points against the 15 points faces68.csv derives for the same rows."""
    from pfld.data.cache import ANNOTATED, PSEUDO
    from pfld.data.schemes import load_scheme
    from pfld.data.store import load_faces

    faces = load_faces(split)
    truth_rows = {
        int(f["row"]): kaggle_points(points68(f))
        for f in read_rows(folder / "faces68.csv")
        if f["split"] == "train"
    }
    right, left = load_scheme("kaggle15").pupils
    errors, annotated_worst, pseudo_points = [], 0.0, 0
    for source, points, kinds in zip(faces.sources, faces.landmarks, faces.point_sources, strict=True):
        line = int(str(source).rsplit(":", 1)[1])  # training.csv's line; row 1 is line 2
        truth = truth_rows[line - 1] + faces.border
        distance = np.linalg.norm(points - truth, axis=1)
        annotated_worst = max(annotated_worst, float(distance[kinds == ANNOTATED].max(initial=0.0)))
        pseudo = kinds == PSEUDO
        if pseudo.any():
            pupils = float(np.linalg.norm(truth[right] - truth[left]))
            errors.append(distance[pseudo].mean() / pupils)
            pseudo_points += int(pseudo.sum())
    if annotated_worst > 1e-3:
        raise SystemExit(f"{split}: annotated points differ from training.csv's by {annotated_worst:.4f} px")
    return {
        "faces": len(faces),
        "faces_with_pseudo_points": len(errors),
        "pseudo_points": pseudo_points,
        "pseudo_nme_mean": round(float(np.mean(errors)), 4),
        "pseudo_nme_median": round(float(np.median(errors)), 4),
        "pseudo_nme_p95": round(float(np.percentile(errors, 95)), 4),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--folder", type=Path, default=ROOT / "data" / "kaggle_300w", help="make_kaggle_fixture's output"
    )
    parser.add_argument(
        "--check-pseudo", type=Path, help="a pseudo-labelled split of training.csv to score (writes nothing)"
    )
    args = parser.parse_args(argv)
    if args.check_pseudo is not None:
        print(json.dumps(check_pseudo(args.check_pseudo, args.folder), indent=2))
        return
    faces68 = read_rows(args.folder / "faces68.csv")
    training = read_rows(args.folder / "training.csv")
    images = {row["ImageId"]: row["Image"] for row in read_rows(args.folder / "test.csv")}
    keep = np.ones(len(COLUMNS) // 2, dtype=bool)
    # The training rows' labelled cells must be what faces68.csv derives to: the same derivation.
    worst = 0.0
    for face in (f for f in faces68 if f["split"] == "train"):
        row = training[int(face["row"]) - 1]
        derived = kaggle_points(points68(face)).reshape(-1)
        given = np.asarray([float(row[c]) if row[c] else np.nan for c in COLUMNS])
        worst = max(worst, float(np.nanmax(np.abs(derived - given))))
    if worst > 1e-3:
        raise SystemExit(f"faces68.csv does not derive training.csv's points (off by {worst:.4f} px)")
    validation = [
        coordinates(kaggle_points(points68(face)), keep) + [images[face["row"]]]
        for face in faces68
        if face["split"] == "test"
    ]
    complete = [[row[c] for c in [*COLUMNS, "Image"]] for row in training if all(row[c] for c in COLUMNS)]
    write_csv(args.folder / "validation.csv", [*COLUMNS, "Image"], validation)
    write_csv(args.folder / "training_complete.csv", [*COLUMNS, "Image"], complete)
    print(
        f"wrote {args.folder}: validation.csv ({len(validation)} test faces, all 15 points; training rows "
        f"re-derived within {worst:.5f} px), training_complete.csv ({len(complete)} of {len(training)} "
        "training faces)"
    )


if __name__ == "__main__":
    main()

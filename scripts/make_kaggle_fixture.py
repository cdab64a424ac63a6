"""Kaggle "Facial Keypoints Detection" files made from real 300W faces, in both layouts users have.

    .venv/bin/python scripts/make_kaggle_fixture.py                      # every face -> data/kaggle_300w
    .venv/bin/python scripts/make_kaggle_fixture.py --out tests/data/kaggle --limit 6 --test-limit 2

Training faces come from ``300w/helen/trainset``, test faces from ``300w/afw`` (a random sample of
each with ``--seed``). Each face is a 96 x 96 grey crop: the square of ``--scale`` (1.2) x the longer
side of its 68 points' box, centred ``--shift`` (0.12) of the side above the box's centre, which puts
the eyes and the lower lip where Kaggle's faces have them (eye centres about 36 px apart at y about 37,
lower lip at y about 79) and cuts the chin as Kaggle's crops often do. Written in ``--out``:

  training.csv          the 30 kaggle15 coordinate columns (0-based pixels of the crop) and Image
                        (9,216 grey values, row-major); empty cells are missing points
  test.csv              ImageId,Image
  IdLookupTable.csv     RowId,ImageId,FeatureName,Location (Location empty): the points asked of each
                        test face, all 30 columns or the 8 of the four common points
  face_images.npz       the training faces again, one (96, 96, N) uint8 array 'face_images'
  facial_keypoints.csv  their 30 coordinate columns, row i for image i
  faces68.csv           where each face came from: split, row (face number / ImageId), the .pts file
                        (relative to --shared), the crop (left, top, side in photo pixels) and the 68
                        iBUG points in 0-based pixels of the 96 px crop

The 15 points from the 68: the mapping `scripts/mappings/kaggle15-ibug68.yaml` (eye
centre = mean of the eye's six points, the rest iBUG points; "left" is the subject's left).

Missing points as in Kaggle's training.csv, where about 70 % of the 7,049 faces lack some points, most
keeping only the eye centres, the nose tip and the bottom lip: a seeded 67.5 % of the faces keep only
those four, 2.5 % (at least one face when there are four or more) lose one to three other points, the
rest keep all 15. Deliberately independent of `pfld.data.readers`, so a reader bug cannot leak into its
own fixture. Coordinates: `.pts` values are 1-based; a 0-based p maps to (p - corner + 0.5) * 96 / side
- 0.5 in the crop (pixel centres, as cv2.resize samples them).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from pfld.data.schemes.mapping import read_mapping

ROOT = Path(__file__).resolve().parents[1]
SIDE = 96
#: kaggle15 from the 68 iBUG points (derived points are means), and its point names in index order
MAPPING = read_mapping(Path(__file__).resolve().parent / "mappings" / "kaggle15-ibug68.yaml")
NAMES = MAPPING.source.point_names
COLUMNS = [f"{name}_{axis}" for name in NAMES for axis in "xy"]
#: The four points most of Kaggle's faces have.
CORE = [
    i
    for i, name in enumerate(NAMES)
    if name in {"left_eye_center", "right_eye_center", "nose_tip", "mouth_center_bottom_lip"}
]
CORE_SHARE, OTHER_SHARE = 0.675, 0.025


def read_pts(path: Path) -> np.ndarray:
    """(68, 2) float64 0-based pixels of a headed 300W `.pts` file (1-based values)."""
    body = path.read_text().split("{")[1].split("}")[0]
    return np.asarray(body.split(), dtype=np.float64).reshape(-1, 2) - 1.0


def crop_face(pts: Path, scale: float, shift: float) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int]]:
    """(96, 96) uint8 grey crop, its (68, 2) points in crop pixels and the crop (left, top, side)."""
    image = cv2.imread(str(next(p for p in pts.parent.glob(pts.stem + ".*") if p.suffix != ".pts")))
    points = read_pts(pts)
    low, high = points.min(0), points.max(0)
    side = round(scale * float((high - low).max()))
    centre = (low + high) / 2 - [0.0, shift * side]  # face lower in the crop: the chin is cut
    left, top = (int(v) for v in np.round(centre - side / 2))
    padded = cv2.copyMakeBorder(image, side, side, side, side, cv2.BORDER_REPLICATE)
    crop = padded[top + side : top + 2 * side, left + side : left + 2 * side]
    grey = cv2.cvtColor(cv2.resize(crop, (SIDE, SIDE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return grey, (points - [left, top] + 0.5) * (SIDE / side) - 0.5, (left, top, side)


def kaggle_points(points68: np.ndarray) -> np.ndarray:
    """(68, 2) -> (15, 2) kaggle15 points (see the module)."""
    return MAPPING.project(points68)


def kept_points(count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Per face a (15,) bool of the points it keeps, in Kaggle's pattern (see the module)."""
    core = round(CORE_SHARE * count)
    other = max(1, round(OTHER_SHARE * count)) if count >= 4 else 0
    patterns = ["core"] * core + ["other"] * min(other, count - core) + ["all"] * (count - core - other)
    masks = []
    for pattern in rng.permutation(patterns):
        keep = np.ones(len(NAMES), dtype=bool)
        if pattern == "core":
            keep[:] = False
            keep[CORE] = True
        elif pattern == "other":
            others = [i for i in range(len(NAMES)) if i not in CORE]
            keep[rng.choice(others, size=int(rng.integers(1, 4)), replace=False)] = False
        masks.append(keep)
    return masks


def coordinates(points: np.ndarray, keep: np.ndarray) -> list[str]:
    return [f"{v:.4f}" if keep[i] else "" for i, point in enumerate(points) for v in point]


def pixel_text(image: np.ndarray) -> str:
    return " ".join(str(int(v)) for v in image.reshape(-1))


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])


def sample(folder: Path, limit: int | None, rng: np.random.Generator) -> list[Path]:
    files = sorted(folder.glob("*.pts"))
    if not files:
        raise SystemExit(f"{folder}: no .pts files")
    order = rng.permutation(len(files))[: limit if limit is not None else len(files)]
    return [files[i] for i in sorted(order)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shared", type=Path, default=ROOT.parent / "shared" / "data", help="the shared data folder"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "kaggle_300w", help="output folder")
    parser.add_argument(
        "--limit", type=int, default=None, help="training faces (default: all 870 Helen faces)"
    )
    parser.add_argument(
        "--test-limit", type=int, default=None, help="test faces (default: all 337 AFW faces)"
    )
    parser.add_argument("--seed", type=int, default=0, help="which faces, and which points go missing")
    parser.add_argument(
        "--scale", type=float, default=1.2, help="crop side over the landmark box's longer side"
    )
    parser.add_argument(
        "--shift", type=float, default=0.12, help="crop centre above the box centre, of the side"
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    train = sample(args.shared / "300w" / "helen" / "trainset", args.limit, rng)
    test = sample(args.shared / "300w" / "afw", args.test_limit, rng)
    args.out.mkdir(parents=True, exist_ok=True)
    provenance, training, images = [], [], []
    for row, (pts, keep) in enumerate(zip(train, kept_points(len(train), rng), strict=True), start=1):
        grey, points68, crop = crop_face(pts, args.scale, args.shift)
        training.append(coordinates(kaggle_points(points68), keep) + [pixel_text(grey)])
        images.append(grey)
        provenance.append(
            ["train", row, pts.relative_to(args.shared).as_posix(), *crop, *points68.reshape(-1)]
        )
    tests, lookup = [], []
    for image_id, (pts, keep) in enumerate(zip(test, kept_points(len(test), rng), strict=True), start=1):
        grey, points68, crop = crop_face(pts, args.scale, args.shift)
        tests.append([str(image_id), pixel_text(grey)])
        asked = range(len(NAMES)) if keep.all() else CORE  # Kaggle asks for the points its truth has
        lookup += [[image_id, COLUMNS[2 * i + axis]] for i in sorted(asked) for axis in (0, 1)]
        provenance.append(
            ["test", image_id, pts.relative_to(args.shared).as_posix(), *crop, *points68.reshape(-1)]
        )
    write_csv(args.out / "training.csv", [*COLUMNS, "Image"], training)
    write_csv(args.out / "test.csv", ["ImageId", "Image"], tests)
    write_csv(
        args.out / "IdLookupTable.csv",
        ["RowId", "ImageId", "FeatureName", "Location"],
        [[str(n), str(i), name, ""] for n, (i, name) in enumerate(lookup, start=1)],
    )
    np.savez_compressed(args.out / "face_images.npz", face_images=np.stack(images, axis=2))
    write_csv(args.out / "facial_keypoints.csv", COLUMNS, [row[:-1] for row in training])
    header = ["split", "row", "source", "crop_left", "crop_top", "crop_side"]
    header += [f"{axis}{i}" for i in range(68) for axis in "xy"]
    write_csv(
        args.out / "faces68.csv",
        header,
        [[*(str(v) for v in p[:6]), *(f"{v:.4f}" for v in p[6:])] for p in provenance],
    )
    missing = sum(row[:-1].count("") for row in training) // 2
    total = sum(f.stat().st_size for f in args.out.iterdir() if f.is_file())
    print(
        f"wrote {args.out}: {len(train)} training faces ({missing} of {15 * len(train)} points missing), "
        f"{len(test)} test faces, {len(lookup)} lookup rows; {total / 1e3:.0f} kB"
    )


if __name__ == "__main__":
    main()

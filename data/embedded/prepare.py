"""Make the small embedded sample of real faces that the default run and the core tests use.

    python data/embedded/prepare.py [--shared ../shared/data]

Reads 300W (Helen, AFW) and ytf68 from the shared data folder, cuts each face loosely (the crop
policy's square enlarged 1.6 times, so augmentation has room), and writes JPEGs plus `train.csv` /
`val.csv` in the 68-point CSV format (`file,x0,y0,...`, 0-based pixels of the written image).
Training: Helen faces and ytf68 training identities; validation: AFW photos and other ytf68
identities, so no photo or person is on both sides. Deterministic for a given seed.
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
from pathlib import Path

import cv2
from tqdm import tqdm

from pfld.data.cache import load_image
from pfld.data.crop import crop_face
from pfld.data.readers import read_landmark_csv, read_pts_folder
from pfld.data.records import FaceRecord

HERE = Path(__file__).resolve().parent
STORED_SIDE = 184  # pixels of each stored loose crop
STORED_MARGIN = 1.6  # stored crop = policy crop x 1.6 (policy crop ~115 px)


def pick(
    records: list[FaceRecord], count: int, rng: random.Random, per_identity: int = 2
) -> list[FaceRecord]:
    """``count`` faces, at most ``per_identity`` from any identity, spread over as many as possible."""
    by_identity: dict[str, list[FaceRecord]] = {}
    for record in records:
        by_identity.setdefault(record.identity, []).append(record)
    identities = sorted(by_identity)
    rng.shuffle(identities)
    chosen = [r for identity in identities for r in rng.sample(by_identity[identity], 1)]
    chosen = chosen[:count]
    if len(chosen) < count:
        rest = [r for identity in identities for r in by_identity[identity][1:per_identity]]
        chosen += rest[: count - len(chosen)]
    return chosen


def write_split(records: list[FaceRecord], name: str, prefix: dict[str, str], quality: int) -> int:
    images = HERE / "images"
    rows = []
    for record in tqdm(records, desc=f"writing {name}", unit="face"):
        crop, points = crop_face(
            load_image(record.image_path, record.source), record.landmarks, STORED_SIDE, margin=STORED_MARGIN
        )
        source = next(tag for key, tag in prefix.items() if key in str(record.image_path))
        file_name = f"{source}-{record.image_path.stem}.jpg"
        cv2.imwrite(
            str(images / file_name),
            cv2.cvtColor(crop, cv2.COLOR_RGB2BGR),
            [cv2.IMWRITE_JPEG_QUALITY, quality],
        )
        rows.append([f"images/{file_name}"] + [f"{v:.2f}" for v in points.reshape(-1)])
    with (HERE / f"{name}.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file"] + [f"{axis}{i}" for i in range(68) for axis in "xy"])
        writer.writerows(rows)
    return len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shared", type=Path, default=HERE.parents[1] / ".." / "shared" / "data")
    parser.add_argument("--train", type=int, default=480, help="training faces")
    parser.add_argument("--val", type=int, default=160, help="validation faces")
    parser.add_argument("--quality", type=int, default=88, help="JPEG quality")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    helen = read_pts_folder(args.shared / "300w" / "helen" / "trainset")
    afw = read_pts_folder(args.shared / "300w" / "afw")
    ytf = read_landmark_csv(
        args.shared / "ytf68" / "training_frames_keypoints.csv", args.shared / "ytf68" / "training"
    )
    ytf_ids = sorted({r.identity for r in ytf})
    rng.shuffle(ytf_ids)
    val_ids = set(ytf_ids[: len(ytf_ids) // 4])
    ytf_train = [r for r in ytf if r.identity not in val_ids]
    ytf_val = [r for r in ytf if r.identity in val_ids]

    train = pick(helen, args.train // 2, rng) + pick(ytf_train, args.train - args.train // 2, rng)
    val = pick(afw, args.val // 2, rng) + pick(ytf_val, args.val - args.val // 2, rng)

    shutil.rmtree(HERE / "images", ignore_errors=True)
    (HERE / "images").mkdir()
    prefix = {"helen": "helen", "afw": "afw", "ytf68": "ytf"}
    counts = {
        name: write_split(split, name, prefix, args.quality)
        for name, split in (("train", train), ("val", val))
    }
    size = sum(p.stat().st_size for p in (HERE / "images").iterdir()) / 2**20
    print(f"wrote {counts['train']} training and {counts['val']} validation faces ({size:.1f} MiB) to {HERE}")


if __name__ == "__main__":
    main()

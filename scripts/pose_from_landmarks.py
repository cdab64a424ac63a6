"""Train the landmarks -> head pose regressor on the shared training faces and compare three ways of
getting the head pose on AFW: the model's auxiliary net, the solvePnP fit on the predicted points (as
training's ground truth is made, on the annotated points), and the regressor on the predicted points.

    python scripts/pose_from_landmarks.py --model <checkpoint with a pose net, or a .onnx> \
        [--train data/shared300w/train data/ytf68/train data/ytf68/test] [--val data/shared300w/val] \
        [--out pose_regressor.pt]

The reference on AFW is the angles fitted to the annotated points (the prepared set's). Prints MAE per
angle in degrees and the time per face of each method (one thread) as a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pfld.data.attributes import fit_angles
from pfld.data.crop import from_unit
from pfld.data.schemes import load_scheme
from pfld.data.store import load_faces
from pfld.inference.crops import normalise
from pfld.inference.models import load_landmark_model
from pfld.predict.pose_regressor import fit_pose_regressor

ROOT = Path(__file__).resolve().parents[1]


def policy_crops(faces, size: int) -> np.ndarray:
    """(N, size, size, 3) uint8: each face's policy crop (no augmentation), resized to the model's input."""
    b, side = faces.border, faces.crop_size
    crops = [np.asarray(image[b : b + side, b : b + side]) for image in faces.images]
    return np.stack(
        [c if side == size else cv2.resize(c, (size, size), interpolation=cv2.INTER_AREA) for c in crops]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--train", type=Path, nargs="+", default=[ROOT / "data/shared300w/train",
                        ROOT / "data/ytf68/train", ROOT / "data/ytf68/test"])  # fmt: skip
    parser.add_argument("--val", type=Path, default=ROOT / "data/shared300w/val")
    parser.add_argument("--out", type=Path, help="save the regressor here (.pt)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)

    train = [load_faces(folder) for folder in args.train]
    scheme_name = train[0].scheme or "ibug68"
    points = np.concatenate([f.unit_landmarks() for f in train])
    angles = np.deg2rad(np.concatenate([f.angles for f in train]))
    start = time.perf_counter()
    regressor = fit_pose_regressor(points, angles, scheme_name, seed=args.seed)
    print(f"regressor trained on {len(points)} faces in {time.perf_counter() - start:.1f} s")
    if args.out:
        regressor.save(args.out)

    val = load_faces(args.val)
    truth = val.angles  # degrees, fitted to the annotation
    known = np.isfinite(truth).all(axis=1)
    model = load_landmark_model(args.model, threads=1)
    spec = model.spec
    inputs = normalise(policy_crops(val, spec.input_size), spec.mean, spec.std)
    units, pose = model(inputs)  # (N, K, 2) in [0, 1]; pose (N, 3) radians or None
    n = len(units)

    scheme = load_scheme(spec.scheme)
    start = time.perf_counter()
    fitted = np.rad2deg(
        np.stack([fit_angles(from_unit(u, spec.input_size), scheme, float(spec.input_size)) for u in units])
    )
    fit_ms = 1000 * (time.perf_counter() - start) / n
    start = time.perf_counter()
    for u in units:  # one face at a time, as the predictor calls it
        regressor(u)
    regressor_ms = 1000 * (time.perf_counter() - start) / n
    regressed = np.rad2deg(regressor(units))
    on_truth = np.rad2deg(regressor(val.unit_landmarks()[known]))

    rows = {}
    if pose is not None:
        rows["auxiliary net (the model's pose output)"] = (np.rad2deg(pose), "part of the model run")
    rows["solvePnP fit on the predicted points"] = (fitted, f"{fit_ms:.2f}")
    rows["regressor on the predicted points"] = (regressed, f"{regressor_ms:.2f}")
    print(
        f"\nAFW, {int(known.sum())} faces, {Path(args.model).name}; reference: the fit on the annotated points\n"
    )
    print("| pose from | MAE yaw | MAE pitch | MAE roll | ms per face |\n|---|---:|---:|---:|---:|")
    for name, (values, ms) in rows.items():
        ok = known & np.isfinite(values).all(axis=1)
        mae = np.abs(values[ok] - truth[ok]).mean(axis=0)
        print(f"| {name} | {mae[0]:.2f} | {mae[1]:.2f} | {mae[2]:.2f} | {ms} |")
    mae = np.abs(on_truth - truth[known]).mean(axis=0)
    print(
        f"| regressor on the annotated points (its own error) | {mae[0]:.2f} | {mae[1]:.2f} | {mae[2]:.2f} | |"
    )


if __name__ == "__main__":
    main()

"""Measure video prediction with detection on every n-th frame (`FaceTracker`) against detection on
every frame: time per frame, NME per frame, and frames where the annotated face is lost.

    python scripts/measure_tracking.py --model tests/data/models/pfld_025x_300w_int8.onnx \
        [--photos ../shared/data/300w/afw] [--clips 12] [--every 1 3 5 10 30] [--detector blazeface]

The clips are made from annotated photos, so every frame's landmarks are known: a 30 fps, 3 s view of
each photo (--size, default 480x360) through a hand-held camera that pans (a third of the view), zooms
(0.8x to 1.25x) and rolls (+-15 degrees) smoothly, with the annotated face in view. The photos should
be ones the model did not train on (AFW for the shared models). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

from pfld.data.crop import landmark_box
from pfld.data.readers import read_pts_folder
from pfld.inference.models import load_landmark_model
from pfld.io.images import read_image
from pfld.metrics import nme
from pfld.predict.detector import DETECTORS, create_detector
from pfld.predict.pipeline import Predictor
from pfld.predict.tracking import FaceTracker

SHARED = Path(os.environ.get("PFLD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FPS, SECONDS = 30, 3


def make_clip(photo: np.ndarray, landmarks: np.ndarray, size: tuple[int, int], phase: float):
    """Frames (list of (H, W, 3) uint8) and their (K, 2) landmarks of a moving view centred near the
    face, whose side in the view starts at about a third of the view's height."""
    width, height = size
    box = landmark_box(landmarks)
    centre, side = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]).max()
    base_zoom = height / 3 / side
    frames, points = [], []
    for index in range(FPS * SECONDS):
        t = 2 * np.pi * index / (FPS * SECONDS) + phase
        zoom = base_zoom * 1.25 ** np.sin(t)
        angle = 15 * np.sin(0.5 * t + phase)
        offset = np.array([np.sin(t), 0.5 * np.sin(2 * t)]) * width / 6  # view pixels
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, zoom)
        matrix[:, 2] += np.array([width / 2, height / 2]) - centre + offset
        frames.append(cv2.warpAffine(photo, matrix, (width, height), flags=cv2.INTER_LINEAR))
        points.append(landmarks @ matrix[:, :2].T + matrix[:, 2])
    return frames, np.stack(points).astype(np.float32)


def run(tracker: FaceTracker, frames: list[np.ndarray], truth: np.ndarray) -> tuple[float, list[float], int]:
    """Seconds, NME of the annotated face per frame where found, frames where it was not found (the
    face the prediction is nearest to within half the face's size)."""
    errors, lost, seconds = [], 0, 0.0
    for frame, points in zip(frames, truth, strict=True):
        start = time.perf_counter()
        faces = tracker(frame)
        seconds += time.perf_counter() - start
        box = landmark_box(points)
        centre, side = (box[:2] + box[2:]) / 2, (box[2:] - box[:2]).max()
        near = [f for f in faces if np.abs(f.landmarks.mean(axis=0) - centre).max() < side / 2]
        if not near:
            lost += 1
            continue
        predicted = torch.from_numpy(near[0].landmarks[None]).float()
        errors.append(float(nme(predicted, torch.from_numpy(points[None]), (36, 45))[0]))
    return seconds, errors, lost


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--photos", type=Path, default=SHARED / "300w" / "afw")
    parser.add_argument("--clips", type=int, default=12)
    parser.add_argument("--every", type=int, nargs="+", default=[1, 3, 5, 10, 30])
    parser.add_argument("--detector", choices=DETECTORS, default=DETECTORS[0])
    parser.add_argument("--size", type=int, nargs=2, default=[480, 360], metavar=("WIDTH", "HEIGHT"))
    args = parser.parse_args()

    records = read_pts_folder(args.photos)
    one_per_photo = {re.sub(r"_\d+$", "", r.image_path.stem): r for r in records}
    chosen = list(one_per_photo.values())[:: max(1, len(one_per_photo) // args.clips)][: args.clips]
    rng = np.random.default_rng(0)
    clips = [
        make_clip(read_image(r.image_path), r.landmarks, tuple(args.size), float(rng.uniform(0, 2 * np.pi)))
        for r in tqdm(chosen, desc="making clips", unit="clip")
    ]
    model = load_landmark_model(args.model, threads=1)
    predictor = Predictor(model, create_detector(args.detector))
    frames_total = sum(len(frames) for frames, _ in clips)
    print(f"\n{len(clips)} clips of {FPS * SECONDS} frames ({args.size[0]}x{args.size[1]}), "
          f"{predictor.detector.name}, {Path(args.model).name}, 1 thread\n")  # fmt: skip
    print("| detection | frames detected | ms per frame | frames per second | NME | frames lost |")
    print("|---|---:|---:|---:|---:|---:|")
    for every in args.every:
        seconds, errors, lost, detected = 0.0, [], 0, 0
        for frames, truth in clips:
            tracker = FaceTracker(predictor, every)
            clip_seconds, clip_errors, clip_lost = run(tracker, frames, truth)
            seconds, errors, lost = seconds + clip_seconds, errors + clip_errors, lost + clip_lost
            detected += tracker.detections
        label = "every frame" if every == 1 else f"every {every} frames (`--detect-every {every}`)"
        print(
            f"| {label} | {detected / frames_total:.0%} | {1000 * seconds / frames_total:.1f} "
            f"| {frames_total / seconds:.0f} | {np.mean(errors):.4f} | {lost} of {frames_total} |"
        )


if __name__ == "__main__":
    main()

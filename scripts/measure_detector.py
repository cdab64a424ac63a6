"""Measure the photo pipeline on annotated 300W photos: the detector's speed and miss rate, the fitted
detector-box -> landmark-box mapping, and the NME of crops made from detections against crops made
from the annotated landmarks (the training policy).

    python scripts/measure_detector.py --model logs/export/shared_025x_arm/model.onnx \
        [--fit ../shared/data/300w/helen/trainset] [--test ../shared/data/300w/afw] [--out report.json]

The mapping is fitted on --fit photos and the NME measured on --test photos (use photos the model did
not train on). Prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import json
import os
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
from pfld.metrics import nme
from pfld.predict.box_mapping import BoxMapping, fit_box_mapping
from pfld.predict.detector import DlibHogDetector
from pfld.predict.pipeline import Predictor

SHARED = Path(os.environ.get("PFLD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def matches(detection: np.ndarray, box: np.ndarray) -> bool:
    """A detection is the annotated face when its centre lies in the landmark box and its size is
    within a factor of 2 of the box's."""
    centre = (detection[:2] + detection[2:]) / 2
    ratio = (detection[2:] - detection[:2]).max() / (box[2:] - box[:2]).max()
    return bool((centre >= box[:2]).all() and (centre <= box[2:]).all() and 0.5 <= ratio <= 2.0)


def detect_folder(folder: Path, detector: DlibHogDetector) -> list[dict]:
    """Per annotated face: photo, landmarks, the matched detection (or None) and the detection time."""
    faces = []
    for record in tqdm(read_pts_folder(folder), desc=f"detecting in {folder.name}", unit="photo"):
        photo = cv2.cvtColor(cv2.imread(str(record.image_path)), cv2.COLOR_BGR2RGB)
        start = time.perf_counter()
        detections = detector(photo)
        seconds = time.perf_counter() - start
        box = landmark_box(record.landmarks)
        found = next((d for d in detections if matches(d.box, box)), None)
        faces.append(
            {
                "photo": photo,
                "landmarks": record.landmarks,
                "box": box,
                "detection": found,
                "seconds": seconds,
                "pixels": photo.shape[0] * photo.shape[1],
            }
        )
    return faces


def nme_of(predictor: Predictor, faces: list[dict], boxes: list[np.ndarray]) -> float:
    predictions = np.stack(
        [predictor.predict(f["photo"], [b])[0].landmarks for f, b in zip(faces, boxes, strict=True)]
    )
    targets = np.stack([f["landmarks"] for f in faces])
    return float(
        nme(torch.from_numpy(predictions).float(), torch.from_numpy(targets).float(), (36, 45)).mean()
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", required=True, help="a .ckpt or exported .onnx model")
    parser.add_argument("--fit", type=Path, default=SHARED / "300w" / "helen" / "trainset")
    parser.add_argument("--test", type=Path, default=SHARED / "300w" / "afw")
    parser.add_argument("--upsample", type=int, default=1)
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args()

    detector = DlibHogDetector(upsample=args.upsample)
    fit_faces, test_faces = detect_folder(args.fit, detector), detect_folder(args.test, detector)
    found_fit = [f for f in fit_faces if f["detection"] is not None]
    mapping = fit_box_mapping(
        np.stack([f["detection"].box for f in found_fit]), np.stack([f["box"] for f in found_fit])
    )
    every = fit_faces + test_faces
    seconds = np.array([f["seconds"] for f in every])
    megapixels = np.array([f["pixels"] for f in every]) / 1e6
    found = [f for f in test_faces if f["detection"] is not None]

    model = load_landmark_model(args.model, threads=1)
    identity = BoxMapping()
    rows = {
        "landmark-box crop (training policy)": nme_of(
            Predictor(model, mapping=identity, refine=0), found, [f["box"] for f in found]
        ),
        "detector box, no mapping": nme_of(
            Predictor(model, mapping=identity, refine=0), found, [f["detection"].box for f in found]
        ),
        "detector box, mapped": nme_of(
            Predictor(model, mapping=mapping, refine=0), found, [f["detection"].box for f in found]
        ),
        "detector box, mapped, 1 refinement": nme_of(
            Predictor(model, mapping=mapping, refine=1), found, [f["detection"].box for f in found]
        ),
        "detector box, mapped, 2 refinements": nme_of(
            Predictor(model, mapping=mapping, refine=2), found, [f["detection"].box for f in found]
        ),
    }
    result = {
        "model": args.model,
        "detector": f"{detector.name}, upsample {args.upsample}",
        "mapping": {"dx": mapping.dx, "dy": mapping.dy, "scale": mapping.scale, "fitted_on": len(found_fit)},
        "miss_rate": {
            args.fit.name: 1 - len(found_fit) / len(fit_faces),
            args.test.name: 1 - len(found) / len(test_faces),
            "all": 1 - (len(found_fit) + len(found)) / len(every),
        },
        "faces": {args.fit.name: len(fit_faces), args.test.name: len(test_faces)},
        "detector_ms": {
            "median": 1000 * float(np.median(seconds)),
            "p90": 1000 * float(np.percentile(seconds, 90)),
            "median_megapixels": float(np.median(megapixels)),
        },
        "nme_on_detected_test_faces": rows,
        "test_faces_scored": len(found),
    }
    print(
        f"\nmapping (fitted on {len(found_fit)} {args.fit.name} faces): dx {mapping.dx:.4f}, dy {mapping.dy:.4f}, scale {mapping.scale:.4f}"
    )
    print(
        f"detector: {result['detector']}; median {result['detector_ms']['median']:.1f} ms per photo "
        f"(p90 {result['detector_ms']['p90']:.1f}; median photo {result['detector_ms']['median_megapixels']:.2f} MP)"
    )
    print("miss rate: " + ", ".join(f"{k} {v:.1%}" for k, v in result["miss_rate"].items()))
    print(f"\n| crop ({len(found)} detected {args.test.name} faces) | NME |\n|---|---:|")
    for name, value in rows.items():
        print(f"| {name} | {value:.4f} |")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Measure the photo pipeline's face detectors on annotated 300W photos: speed, faces missed, extra
detections, the fitted detector-box -> landmark-box mapping, and the NME of crops made from detections
against crops made from the annotated landmarks (the training policy).

    python scripts/measure_detector.py --model tests/data/models/pfld_025x_300w_int8.onnx [more models] \
        [--detectors blazeface dlib] [--fit ../shared/data/300w/helen/trainset] \
        [--test ../shared/data/300w/afw] [--out report.json]

The mapping is fitted on --fit photos and the NME measured on --test photos (use photos the model did
not train on), per detector on the faces it found and on the faces every detector found. Prints
Markdown tables; timings are medians per photo with one thread, so run it on an idle machine.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path

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
from pfld.predict.box_mapping import BoxMapping, fit_box_mapping
from pfld.predict.detector import DETECTORS, FaceDetector, create_detector
from pfld.predict.pipeline import Predictor

SHARED = Path(os.environ.get("PFLD_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def matches(detection: np.ndarray, box: np.ndarray) -> bool:
    """A detection is the annotated face when its centre lies in the landmark box and its size is
    within a factor of 2 of the box's."""
    centre = (detection[:2] + detection[2:]) / 2
    ratio = (detection[2:] - detection[:2]).max() / (box[2:] - box[:2]).max()
    return bool((centre >= box[:2]).all() and (centre <= box[2:]).all() and 0.5 <= ratio <= 2.0)


def detect_folder(folder: Path, detector: FaceDetector) -> list[dict]:
    """Per annotated face: photo, landmarks, landmark box, the matched detection (or None), and per
    photo the detection time and the detections that match none of its annotated faces. AFW stores a
    photo once per annotated face (`<photo>_<face>.jpg`): identical copies are one photo."""
    photos: dict[str, tuple[np.ndarray, list]] = {}
    for record in read_pts_folder(folder):
        image = read_image(record.image_path)
        key = hashlib.sha1(image.tobytes()).hexdigest() + str(image.shape)
        photos.setdefault(key, (image, []))[1].append(record)
    faces = []
    for photo, group in tqdm(photos.values(), desc=f"{detector.name}: {folder.name}", unit="photo"):
        start = time.perf_counter()
        detections = detector(photo)
        seconds = time.perf_counter() - start
        boxes = [landmark_box(r.landmarks) for r in group]
        extra = sum(not any(matches(d.box, b) for b in boxes) for d in detections)
        for index, (record, box) in enumerate(zip(group, boxes, strict=True)):
            found = next((d for d in detections if matches(d.box, box)), None)
            faces.append(
                {
                    "key": str(record.image_path),
                    "photo": photo,
                    "landmarks": record.landmarks,
                    "box": box,
                    "detection": found,
                    # per photo (counted on its first face only)
                    "seconds": seconds if index == 0 else None,
                    "extra": extra if index == 0 else None,
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


def crop_rows(model, mapping: BoxMapping, faces: list[dict]) -> dict[str, float]:
    """NME of one model on these faces, cropped from the annotation and from the detections."""
    identity = BoxMapping()
    detected = [f["detection"].box for f in faces]
    return {
        "landmark-box crop (training policy)": nme_of(
            Predictor(model, mapping=identity, refine=0), faces, [f["box"] for f in faces]
        ),
        "detector box, no mapping": nme_of(Predictor(model, mapping=identity, refine=0), faces, detected),
        "detector box, mapped": nme_of(Predictor(model, mapping=mapping, refine=0), faces, detected),
        "detector box, mapped, 1 refinement": nme_of(
            Predictor(model, mapping=mapping, refine=1), faces, detected
        ),
        "detector box, mapped, 2 refinements": nme_of(
            Predictor(model, mapping=mapping, refine=2), faces, detected
        ),
    }


def measure(name: str, args: argparse.Namespace, models: dict) -> tuple[dict, list[dict]]:
    options = {"upsample": args.upsample} if name == "dlib" else {"min_face": args.min_face}
    detector = create_detector(name, **options)
    fit_faces, test_faces = detect_folder(args.fit, detector), detect_folder(args.test, detector)
    found_fit = [f for f in fit_faces if f["detection"] is not None]
    mapping = fit_box_mapping(
        np.stack([f["detection"].box for f in found_fit]), np.stack([f["box"] for f in found_fit])
    )
    every = fit_faces + test_faces
    seconds = np.array([f["seconds"] for f in every if f["seconds"] is not None])
    found = [f for f in test_faces if f["detection"] is not None]
    result = {
        "detector": detector.name,
        "options": options,
        "mapping": {"dx": mapping.dx, "dy": mapping.dy, "scale": mapping.scale, "fitted_on": len(found_fit)},
        "missed": {
            args.fit.name: 1 - len(found_fit) / len(fit_faces),
            args.test.name: 1 - len(found) / len(test_faces),
            "all": 1 - (len(found_fit) + len(found)) / len(every),
        },
        "faces": {args.fit.name: len(fit_faces), args.test.name: len(test_faces)},
        "photos": len(seconds),
        "extra_detections": int(sum(f["extra"] for f in every if f["extra"] is not None)),
        "ms_per_photo": {
            "median": 1000 * float(np.median(seconds)),
            "p90": 1000 * float(np.percentile(seconds, 90)),
        },
        "test_faces_scored": len(found),
        "nme_on_found_test_faces": {
            label: crop_rows(model, mapping, found) for label, model in tqdm(models.items(), desc="scoring")
        },
    }
    result["_mapping"] = mapping
    return result, test_faces


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", nargs="+", required=True, help=".ckpt or exported .onnx models")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=DETECTORS)
    parser.add_argument("--fit", type=Path, default=SHARED / "300w" / "helen" / "trainset")
    parser.add_argument("--test", type=Path, default=SHARED / "300w" / "afw")
    parser.add_argument("--upsample", type=int, default=1, help="dlib's upsampling")
    parser.add_argument("--min-face", type=float, default=24.0, help="BlazeFace's smallest face (px)")
    parser.add_argument("--out", type=Path, help="write the numbers as JSON here")
    args = parser.parse_args()

    models = {Path(m).name: load_landmark_model(m, threads=1) for m in args.model}
    results, test_faces = {}, {}
    for name in args.detectors:
        results[name], test_faces[name] = measure(name, args, models)

    # the faces every detector found: the same faces for every row
    common = [
        all(test_faces[name][i]["detection"] is not None for name in args.detectors)
        for i in range(len(next(iter(test_faces.values()))))
    ]
    for name in args.detectors:
        faces = [f for f, keep in zip(test_faces[name], common, strict=True) if keep]
        mapping = results[name].pop("_mapping")
        results[name]["nme_on_common_test_faces"] = {
            label: crop_rows(model, mapping, faces) for label, model in models.items()
        }
        results[name]["common_test_faces"] = len(faces)

    print(f"\n| detector | ms per photo (median, p90) | missed {args.fit.name} / {args.test.name} / all "
          "| extra detections | mapping dx, dy, scale |\n|---|---:|---:|---:|---:|")  # fmt: skip
    for name, r in results.items():
        missed, m = r["missed"], r["mapping"]
        print(
            f"| {r['detector']} | {r['ms_per_photo']['median']:.1f}, {r['ms_per_photo']['p90']:.1f} "
            f"| {' / '.join(f'{v:.1%}' for v in missed.values())} | {r['extra_detections']} "
            f"| {m['dx']:.3f}, {m['dy']:.3f}, {m['scale']:.3f} |"
        )
    for scope in ("found", "common"):
        for label in models:
            counts = ", ".join(
                f"{name} {r['test_faces_scored'] if scope == 'found' else r['common_test_faces']}"
                for name, r in results.items()
            )
            print(f"\n{label}, {args.test.name} faces {scope} ({counts})\n")
            print("| crop | " + " | ".join(results) + " |\n|---|" + "---:|" * len(results))
            rows = next(iter(results.values()))[f"nme_on_{scope}_test_faces"][label]
            for row in rows:
                values = [r[f"nme_on_{scope}_test_faces"][label][row] for r in results.values()]
                print(f"| {row} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    if args.out:
        args.out.write_text(json.dumps({"models": args.model, "detectors": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()

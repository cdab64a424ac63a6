"""`python predict.py INPUT... [--model MODEL]`: landmarks and head pose on photos, folders and videos.

Without ``--model``, the zoo's 0.25X int8 model (``pretrained/pfld-0.25x-68/model_int8.onnx``).

For each photo: `<out>/<name>.json` (every face's box, crop, landmarks in photo pixels, yaw/pitch/roll)
and `<out>/<name>.jpg` with the points and pose axes drawn. For each video: `<out>/<name>.jsonl` (one
line per frame) and `<out>/<name>.mp4`. For Kaggle's test.csv (header ``ImageId,Image``): the model
on each 96 px face as it is (no detector), `<out>/submission.csv` for `--kaggle-lookup`
IdLookupTable.csv, else `<out>/<name>.csv` (ImageId and the 30 coordinate columns).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from pfld.data.readers.kaggle import read_kaggle_test
from pfld.evaluation.kaggle import write_submission
from pfld.inference.models import LandmarkModel, load_landmark_model
from pfld.inference.zoo import DEFAULT_FILE, DEFAULT_MODEL, zoo_model
from pfld.io.images import read_image, write_image
from pfld.predict.detector import DETECTORS, create_detector
from pfld.predict.drawing import draw_faces
from pfld.predict.kaggle import (
    by_image_id,
    check_kaggle_model,
    is_kaggle_test,
    predict_kaggle_points,
    write_kaggle_points,
)
from pfld.predict.pipeline import FacePrediction, Predictor
from pfld.predict.pose_regressor import PoseRegressor
from pfld.predict.smoothing import LandmarkSmoother
from pfld.predict.sources import VideoFrames, expand_inputs, is_video
from pfld.predict.tracking import FaceTracker


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="predict.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "inputs", nargs="+", help="photos, folders of photos, video files, or Kaggle's test.csv"
    )
    parser.add_argument(
        "--model",
        help="a training checkpoint (.ckpt) or an exported model (.onnx, fp32 or int8); default: the "
        f"zoo's {DEFAULT_MODEL}/{DEFAULT_FILE} (pretrained/, see its MODEL_CARD.md)",
    )
    parser.add_argument("--out", default="predictions", help="output folder (default: predictions)")
    parser.add_argument(
        "--kaggle-lookup",
        type=Path,
        help="Kaggle's IdLookupTable.csv: answer it for the test.csv input in <out>/submission.csv",
    )
    parser.add_argument(
        "--detector",
        choices=DETECTORS,
        default=DETECTORS[0],
        help="face detector: blazeface (default; finds turned and small faces) or dlib (frontal HOG)",
    )
    parser.add_argument(
        "--min-face",
        type=float,
        default=24.0,
        help="blazeface: smallest face to look for, in pixels; smaller costs more time (default 24)",
    )
    parser.add_argument(
        "--upsample",
        type=int,
        default=1,
        help="dlib: upsampling; 1 finds faces down to about 40 px (default 1)",
    )
    parser.add_argument(
        "--detect-every",
        type=int,
        default=5,
        help="videos: detect faces every n-th frame and follow them from their landmarks in between "
        "(default 5; 1 = every frame)",
    )
    parser.add_argument(
        "--refine", type=int, default=2, help="re-crops around the predicted points (default 2)"
    )
    parser.add_argument("--max-faces", type=int, default=None, help="keep at most this many faces per image")
    parser.add_argument(
        "--smooth",
        action="store_true",
        help="videos: One Euro filter on the points (see pfld/predict/smoothing.py)",
    )
    parser.add_argument(
        "--min-cutoff",
        type=float,
        default=1.0,
        help="smoothing: cutoff (Hz) of a still face; lower = smoother",
    )
    parser.add_argument(
        "--beta",
        type=float,
        default=5.0,
        help="smoothing: how fast the cutoff rises with speed; higher = less lag",
    )
    parser.add_argument(
        "--pose-regressor",
        help="models without a pose output: head pose from this landmarks -> pose regressor (.pt, "
        "made by scripts/pose_from_landmarks.py) instead of the solvePnP fit",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the model (default: all)")
    parser.add_argument("--no-draw", action="store_true", help="write JSON only")
    return parser.parse_args(argv)


def describe(name: str, faces: list[FacePrediction]) -> str:
    if not faces:
        return f"{name}: no face found"
    poses = [
        "yaw {:+d}, pitch {:+d}, roll {:+d}".format(*(round(float(v)) + 0 for v in f.pose_deg))
        for f in faces
        if f.pose_deg is not None
    ]
    return f"{name}: {len(faces)} face{'s' if len(faces) > 1 else ''}" + (
        f" ({'; '.join(poses)})" if poses else ""
    )


def photo_record(path: Path, image: np.ndarray, faces: list[FacePrediction], **extra: Any) -> dict[str, Any]:
    return {"input": str(path), "width": image.shape[1], "height": image.shape[0], **extra,
            "faces": [face.to_json() for face in faces]}  # fmt: skip


def predict_photo(predictor: Predictor, path: Path, out: Path, draw: bool) -> list[FacePrediction]:
    image = read_image(path)
    faces = predictor.predict(image)
    (out / f"{path.stem}.json").write_text(json.dumps(photo_record(path, image, faces), indent=1) + "\n")
    if draw:
        write_image(out / f"{path.stem}.jpg", draw_faces(image, faces))
    print(describe(str(path), faces))
    return faces


def predict_video(predictor: Predictor, path: Path, out: Path, draw: bool, args: argparse.Namespace) -> int:
    """Returns the number of frames with no face."""
    video = VideoFrames(path)
    smoother = LandmarkSmoother(video.fps, args.min_cutoff, args.beta) if args.smooth else None
    writer = None
    if draw:
        writer = cv2.VideoWriter(
            str(out / f"{path.stem}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), video.fps, video.size
        )
    tracker = FaceTracker(predictor, args.detect_every)
    empty = frames = 0
    with (out / f"{path.stem}.jsonl").open("w") as lines:
        for index, frame in enumerate(tqdm(video, total=video.frames or None, desc=path.name, unit="frame")):
            faces = tracker(frame)
            if smoother is not None:
                faces = smoother(faces)
            empty += not faces
            frames += 1
            lines.write(
                json.dumps(photo_record(path, frame, faces, frame=index, time=index / video.fps)) + "\n"
            )
            if writer is not None:
                writer.write(cv2.cvtColor(draw_faces(frame, faces), cv2.COLOR_RGB2BGR))
    if writer is not None:
        writer.release()
    if not frames:
        raise ValueError(f"{path}: OpenCV read no frame from this video")
    print(f"{path}: {frames} frames, {empty} without a face, detection on {tracker.detections}")
    return empty


def kaggle_inputs(files: list[Path], lookup: Path | None) -> list[Path]:
    """The Kaggle test.csv files among ``files``; any other CSV, or a lookup table without exactly one
    test.csv to answer it, is refused."""
    tests = [path for path in files if is_kaggle_test(path)]
    for path in files:
        if path.suffix.lower() == ".csv" and path not in tests:
            raise ValueError(f"{path}: not a Kaggle test.csv (its header must name ImageId and Image)")
    if lookup is not None and len(tests) != 1:
        raise ValueError(f"--kaggle-lookup {lookup} answers one test.csv, but {len(tests)} were given")
    if lookup is not None and not lookup.is_file():
        raise FileNotFoundError(f"{lookup}: Kaggle IdLookupTable not found")
    return tests


def predict_kaggle(model: LandmarkModel, path: Path, out: Path, lookup: Path | None) -> None:
    """The points of test.csv's faces: `<out>/submission.csv` answering ``lookup``, or `<out>/<name>.csv`."""
    faces = read_kaggle_test(path)
    points = predict_kaggle_points(model, faces.images)  # (N, 15, 2) pixels of the 96 px images
    if lookup is None:
        write_kaggle_points(points, faces.image_ids, out / f"{path.stem}.csv")
        print(f"{path}: {len(faces)} faces, 15 points each -> {out / f'{path.stem}.csv'}")
        return
    rows = write_submission(by_image_id(points, faces.image_ids, str(path)), lookup, out / "submission.csv")
    print(f"{path}: {len(faces)} faces; {rows} rows of {lookup} answered -> {out / 'submission.csv'}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.detect_every < 1:
            raise ValueError(f"--detect-every must be >= 1, got {args.detect_every}")
        files = expand_inputs(args.inputs)
        tests = kaggle_inputs(files, args.kaggle_lookup)
        if args.model is None:
            args.model = zoo_model()
            print(f"no --model given: using the zoo's {args.model}")
        model = load_landmark_model(args.model, args.threads)
        if tests:
            check_kaggle_model(model, args.model)
        options = {"upsample": args.upsample} if args.detector == "dlib" else {"min_face": args.min_face}
        detector = create_detector(args.detector, **options) if len(tests) < len(files) else None
        regressor = PoseRegressor.load(args.pose_regressor) if args.pose_regressor else None
        predictor = Predictor(
            model, detector, refine=args.refine, max_faces=args.max_faces, pose_regressor=regressor
        )
    except (OSError, ValueError, ImportError) as error:  # nothing done yet: say why and stop
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failed, start = [], time.perf_counter()
    for path in files:
        try:
            if path in tests:
                predict_kaggle(model, path, out, args.kaggle_lookup)
            elif is_video(path):
                predict_video(predictor, path, out, not args.no_draw, args)
            else:
                predict_photo(predictor, path, out, not args.no_draw)
        except (OSError, ValueError) as error:  # one bad file does not stop the others
            print(f"error: {error}", file=sys.stderr)
            failed.append(path)
    print(
        f"{len(files) - len(failed)} of {len(files)} inputs done in {time.perf_counter() - start:.1f} s; results in {out}"
    )
    if failed:
        print(f"could not read: {', '.join(map(str, failed))}", file=sys.stderr)
    return 1 if failed else 0

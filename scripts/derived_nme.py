"""NME of 68-point models on a prepared split of another scheme (MTFL's five points), through derived points.

    python scripts/derived_nme.py --split data/mtfl5/train --model Z025=pretrained/pfld-0.25x-68/model.ckpt \
        --model other.ckpt [--json logs/derived/mtfl5.json]

Each model predicts every face of the split (as `pfld.teacher.pseudo_label` does: the stored crops when
they were cut with the model's crop scale, else 2 refining passes); its points are mapped to the split's
scheme with the repo's mapping (five_point -> ibug68: an eye centre is the mean of the eye's six points
36-41 / 42-47, nose tip 30, mouth corners 48 and 54), and per face

    NME = mean over the annotated points of |annotated - derived| / |annotated right eye centre - left eye centre|

i.e. normalised by the distance between the two *annotated eye centres* (inter-pupil), the usual
convention for five-point MTFL / AFLW. It is not comparable with the 68-point inter-ocular (outer eye
corner) NME, whose normaliser is about 1.3x larger. The numbers also include the definitional gap
between MTFL's points and iBUG's (an MTFL nose tip or eye centre is not exactly point 30 or the mean of
six eye-contour points), the same for every model, so compare models, not with 5-point-trained ones.

Prints a table (mean, median, FR@0.1 = % of faces with NME > 0.1, mean NME per head-pose class), each
point's mean error and mean residual (its *offset*: predicted - annotated, x then y in the image, over
the eye-centre distance; y grows downwards), and, for every pair of models, the paired mean difference
of per-face NME with its standard error (sd / sqrt(n)). The offset is what every face shares: a point
that the training set's annotators placed elsewhere than MTFL's (an iBUG nose tip is not MTFL's) shows
there. "without offsets" is the mean NME once each point's offset is taken off every face: fitted on
the split itself, so it is a ceiling of what a convention is worth, and a way to tell whether two
models differ in precision or only in where they put a point.
Pose classes: the faces' `pfld.data.attributes.class_memberships`, as training and evaluation group them
(MTFL's profile = head pose 1 or 5, frontal = the rest), and, when the split's source ``attributes.csv`` is still on disk, MTFL's
five head-pose codes (`pfld.data.readers.mtfl`: 1 left profile, 2 left, 3 frontal, 4 right, 5 right profile).
``--model LABEL=PATH`` names a model in the table (default: its path).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pfld.data.attributes import FACE_CLASSES, class_memberships
from pfld.data.cache import FaceCache
from pfld.data.schemes import load_scheme
from pfld.data.schemes.mapping import load_mapping
from pfld.data.store import load_faces
from pfld.inference.models import LandmarkModel, load_landmark_model
from pfld.io.digest import sha256_file
from pfld.metrics import nme, normalized_residuals, paired_difference
from pfld.teacher.pseudo_label import predict_faces

FAILURE = 0.1
MTFL_POSES = {"1": "left_profile", "2": "left", "3": "frontal5", "4": "right", "5": "right_profile"}


def per_face_nme(faces: FaceCache, model: LandmarkModel) -> tuple[np.ndarray, np.ndarray]:
    """(N,) NME over each face's annotated points and (N, S, 2) each point's residual, predicted -
    annotated (NaN where not annotated), both over the annotated eye-centre distance, of ``model``'s
    points mapped to the faces' scheme."""
    source = load_scheme(faces.scheme)
    mapping = load_mapping(source.name, model.spec.scheme)
    derived = mapping.project(predict_faces(faces, [model], source))
    annotated = torch.from_numpy(faces.landmarks.astype(np.float64))
    labelled = ~annotated[..., 0].isnan() & torch.from_numpy(mapping.used)  # (N, S)
    guessed = torch.from_numpy(derived)
    pupils = source.eye_corners  # a five-point scheme's "eye corners" are the two eye centres
    errors = nme(guessed, annotated, pupils, labelled)
    residuals = normalized_residuals(guessed, annotated, pupils, labelled)
    return errors.numpy(), residuals.numpy()


def without_offsets(residuals: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """(N,) each face's NME once every point's offset, its mean residual over the faces (S, 2), is taken
    off: ``residuals`` (N, S, 2) as `per_face_nme`'s, NaN where a point is not annotated."""
    return np.nanmean(np.linalg.norm(residuals - offsets, axis=-1), axis=1)


def mtfl_poses(faces: FaceCache) -> np.ndarray | None:
    """(N,) MTFL head-pose names from the source's attributes.csv (through ``sources`` = train.csv:line),
    or None when the source files are not found."""
    try:
        csv_path = Path(faces.sources[0].rsplit(":", 1)[0])
        if not csv_path.is_absolute():
            csv_path = ROOT / csv_path
        lines = csv_path.read_text().splitlines()
        with open(csv_path.parent / "attributes.csv", newline="") as handle:
            pose = {row["file"]: row["head_pose"] for row in csv.DictReader(handle)}
        return np.array(
            [MTFL_POSES[pose[lines[int(s.rsplit(":", 1)[1]) - 1].split(",")[0]]] for s in faces.sources]
        )
    except (OSError, KeyError, IndexError, ValueError):
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", required=True)
    parser.add_argument("--model", action="append", required=True, help="PATH or LABEL=PATH (repeat)")
    parser.add_argument("--json")
    parser.add_argument(
        "--threads", type=int, default=1, help="threads of each model, PyTorch or onnxruntime (default 1)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    faces = load_faces(args.split)
    classes = class_memberships(faces).astype(bool)  # (N, C), as training and evaluation group faces
    groups = {name: classes[:, i] for i, name in enumerate(FACE_CLASSES) if name in ("profile", "frontal")}
    poses = mtfl_poses(faces)
    if poses is not None:
        groups |= {name: poses == name for name in MTFL_POSES.values()}

    point_names = load_scheme(faces.scheme).point_names
    results, per_face, centred = {}, {}, {}
    for entry in args.model:
        label, _, path = entry.rpartition("=")
        label = label or path
        start = time.perf_counter()
        model = load_landmark_model(path, threads=args.threads, with_pose=False)
        nme, residuals = per_face_nme(faces, model)
        seconds = time.perf_counter() - start
        print(f"{label}: {len(nme)} faces in {seconds:.0f} s", file=sys.stderr, flush=True)
        offsets = np.nanmean(residuals, axis=0)  # (S, 2)
        per_face[label], centred[label] = nme, without_offsets(residuals, offsets)
        results[label] = {
            "path": path,
            "sha256": sha256_file(path),
            "faces": len(nme),
            "mean": float(np.mean(nme)),
            "median": float(np.median(nme)),
            "fr": float(np.mean(nme > FAILURE)),
            "groups": {
                g: (float(np.mean(nme[m])) if m.any() else None, int(m.sum())) for g, m in groups.items()
            },
            "per_point_mean": dict(
                zip(point_names, np.nanmean(np.linalg.norm(residuals, axis=-1), axis=0).round(4).tolist())
            ),
            "per_point_offset": dict(zip(point_names, offsets.round(4).tolist())),
            "mean_without_offsets": float(np.mean(centred[label])),
            "seconds": round(seconds, 1),
            "nme": nme.round(5).tolist(),
        }

    names = list(groups)
    print(f"# {args.split}: NME over the five points / annotated eye-centre distance\n")
    print(
        "| model | faces | mean | median | FR@0.1 % | without offsets | "
        + " | ".join(f"{g} ({int(groups[g].sum())})" for g in names)
        + " |"
    )
    print("|---|---:|---:|---:|---:|---:|" + "---:|" * len(names))
    for label, r in results.items():
        cells = " | ".join("-" if r["groups"][g][0] is None else f"{r['groups'][g][0]:.4f}" for g in names)
        print(
            f"| {label} | {r['faces']} | {r['mean']:.4f} | {r['median']:.4f} | {100 * r['fr']:.2f} "
            f"| {r['mean_without_offsets']:.4f} | {cells} |"
        )
    print("\n| point: error (offset x, y) | " + " | ".join(results) + " |\n|---|" + "---:|" * len(results))
    for point in next(iter(results.values()))["per_point_mean"]:
        cells = (
            f"{r['per_point_mean'][point]:.4f} ({r['per_point_offset'][point][0]:+.4f}, "
            f"{r['per_point_offset'][point][1]:+.4f})"
            for r in results.values()
        )
        print(f"| {point} | " + " | ".join(cells) + " |")

    pairs = []
    print(
        "\n| B - A | mean difference | SE | diff / SE | B better on % of faces | without offsets: difference, SE |"
        "\n|---|---:|---:|---:|---:|---:|"
    )
    for a, b in itertools.combinations(per_face, 2):
        d = paired_difference(torch.from_numpy(per_face[a]), torch.from_numpy(per_face[b]))
        dc = paired_difference(torch.from_numpy(centred[a]), torch.from_numpy(centred[b]))
        pairs.append(
            {
                "a": a,
                "b": b,
                "mean": d["mean"],
                "se": d["se"],
                "b_better": d["b_better"],
                "without_offsets": {"mean": dc["mean"], "se": dc["se"]},
            }
        )
        print(
            f"| {b} - {a} | {d['mean']:+.5f} | {d['se']:.5f} | {d['mean'] / d['se'] if d['se'] else 0.0:+.1f} "
            f"| {100 * d['b_better']:.1f} | {dc['mean']:+.5f}, {dc['se']:.5f} |"
        )

    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        out = {
            "split": args.split,
            "normaliser": "annotated eye-centre distance",
            "failure": FAILURE,
            "models": results,
            "pairs": pairs,
        }
        Path(args.json).write_text(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()

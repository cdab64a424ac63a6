"""Pseudo-labels: a trained model fills in the points a prepared split's faces do not have.

The Kaggle keypoint practice of filling missing points from a trained model, for any pair of schemes: a
68-point model labels the 63 points five-point MTFL faces lack (through the five_point -> ibug68
mapping), or the holes of a partially labelled 68-point set. Each face's annotated points are compared
with the model's prediction of them (an eye centre with the mean of the predicted eye points); a face
where they disagree by more than ``threshold`` (the mean distance over the annotated points, divided by
the predicted inter-ocular distance) is dropped and counted: the model has not understood that face,
so its guesses for the other points are not worth training on.

The result is a prepared split of the model's scheme like any other, plus ``point_sources`` (annotated
or pseudo for each point, see `pfld.data.cache.POINT_SOURCES`): annotated points keep their annotation,
derived ones (eye centres) serve only the check, and the Euler angles are fitted on the completed faces.
It also keeps the model's prediction of every point (``teacher``) for distillation: a run with
``distill_weight > 0`` adds an L1 loss towards them, annotated points included. Several checkpoints
(``--model a.ckpt --model b.ckpt``) act as an ensemble: their points are averaged. A face with every
point annotated is never dropped (nothing on it is a guess).

Faces cut with another crop rule than the model's (Kaggle's 96 px images are whole faces framed their own
way) are predicted like photos: from the square they were cut with, rescaled to the model's crop scale,
then ``refine`` passes cropping around the previous pass's points with the model's rule (as
`pfld.predict.Predictor` does). ``keep_scheme`` keeps the faces' own scheme: the model's points are
projected through the mapping (Kaggle's eye centres as the mean of the predicted eye points) to fill in
the points each face lacks, so a 68-point model completes a 15-point set for a 15-point model.

    python -m data pseudo-label --model run/checkpoints/best.ckpt --split data/mtfl5/train \
        --out data/mtfl5_pseudo/train --threshold 0.1
    python -m data pseudo-label --model ytf68.ckpt --split data/kaggle/train --out data/kaggle_pseudo/train \
        --mapping scripts/mappings/kaggle15-ibug68.yaml --keep-scheme
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from pfld.data.attributes import PoseThresholds, class_memberships, fitted_angles_deg
from pfld.data.cache import ANNOTATED, PSEUDO, UNLABELLED, FaceCache
from pfld.data.crop import from_unit, square_from_box
from pfld.data.dataset import LandmarkDataset
from pfld.data.schemes import LandmarkScheme, load_scheme
from pfld.data.schemes.mapping import SchemeMapping, load_mapping
from pfld.data.store import load_faces, save_faces
from pfld.data.transforms import build_eval_transform
from pfld.evaluation.predictions import predict
from pfld.inference.crops import refined_landmarks
from pfld.inference.models import LandmarkModel
from pfld.io.atomic import atomic_write_text
from pfld.io.digest import sha256_file
from pfld.io.paths import shown_path
from pfld.teacher import DROP_THRESHOLD

MANIFEST_FILE = "pseudo_labels.json"
#: `ModelSpec` entries the checkpoints of an ensemble must share.
_SAME_SPEC = ("input_size", "channels", "crop_scale", "mean", "std", "scheme", "num_points")


def pseudo_label(
    faces: FaceCache,
    models: Sequence[LandmarkModel],
    threshold: float = 0.1,
    mapping: SchemeMapping | None = None,
    batch_size: int = 64,
    refine: int | None = None,
    keep_scheme: bool = False,
) -> tuple[FaceCache, dict[str, Any]]:
    """Label the missing points of ``faces`` with the mean prediction of ``models`` (which share the
    `ModelSpec` entries `_SAME_SPEC`).

    ``mapping`` relates the faces' scheme to the model's (found from the faces' recorded scheme when
    None and the schemes differ). ``refine``: passes cropping around the previous pass's points (None: 0
    when the faces were cut with the model's crop scale, else 2; see the module's docstring). Returns the
    kept faces, in the model's scheme or with ``keep_scheme`` in their own, and a summary: faces in,
    kept, dropped, the disagreement's median and 95th percentile, the threshold.
    """
    spec = models[0].spec
    target = load_scheme(spec.scheme)
    source_name = faces.scheme or target.name
    if mapping is None and source_name != target.name:
        mapping = load_mapping(source_name, target.name)
    source = mapping.source if mapping is not None else target
    if faces.num_points != source.num_points:
        raise ValueError(
            f"faces from {faces.sources[0]}: {faces.num_points} points, but their scheme "
            f"{source.name!r} has {source.num_points}"
        )
    refine = default_refine(faces, models) if refine is None else refine
    predicted = predict_faces(faces, models, source, refine, batch_size)
    annotated = faces.landmarks.astype(np.float64)  # (N, S, 2)
    guessed = mapping.project(predicted) if mapping is not None else predicted.astype(np.float64)
    used = mapping.used if mapping is not None else np.ones(source.num_points, dtype=bool)
    direct = mapping.direct if mapping is not None else np.arange(source.num_points)
    disagreement = _disagreement(annotated[:, used], guessed[:, used], predicted, target)
    if keep_scheme:
        labelled = ~np.isnan(annotated[..., 0])  # (N, S)
        complete = labelled.all(axis=1)
        landmarks = np.where(labelled[..., None], annotated, guessed)  # NaN where the mapping has no point
        sources = np.where(labelled, ANNOTATED, np.where(np.isnan(guessed[..., 0]), UNLABELLED, PSEUDO))
        scheme, teacher = source, guessed
    else:
        labelled_direct = ~np.isnan(annotated[:, direct >= 0, 0])  # (N, direct points)
        complete = labelled_direct.all(axis=1) & bool((direct >= 0).sum() == target.num_points)
        landmarks = predicted.copy()
        sources = np.full(landmarks.shape[:2], PSEUDO, dtype=np.uint8)
        for s in np.flatnonzero(direct >= 0):
            labelled = ~np.isnan(annotated[:, s, 0])
            landmarks[labelled, direct[s]] = annotated[labelled, s]
            sources[labelled, direct[s]] = ANNOTATED
        scheme, teacher = target, predicted
    keep = (disagreement <= threshold) | complete
    angles = fitted_angles_deg(landmarks - faces.border, scheme, float(faces.crop_size))
    out = replace(
        faces,
        landmarks=landmarks.astype(np.float32),
        angles=angles.astype(np.float32),
        scheme=scheme.name,
        point_sources=sources.astype(np.uint8),
        teacher=teacher.astype(np.float32),
    ).subset(np.flatnonzero(keep))
    summary = {
        "faces": len(faces),
        "kept": int(keep.sum()),
        "dropped": int((~keep).sum()),
        "threshold": threshold,
        "disagreement_median": round(float(np.nanmedian(disagreement)), 4),
        "disagreement_p95": round(float(np.nanpercentile(disagreement, 95)), 4),
        "from_scheme": source.name,
        "to_scheme": scheme.name,
        "model_scheme": target.name,
        "refine": refine,
        "models": len(models),
    }
    return out, summary


def predict_faces(
    faces: FaceCache,
    models: Sequence[LandmarkModel],
    scheme: LandmarkScheme,
    refine: int | None = None,
    batch_size: int = 64,
) -> np.ndarray:
    """(N, K, 2) the models' mean points for every face of a prepared split (``scheme``: the faces'), in
    its stored pixels. ``refine``: passes cropping around the previous pass's points (None: 0 when the
    faces were cut with the models' crop scale, their stored crops then used as they are; else 2)."""
    default = default_refine(faces, models)
    refine = default if refine is None else refine
    if refine < 0:
        raise ValueError(f"refine must be >= 0, got {refine}")
    if refine == default == 0:  # the stored crops are the models' input
        return _predict_pixels(faces, models, scheme, batch_size)
    return _predict_refined(faces, models, refine)


def default_refine(faces: FaceCache, models: Sequence[LandmarkModel]) -> int:
    """Refining passes `predict_faces` makes by default: none when the faces were cut with the models'
    crop scale (their stored crops are then the models' input), else 2."""
    return 0 if abs(faces.crop_scale - models[0].spec.crop_scale) <= 1e-6 else 2


def _predict_pixels(
    faces: FaceCache,
    models: Sequence[LandmarkModel],
    scheme: LandmarkScheme,
    batch_size: int,
) -> np.ndarray:
    """The models' mean points for every face, in the stored crops' pixels (the crops resized once)."""
    spec = models[0].spec
    size = spec.input_size
    dataset = LandmarkDataset(faces.resized(size), build_eval_transform(size), scheme, spec.mean, spec.std)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    # (N, K, 2) in [0, 1] of the policy crop, averaged over the ensemble
    unit = np.mean([predict(model, loader)["predictions"].numpy() for model in models], axis=0)
    return from_unit(unit, faces.crop_size).astype(np.float64) + faces.border


def _predict_refined(faces: FaceCache, models: Sequence[LandmarkModel], refine: int) -> np.ndarray:
    """The models' mean points for every face, in stored pixels: each stored image treated as a photo
    whose landmark box is the one the face was cut from, then ``refine`` passes (as `pfld.predict`'s
    photo pipeline does)."""
    centre = faces.border + (faces.crop_size - 1) / 2.0  # the policy crop's centre, pixel centres on integers
    half = faces.crop_size / faces.crop_scale / 2.0  # half the longer side of the box the faces were cut from
    box = np.array([centre - half, centre - half, centre + half, centre + half])
    squares = square_from_box(box, models[0].spec.crop_scale)[None]  # the ensemble shares its crop scale
    points = np.empty((len(faces), models[0].spec.num_points, 2), dtype=np.float64)
    for i in tqdm(range(len(faces)), desc=f"pseudo-labelling ({refine} refining passes)", unit="face"):
        image = np.ascontiguousarray(faces.images[i])
        points[i] = np.mean([refined_landmarks(m, image, squares, refine)[0][0] for m in models], axis=0)
    return points


def _disagreement(
    annotated: np.ndarray, guessed: np.ndarray, predicted: np.ndarray, target: LandmarkScheme
) -> np.ndarray:
    """(N,) mean distance between annotated and predicted points over the annotated ones, over the
    predicted inter-ocular distance; NaN-free (a face with no annotated mapped point gets +inf)."""
    right, left = target.eye_corners
    ocular = np.linalg.norm(predicted[:, right] - predicted[:, left], axis=1)
    distance = np.linalg.norm(annotated - guessed, axis=2)  # (N, P), NaN where not annotated
    counted = ~np.isnan(distance)
    mean = np.where(counted, distance, 0.0).sum(axis=1) / np.maximum(counted.sum(axis=1), 1)
    return np.where(counted.any(axis=1), mean / np.maximum(ocular, 1e-6), np.inf)


def pseudo_label_split(
    split: str | Path,
    checkpoints: Sequence[str | Path],
    out: str | Path,
    threshold: float = DROP_THRESHOLD,
    mapping: str | Path | None = None,
    thresholds: PoseThresholds = PoseThresholds(),
    refine: int | None = None,
    keep_scheme: bool = False,
) -> dict[str, Any]:
    """`pseudo_label` a prepared split with checkpoints or ONNX files and write the result as a prepared split
    (``out``) with ``pseudo_labels.json`` beside it; returns that summary."""
    import torch

    from pfld.cpu_budget import plan_cpu
    from pfld.data.schemes.mapping import read_mapping
    from pfld.inference.models import load_landmark_model

    # the cores other processes leave (a training run beside this one makes 2 threads 30x slower)
    torch.set_num_threads(plan_cpu(workers=0).threads)
    faces = load_faces(split)
    # checkpoints or exported ONNX files; the landmarks only (a checkpoint's pose net is not needed)
    models = [load_landmark_model(c, with_pose=False) for c in checkpoints]
    for checkpoint, model in zip(checkpoints, models, strict=True):
        differ = sorted(k for k in _SAME_SPEC if getattr(model.spec, k) != getattr(models[0].spec, k))
        if differ:
            raise ValueError(
                f"{checkpoint}: its {differ} differ from {checkpoints[0]}'s; an ensemble needs the same"
            )
    chosen = read_mapping(mapping) if mapping is not None else None
    labelled, summary = pseudo_label(faces, models, threshold, chosen, refine=refine, keep_scheme=keep_scheme)
    if not len(labelled):
        raise ValueError(
            f"{split}: every face disagrees with the model by more than {threshold} "
            f"(median {summary['disagreement_median']}); check the model, or raise --threshold"
        )
    out = Path(out)
    save_faces(labelled, out, class_memberships(labelled, thresholds))
    summary |= {
        "split": str(Path(split).resolve()),
        "checkpoints": [str(Path(c).resolve()) for c in checkpoints],
        # which files exactly: a zoo model may be replaced by a student of its own pseudo-labels
        "checkpoint_sha256": [sha256_file(c) for c in checkpoints],
        "mapping": str(Path(mapping).resolve()) if mapping is not None else None,
        "keep_scheme": keep_scheme,
    }
    atomic_write_text(out / MANIFEST_FILE, json.dumps(summary, indent=2) + "\n")
    print(
        f"pseudo-labelled {out}: kept {summary['kept']} of {summary['faces']} faces, dropped "
        f"{summary['dropped']} disagreeing by more than {threshold} (median disagreement "
        f"{summary['disagreement_median']}, 95th percentile {summary['disagreement_p95']})"
    )
    return summary


def pseudo_label_command(
    manifest: dict[str, Any], out: str | Path, models: Sequence[str] | None = None, root: Path | None = None
) -> str:
    """The ``python -m data pseudo-label ...`` that wrote split ``out`` with ``manifest`` (its
    ``pseudo_labels.json``), paths relative to ``root`` where they lie under it; ``models`` replaces the
    manifest's model paths (say, teacher files restored from git)."""

    shown = partial(shown_path, root=root)
    words = ["python", "-m", "data", "pseudo-label"]
    for model in models if models is not None else manifest["checkpoints"]:
        words += ["--model", shown(model)]
    words += ["--split", shown(manifest["split"]), "--out", shown(Path(out).resolve())]
    if manifest.get("threshold", DROP_THRESHOLD) != DROP_THRESHOLD:
        words += ["--threshold", f"{manifest['threshold']:g}"]
    if manifest.get("mapping"):
        words += ["--mapping", shown(manifest["mapping"])]
    if manifest.get("refine") is not None:  # the passes it made (its default depends on the crops)
        words += ["--refine", str(manifest["refine"])]
    if manifest.get("keep_scheme"):
        words.append("--keep-scheme")
    return shlex.join(words)  # quoted where a shell would split or glob a path


__all__ = ["MANIFEST_FILE", "predict_faces", "pseudo_label", "pseudo_label_command", "pseudo_label_split"]

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

    python -m data pseudo-label --model run/checkpoints/best.ckpt --split data/mtfl5/train \
        --out data/mtfl5_pseudo/train --threshold 0.1
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import DataLoader

from pfld.data.attributes import PoseThresholds, class_memberships, fit_angles
from pfld.data.cache import ANNOTATED, PSEUDO, FaceCache
from pfld.data.crop import from_unit
from pfld.data.dataset import LandmarkDataset
from pfld.data.schemes import LandmarkScheme, load_scheme
from pfld.data.schemes.mapping import SchemeMapping, load_mapping
from pfld.data.store import load_faces, save_faces
from pfld.data.transforms import build_eval_transform
from pfld.evaluation.predictions import predict
from pfld.inference.models import LandmarkModel
from pfld.io.atomic import atomic_write_text

MANIFEST_FILE = "pseudo_labels.json"
#: `ModelSpec` entries the checkpoints of an ensemble must share.
_SAME_SPEC = ("input_size", "channels", "crop_scale", "mean", "std", "scheme", "num_points")


def pseudo_label(
    faces: FaceCache,
    models: Sequence[LandmarkModel],
    threshold: float = 0.1,
    mapping: SchemeMapping | None = None,
    batch_size: int = 64,
) -> tuple[FaceCache, dict[str, Any]]:
    """Label the missing points of ``faces`` with the mean prediction of ``models`` (which share the
    `ModelSpec` entries `_SAME_SPEC`).

    ``mapping`` relates the faces' scheme to the model's (found from the faces' recorded scheme when
    None and the schemes differ). Returns the kept faces in the model's scheme and a summary: faces in,
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
    if abs(faces.crop_scale - spec.crop_scale) > 1e-6:
        raise ValueError(
            f"faces from {faces.sources[0]} were cut with crop_scale {faces.crop_scale}, the model was "
            f"trained with {spec.crop_scale}: prepare them again with --crop-scale {spec.crop_scale}"
        )
    predicted = _predict_pixels(faces, models, source, batch_size)
    annotated = faces.landmarks.astype(np.float64)  # (N, S, 2)
    guessed = mapping.project(predicted) if mapping is not None else predicted.astype(np.float64)
    used = mapping.used if mapping is not None else np.ones(source.num_points, dtype=bool)
    direct = mapping.direct if mapping is not None else np.arange(source.num_points)
    disagreement = _disagreement(annotated[:, used], guessed[:, used], predicted, target)
    labelled_direct = ~np.isnan(annotated[:, direct >= 0, 0])  # (N, direct points)
    complete = labelled_direct.all(axis=1) & bool((direct >= 0).sum() == target.num_points)
    keep = (disagreement <= threshold) | complete
    landmarks = predicted.copy()
    sources = np.full(landmarks.shape[:2], PSEUDO, dtype=np.uint8)
    for s in np.flatnonzero(direct >= 0):
        labelled = ~np.isnan(annotated[:, s, 0])
        landmarks[labelled, direct[s]] = annotated[labelled, s]
        sources[labelled, direct[s]] = ANNOTATED
    angles = np.stack([fit_angles(p - faces.border, target, float(faces.crop_size)) for p in landmarks])
    out = replace(
        faces,
        landmarks=landmarks.astype(np.float32),
        angles=angles.astype(np.float32),
        scheme=target.name,
        point_sources=sources,
        teacher=predicted.astype(np.float32),
    ).subset(np.flatnonzero(keep))
    summary = {
        "faces": len(faces),
        "kept": int(keep.sum()),
        "dropped": int((~keep).sum()),
        "threshold": threshold,
        "disagreement_median": round(float(np.nanmedian(disagreement)), 4),
        "disagreement_p95": round(float(np.nanpercentile(disagreement, 95)), 4),
        "from_scheme": source.name,
        "to_scheme": target.name,
        "models": len(models),
    }
    return out, summary


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
    threshold: float = 0.1,
    mapping: str | Path | None = None,
    thresholds: PoseThresholds = PoseThresholds(),
) -> dict[str, Any]:
    """`pseudo_label` a prepared split with a checkpoint and write the result as a prepared split
    (``out``) with ``pseudo_labels.json`` beside it; returns that summary."""
    from pfld.data.schemes.mapping import read_mapping
    from pfld.inference import TorchLandmarkModel

    faces = load_faces(split)
    models = [TorchLandmarkModel.from_checkpoint(c, with_pose=False) for c in checkpoints]
    for checkpoint, model in zip(checkpoints, models, strict=True):
        differ = sorted(k for k in _SAME_SPEC if getattr(model.spec, k) != getattr(models[0].spec, k))
        if differ:
            raise ValueError(
                f"{checkpoint}: its {differ} differ from {checkpoints[0]}'s; an ensemble needs the same"
            )
    chosen = read_mapping(mapping) if mapping is not None else None
    labelled, summary = pseudo_label(faces, models, threshold, chosen)
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
    }
    atomic_write_text(out / MANIFEST_FILE, json.dumps(summary, indent=2) + "\n")
    print(
        f"pseudo-labelled {out}: kept {summary['kept']} of {summary['faces']} faces, dropped "
        f"{summary['dropped']} disagreeing by more than {threshold} (median disagreement "
        f"{summary['disagreement_median']}, 95th percentile {summary['disagreement_p95']})"
    )
    return summary


__all__ = ["MANIFEST_FILE", "pseudo_label", "pseudo_label_split"]

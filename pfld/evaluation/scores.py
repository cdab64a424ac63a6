"""Scores of a set of predictions: NME, failure rate, AUC, per-group and per-part NME, head-pose error,
as tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from pfld.data.attributes import FACE_CLASSES
from pfld.data.cache import FaceCache
from pfld.metrics import Normalization, auc, failure_rate, group_nmes, nme, pose_errors, scored_nmes

ANGLES: tuple[str, ...] = ("yaw", "pitch", "roll")


def face_errors(out: Mapping[str, torch.Tensor], normalization: Normalization) -> torch.Tensor:
    """(N,) NME of each face of `predict`'s output; NaN where the face cannot be normalised."""
    return nme(out["predictions"], out["landmarks"], normalization, out["visible"])


def face_groups(
    out: Mapping[str, torch.Tensor],
    faces: FaceCache,
    subsets: Mapping[str, np.ndarray] | None = None,
) -> dict[str, torch.Tensor]:
    """Name -> (N,) bool membership of the groups a report breaks the NME down by.

    ``all``; ``subset:<name>`` for each validation source when there are several (`val_subsets` of the
    datamodule, e.g. 300W's common and challenging); the pose and attribute classes of `FACE_CLASSES`
    (from the Euler angles and flags, for any data set); ``flag:<name>`` for each data-set flag (WFLW's
    pose, expression, illumination, make_up, occlusion, blur).
    """
    n = len(out["predictions"])
    if len(faces) != n:
        raise ValueError(f"{n} predictions for {len(faces)} faces: predict over the whole loader")
    groups = {"all": torch.ones(n, dtype=torch.bool)}
    if subsets and len(subsets) > 1:
        groups |= {
            f"subset:{name}": torch.as_tensor(mask, dtype=torch.bool) for name, mask in subsets.items()
        }
    groups |= {name: out["classes"][:, i] > 0 for i, name in enumerate(FACE_CLASSES)}
    groups |= {f"flag:{name}": torch.from_numpy(faces.flags[:, i]) for i, name in enumerate(faces.flag_names)}
    return groups


def nme_by_group(errors: torch.Tensor, groups: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Mean NME and face count of each group; ``groups`` maps a name to an (N,) 0/1 membership.
    Faces that cannot be scored (NaN) are left out; empty groups are omitted."""
    if not groups:
        return {}
    means, counts = group_nmes(errors, torch.stack([torch.as_tensor(m) for m in groups.values()], 1))
    return {
        name: {"nme": float(mean), "faces": float(count)}
        for name, mean, count in zip(groups, means, counts, strict=True)
        if count
    }


def nme_by_part(residuals: torch.Tensor, parts: Mapping[str, Sequence[int]]) -> dict[str, dict[str, float]]:
    """Where on the face the error is: for each part (a scheme's ``groups``: jaw, brows, eyes ...) of
    (N, K, 2) `pfld.metrics.normalized_residuals`,

    - ``nme``: the mean error of the part's labelled points (each over its face's normalising distance);
    - ``offset``: the length of each point's mean residual over the faces, averaged over the part's
      points. It is the error every face shares, a systematic shift: where a test set's annotators
      placed a point differently from the training set's (a jaw's end, the nose bridge's top), it shows
      here and not in the spread. A constant per point would remove it; the rest of ``nme`` is per face;
    - ``points``: the part's point count.

    Parts with no labelled point are omitted.
    """
    labelled = ~residuals[..., 0].isnan()  # (N, K)
    errors = torch.linalg.vector_norm(residuals, dim=-1)  # (N, K), NaN where unlabelled
    counts = labelled.sum(dim=0)  # (K,)
    offsets = torch.linalg.vector_norm(residuals.nanmean(dim=0), dim=-1)  # (K,), NaN where never labelled
    table = {}
    for name, members in parts.items():
        index = torch.as_tensor(list(members), dtype=torch.long)
        seen = index[counts[index] > 0]
        if len(seen) == 0:
            continue
        table[name] = {
            "nme": float(errors[:, index][labelled[:, index]].mean()),
            "offset": float(offsets[seen].mean()),
            "points": float(len(index)),
        }
    return table


def pose_mae(out: Mapping[str, torch.Tensor]) -> dict[str, float] | None:
    """Mean absolute yaw, pitch and roll error in degrees over the faces with a fitted pose, and their
    count; None when the predictions carry no angles or no face has a pose."""
    if "pose" not in out or not out["pose_valid"].any():
        return None
    valid = out["pose_valid"].bool()
    errors = pose_errors(out["pose"][valid], out["angles"][valid]).abs().mean(dim=0)  # (3,) degrees
    return {**{name: float(e) for name, e in zip(ANGLES, errors, strict=True)}, "faces": float(valid.sum())}


def summarize(
    out: Mapping[str, torch.Tensor],
    errors: torch.Tensor,
    groups: Mapping[str, torch.Tensor],
    threshold: float = 0.10,
    by_part: Mapping[str, Mapping[str, float]] | None = None,
) -> dict[str, Any]:
    """NME, FR and AUC at ``threshold`` over the scored faces, counts, per-group NME and pose error.

    ``errors``: (N,) `face_errors`. The result is JSON-ready: ``nme``, ``failure_rate``, ``auc``,
    ``threshold``, ``faces``, ``unscored``, ``by_group`` ({name: {nme, faces}}), ``by_part``
    (`nme_by_part`'s table as given, {} without one) and ``pose_mae_deg`` ({yaw, pitch, roll, faces}, or
    None without a pose net).
    """
    scored = scored_nmes(errors)
    empty = scored.numel() == 0
    return {
        "nme": float("nan") if empty else float(scored.mean()),
        "failure_rate": float("nan") if empty else failure_rate(scored, threshold),
        "auc": float("nan") if empty else auc(scored, threshold),
        "threshold": threshold,
        "faces": len(errors),
        "unscored": len(errors) - scored.numel(),
        "by_group": nme_by_group(errors, groups),
        "by_part": {name: dict(row) for name, row in (by_part or {}).items()},
        "pose_mae_deg": pose_mae(out),
    }


def group_table(by_group: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table of `nme_by_group`'s result."""
    lines = ["| group | faces | NME |", "|---|---:|---:|"]
    lines += [f"| {name} | {int(row['faces'])} | {row['nme']:.4f} |" for name, row in by_group.items()]
    return "\n".join(lines)


def part_table(by_part: Mapping[str, Mapping[str, float]]) -> str:
    """Markdown table of `nme_by_part`'s result."""
    lines = ["| part | points | NME | offset |", "|---|---:|---:|---:|"]
    lines += [
        f"| {name} | {int(row['points'])} | {row['nme']:.4f} | {row['offset']:.4f} |"
        for name, row in by_part.items()
    ]
    return "\n".join(lines)


def breakdown_tables(summary: Mapping[str, Any]) -> str:
    """Markdown of `summarize`'s breakdowns: NME by group, then by part of the face when it has parts."""
    tables = [group_table(summary["by_group"])]
    if summary.get("by_part"):
        tables.append(part_table(summary["by_part"]))
    return "\n\n".join(tables)


def metrics_table(summary: Mapping[str, Any]) -> str:
    """Markdown of `summarize`'s result: the headline metrics, then the per-group table."""
    t = f"{summary['threshold']:g}"
    lines = [
        "| metric | value |",
        "|---|---:|",
        f"| NME | {summary['nme']:.4f} |",
        f"| FR@{t} | {summary['failure_rate']:.2%} |",
        f"| AUC@{t} | {summary['auc']:.4f} |",
        f"| faces | {summary['faces']} |",
        f"| unscored faces | {summary['unscored']} |",
    ]
    pose = summary.get("pose_mae_deg")
    if pose:
        lines += [f"| {name} MAE (deg, {int(pose['faces'])} faces) | {pose[name]:.2f} |" for name in ANGLES]
    return "\n".join(lines) + "\n\n" + breakdown_tables(summary)


def as_validation(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A run's figures under the training log's names (``val/nme`` ...): a training run's
    ``metrics.json`` as it is, an ``evaluate.py`` report's (``nme``, ``by_group`` ...) renamed."""
    if "val/nme" in metrics or "nme" not in metrics:
        return dict(metrics)
    named = {
        "val/nme": metrics["nme"],
        "val/failure_rate": metrics["failure_rate"],
        "val/auc": metrics["auc"],
    }
    named |= {f"val/nme_{group}": v["nme"] for group, v in metrics.get("by_group", {}).items()}
    pose = metrics.get("pose_mae_deg") or {}
    if all(axis in pose for axis in ANGLES):
        named["val/pose_mae"] = sum(pose[axis] for axis in ANGLES) / len(ANGLES)
    return named

"""The report of a model on a validation loader: files a person reads, and the numbers in them."""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from pfld.evaluation.figures import face_grid, plot_ced
from pfld.evaluation.predictions import predict
from pfld.evaluation.scores import breakdown_tables, face_errors, face_groups, nme_by_part, summarize
from pfld.inference.models import LandmarkModel
from pfld.io.images import write_image
from pfld.metrics import Normalization, normalized_residuals, scored_nmes


def scored(
    model: LandmarkModel,
    loader: DataLoader,
    normalization: Normalization,
    threshold: float = 0.10,
    subsets: Mapping[str, np.ndarray] | None = None,
    points: np.ndarray | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor], dict[str, Any]]:
    """Predict over ``loader`` and score: `predict`'s output, each face's NME (N,), the groups
    (`face_groups`; ``subsets`` e.g. the datamodule's ``val_subsets``) and `summarize`'s dict (NME, FR
    and AUC at ``threshold``, face counts, NME by group, by part of the face (the dataset's scheme's
    ``groups``, `nme_by_part`), pose error when the model gives angles).
    ``points``: (K,) bool, the points scored (None: all; a `MappedModel` scores those it maps)."""
    out = predict(model, loader)
    if points is not None:
        out["visible"] = out["visible"] & torch.as_tensor(points, dtype=torch.bool)
    errors = face_errors(out, normalization)  # (N,)
    groups = face_groups(out, loader.dataset.faces, subsets)
    residuals = normalized_residuals(out["predictions"], out["landmarks"], normalization, out["visible"])
    by_part = nme_by_part(residuals, loader.dataset.scheme.groups)
    return out, errors, groups, summarize(out, errors, groups, threshold, by_part)


def score(
    model: LandmarkModel,
    loader: DataLoader,
    normalization: Normalization,
    threshold: float = 0.10,
    subsets: Mapping[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """`scored`'s summary alone (what export reports for every format)."""
    return scored(model, loader, normalization, threshold, subsets)[-1]


def write_report(
    model: LandmarkModel,
    loader: DataLoader,
    normalization: Normalization,
    folder: str | Path,
    name: str = "val",
    subsets: Mapping[str, np.ndarray] | None = None,
    threshold: float = 0.10,
    points: np.ndarray | None = None,
) -> dict[str, Any]:
    """Score ``model`` over ``loader`` (unshuffled, evaluation transform; see `scored`), then write
    ``<name>_ced.png`` (CED of all faces and of each subset), ``<name>_predictions.png`` (the worst and
    the median faces), ``<name>_groups.md`` (NME by group, see `face_groups`, and by part of the
    face, see `nme_by_part`) and ``<name>_faces.csv`` (each face's NME and groups, see
    `write_face_table`: two models' reports compare face by face with `scripts/paired_nme.py`).

    Returns `summarize`'s dict.
    """
    folder = Path(folder)
    out, errors, groups, summary = scored(model, loader, normalization, threshold, subsets, points)
    curves = {
        label: scored_nmes(errors[member])
        for label, member in groups.items()
        if label == "all" or label.startswith("subset:")
    }
    plot_ced({k: v for k, v in curves.items() if v.numel()}, threshold, path=folder / f"{name}_ced.png")
    write_image(folder / f"{name}_predictions.png", face_grid(loader.dataset, out["predictions"], errors))
    (folder / f"{name}_groups.md").write_text(breakdown_tables(summary) + "\n")
    write_face_table(
        folder / f"{name}_faces.csv", errors, groups, loader.dataset.faces.sources, out["angles"]
    )
    return summary


#: The columns of a face table before its groups' (`write_face_table`).
FACE_COLUMNS: tuple[str, ...] = ("face", "source", "nme", "yaw", "pitch", "roll")


def write_face_table(
    path: str | Path,
    errors: torch.Tensor,
    groups: Mapping[str, torch.Tensor],
    sources: Sequence[str],
    angles: torch.Tensor,
) -> Path:
    """Write one CSV row per face: its index in the loader, ``source`` (the file it was annotated in),
    ``nme`` (empty: unscored), the annotated ``yaw`` / ``pitch`` / ``roll`` in degrees (empty: unknown)
    and a 0/1 column for each group of `face_groups` but ``all``.

    Args:
        errors: (N,) each face's NME, NaN where unscored.
        groups: name -> (N,) bool membership.
        sources: (N,) where each face was annotated.
        angles: (N, 3) radians, NaN where unknown.
    """
    names = [name for name in groups if name != "all"]
    degrees = torch.rad2deg(torch.as_tensor(angles, dtype=torch.float64))
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([*FACE_COLUMNS, *names])
        for i, error in enumerate(errors.tolist()):
            angle_cells = ["" if math.isnan(v) else f"{v:.1f}" for v in degrees[i].tolist()]
            writer.writerow(
                [
                    i,
                    sources[i],
                    "" if math.isnan(error) else f"{error:.6f}",
                    *angle_cells,
                    *(int(bool(groups[name][i])) for name in names),
                ]
            )
    return path


@dataclass(frozen=True)
class FaceTable:
    """A report's per-face table (`write_face_table`), read back: ``sources`` (N,), ``nme`` (N,) float64
    (NaN: unscored) and ``groups``: name -> (N,) bool, ``all`` first."""

    path: Path
    sources: tuple[str, ...]
    nme: np.ndarray
    groups: dict[str, np.ndarray]


def read_face_table(path: str | Path) -> FaceTable:
    """Read a ``<name>_faces.csv`` that `write_report` wrote (or the ``val_faces.csv`` in a report's folder)."""
    path = Path(path)
    if path.is_dir():
        path = path / "val_faces.csv"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no face table (evaluate.py and training's validate_best report write val_faces.csv)"
        )
    with path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or tuple(rows[0][: len(FACE_COLUMNS)]) != FACE_COLUMNS:
        raise ValueError(f"{path}: not a face table: its header should start with {','.join(FACE_COLUMNS)}")
    header, body = rows[0], rows[1:]
    names = header[len(FACE_COLUMNS) :]
    try:
        nmes = np.array([float(row[2]) if row[2] else np.nan for row in body], dtype=np.float64)
        members = np.array([[int(v) for v in row[len(FACE_COLUMNS) :]] for row in body], dtype=bool)
    except (ValueError, IndexError) as error:
        raise ValueError(f"{path}: a row is not a face table's ({error})") from None
    members = members.reshape(len(body), len(names))
    groups = {"all": np.ones(len(body), dtype=bool)} | {name: members[:, j] for j, name in enumerate(names)}
    return FaceTable(path, tuple(row[1] for row in body), nmes, groups)

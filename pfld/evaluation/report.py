"""The report of a model on a validation loader: files a person reads, and the numbers in them."""

from __future__ import annotations

from collections.abc import Mapping
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
    the median faces) and ``<name>_groups.md`` (NME by group, see `face_groups`, and by part of the
    face, see `nme_by_part`).

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
    return summary

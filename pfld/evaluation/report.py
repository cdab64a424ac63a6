"""The report of a model on a validation loader: files a person reads, and the numbers in them."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn
from torch.utils.data import DataLoader

from pfld.data.preview import save_rgb
from pfld.evaluation.figures import face_grid
from pfld.evaluation.predictions import Predictor, predict
from pfld.evaluation.scores import face_errors, face_groups, group_table, summarize
from pfld.metrics import Normalization, plot_ced, scored_nmes


def write_report(
    model: nn.Module | Predictor,
    loader: DataLoader,
    normalization: Normalization,
    folder: str | Path,
    name: str = "val",
    subsets: Mapping[str, np.ndarray] | None = None,
    threshold: float = 0.10,
) -> dict[str, Any]:
    """Predict over ``loader`` (unshuffled, evaluation transform), then write ``<name>_ced.png`` (CED of
    all faces and of each subset), ``<name>_predictions.png`` (the worst and the median faces) and
    ``<name>_groups.md`` (NME by group, see `face_groups`).

    ``subsets``: name -> (N,) bool, e.g. the datamodule's ``val_subsets``. Returns `summarize`'s dict.
    """
    folder = Path(folder)
    out = predict(model, loader)
    errors = face_errors(out, normalization)  # (N,)
    groups = face_groups(out, loader.dataset.faces, subsets)
    summary = summarize(out, errors, groups, threshold)
    curves = {
        label: scored_nmes(errors[member])
        for label, member in groups.items()
        if label == "all" or label.startswith("subset:")
    }
    plot_ced({k: v for k, v in curves.items() if v.numel()}, threshold, path=folder / f"{name}_ced.png")
    save_rgb(folder / f"{name}_predictions.png", face_grid(loader.dataset, out["predictions"], errors))
    (folder / f"{name}_groups.md").write_text(group_table(summary["by_group"]) + "\n")
    return summary

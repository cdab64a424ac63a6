"""Evaluate a landmark model on a data loader and draw what a person looks at: CED curve, predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from pfld.data.dataset import LandmarkDataset
from pfld.data.preview import denormalize, draw_landmarks, save_rgb
from pfld.metrics import nme, plot_ced


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``model`` (eval mode, images -> (B, K, 2)) over ``loader``: returns (predictions, targets), (N, K, 2)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    predictions, targets = [], []
    for batch in loader:
        predictions.append(model(batch["image"].to(device)).float().cpu())
        targets.append(batch["landmarks"])
    model.train(was_training)
    return torch.cat(predictions), torch.cat(targets)


def prediction_grid(
    dataset: LandmarkDataset,
    predictions: torch.Tensor,
    errors: torch.Tensor,
    count: int = 12,
    columns: int = 6,
) -> np.ndarray:
    """Faces spread from best to worst NME, ground truth in green, prediction coloured by side."""
    order = torch.argsort(errors)
    picks = order[torch.linspace(0, len(order) - 1, min(count, len(order))).long()]
    tiles = []
    for index in picks.tolist():
        sample = dataset[index]
        image = denormalize(sample["image"], dataset.mean, dataset.std)
        truth = draw_landmarks(image, sample["landmarks"].numpy(), None, color=(0, 255, 0), scale=2)
        tiles.append(draw_landmarks(truth, predictions[index].numpy(), dataset.scheme, scale=1))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def write_report(
    model: nn.Module,
    loader: DataLoader,
    normalization: tuple[int, int],
    folder: str | Path,
    name: str = "val",
) -> dict[str, float]:
    """Predict, then write ``<name>_ced.png`` and ``<name>_predictions.png`` into ``folder``."""
    folder = Path(folder)
    predictions, targets = predict(model, loader)
    errors = nme(predictions, targets, normalization)
    plot_ced({name: errors}, path=folder / f"{name}_ced.png")
    save_rgb(folder / f"{name}_predictions.png", prediction_grid(loader.dataset, predictions, errors))
    return {"nme": float(errors.mean()), "faces": float(len(errors))}

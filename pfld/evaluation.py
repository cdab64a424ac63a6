"""Evaluate a landmark model on a data loader and draw what a person looks at: CED curve, predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from pfld.data.attributes import FACE_CLASSES
from pfld.data.dataset import LandmarkDataset
from pfld.data.preview import denormalize, draw_landmarks, save_rgb
from pfld.metrics import nme, plot_ced


@torch.no_grad()
def predict(model: nn.Module, loader: DataLoader) -> dict[str, torch.Tensor]:
    """Run ``model`` (eval mode, images -> (B, K, 2)) over ``loader``.

    Returns ``predictions`` and ``landmarks`` (N, K, 2), ``visible`` (N, K) and ``classes`` (N, C).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    outputs: dict[str, list[torch.Tensor]] = {
        "predictions": [],
        "landmarks": [],
        "visible": [],
        "classes": [],
    }
    for batch in loader:
        outputs["predictions"].append(model(batch["image"].to(device)).float().cpu())
        for key in ("landmarks", "visible", "classes"):
            outputs[key].append(batch[key])
    model.train(was_training)
    return {key: torch.cat(values) for key, values in outputs.items()}


def nme_by_group(errors: torch.Tensor, groups: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Mean NME and face count of each group; ``groups`` maps a name to an (N,) 0/1 membership.
    Faces that cannot be scored (NaN) are left out; empty groups are omitted."""
    table = {}
    for name, member in groups.items():
        chosen = errors[(member > 0) & ~torch.isnan(errors)]
        if len(chosen):
            table[name] = {"nme": float(chosen.mean()), "faces": float(len(chosen))}
    return table


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
        visible = sample["visible"].numpy()
        truth = draw_landmarks(
            image, sample["landmarks"].numpy(), None, (0, 255, 0), scale=2, visible=visible
        )
        tiles.append(draw_landmarks(truth, predictions[index].numpy(), dataset.scheme, scale=1))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    return np.vstack(rows)


def group_table(by_group: dict[str, dict[str, float]]) -> str:
    """Markdown table of `nme_by_group`'s result."""
    lines = ["| group | faces | NME |", "|---|---:|---:|"]
    lines += [f"| {name} | {int(row['faces'])} | {row['nme']:.4f} |" for name, row in by_group.items()]
    return "\n".join(lines)


def write_report(
    model: nn.Module,
    loader: DataLoader,
    normalization: tuple[int, int],
    folder: str | Path,
    name: str = "val",
) -> dict[str, float]:
    """Predict, then write ``<name>_ced.png``, ``<name>_predictions.png`` and ``<name>_groups.md``.

    Returns the NME over all scored faces, the face count and the NME of each face class
    (`FACE_CLASSES`: pose from the Euler angles, expression and occlusion from data-set flags) and of
    each data-set flag (e.g. WFLW's illumination, make-up, blur).
    """
    folder = Path(folder)
    out = predict(model, loader)
    errors = nme(out["predictions"], out["landmarks"], normalization, out["visible"])
    scored = errors[~torch.isnan(errors)]
    plot_ced({name: scored}, path=folder / f"{name}_ced.png")
    grid = prediction_grid(loader.dataset, out["predictions"], torch.nan_to_num(errors, nan=-1.0))
    save_rgb(folder / f"{name}_predictions.png", grid)
    groups = {c: out["classes"][:, i] for i, c in enumerate(FACE_CLASSES)}
    faces = loader.dataset.faces
    groups |= {f"flag:{n}": torch.from_numpy(faces.flags[:, i]) for i, n in enumerate(faces.flag_names)}
    by_group = nme_by_group(errors, groups)
    (folder / f"{name}_groups.md").write_text(group_table(by_group) + "\n")
    return {"nme": float(scored.mean()), "faces": float(len(errors)), "by_group": by_group}

"""Run a landmark model over a data loader and keep what scoring needs."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from pfld.data.normalize import model_input
from pfld.inference.models import LandmarkModel

#: Batch entries kept next to the predictions (see `pfld.data.dataset.LandmarkDataset`).
TARGET_KEYS: tuple[str, ...] = ("landmarks", "visible", "classes", "angles", "pose_valid")


@torch.no_grad()
def predict(model: LandmarkModel, loader: DataLoader) -> dict[str, torch.Tensor]:
    """Run ``model`` (`pfld.inference.LandmarkModel`: PyTorch, onnxruntime or a phone runtime) over
    ``loader``; its uint8 crops are normalised with its dataset's ``mean`` and ``std`` first.

    Returns CPU tensors: ``predictions`` and ``landmarks`` (N, K, 2), ``visible`` (N, K), ``classes``
    (N, C), ``angles`` (N, 3) radians, ``pose_valid`` (N,), and ``pose`` (N, 3) radians when the
    model gives the head pose.
    """
    outputs: dict[str, list[torch.Tensor]] = {"predictions": [], "pose": [], **{k: [] for k in TARGET_KEYS}}
    dataset = loader.dataset
    for batch in loader:
        landmarks, angles = model(model_input(batch["image"], dataset.mean, dataset.std))
        outputs["predictions"].append(torch.as_tensor(landmarks).float())
        if angles is not None:
            outputs["pose"].append(torch.as_tensor(angles).float())
        for key in TARGET_KEYS:
            outputs[key].append(batch[key])
    return {key: torch.cat(values) for key, values in outputs.items() if values}

"""Run a landmark predictor over a data loader and keep what scoring needs."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader

from pfld.data.normalize import model_input

#: Anything that maps (B, 3, S, S) normalised images to (B, K, 2) landmarks in [0, 1] of the crop, or to
#: (landmarks, (B, 3) yaw/pitch/roll in radians): an `nn.Module`, a PFLD with its pose net
#: (`pose_predictor`), or later an ONNX session wrapped in a function (outputs may be numpy arrays).
Predictor = Callable[[torch.Tensor], "torch.Tensor | tuple[torch.Tensor, torch.Tensor]"]

#: Batch entries kept next to the predictions (see `pfld.data.dataset.LandmarkDataset`).
TARGET_KEYS: tuple[str, ...] = ("landmarks", "visible", "classes", "angles", "pose_valid")


def pose_predictor(model: nn.Module) -> Predictor:
    """A PFLD that also predicts the head pose with its auxiliary net (``forward_with_pose``), when it
    has one; otherwise the model itself. The model is put in eval mode."""
    model.eval()
    if getattr(model, "auxiliary", None) is None:
        return model
    return model.forward_with_pose


@torch.no_grad()
def predict(predictor: nn.Module | Predictor, loader: DataLoader) -> dict[str, torch.Tensor]:
    """Run ``predictor`` over ``loader`` (an `nn.Module` runs in eval mode on its own device, and its
    mode is restored; a bound method runs on its module's device; anything else gets CPU tensors).
    The loader's uint8 crops are normalised with its dataset's ``mean`` and ``std`` first.

    Returns CPU tensors: ``predictions`` and ``landmarks`` (N, K, 2), ``visible`` (N, K), ``classes``
    (N, C), ``angles`` (N, 3) radians, ``pose_valid`` (N,), and ``pose`` (N, 3) radians when the
    predictor also returns angles.
    """
    module = predictor if isinstance(predictor, nn.Module) else getattr(predictor, "__self__", None)
    was_training = isinstance(module, nn.Module) and module.training
    device = torch.device("cpu")
    if isinstance(module, nn.Module):
        module.eval()
        device = next(module.parameters()).device
    outputs: dict[str, list[torch.Tensor]] = {"predictions": [], "pose": [], **{k: [] for k in TARGET_KEYS}}
    dataset = loader.dataset
    for batch in loader:
        result = predictor(model_input(batch["image"].to(device), dataset.mean, dataset.std))
        landmarks, angles = result if isinstance(result, tuple) else (result, None)
        outputs["predictions"].append(torch.as_tensor(landmarks).float().cpu())
        if angles is not None:
            outputs["pose"].append(torch.as_tensor(angles).float().cpu())
        for key in TARGET_KEYS:
            outputs[key].append(batch[key])
    if isinstance(module, nn.Module):
        module.train(was_training)
    return {key: torch.cat(values) for key, values in outputs.items() if values}

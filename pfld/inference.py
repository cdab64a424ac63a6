"""Inference models from training checkpoints: the auxiliary pose net is not built or loaded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from pfld.models import PFLD


def load_inference_model(checkpoint_path: str | Path) -> tuple[PFLD, dict[str, Any]]:
    """Rebuild the landmark model of a `PFLDModule` checkpoint, without its auxiliary net, in eval mode.

    Returns the model and the checkpoint's data description (input size, crop scale, mean, std,
    scheme, number of points, normalisation indices, coordinate convention).
    """
    checkpoint_path = Path(checkpoint_path)
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"{checkpoint_path}: checkpoint not found")
    checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
    hparams = checkpoint.get("hyper_parameters", {})
    if "model" not in hparams or "data" not in hparams:
        raise ValueError(
            f"{checkpoint_path}: not a pfld training checkpoint (no model/data hyper-parameters)"
        )
    model_config = dict(hparams["model"], auxiliary=False)
    model: PFLD = instantiate(model_config)
    prefix = "model."
    state = {
        key[len(prefix) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix) and not key.startswith(prefix + "auxiliary.")
    }
    model.load_state_dict(state, strict=True)
    return model.eval(), dict(hparams["data"])

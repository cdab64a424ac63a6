"""Inference models from training checkpoints: the auxiliary pose net is not built or loaded."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from pfld.losses import loss_trains_pose_net
from pfld.models import PFLD


def load_inference_model(
    checkpoint_path: str | Path, with_pose: bool | None = False
) -> tuple[PFLD, dict[str, Any]]:
    """Rebuild the model of a `PFLDModule` checkpoint in eval mode: the landmark net only, or with
    ``with_pose`` its auxiliary (head-pose) net too; a checkpoint without one is refused, and one whose
    loss never trained it gets a warning. ``with_pose=None``: the pose net when the checkpoint has a
    trained one, silently.

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
    if with_pose is None:
        with_pose = bool(hparams["model"].get("auxiliary", True)) and pose_net_trained(hparams)
    elif with_pose:
        check_pose_net(hparams, checkpoint_path)
    model_config = dict(hparams["model"], auxiliary=with_pose)
    if "uncertainty" in model_config:  # RLE's training-only scale head
        model_config["uncertainty"] = False
    model: PFLD = instantiate(model_config)
    prefix = "model."
    state = {
        key[len(prefix) :]: value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(prefix)
        and not key.startswith(prefix + "uncertainty.")
        and (with_pose or not key.startswith(prefix + "auxiliary."))
    }
    model.load_state_dict(state, strict=True)
    return model.eval(), dict(hparams["data"])


def pose_net_trained(hparams: dict[str, Any]) -> bool:
    """Whether the checkpoint's loss trained its auxiliary net (`pfld.losses.loss_trains_pose_net`)."""
    return loss_trains_pose_net(hparams.get("loss") or {})


def check_pose_net(hparams: dict[str, Any], checkpoint_path: Path) -> None:
    """Refuse a checkpoint without a pose net; warn when its loss did not train it (its angles would
    be an untrained net's)."""
    if not hparams["model"].get("auxiliary", True):
        raise ValueError(
            f"{checkpoint_path}: the model was trained without the auxiliary pose net "
            "(model.auxiliary=false): it cannot predict the head pose; export without with_pose"
        )
    if not pose_net_trained(hparams):
        loss = hparams.get("loss") or {}
        warnings.warn(
            f"{checkpoint_path}: its loss ({loss.get('_target_')}, pose_weight "
            f"{loss.get('pose_weight', 0.0)}) did not train the pose net: its angles are meaningless; "
            "train with loss.pose_weight > 0 or loss=pfld",
            stacklevel=3,
        )

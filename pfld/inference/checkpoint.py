"""Training checkpoints read in one place: `read_checkpoint` (checked, with errors naming the file and
the setting that named it) and `load_checkpoint` (the inference model and its `ModelSpec`; the
auxiliary pose net only when asked for)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from pfld.inference.spec import ModelSpec
from pfld.losses import loss_trains_pose_net
from pfld.models import PFLD

#: The prefix of the model's weights in a `PFLDModule` checkpoint's state dict.
MODEL_PREFIX = "model."


def read_checkpoint(path: str | Path, key: str = "checkpoint") -> dict[str, Any]:
    """The checkpoint at ``path`` (on the CPU) after checking it is a pfld training checkpoint: weights
    and the ``model`` and ``data`` hyper-parameters. Errors name ``key`` (the setting that gave the
    path, e.g. ``ckpt_path``), the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{key}={path}: checkpoint not found")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise ValueError(
            f"{key}={path}: cannot read the checkpoint ({type(error).__name__}: {error})"
        ) from error
    hparams = checkpoint.get("hyper_parameters", {}) if isinstance(checkpoint, dict) else {}
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint or "model" not in hparams:
        raise ValueError(
            f"{key}={path}: not a pfld training checkpoint (no state_dict or model hyper-parameters)"
        )
    return checkpoint


def model_state(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The `PFLD` model's weights of a `PFLDModule` checkpoint, without the ``model.`` prefix."""
    n = len(MODEL_PREFIX)
    return {k[n:]: v for k, v in checkpoint["state_dict"].items() if k.startswith(MODEL_PREFIX)}


def load_checkpoint(checkpoint_path: str | Path, with_pose: bool | None = False) -> tuple[PFLD, ModelSpec]:
    """Rebuild the model of a `PFLDModule` checkpoint in eval mode: the landmark net only, or with
    ``with_pose`` its auxiliary (head-pose) net too; a checkpoint without one is refused, and one whose
    loss never trained it gets a warning. ``with_pose=None``: the pose net when the checkpoint has a
    trained one, silently. Training-only parts (RLE's scale head) are left out.

    Returns the model and its `ModelSpec` (``with_pose`` says whether the pose net was loaded).
    """
    checkpoint = read_checkpoint(checkpoint_path)
    hparams = checkpoint["hyper_parameters"]
    if "data" not in hparams:
        raise ValueError(f"{checkpoint_path}: not a pfld training checkpoint (no data hyper-parameters)")
    spec = ModelSpec.from_hparams(hparams["data"], where=str(checkpoint_path))
    if with_pose is None:
        with_pose = has_trained_pose_net(hparams)
    elif with_pose:
        check_pose_net(hparams, Path(checkpoint_path))
    model_config = dict(hparams["model"], auxiliary=with_pose)
    if "uncertainty" in model_config:
        model_config["uncertainty"] = False
    model: PFLD = instantiate(model_config)
    state = {
        key: value
        for key, value in model_state(checkpoint).items()
        if not key.startswith("uncertainty.") and (with_pose or not key.startswith("auxiliary."))
    }
    model.load_state_dict(state, strict=True)
    return model.eval(), spec.with_pose_output(with_pose)


def pose_net_trained(hparams: dict[str, Any]) -> bool:
    """Whether the checkpoint's loss trained its auxiliary net (`pfld.losses.loss_trains_pose_net`)."""
    return loss_trains_pose_net(hparams.get("loss") or {})


def has_trained_pose_net(hparams: dict[str, Any]) -> bool:
    """Whether the checkpoint has a pose net and its loss trained it: what ``with_pose=None`` loads."""
    return bool(hparams["model"].get("auxiliary", True)) and pose_net_trained(hparams)


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

"""The PFLD loss of Guo et al. (2019) and its class balance, and the conventions every landmark loss
follows (plain L2 / L1 / wing losses: `pfld.losses.points`; pose terms: `pfld.losses.pose`).

Conventions at this boundary: landmarks are ``(B, K, 2)``, x then y, in [0, 1] of the square face crop;
Euler angles are ``(B, 3)`` yaw, pitch, roll in radians; class membership is ``(B, C)`` bool or {0, 1}
float, columns in the order of `CLASS_NAMES` (a class the data set cannot tell is an all-zero column).

Partially labelled faces: ``mask`` is ``(B, K)`` bool, True where a point is labelled, or ``(B, K)``
float weights, 0 where a point is unlabelled (`point_weights`: pseudo-labelled points weighing less than
annotated ones). Targets at unlabelled points may hold any value, NaN included; they never reach the
loss or its gradient (inputs are selected with ``torch.where`` before any arithmetic). The per-face sums
over labelled points are rescaled by ``B * K / (labelled points, or their weights, in the batch)``, see
`masked_point_sum`. ``pose_valid`` is
``(B,)`` bool, False where the Euler angles could not be fitted, see `pfld_loss`.

Every loss is an ``nn.Module`` with the same ``forward(pred, target, pred_angles=None,
target_angles=None, classes=None, mask=None, pose_valid=None) -> scalar`` so that a config can swap
them; losses that do not use angles, classes or pose validity ignore them. Each module is a thin wrapper
over a pure function of the same name. The plain losses (L2, L1, wing) can add an auxiliary head-pose term,
``pose_weight * pose_loss(...)``, which averages over the faces with a valid pose only (the PFLD loss
instead multiplies the landmark error by the angle factor).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from pfld.data.attributes import FACE_CLASSES
from pfld.losses.points import (
    _masked_difference,
    masked_point_sum,
)
from pfld.losses.pose import _angle_factor, _check_angles, _check_mask

#: Pose / attribute classes of the PFLD loss, in column order of the ``classes`` tensor.
CLASS_NAMES = FACE_CLASSES  # column order of class memberships, from pfld.data.attributes


def _class_name(c: int, num_classes: int) -> str:
    return f"{c} ({CLASS_NAMES[c]!r})" if num_classes == len(CLASS_NAMES) else str(c)


def _check_fractions(fractions: Sequence[float] | Tensor) -> Tensor:
    """Validate class fractions: a non-empty 1-D sequence of values in [0, 1], not all zero."""
    f = torch.as_tensor(fractions, dtype=torch.get_default_dtype()).detach().clone()
    if f.ndim != 1 or f.numel() == 0:
        raise ValueError(f"class_fractions must be a non-empty 1-D sequence, got shape {tuple(f.shape)}")
    if not torch.isfinite(f).all() or (f < 0).any() or (f > 1).any():
        raise ValueError(f"class_fractions must lie in [0, 1], got {f.tolist()}")
    if not (f > 0).any():
        raise ValueError("class_fractions are all zero: no class has any training sample")
    return f


def class_fractions_from_memberships(classes: Tensor) -> Tensor:
    """Fraction of samples in each class over a whole training set.

    Args:
        classes: (N, C) bool or {0, 1} memberships of every training sample.

    Returns:
        (C,) fractions in [0, 1], ready for ``PFLDLoss.set_class_fractions``.
    """
    if classes.ndim != 2 or classes.shape[0] == 0:
        raise ValueError(f"classes must be a non-empty (N, C) tensor, got {tuple(classes.shape)}")
    return classes.to(torch.get_default_dtype()).mean(dim=0)


def class_weights(classes: Tensor, class_fractions: Tensor | Sequence[float] | None = None) -> Tensor:
    """Per-sample weight ``sum_c w_c * 1[sample in class c]`` with ``w_c`` = 1 / fraction of class c.

    Args:
        classes: (B, C) bool or {0, 1} float memberships; every sample must be in at least one class.
        class_fractions: (C,) fractions of the training set in each class ("dataset" weighting), or
            None to use the fractions of this batch, ``w_c = B / n_c`` ("batch" weighting; classes
            absent from the batch contribute nothing).

    Returns:
        (B,) weights, all > 0, no gradient.

    Raises:
        ValueError: a sample belongs to no class (it would get weight zero and never train), memberships
            are not 0/1, shapes disagree, or a class present in the batch has fraction 0.
    """
    if classes.ndim != 2 or classes.shape[1] == 0:
        raise ValueError(f"classes must be (B, C) with C >= 1, got {tuple(classes.shape)}")
    if classes.dtype == torch.bool:
        member = classes.to(torch.get_default_dtype())
    else:
        member = classes.detach().to(torch.promote_types(classes.dtype, torch.get_default_dtype()))
        if not ((member == 0) | (member == 1)).all():
            raise ValueError("classes must be bool or contain only 0 and 1")
    counts = member.sum(dim=0)  # (C,)
    orphans = (member.sum(dim=1) == 0).nonzero().flatten().tolist()
    if orphans:
        raise ValueError(
            f"samples {orphans} of the batch belong to no class: a face with no class would get weight "
            "zero and never train (every face must be profile or frontal at least)"
        )
    if class_fractions is None:
        w = torch.where(counts > 0, member.shape[0] / counts.clamp(min=1), torch.zeros_like(counts))
    else:
        f = torch.as_tensor(class_fractions).to(device=member.device, dtype=member.dtype)
        if f.shape != counts.shape:
            raise ValueError(f"{f.numel()} class fractions for {counts.numel()} classes")
        missing = ((counts > 0) & (f <= 0)).nonzero().flatten().tolist()
        if missing:
            names = ", ".join(_class_name(c, counts.numel()) for c in missing)
            raise ValueError(
                f"classes {names} occur in the batch but have training-set fraction 0; "
                "recompute the fractions from the training data"
            )
        w = torch.where(f > 0, 1.0 / f.clamp(min=torch.finfo(f.dtype).tiny), torch.zeros_like(f))
    return member @ w  # (B,)


def pfld_loss(
    pred: Tensor,
    target: Tensor,
    pred_angles: Tensor,
    target_angles: Tensor,
    class_weights_per_sample: Tensor,
    mask: Tensor | None = None,
    pose_valid: Tensor | None = None,
) -> Tensor:
    """The PFLD loss: mean over the batch of ``weight * sum_a (1 - cos(theta_a)) * ||pred - target||^2``.

    ``theta_a`` is the difference between predicted and target yaw, pitch and roll. The angle factor
    goes to zero as the auxiliary predictions become exact, which also switches the landmark term off:
    this is the paper's formulation, reproduced faithfully (compare `L2Loss` for a plain baseline).

    A face whose ``pose_valid`` is False has no angle target (its ``target_angles`` are ignored, NaN
    included). It is neither dropped (weight 0) nor given a factor from a meaningless target: its angle
    factor is the mean of the angle factors of the valid faces in the batch, detached (1.0 if no face in
    the batch is valid). Its landmarks train as usual; its ``pred_angles`` get no gradient.

    Args:
        pred, target: (B, K, 2) landmarks in [0, 1] of the crop.
        pred_angles, target_angles: (B, 3) yaw, pitch, roll in radians (not degrees).
        class_weights_per_sample: (B,) weights, see `class_weights`.
        mask: (B, K) bool, True where a point is labelled (or float weights); None means all are. See `masked_point_sum`.
        pose_valid: (B,) bool, True where ``target_angles`` is meaningful; None means all are.

    Returns:
        Scalar; differentiable in ``pred`` and ``pred_angles``.
    """
    difference = _masked_difference(pred, target, mask)  # (B, K, 2), checks shapes
    b = pred.shape[0]
    _check_angles(pred_angles, target_angles, b)
    if class_weights_per_sample.shape != (b,):
        raise ValueError(f"class weights must be ({b},), got {tuple(class_weights_per_sample.shape)}")
    _check_mask(pose_valid, (b,), "pose_valid")
    angle_factor = _angle_factor(pred_angles, target_angles, pose_valid)  # (B,)
    squared_error = masked_point_sum(difference.pow(2), mask)  # (B,)
    weights = class_weights_per_sample.to(device=pred.device, dtype=pred.dtype)
    return (weights * angle_factor * squared_error).mean()


class PFLDLoss(nn.Module):
    """The PFLD loss with class weights from the batch or from training-set class fractions.

    Args:
        class_weighting: "batch" (``w_c = B / n_c`` in each batch) or "dataset" (``w_c = 1 / f_c`` from
            fixed training-set fractions).
        class_fractions: (C,) fractions in [0, 1] for "dataset" weighting; may instead be set later with
            `set_class_fractions` once the training data is read. Stored as a buffer, so it is saved with
            the model.

    The angle factor approaches zero as the auxiliary (pose) predictions become exact, as in the paper.
    """

    class_fractions: Tensor | None
    #: The loss reads the predicted angles, so it trains the auxiliary (pose) net.
    uses_pose = True

    def __init__(
        self,
        class_weighting: Literal["batch", "dataset"] = "batch",
        class_fractions: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        if class_weighting not in ("batch", "dataset"):
            raise ValueError(f"class_weighting must be 'batch' or 'dataset', got {class_weighting!r}")
        if class_weighting == "batch" and class_fractions is not None:
            raise ValueError("class_fractions are only used with class_weighting='dataset'")
        self.class_weighting = class_weighting
        self.register_buffer("class_fractions", None)
        if class_fractions is not None:
            self.set_class_fractions(class_fractions)

    def set_class_fractions(self, fractions: Sequence[float] | Tensor) -> None:
        """Set the (C,) training-set class fractions (used by "dataset" weighting, kept otherwise)."""
        device = self.class_fractions.device if self.class_fractions is not None else None
        self.class_fractions = _check_fractions(fractions).to(device)

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args, **kwargs) -> None:
        # Adopt saved fractions even when this instance has none yet (e.g. rebuilt from a checkpoint).
        key = prefix + "class_fractions"
        if key in state_dict and state_dict[key] is not None:
            self.set_class_fractions(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        pred_angles: Tensor | None = None,
        target_angles: Tensor | None = None,
        classes: Tensor | None = None,
        mask: Tensor | None = None,
        pose_valid: Tensor | None = None,
    ) -> Tensor:
        """(B, K, 2) landmarks, (B, 3) angles in radians, (B, C) memberships, (B, K) bool labelled
        points, (B,) bool valid poses -> scalar loss; see `pfld_loss`."""
        if pred_angles is None or target_angles is None or classes is None:
            raise ValueError("PFLDLoss needs pred_angles, target_angles and classes")
        if classes.ndim != 2 or classes.shape[0] != pred.shape[0]:
            raise ValueError(f"classes must be ({pred.shape[0]}, C), got {tuple(classes.shape)}")
        fractions = None
        if self.class_weighting == "dataset":
            if self.class_fractions is None:
                raise RuntimeError(
                    "PFLDLoss(class_weighting='dataset') used before class fractions were set: pass "
                    "class_fractions or call set_class_fractions() once the training data is read"
                )
            fractions = self.class_fractions
        weights = class_weights(classes, fractions)
        return pfld_loss(pred, target, pred_angles, target_angles, weights, mask, pose_valid)

    def extra_repr(self) -> str:
        return f"class_weighting={self.class_weighting!r}"

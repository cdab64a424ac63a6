"""Landmark losses: the PFLD loss of Guo et al. (2019) and plain L2 / L1 / wing losses for comparison.

Conventions at this boundary: landmarks are ``(B, K, 2)``, x then y, in [0, 1] of the square face crop;
Euler angles are ``(B, 3)`` yaw, pitch, roll in radians; class membership is ``(B, C)`` bool or {0, 1}
float, columns in the order of `CLASS_NAMES` (a class the data set cannot tell is an all-zero column).

Partially labelled faces: ``mask`` is ``(B, K)`` bool, True where a point is labelled. Targets at
unlabelled points may hold any value, NaN included; they never reach the loss or its gradient (inputs
are selected with ``torch.where`` before any arithmetic). The per-face sums over labelled points are
rescaled by ``B * K / (labelled points in the batch)``, see `masked_point_sum`. ``pose_valid`` is
``(B,)`` bool, False where the Euler angles could not be fitted, see `pfld_loss`.

Every loss is an ``nn.Module`` with the same ``forward(pred, target, pred_angles=None,
target_angles=None, classes=None, mask=None, pose_valid=None) -> scalar`` so that a config can swap
them; losses that do not use angles, classes or pose validity ignore them. Each module is a thin wrapper
over a pure function of the same name. The plain losses (L2, L1, wing) can add an auxiliary head-pose term,
``pose_weight * pose_loss(...)``, which averages over the faces with a valid pose only (the PFLD loss
instead multiplies the landmark error by the angle factor).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from pfld.data.attributes import FACE_CLASSES

#: Pose / attribute classes of the PFLD loss, in column order of the ``classes`` tensor.
CLASS_NAMES = FACE_CLASSES  # column order of class memberships, from pfld.data.attributes


def _check_landmarks(pred: Tensor, target: Tensor) -> None:
    if pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred must be (B, K, 2), got {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def _check_mask(mask: Tensor | None, shape: tuple[int, ...], name: str = "mask") -> None:
    if mask is None:
        return
    if mask.dtype != torch.bool or tuple(mask.shape) != shape:
        raise ValueError(
            f"{name} must be a bool tensor of shape {shape}, got {mask.dtype} {tuple(mask.shape)}"
        )


def _masked_difference(pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """``pred - target``, (B, K, 2), set to exactly 0 at unlabelled points (where ``mask`` is False).

    ``torch.where`` passes no gradient to the branch it does not select, so a NaN or garbage target at
    an unlabelled point yields a finite zero difference and a zero gradient, unlike multiplying by 0.
    """
    _check_landmarks(pred, target)
    _check_mask(mask, tuple(pred.shape[:2]))
    difference = pred - target
    if mask is None:
        return difference
    return torch.where(mask.to(pred.device).unsqueeze(-1), difference, torch.zeros_like(difference))


def _check_angles(pred_angles: Tensor, target_angles: Tensor, b: int) -> None:
    if pred_angles.shape != (b, 3) or target_angles.shape != (b, 3):
        raise ValueError(
            f"angles must be ({b}, 3), got pred {tuple(pred_angles.shape)}, "
            f"target {tuple(target_angles.shape)}"
        )


def masked_point_sum(errors: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-face sum of per-point errors over the labelled points, rescaled for the labels missing.

    Args:
        errors: (B, K) or (B, K, D) non-negative errors of each point (and coordinate).
        mask: (B, K) bool, True where the point is labelled; None means every point is.

    Returns:
        (B,) ``s * sum over labelled k (and d) of errors[b, k]`` with ``s = B * K / n`` and ``n`` the
        number of labelled points in the whole batch. So every labelled point in the batch weighs the
        same, a face with few labels is not inflated to look like a full one, and with every point
        labelled ``s == 1`` exactly and the result is the plain sum, bit for bit. A batch with no
        labelled point gives zeros that are still connected to ``errors`` (a loss of 0, not NaN).
        Unlabelled entries are dropped with ``torch.where``: exactly zero gradient, whatever their value.
    """
    if errors.ndim < 2:
        raise ValueError(f"errors must be (B, K) or (B, K, D), got {tuple(errors.shape)}")
    b, k = errors.shape[:2]
    _check_mask(mask, (b, k))
    dims = tuple(range(1, errors.ndim))
    if mask is None:
        return errors.sum(dim=dims)
    mask = mask.to(errors.device)
    keep = mask.reshape(b, k, *([1] * (errors.ndim - 2)))
    kept = torch.where(keep, errors, torch.zeros_like(errors)).sum(dim=dims)  # (B,)
    labelled = mask.sum().to(errors.dtype).clamp(min=1.0)
    return kept * (torch.tensor(b * k, dtype=errors.dtype, device=errors.device) / labelled)


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
        mask: (B, K) bool, True where a point is labelled; None means all are. See `masked_point_sum`.
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


def _angle_factor(pred_angles: Tensor, target_angles: Tensor, pose_valid: Tensor | None) -> Tensor:
    """(B, 3) radians -> (B,) ``sum_a (1 - cos(theta_a))``; faces with invalid pose get the valid mean."""
    if pose_valid is None:
        return (1.0 - torch.cos(pred_angles - target_angles)).sum(dim=1)
    valid = pose_valid.to(pred_angles.device)
    difference = pred_angles - target_angles
    difference = torch.where(valid.unsqueeze(-1), difference, torch.zeros_like(difference))
    factor = (1.0 - torch.cos(difference)).sum(dim=1)  # (B,), 0 at invalid faces
    return fill_invalid(factor, valid)


def fill_invalid(factor: Tensor, valid: Tensor) -> Tensor:
    """(B,) per-face factors -> the same with the faces that are not ``valid`` given the mean factor of
    the valid ones (detached; 1 when no face is valid): such a face is neither dropped nor weighted by a
    meaningless target."""
    count = valid.sum()
    kept = torch.where(valid, factor.detach(), torch.zeros_like(factor))
    mean_valid = kept.sum() / count.clamp(min=1).to(factor.dtype)
    fill = torch.where(count > 0, mean_valid, torch.ones_like(mean_valid))
    return torch.where(valid, factor, fill)


def pose_loss(pred_angles: Tensor, target_angles: Tensor, pose_valid: Tensor | None = None) -> Tensor:
    """Auxiliary head-pose loss: mean over the faces with a valid pose of ``sum_a (1 - cos(theta_a))``.

    Args:
        pred_angles, target_angles: (B, 3) yaw, pitch, roll in radians.
        pose_valid: (B,) bool, False where the target pose could not be fitted; None means all valid.
            Target angles of invalid faces are never read (NaN is fine there) and get zero gradient.

    Returns:
        Scalar in [0, 6]; 0 still connected to ``pred_angles`` (zero gradient) when no face is valid.
        Periodic, so 10 deg and 370 deg give the same loss.
    """
    b = pred_angles.shape[0]
    _check_angles(pred_angles, target_angles, b)
    _check_mask(pose_valid, (b,), "pose_valid")
    difference = pred_angles - target_angles.to(pred_angles.device)
    if pose_valid is None:
        return (1.0 - torch.cos(difference)).sum(dim=1).mean()
    valid = pose_valid.to(pred_angles.device)
    difference = torch.where(valid.unsqueeze(-1), difference, torch.zeros_like(difference))
    per_face = (1.0 - torch.cos(difference)).sum(dim=1)  # (B,), 0 at invalid faces
    return per_face.sum() / valid.sum().clamp(min=1).to(per_face.dtype)


def l2_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over the batch of the squared error summed over points and coordinates; (B, K, 2) -> scalar.

    ``mask``: (B, K) bool, True where a point is labelled (None: all are), see `masked_point_sum`.
    """
    return masked_point_sum(_masked_difference(pred, target, mask).pow(2), mask).mean()


def l1_loss(pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
    """Mean over the batch of the absolute error summed over points and coordinates; (B, K, 2) -> scalar.

    ``mask``: (B, K) bool, True where a point is labelled (None: all are), see `masked_point_sum`.
    """
    return masked_point_sum(_masked_difference(pred, target, mask).abs(), mask).mean()


def wing_loss(
    pred: Tensor,
    target: Tensor,
    width: float = 10.0,
    curvature: float = 2.0,
    coordinate_scale: float = 112.0,
    mask: Tensor | None = None,
) -> Tensor:
    """Wing loss (Feng et al. 2018) on per-coordinate errors in pixels of a ``coordinate_scale`` crop.

    ``wing(x) = width * ln(1 + |x| / curvature)`` if ``|x| < width``, else ``|x| - C`` with
    ``C = width - width * ln(1 + width / curvature)``, which joins the two pieces continuously.

    Args:
        pred, target: (B, K, 2) landmarks in [0, 1] of the crop.
        width, curvature: the paper's w and epsilon, in pixels.
        coordinate_scale: crop size in pixels that [0, 1] coordinates are multiplied by.
        mask: (B, K) bool, True where a point is labelled; None means all are. See `masked_point_sum`.

    Returns:
        Scalar: summed over points and coordinates, mean over the batch.
    """
    difference = _masked_difference(pred, target, mask)
    return masked_point_sum(wing_errors(difference, width, curvature, coordinate_scale), mask).mean()


def wing_errors(difference: Tensor, width: float, curvature: float, coordinate_scale: float) -> Tensor:
    """Per-coordinate wing loss of a (B, K, 2) difference in crop units; see `wing_loss`."""
    x = difference.abs() * coordinate_scale
    c = width - width * math.log1p(width / curvature)
    return torch.where(x < width, width * torch.log1p(x / curvature), x - c)


def smooth_l1_errors(difference: Tensor, beta: float) -> Tensor:
    """Per-coordinate smooth L1 (Huber / beta) of a (B, K, 2) difference in crop units: ``0.5 x^2 / beta``
    below ``beta``, ``|x| - beta / 2`` above, so it matches L1 (and its learning rate) on large errors."""
    x = difference.abs()
    return torch.where(x < beta, 0.5 * x * x / beta, x - 0.5 * beta)


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


class _PointLoss(nn.Module):
    """A loss of the landmarks, with the common signature, plus an optional auxiliary pose term.

    Args:
        pose_weight: weight of `pose_loss` added to the point loss, >= 0; it trains the auxiliary (pose)
            net, which gets no gradient at 0. At 0 the angles are not read and the loss is exactly the
            point loss. Classes are always ignored.
    """

    def __init__(self, pose_weight: float = 0.0) -> None:
        super().__init__()
        if not pose_weight >= 0:
            raise ValueError(f"pose_weight must be >= 0, got {pose_weight}")
        self.pose_weight = float(pose_weight)

    @property
    def uses_pose(self) -> bool:
        """Whether the loss reads the predicted angles (and so trains the auxiliary net)."""
        return self.pose_weight > 0

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
        """(B, K, 2) landmarks, (B, K) bool labelled points (None: all) and, when ``pose_weight > 0``,
        (B, 3) angles in radians with (B,) bool valid poses (None: all) -> scalar loss."""
        loss = self.point_loss(pred, target, mask)
        if self.pose_weight == 0:
            return loss
        if pred_angles is None or target_angles is None:
            raise ValueError(
                f"{type(self).__name__}(pose_weight={self.pose_weight}) needs pred_angles and target_angles: "
                "use a model with the auxiliary net (model.auxiliary=true) or set loss.pose_weight=0"
            )
        return loss + self.pose_weight * pose_loss(pred_angles, target_angles, pose_valid)

    def point_loss(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"pose_weight={self.pose_weight}"


class L2Loss(_PointLoss):
    """Plain L2 loss, see `l2_loss`; ``pose_weight``: the auxiliary pose term, see `_PointLoss`."""

    def point_loss(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return l2_loss(pred, target, mask)


class L1Loss(_PointLoss):
    """Plain L1 loss, see `l1_loss`; ``pose_weight``: the auxiliary pose term, see `_PointLoss`."""

    def point_loss(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return l1_loss(pred, target, mask)


class WingLoss(_PointLoss):
    """Wing loss, see `wing_loss`.

    Args:
        width, curvature: the paper's w and epsilon, in pixels of a ``coordinate_scale`` crop; both > 0.
        coordinate_scale: crop size in pixels, > 0.
        pose_weight: weight of the auxiliary pose term, see `_PointLoss`.
    """

    def __init__(
        self,
        width: float = 10.0,
        curvature: float = 2.0,
        coordinate_scale: float = 112.0,
        pose_weight: float = 0.0,
    ) -> None:
        super().__init__(pose_weight)
        for name, value in (
            ("width", width),
            ("curvature", curvature),
            ("coordinate_scale", coordinate_scale),
        ):
            if not value > 0:
                raise ValueError(f"WingLoss {name} must be > 0, got {value}")
        self.width = float(width)
        self.curvature = float(curvature)
        self.coordinate_scale = float(coordinate_scale)

    def point_loss(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> Tensor:
        return wing_loss(pred, target, self.width, self.curvature, self.coordinate_scale, mask)

    def extra_repr(self) -> str:
        return (
            f"width={self.width}, curvature={self.curvature}, coordinate_scale={self.coordinate_scale}, "
            f"pose_weight={self.pose_weight}"
        )

"""Plain point losses (L2, L1, wing, smooth L1 errors) and the masked per-face sum they share; each loss
module can add the pose net's own loss (`pfld.losses.pose`). Conventions: see `pfld.losses.core`."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pfld.losses.pose import pose_loss


def _check_landmarks(pred: Tensor, target: Tensor) -> None:
    if pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred must be (B, K, 2), got {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def _check_point_mask(mask: Tensor | None, shape: tuple[int, ...]) -> None:
    """A point mask is (B, K) bool (True = labelled) or floating point weights (0 = unlabelled)."""
    if mask is None:
        return
    if not (mask.dtype == torch.bool or mask.is_floating_point()) or tuple(mask.shape) != shape:
        raise ValueError(
            f"mask must be a bool or floating point tensor of shape {shape}, got {mask.dtype} "
            f"{tuple(mask.shape)}"
        )


def _labelled(mask: Tensor) -> Tensor:
    """(B, K) bool: where a point mask (bool, or weights) marks a point as labelled."""
    return mask if mask.dtype == torch.bool else mask > 0


def point_weights(visible: Tensor, pseudo: Tensor | None, pseudo_weight: float) -> Tensor:
    """A float point mask for the losses: 1 at annotated points, ``pseudo_weight`` at pseudo-labelled ones
    (``pseudo`` True, see `pfld.teacher.pseudo_label`), 0 where ``visible`` is False; (B, K) each."""
    if pseudo_weight < 0:
        raise ValueError(f"pseudo_weight must be >= 0, got {pseudo_weight}")
    weights = visible.to(torch.float32)
    if pseudo is None:
        return weights
    if pseudo.shape != visible.shape:
        raise ValueError(
            f"pseudo flags {tuple(pseudo.shape)} and visible {tuple(visible.shape)} differ in shape"
        )
    return torch.where(pseudo.to(weights.device), weights * pseudo_weight, weights)


def _masked_difference(pred: Tensor, target: Tensor, mask: Tensor | None) -> Tensor:
    """``pred - target``, (B, K, 2), set to exactly 0 at unlabelled points (where ``mask`` is False, or
    its weight is 0).

    ``torch.where`` passes no gradient to the branch it does not select, so a NaN or garbage target at
    an unlabelled point yields a finite zero difference and a zero gradient, unlike multiplying by 0.
    """
    _check_landmarks(pred, target)
    _check_point_mask(mask, tuple(pred.shape[:2]))
    difference = pred - target
    if mask is None:
        return difference
    keep = _labelled(mask).to(pred.device).unsqueeze(-1)
    return torch.where(keep, difference, torch.zeros_like(difference))


def masked_point_sum(errors: Tensor, mask: Tensor | None = None) -> Tensor:
    """Per-face sum of per-point errors over the labelled points, rescaled for the labels missing.

    Args:
        errors: (B, K) or (B, K, D) non-negative errors of each point (and coordinate).
        mask: (B, K) bool, True where the point is labelled; or (B, K) float weights, 0 where it is not
            (`point_weights`: pseudo-labelled points weighing less than annotated ones); None means
            every point is labelled, weight 1.

    Returns:
        (B,) ``s * sum over labelled k (and d) of errors[b, k]`` with ``s = B * K / n`` and ``n`` the
        number of labelled points in the whole batch. So every labelled point in the batch weighs the
        same, a face with few labels is not inflated to look like a full one, and with every point
        labelled ``s == 1`` exactly and the result is the plain sum, bit for bit. With weights ``w``,
        ``s * sum_k w[b, k] * errors[b, k]`` and ``n = sum w``: the weights shift the loss between
        points, not its scale (weights all 1 give the bool mask's result). A batch with no labelled
        point gives zeros that are still connected to ``errors`` (a loss of 0, not NaN). Unlabelled
        entries are dropped with ``torch.where``: exactly zero gradient, whatever their value.
    """
    if errors.ndim < 2:
        raise ValueError(f"errors must be (B, K) or (B, K, D), got {tuple(errors.shape)}")
    b, k = errors.shape[:2]
    _check_point_mask(mask, (b, k))
    dims = tuple(range(1, errors.ndim))
    if mask is None:
        return errors.sum(dim=dims)
    mask = mask.to(errors.device)
    shape = (b, k, *([1] * (errors.ndim - 2)))
    labelled = _labelled(mask)
    keep = labelled.reshape(shape)
    size = torch.tensor(b * k, dtype=errors.dtype, device=errors.device)
    if mask.dtype == torch.bool:
        kept = torch.where(keep, errors, torch.zeros_like(errors)).sum(dim=dims)  # (B,)
        return kept * (size / mask.sum().to(errors.dtype).clamp(min=1.0))
    weights = torch.where(labelled, mask, torch.zeros_like(mask)).to(errors.dtype)
    kept = torch.where(keep, errors * weights.reshape(shape), torch.zeros_like(errors)).sum(dim=dims)
    total = weights.sum().clamp(min=torch.finfo(errors.dtype).tiny)
    return kept * (size / total)


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
        mask: (B, K) bool, True where a point is labelled (or float weights); None means all are. See `masked_point_sum`.

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

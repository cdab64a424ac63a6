"""Head-pose terms: the pose net's own losses (``1 - cos``, `pose_loss`; Hopenet's binned loss,
`binned_pose_loss`) and the pose factors that weight a face's landmark error (`pose_factor`; the paper's
angle factor). Angles are ``(B, 3)`` yaw, pitch, roll in radians."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from pfld.models.auxiliary import bin_centres_deg


def _check_angles(pred_angles: Tensor, target_angles: Tensor, b: int) -> None:
    if pred_angles.shape != (b, 3) or target_angles.shape != (b, 3):
        raise ValueError(
            f"angles must be ({b}, 3), got pred {tuple(pred_angles.shape)}, "
            f"target {tuple(target_angles.shape)}"
        )


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


def wrap_angle(radians: Tensor) -> Tensor:
    """Angles in radians -> the same angles in [-pi, pi) (10 and 370 degrees alike)."""
    return torch.remainder(radians + math.pi, 2.0 * math.pi) - math.pi


def valid_poses(target_angles: Tensor, pose_valid: Tensor | None) -> Tensor:
    """(B,) bool: the faces whose angles the loss may read. ``pose_valid`` None: every face with finite
    angles. A face marked valid whose angles are not finite is an error of the data, not a zero weight."""
    finite = torch.isfinite(target_angles).all(dim=1)
    if pose_valid is None:
        return finite
    valid = pose_valid.to(target_angles.device)
    bad = (valid & ~finite).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"faces {bad} of the batch are marked pose_valid but their target angles are NaN or infinite: "
            "the data must mark faces without a fitted pose as pose_valid=False"
        )
    return valid


def binned_pose_loss(
    logits: Tensor,
    target_angles: Tensor,
    bin_width_deg: float = 3.0,
    alpha: float = 0.001,
    pose_valid: Tensor | None = None,
) -> Tensor:
    """Hopenet's pose loss (Ruiz et al. 2018): per angle, cross-entropy over bins plus ``alpha`` times the
    squared error (in degrees) of the softmax expectation; summed over yaw, pitch, roll, mean over the
    faces with a valid pose.

    Args:
        logits: (B, 3, bins) of a binned pose net; bin ``i`` is centred on
            ``(i + 0.5 - bins / 2) * bin_width_deg`` degrees, see `pfld.models.AuxiliaryPoseNet`.
        target_angles: (B, 3) radians; wrapped to [-180, 180) degrees, then binned, angles beyond the
            outer bins counting in the outer bins.
        alpha: weight of the expectation's squared error, in 1 / degrees^2 (Hopenet: 0.001).
        pose_valid: (B,) bool; invalid faces' targets are never read and get no gradient.

    Returns:
        Scalar; 0, connected to ``logits``, when no face is valid.
    """
    if logits.ndim != 3 or logits.shape[1] != 3:
        raise ValueError(f"logits must be (B, 3, bins), got {tuple(logits.shape)}")
    b, _, bins = logits.shape
    if target_angles.shape != (b, 3):
        raise ValueError(f"target_angles must be ({b}, 3), got {tuple(target_angles.shape)}")
    _check_mask(pose_valid, (b,), "pose_valid")
    valid = valid_poses(target_angles, pose_valid)
    target = torch.where(valid.unsqueeze(-1), target_angles, torch.zeros_like(target_angles)).float()
    target_deg = torch.rad2deg(wrap_angle(target))
    index = torch.floor(target_deg / bin_width_deg + bins / 2).long().clamp(0, bins - 1)  # (B, 3)
    logits = logits.float()
    cross_entropy = F.cross_entropy(logits.reshape(-1, bins), index.reshape(-1), reduction="none")
    centres = bin_centres_deg(bins, bin_width_deg).to(logits.device)
    expectation = (logits.softmax(dim=-1) * centres).sum(dim=-1)  # (B, 3) degrees
    squared = torch.rad2deg(wrap_angle(torch.deg2rad(expectation - target_deg))).pow(2)
    per_face = (cross_entropy.reshape(b, 3) + alpha * squared).sum(dim=1)
    per_face = torch.where(valid, per_face, torch.zeros_like(per_face))
    return per_face.sum() / valid.sum().clamp(min=1).to(per_face.dtype)


def pose_factor(
    kind: str,
    pred_angles: Tensor | None,
    target_angles: Tensor,
    pose_valid: Tensor | None,
    scale: float = 1.0,
    floor: float = 0.0,
) -> Tensor:
    """(B,) pose factor of each face, see the module docstring; ``scale`` is lambda."""
    b = target_angles.shape[0]
    if kind == "none":
        return target_angles.new_ones(b)
    valid = valid_poses(target_angles, pose_valid)
    target = torch.where(valid.unsqueeze(-1), target_angles, torch.zeros_like(target_angles))
    if kind == "truth":
        factor = 1.0 + scale * (1.0 - torch.cos(target)).sum(dim=1)
    else:
        if pred_angles is None:
            raise ValueError(f"pose_factor={kind!r} needs the pose net's angles (model.auxiliary=true)")
        _check_angles(pred_angles, target_angles, b)
        difference = torch.where(valid.unsqueeze(-1), pred_angles - target, torch.zeros_like(target))
        error = (1.0 - torch.cos(difference)).sum(dim=1)
        factor = floor + error if kind == "error" else 1.0 + scale * error.detach()
    return fill_invalid(factor, valid)


def _check_mask(mask: Tensor | None, shape: tuple[int, ...], name: str = "mask") -> None:
    if mask is None:
        return
    if mask.dtype != torch.bool or tuple(mask.shape) != shape:
        raise ValueError(
            f"{name} must be a bool tensor of shape {shape}, got {mask.dtype} {tuple(mask.shape)}"
        )

"""PFLD's pose-and-balance weighting over any base point loss: the loss family of the ablation study.

``loss = mean_b(w_b * base_b) + pose_weight * pose_net_loss`` where ``base_b`` is a face's point loss
summed over its labelled points (L2, L1, wing, smooth L1 or RLE, see `BASE_LOSSES`) and its weight

    w_b = balance_b * pose_b / mean over the batch of (balance * pose)    (``normalize=True``)

is the product of two config choices, renormalised (with a detached mean) so that every variant
keeps the learning rate's meaning:

- ``pose_factor`` (`POSE_FACTORS`): ``error``, the paper's ``floor + sum_k (1 - cos(pred_k - true_k))``
  with its gradient into the pose net (``floor`` 0 is the paper, which can weight a face 0: see
  `pfld.losses.PFLDLoss` for the exact loss); ``error_detached``,
  ``1 + lambda * sum_k (1 - cos(pred_k - true_k))`` without gradient; ``truth``,
  ``1 + lambda * sum_k (1 - cos(true_k))`` of the annotated angles, so turned faces weigh more;
  ``none``.
- ``balance`` (`BALANCES`): ``reciprocal``, the paper's ``sum over a face's classes of 1 / fraction``;
  ``effective``, Cui et al.'s (CVPR 2019) ``(1 - beta) / (1 - beta ** n_c)`` from the class counts
  ``n_c``; ``none``. Counts and fractions come from the training set (``balance_from="dataset"``, set by
  the trainer through `set_class_statistics`) or from each batch.

The pose net is trained by its own loss, ``pose_loss``: ``cos`` (``sum_k 1 - cos``, `pose_loss`) or
``binned`` (Hopenet, `binned_pose_loss`), times ``pose_weight`` (0: no such term).

Faces whose pose could not be fitted (``pose_valid`` False) keep a weight: the mean pose factor of the
batch's valid faces (1 when none is). No other choice can weight a face zero: ``truth`` and
``error_detached`` are at least 1, balance weights are positive for every class a face is in.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from pfld.losses.core import CLASS_NAMES, _check_fractions, class_weights
from pfld.losses.points import _masked_difference, masked_point_sum, smooth_l1_errors, wing_errors
from pfld.losses.pose import (
    _check_mask,
    binned_pose_loss,
    pose_factor,
    pose_loss,
    valid_poses,
)
from pfld.losses.rle import RealNVP, rle_errors

BASE_LOSSES = ("l2", "l1", "wing", "smooth_l1", "rle")
POSE_FACTORS = ("error", "error_detached", "truth", "none")
BALANCES = ("reciprocal", "effective", "none")
POSE_LOSSES = ("cos", "binned")


def effective_number_weights(counts: Tensor, beta: float) -> Tensor:
    """(C,) class counts -> (C,) Cui et al.'s ``(1 - beta) / (1 - beta ** n)``, 0 for an empty class."""
    counts = counts.float()
    weights = (1.0 - beta) / (1.0 - torch.pow(torch.full_like(counts, beta), counts)).clamp(min=1e-12)
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


class PoseBalanceLoss(nn.Module):
    """PFLD's pose-and-balance weighting over a base point loss, every part a config choice.

    Args:
        base: one of `BASE_LOSSES`. ``rle`` needs the model's scale head (`PFLD.uncertainty`: the
            trainer builds it, see `model_requirements`) and owns its flow (trained with the model).
        pose_factor: one of `POSE_FACTORS`; ``pose_lambda`` its lambda, ``error_floor`` the floor of
            ``error``.
        balance: one of `BALANCES`; ``balance_from`` "dataset" or "batch"; ``beta`` of ``effective``.
        normalize: divide the weights by their (detached) batch mean, so they average 1.
        pose_loss: one of `POSE_LOSSES`, the pose net's own loss, times ``pose_weight`` (>= 0).
        pose_bins, pose_bin_width, pose_alpha: the binned pose net (Hopenet: 66 bins of 3 degrees, alpha
            0.001); the trainer gives the model the same bins.
        wing_width, wing_curvature: wing's w and epsilon in pixels of a ``coordinate_scale`` crop.
        smooth_l1_beta: smooth L1's beta in pixels of a ``coordinate_scale`` crop.
    """

    class_fractions: Tensor | None
    num_faces: Tensor | None

    def __init__(
        self,
        base: str = "l1",
        pose_factor: str = "truth",
        pose_lambda: float = 1.0,
        error_floor: float = 0.0,
        balance: str = "none",
        balance_from: str = "dataset",
        beta: float = 0.999,
        normalize: bool = True,
        pose_loss: str = "cos",
        pose_weight: float = 1.0,
        pose_bins: int = 66,
        pose_bin_width: float = 3.0,
        pose_alpha: float = 0.001,
        wing_width: float = 10.0,
        wing_curvature: float = 2.0,
        smooth_l1_beta: float = 1.0,
        coordinate_scale: float = 112.0,
    ) -> None:
        super().__init__()
        for name, value, allowed in (
            ("base", base, BASE_LOSSES),
            ("pose_factor", pose_factor, POSE_FACTORS),
            ("balance", balance, BALANCES),
            ("balance_from", balance_from, ("dataset", "batch")),
            ("pose_loss", pose_loss, POSE_LOSSES),
        ):
            if value not in allowed:
                raise ValueError(f"loss.{name} must be one of {', '.join(allowed)}; got {value!r}")
        for name, value in (
            ("pose_lambda", pose_lambda),
            ("error_floor", error_floor),
            ("pose_weight", pose_weight),
            ("pose_alpha", pose_alpha),
        ):
            if not value >= 0:
                raise ValueError(f"loss.{name} must be >= 0, got {value}")
        for name, value in (
            ("wing_width", wing_width),
            ("wing_curvature", wing_curvature),
            ("smooth_l1_beta", smooth_l1_beta),
            ("coordinate_scale", coordinate_scale),
            ("pose_bin_width", pose_bin_width),
        ):
            if not value > 0:
                raise ValueError(f"loss.{name} must be > 0, got {value}")
        if not 0 < beta < 1:
            raise ValueError(f"loss.beta must be in (0, 1), got {beta}")
        if isinstance(pose_bins, bool) or not isinstance(pose_bins, int) or pose_bins < 2:
            raise ValueError(f"loss.pose_bins must be an int >= 2, got {pose_bins!r}")
        self.base = base
        self.pose_factor = pose_factor
        self.pose_lambda = float(pose_lambda)
        self.error_floor = float(error_floor)
        self.balance = balance
        self.balance_from = balance_from
        self.beta = float(beta)
        self.normalize = bool(normalize)
        self.pose_loss = pose_loss
        self.pose_weight = float(pose_weight)
        self.pose_bins = pose_bins
        self.pose_bin_width = float(pose_bin_width)
        self.pose_alpha = float(pose_alpha)
        self.wing_width = float(wing_width)
        self.wing_curvature = float(wing_curvature)
        self.smooth_l1_beta = float(smooth_l1_beta)
        self.coordinate_scale = float(coordinate_scale)
        self.flow = RealNVP() if base == "rle" else None
        self.register_buffer("class_fractions", None)
        self.register_buffer("num_faces", None)

    # What the model must provide -------------------------------------------------------------------

    @property
    def uses_pose(self) -> bool:
        """Whether the loss trains the pose net (its own term, or the paper's gradient through the weight)."""
        return self.pose_weight > 0 or self.pose_factor == "error"

    @property
    def needs_sigma(self) -> bool:
        return self.base == "rle"

    @property
    def needs_angle_logits(self) -> bool:
        return self.pose_loss == "binned" and self.pose_weight > 0

    def model_requirements(self) -> dict[str, Any]:
        """Model settings this loss needs (`PFLD`'s keyword arguments); the trainer applies them."""
        needs: dict[str, Any] = {}
        if self.needs_sigma:
            needs["uncertainty"] = True
        if self.pose_loss == "binned":
            needs |= {"pose_bins": self.pose_bins, "pose_bin_width": self.pose_bin_width}
        return needs

    # Class statistics --------------------------------------------------------------------------------

    def set_class_statistics(self, fractions: Sequence[float] | Tensor, num_faces: int) -> None:
        """The training set's (C,) class fractions and its size, for ``balance_from="dataset"``.

        A class with no training face (fraction 0) gets a warning naming it: no face is in it, so its
        weight is never used (a face that augmentation moves into it is weighted by its other classes).
        """
        f = _check_fractions(fractions)
        if num_faces < 1:
            raise ValueError(f"num_faces must be >= 1, got {num_faces}")
        empty = [
            CLASS_NAMES[i] if len(f) == len(CLASS_NAMES) else str(i)
            for i in (f == 0).nonzero().flatten().tolist()
        ]
        if empty and self.balance != "none":
            warnings.warn(
                f"loss.balance={self.balance}: classes {', '.join(empty)} have no face in the training set; "
                "their weight is unused",
                stacklevel=2,
            )
        device = self.class_fractions.device if self.class_fractions is not None else None
        self.class_fractions = f.to(device)
        self.num_faces = torch.tensor(float(num_faces), device=device)

    def _load_from_state_dict(self, state_dict: Mapping[str, Tensor], prefix: str, *args, **kwargs) -> None:
        # Adopt saved statistics even when this instance has none yet (rebuilt from a checkpoint).
        for key in ("class_fractions", "num_faces"):
            if state_dict.get(prefix + key) is not None and getattr(self, key) is None:
                setattr(self, key, state_dict[prefix + key].clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _class_counts(self, member: Tensor) -> Tensor:
        """(C,) counts: of the training set (fractions x size) or of this batch."""
        if self.balance_from == "batch":
            return member.sum(dim=0)
        if self.class_fractions is None or self.num_faces is None:
            raise RuntimeError(
                f"loss.balance={self.balance} with balance_from=dataset needs the training set's class "
                "statistics: the trainer sets them (set_class_statistics) before fitting"
            )
        return self.class_fractions.to(member) * self.num_faces.to(member)

    def balance_weights(self, classes: Tensor | None, b: int, device: torch.device) -> Tensor:
        """(B,) balance weight of each face: sum over its classes of the class weight."""
        if self.balance == "none":
            return torch.ones(b, device=device)
        if classes is None:
            raise ValueError(f"loss.balance={self.balance} needs the faces' classes")
        if classes.ndim != 2 or classes.shape[0] != b:
            raise ValueError(f"classes must be ({b}, C), got {tuple(classes.shape)}")
        member = classes.to(device=device, dtype=torch.float32)
        if self.balance == "reciprocal":
            if self.balance_from == "batch":
                return class_weights(member)
            counts = self._class_counts(member)
            return class_weights(member, counts / self.num_faces.to(member))
        class_weights(member)  # the checks: 0/1 memberships, no face without a class
        return member @ effective_number_weights(self._class_counts(member), self.beta)

    # The loss ---------------------------------------------------------------------------------------

    def point_errors(self, pred: Tensor, target: Tensor, mask: Tensor | None, sigma: Tensor | None) -> Tensor:
        """(B,) base loss of each face, summed over its labelled points (see `masked_point_sum`)."""
        difference = _masked_difference(pred, target, mask)
        if self.base == "l2":
            errors = difference.pow(2)
        elif self.base == "l1":
            errors = difference.abs()
        elif self.base == "wing":
            errors = wing_errors(difference, self.wing_width, self.wing_curvature, self.coordinate_scale)
        elif self.base == "smooth_l1":
            errors = smooth_l1_errors(difference, self.smooth_l1_beta / self.coordinate_scale)
        else:
            if sigma is None:
                raise ValueError(
                    "loss.base=rle needs the model's scales (sigma): build it with uncertainty=True"
                )
            assert self.flow is not None
            errors = rle_errors(difference, sigma, self.flow)
        return masked_point_sum(errors, mask)

    def face_weights(
        self,
        pred_angles: Tensor | None,
        target_angles: Tensor | None,
        classes: Tensor | None,
        pose_valid: Tensor | None,
        b: int,
        device: torch.device,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        """(B,) weight of each face, > 0 unless ``pose_factor="error"`` with ``error_floor`` 0 (the paper)."""
        weights = self.balance_weights(classes, b, device)
        if dtype is not None:
            weights = weights.to(dtype)
        if self.pose_factor != "none":
            if target_angles is None:
                raise ValueError(f"loss.pose_factor={self.pose_factor} needs the faces' target angles")
            _check_mask(pose_valid, (b,), "pose_valid")
            factor = pose_factor(
                self.pose_factor,
                pred_angles,
                target_angles.to(device),
                pose_valid,
                self.pose_lambda,
                self.error_floor,
            )
            weights = weights * factor
        if self.normalize:
            mean = weights.detach().mean()
            weights = weights / torch.where(mean > 0, mean, torch.ones_like(mean))
        return weights

    def forward(
        self,
        pred: Tensor,
        target: Tensor,
        pred_angles: Tensor | None = None,
        target_angles: Tensor | None = None,
        classes: Tensor | None = None,
        mask: Tensor | None = None,
        pose_valid: Tensor | None = None,
        *,
        sigma: Tensor | None = None,
        angle_logits: Tensor | None = None,
    ) -> Tensor:
        """(B, K, 2) landmarks, (B, 3) radians, (B, C) classes, (B, K) labelled points, (B,) valid poses;
        ``sigma`` (B, K, 2) for RLE, ``angle_logits`` (B, 3, bins) for the binned pose loss -> scalar."""
        b = pred.shape[0]
        per_face = self.point_errors(pred, target, mask, sigma)
        weights = self.face_weights(
            pred_angles, target_angles, classes, pose_valid, b, pred.device, per_face.dtype
        )
        loss = (weights * per_face).mean()
        if self.pose_weight == 0:
            return loss
        if target_angles is None:
            raise ValueError("loss.pose_weight > 0 needs the faces' target angles")
        if self.pose_loss == "binned":
            if angle_logits is None:
                raise ValueError("loss.pose_loss=binned needs a binned pose net's logits (model.pose_bins)")
            term = binned_pose_loss(
                angle_logits, target_angles, self.pose_bin_width, self.pose_alpha, pose_valid
            )
        else:
            if pred_angles is None:
                raise ValueError(
                    "loss.pose_weight > 0 needs the pose net's angles: use model.auxiliary=true or pose_weight=0"
                )
            valid = valid_poses(target_angles, pose_valid)
            term = pose_loss(pred_angles, target_angles, valid)
        return loss + self.pose_weight * term

    def extra_repr(self) -> str:
        return (
            f"base={self.base}, pose_factor={self.pose_factor}, pose_lambda={self.pose_lambda}, "
            f"balance={self.balance} from {self.balance_from}, pose_loss={self.pose_loss} x {self.pose_weight}"
        )


def loss_trains_pose_net(loss: Mapping[str, Any]) -> bool:
    """Whether a loss config (a ``_target_`` dict, e.g. a checkpoint's) trains the auxiliary pose net:
    the paper's loss, the family with the ``error`` factor, or any loss with ``pose_weight > 0``."""
    target = str(loss.get("_target_", ""))
    if target.endswith("PFLDLoss"):
        return True
    if target.endswith("PoseBalanceLoss") and loss.get("pose_factor", "truth") == "error":
        return True
    default = 1.0 if target.endswith("PoseBalanceLoss") else 0.0
    return float(loss.get("pose_weight", default)) > 0

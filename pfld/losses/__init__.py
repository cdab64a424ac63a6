"""Landmark losses: the paper's PFLD loss and class balance (`core`), plain point losses (`points`), the
pose net's losses and pose factors (`pose`), the pose-and-balance family over any base loss
(`weighted`), RLE's flow (`rle`). Conventions: see `pfld.losses.core`."""

from pfld.losses.core import (
    CLASS_NAMES,
    PFLDLoss,
    class_fractions_from_memberships,
    class_weights,
    pfld_loss,
)
from pfld.losses.points import (
    L1Loss,
    L2Loss,
    WingLoss,
    l1_loss,
    l2_loss,
    masked_point_sum,
    point_weights,
    smooth_l1_errors,
    wing_errors,
    wing_loss,
)
from pfld.losses.pose import binned_pose_loss, fill_invalid, pose_factor, pose_loss, valid_poses, wrap_angle
from pfld.losses.rle import RealNVP, rle_errors
from pfld.losses.weighted import (
    BALANCES,
    BASE_LOSSES,
    POSE_FACTORS,
    POSE_LOSSES,
    PoseBalanceLoss,
    effective_number_weights,
    loss_trains_pose_net,
)

__all__ = [
    "BALANCES",
    "BASE_LOSSES",
    "CLASS_NAMES",
    "POSE_FACTORS",
    "POSE_LOSSES",
    "L1Loss",
    "L2Loss",
    "PFLDLoss",
    "PoseBalanceLoss",
    "RealNVP",
    "WingLoss",
    "binned_pose_loss",
    "class_fractions_from_memberships",
    "class_weights",
    "effective_number_weights",
    "fill_invalid",
    "l1_loss",
    "l2_loss",
    "loss_trains_pose_net",
    "masked_point_sum",
    "pfld_loss",
    "point_weights",
    "pose_factor",
    "pose_loss",
    "rle_errors",
    "smooth_l1_errors",
    "valid_poses",
    "wing_errors",
    "wing_loss",
    "wrap_angle",
]

"""Head-pose error: `pose_errors` (wrapped differences in degrees of yaw, pitch, roll given in radians)
and `PoseErrorMetric`, their mean absolute value over the faces with a valid pose, across processes."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

ANGLE_NAMES: tuple[str, str, str] = ("yaw", "pitch", "roll")


def pose_errors(pred_angles: Tensor, target_angles: Tensor) -> Tensor:
    """Signed head-pose errors: (N, 3) radians, (N, 3) radians -> (N, 3) degrees in [-180, 180).

    Columns are yaw, pitch, roll; each is ``pred - target`` wrapped by whole turns, so 179 deg against
    -179 deg is an error of -2 deg, not 358 deg. Computed in float64.
    """
    if pred_angles.ndim != 2 or pred_angles.shape[-1] != 3:
        raise ValueError(f"pred_angles must be (N, 3), got {tuple(pred_angles.shape)}")
    if pred_angles.shape != target_angles.shape:
        raise ValueError(
            f"pred_angles {tuple(pred_angles.shape)} and target_angles {tuple(target_angles.shape)} differ"
        )
    difference = torch.rad2deg(pred_angles.double() - target_angles.double().to(pred_angles.device))
    return torch.remainder(difference + 180.0, 360.0) - 180.0


class PoseErrorMetric(Metric):
    """Mean absolute head-pose error in degrees over the faces with a valid pose, across batches and
    processes (sum and count states, summed over processes).

    ``compute()`` returns ``{"yaw_mae", "pitch_mae", "roll_mae", "pose_mae" (the mean of the three),
    "faces" (int64, how many faces were counted)}`` as scalar float64 tensors; the errors are NaN if no
    face had a valid pose. See `pose_errors` for the wrap-around.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    abs_error_sum: Tensor
    count: Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("abs_error_sum", default=torch.zeros(3, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, pred_angles: Tensor, target_angles: Tensor, pose_valid: Tensor | None = None) -> None:
        """Add (B, 3) predicted and target angles in radians; ``pose_valid``: (B,) bool, None = all valid.

        Target angles of faces without a valid pose are never read (NaN is fine there)."""
        b = pred_angles.shape[0]
        if pose_valid is None:
            pose_valid = torch.ones(b, dtype=torch.bool, device=pred_angles.device)
        elif pose_valid.dtype != torch.bool or pose_valid.shape != (b,):
            raise ValueError(
                f"pose_valid must be a bool tensor of shape ({b},), got {pose_valid.dtype} "
                f"{tuple(pose_valid.shape)}"
            )
        errors = pose_errors(pred_angles.detach(), target_angles.detach()).abs()  # (B, 3) degrees
        valid = pose_valid.to(errors.device).unsqueeze(-1)
        # Out of place: under ddp_spawn on CPU the states arrive in shared memory (torch.multiprocessing
        # shares pickled CPU tensors, and Lightning un-shares only parameters and buffers), so an
        # in-place += would add every process's faces into one tensor.
        self.abs_error_sum = self.abs_error_sum + torch.where(valid, errors, torch.zeros_like(errors)).sum(0)
        self.count = self.count + pose_valid.sum().to(self.count.device)

    def compute(self) -> dict[str, Tensor]:
        mae = self.abs_error_sum / self.count  # (3,), NaN when count is 0
        results = {f"{name}_mae": mae[a] for a, name in enumerate(ANGLE_NAMES)}
        return results | {"pose_mae": mae.mean(), "faces": self.count.clone()}

"""PFLD: a backbone, the multi-scale landmark head and, for training, the auxiliary pose net."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

from pfld.models.auxiliary import AuxiliaryPoseNet
from pfld.models.head import MultiScaleHead, float32_linear

MIN_INPUT_SIZE = 64


class TrainingOutputs(NamedTuple):
    """What one training forward pass gives the loss (`PFLD.forward_train`)."""

    landmarks: torch.Tensor  # (B, K, 2) in [0, 1] of the crop, float32
    angles: torch.Tensor | None  # (B, 3) yaw, pitch, roll in radians; None without the pose net
    angle_logits: torch.Tensor | None  # (B, 3, bins) of a binned pose net, else None
    sigma: torch.Tensor | None  # (B, K, 2) in (0, 1): RLE's scale of each coordinate's error, else None
    features: torch.Tensor | None = None  # (B, F) the head's pooled features (`MultiScaleHead.pooled`)


class HeadPose(nn.Module):
    """Yaw, pitch and roll from the landmark head's pooled features: one Linear, float32 out."""

    bins = None

    def __init__(self, in_features: int) -> None:
        super().__init__()
        self.fc = nn.Linear(in_features, 3)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, F) pooled S1/S2/S3 features -> (B, 3) radians."""
        return float32_linear(self.fc, features)


class PFLD(nn.Module):
    """The PFLD landmark detector.

    Args:
        backbone: a module mapping (B, C, S, S) to (stride-4 features, stride-8 features), with int
            attributes `auxiliary_channels` and `out_channels` (`PFLDBackbone`, `TimmBackbone`), and
            `in_channels` C (3, RGB, when it has none; 1 for a grey model).
            It is not re-initialised here, so pretrained weights survive.
        num_points: K, at least 3.
        input_size: side S of the square input, a multiple of 16, at least 64 (the head and the pose
            net size their last convolution from it: 7 x 7 at 112, 6 x 6 at 96).
        auxiliary: build the auxiliary pose net (training only; drop it with `without_auxiliary`).
        pose_bins, pose_bin_width: None for the paper's pose net regressing three angles, or Hopenet's
            binned classification (66 bins of 3 degrees), see `AuxiliaryPoseNet`.
        pose_channels: the `AuxiliaryPoseNet`'s widths (conv1/conv2, conv3, conv4, fc1), the paper's
            (128, 32, 128, 32) by default; narrower ones make a training step cheaper (the net is
            training-only, so inference never pays for it either way).
        pose_from: where the pose net reads: "stride4" (the paper's auxiliary net on the 28x28
            features, `AuxiliaryPoseNet`) or "head" (`HeadPose`: one Linear from the landmark head's
            pooled S1/S2/S3 features to the three angles, an output beside the landmarks that costs
            3 x 176 MACs when exported with the pose; regression only, no bins).
        uncertainty: build RLE's training-only scale head (`uncertainty`): a Linear from the head's
            pooled features to a sigmoid scale per coordinate, read by `pfld.losses.RLELoss`'s flow.
            Dropped with the pose net by `without_auxiliary`, so inference and export never carry it.

    Landmarks are (B, K, 2), x then y, in [0, 1] of the crop; angles are (B, 3) yaw, pitch, roll in
    radians. State-dict keys are `backbone.*`, `head.*`, `auxiliary.*` and `uncertainty.*`.
    """

    def __init__(
        self,
        backbone: nn.Module,
        num_points: int,
        input_size: int = 112,
        auxiliary: bool = True,
        pose_bins: int | None = None,
        pose_bin_width: float = 3.0,
        pose_from: str = "stride4",
        uncertainty: bool = False,
        pose_channels: Sequence[int] = (128, 32, 128, 32),
    ) -> None:
        super().__init__()
        bad_size = isinstance(input_size, bool) or not isinstance(input_size, int)
        if bad_size or input_size % 16 or input_size < MIN_INPUT_SIZE:
            raise ValueError(
                f"input_size must be an int, a multiple of 16 and >= {MIN_INPUT_SIZE}, got {input_size!r}"
            )
        if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 3:
            raise ValueError(f"num_points must be an int >= 3, got {num_points!r}")
        if pose_from not in ("stride4", "head"):
            raise ValueError(f"pose_from must be 'stride4' or 'head', got {pose_from!r}")
        if pose_from == "head" and pose_bins is not None:
            raise ValueError("pose_from='head' regresses the angles: it has no bins (pose_bins=None)")
        self.pose_from = pose_from
        needed = (
            ("out_channels", "auxiliary_channels")
            if auxiliary and pose_from == "stride4"
            else ("out_channels",)
        )
        for name in needed:
            value = getattr(backbone, name, None)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"backbone {type(backbone).__name__} needs an int attribute `{name}` >= 1")
        self.num_points = num_points
        self.input_size = input_size
        self.in_channels: int = int(getattr(backbone, "in_channels", 3))
        self.backbone = backbone
        self.head = MultiScaleHead(backbone.out_channels, num_points, input_size)
        self.auxiliary: AuxiliaryPoseNet | HeadPose | None = None
        if auxiliary and pose_from == "head":
            self.auxiliary = HeadPose(self.head.fc.in_features)
        elif auxiliary:
            self.auxiliary = AuxiliaryPoseNet(
                backbone.auxiliary_channels,
                input_size,
                channels=tuple(int(c) for c in pose_channels),
                bins=pose_bins,
                bin_width=pose_bin_width,
            )
        self.uncertainty: nn.Linear | None = (
            nn.Linear(self.head.fc.in_features, num_points * 2) if uncertainty else None
        )

    def _check_input(self, x: torch.Tensor) -> None:
        expected = (self.in_channels, self.input_size, self.input_size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected input (B, {', '.join(map(str, expected))}), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) -> landmarks (B, K, 2); in training with the auxiliary net, (landmarks, angles (B, 3))."""
        self._check_input(x)
        if self.training and self.auxiliary is not None:
            return self.forward_with_pose(x)
        _, s1 = self.backbone(x)
        return self.head(s1)  # (B, K, 2)

    def forward_with_pose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, S, S) -> (landmarks (B, K, 2), angles (B, 3) in radians), in train and eval mode."""
        if self.auxiliary is None:
            raise RuntimeError("this PFLD has no auxiliary net; build it with auxiliary=True")
        out = self.forward_train(x)
        assert out.angles is not None
        return out.landmarks, out.angles

    def forward_train(self, x: torch.Tensor) -> TrainingOutputs:
        """(B, C, S, S) -> everything the losses may read (`TrainingOutputs`), in train and eval mode:
        the pose net's angles (and logits when binned) and RLE's scales where those parts exist."""
        self._check_input(x)
        aux_features, s1 = self.backbone(x)
        landmarks, features = self.head(s1, with_features=True)
        angles = logits = sigma = None
        if self.auxiliary is not None:
            if isinstance(self.auxiliary, HeadPose):
                angles = self.auxiliary(features)
            elif self.auxiliary.bins is None:
                angles = self.auxiliary(aux_features)
            else:
                logits = self.auxiliary.logits(aux_features)
                angles = self.auxiliary.expectation(logits)
        if self.uncertainty is not None:
            sigma = torch.sigmoid(float32_linear(self.uncertainty, features)).reshape(landmarks.shape)
        return TrainingOutputs(landmarks, angles, logits, sigma, features)

    def without_auxiliary(self) -> PFLD:
        """A deep copy without the training-only parts (the pose net, RLE's scale head), for inference
        and export; `self` is unchanged."""
        model = copy.deepcopy(self)
        model.auxiliary = None
        model.uncertainty = None
        return model

    def set_mean_shape(self, mean: torch.Tensor, weight_scale: float = 0.1) -> None:
        """Make the head start from the mean face, (K, 2) in [0, 1]; see `MultiScaleHead.set_mean_shape`."""
        self.head.set_mean_shape(mean, weight_scale)

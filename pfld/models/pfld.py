"""PFLD: a backbone, the multi-scale landmark head and, for training, the auxiliary pose net."""

from __future__ import annotations

import copy

import torch
from torch import nn

from pfld.models.auxiliary import AuxiliaryPoseNet
from pfld.models.head import MultiScaleHead

MIN_INPUT_SIZE = 64


class PFLD(nn.Module):
    """The PFLD landmark detector.

    Args:
        backbone: a module mapping (B, 3, S, S) to (stride-4 features, stride-8 features), with int
            attributes `auxiliary_channels` and `out_channels` (`PFLDBackbone`, `TimmBackbone`).
            It is not re-initialised here, so pretrained weights survive.
        num_points: K, at least 3.
        input_size: side S of the square input, a multiple of 16, at least 64.
        auxiliary: build the auxiliary pose net (training only; drop it with `without_auxiliary`).

    Landmarks are (B, K, 2), x then y, in [0, 1] of the crop; angles are (B, 3) yaw, pitch, roll in
    radians. State-dict keys are `backbone.*`, `head.*` and `auxiliary.*`.
    """

    def __init__(
        self, backbone: nn.Module, num_points: int, input_size: int = 112, auxiliary: bool = True
    ) -> None:
        super().__init__()
        bad_size = isinstance(input_size, bool) or not isinstance(input_size, int)
        if bad_size or input_size % 16 or input_size < MIN_INPUT_SIZE:
            raise ValueError(
                f"input_size must be an int, a multiple of 16 and >= {MIN_INPUT_SIZE}, got {input_size!r}"
            )
        if isinstance(num_points, bool) or not isinstance(num_points, int) or num_points < 3:
            raise ValueError(f"num_points must be an int >= 3, got {num_points!r}")
        needed = ("out_channels", "auxiliary_channels") if auxiliary else ("out_channels",)
        for name in needed:
            value = getattr(backbone, name, None)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"backbone {type(backbone).__name__} needs an int attribute `{name}` >= 1")
        self.num_points = num_points
        self.input_size = input_size
        self.backbone = backbone
        self.head = MultiScaleHead(backbone.out_channels, num_points, input_size)
        self.auxiliary: AuxiliaryPoseNet | None = (
            AuxiliaryPoseNet(backbone.auxiliary_channels, input_size) if auxiliary else None
        )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != 4 or tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"expected input (B, C, {self.input_size}, {self.input_size}), got {tuple(x.shape)}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> landmarks (B, K, 2); in training with the auxiliary net, (landmarks, angles (B, 3))."""
        self._check_input(x)
        aux_features, s1 = self.backbone(x)
        landmarks = self.head(s1)  # (B, K, 2)
        if self.training and self.auxiliary is not None:
            return landmarks, self.auxiliary(aux_features)
        return landmarks

    def forward_with_pose(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) -> (landmarks (B, K, 2), angles (B, 3) in radians), in train and eval mode."""
        if self.auxiliary is None:
            raise RuntimeError("this PFLD has no auxiliary net; build it with auxiliary=True")
        self._check_input(x)
        aux_features, s1 = self.backbone(x)
        return self.head(s1), self.auxiliary(aux_features)

    def without_auxiliary(self) -> PFLD:
        """A deep copy without the auxiliary net, for inference and export; `self` is unchanged."""
        model = copy.deepcopy(self)
        model.auxiliary = None
        return model

    def set_mean_shape(self, mean: torch.Tensor, weight_scale: float = 0.1) -> None:
        """Make the head start from the mean face, (K, 2) in [0, 1]; see `MultiScaleHead.set_mean_shape`."""
        self.head.set_mean_shape(mean, weight_scale)

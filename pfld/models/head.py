"""The PFLD multi-scale fully connected head (paper Table 1, rows S1 to FC)."""

from __future__ import annotations

import torch
from torch import nn

from pfld.models.blocks import ConvBNReLU, init_weights


def final_kernel_size(input_size: int) -> int:
    """Side of the last valid conv on the stride-16 map: `min(7, input_size // 16)` (7 at 112)."""
    return min(7, input_size // 16)


def float32_linear(layer: nn.Linear, features: torch.Tensor) -> torch.Tensor:
    """``layer(features)`` in float32 even under bf16/fp16 autocast: bf16's 8-bit mantissa would round a
    point near the crop's centre to 1/512 of the crop, about 0.2 px at 112."""
    if torch.is_autocast_enabled(features.device.type):
        with torch.autocast(features.device.type, enabled=False):
            return layer(features.float())
    return layer(features)


class MultiScaleHead(nn.Module):
    """Landmarks from the stride-8 S1 features, pooled at three scales.

    S2 = conv3x3 stride 2 (+ BN + ReLU) on S1, at stride 16 (7x7 at 112). S3 = a valid k x k conv
    with k = `min(7, input_size // 16)` (+ ReLU, with a bias and no BN, like the reference
    implementations; BN on a 1x1 map would also fail on a training batch of one). S1, S2 and S3 are
    each globally average-pooled (S3 is 1x1 up to 112 input), concatenated
    (in_channels + s2_channels + s3_channels = 176 by default) and mapped by one Linear to K points.

    Args:
        in_channels: channels of S1.
        num_points: K.
        input_size: side of the square network input, a multiple of 16.
        s2_channels: channels of S2.
        s3_channels: channels of S3.

    Output: (B, K, 2), x then y, in [0, 1] of the crop when trained so.
    """

    def __init__(
        self,
        in_channels: int,
        num_points: int,
        input_size: int,
        s2_channels: int = 32,
        s3_channels: int = 128,
    ) -> None:
        super().__init__()
        if in_channels < 1 or s2_channels < 1 or s3_channels < 1:
            raise ValueError(
                f"channels must be >= 1, got in={in_channels}, s2={s2_channels}, s3={s3_channels}"
            )
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        if input_size < 16 or input_size % 16:
            raise ValueError(f"input_size must be a positive multiple of 16, got {input_size}")
        self.num_points = num_points
        self.input_size = input_size
        k = final_kernel_size(input_size)
        self.conv_s2 = ConvBNReLU(in_channels, s2_channels, kernel_size=3, stride=2)
        self.conv_s3 = ConvBNReLU(s2_channels, s3_channels, kernel_size=k, padding=0, bn=False)
        self.fc = nn.Linear(in_channels + s2_channels + s3_channels, num_points * 2)
        init_weights(self)

    def forward(
        self, s1: torch.Tensor, with_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """S1 (B, C, H/8, W/8) -> landmarks (B, K, 2); with ``with_features``, (landmarks, the pooled
        features (B, F) that training-only parts read), so hooks on the head see every pass."""
        features = self.pooled(s1)
        landmarks = self.points(features)
        return (landmarks, features) if with_features else landmarks

    def pooled(self, s1: torch.Tensor) -> torch.Tensor:
        """S1 (B, C, H/8, W/8) -> the pooled multi-scale features (B, C + 32 + 128) that `points` maps."""
        s2 = self.conv_s2(s1)  # (B, 32, H/16, W/16)
        s3 = self.conv_s3(s2)  # (B, 128, H/16 - k + 1, W/16 - k + 1)
        pooled = [f.mean(dim=(2, 3)) for f in (s1, s2, s3)]  # [(B, C1), (B, 32), (B, 128)]
        return torch.cat(pooled, dim=1)  # (B, 176)

    def points(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features (B, F) -> landmarks (B, K, 2), in float32 whatever the autocast."""
        out = float32_linear(self.fc, features)  # (B, 2K)
        return out.reshape(out.shape[0], self.num_points, 2)

    @torch.no_grad()
    def set_mean_shape(self, mean: torch.Tensor, weight_scale: float = 0.1) -> None:
        """Start from the mean face: the Linear bias becomes `mean` and its weight is scaled down.

        Args:
            mean: (K, 2) mean landmarks, x then y, in [0, 1] of the crop.
            weight_scale: factor applied to the Linear weight, in (0, 1].
        """
        if mean.shape != (self.num_points, 2):
            raise ValueError(f"mean must have shape ({self.num_points}, 2), got {tuple(mean.shape)}")
        if not 0 < weight_scale <= 1:
            raise ValueError(f"weight_scale must be in (0, 1], got {weight_scale}")
        if not torch.isfinite(mean).all():
            raise ValueError("mean shape has non-finite values")
        self.fc.bias.copy_(mean.reshape(-1).to(self.fc.bias))
        self.fc.weight.mul_(weight_scale)

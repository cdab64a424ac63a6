"""The PFLD auxiliary network: head pose from the stride-4 backbone features (paper Table 2)."""

from __future__ import annotations

import torch
from torch import nn

from pfld.models.blocks import ConvBNReLU, init_weights
from pfld.models.head import final_kernel_size


def bin_centres_deg(bins: int, width_deg: float) -> torch.Tensor:
    """(bins,) float32 centres in degrees of ``bins`` bins of ``width_deg``, symmetric about 0 (Hopenet's
    66 x 3: -97.5 to 97.5); shared by the binned pose net and its loss."""
    return (torch.arange(bins, dtype=torch.float32) + 0.5 - bins / 2) * width_deg


class AuxiliaryPoseNet(nn.Module):
    """Yaw, pitch and roll from the stride-4 features; used only in training.

    Layers (sizes for 112 input, 28x28 features): conv3x3 128 s2 (14x14), conv3x3 128 s1 (14x14),
    conv3x3 32 s2 (7x7), all conv + BN + ReLU; a valid k x k conv to 128 with
    k = `min(7, input_size // 16)` (+ ReLU, bias, no BN, like the head's S3); global average pool;
    FC 32 + ReLU; FC 3. Not scaled by the backbone width.

    Args:
        in_channels: channels of the stride-4 features.
        input_size: side of the square network input, a multiple of 16.
        channels: (conv1/conv2, conv3, conv4, fc1) widths; the paper's (128, 32, 128, 32) by default.
        bins: None (the paper): the last FC gives the three angles. An int (Hopenet, Ruiz et al. 2018:
            66): it gives ``3 x bins`` logits over bins of ``bin_width`` degrees centred on 0, and the
            angles are the softmax expectation of the bin centres (`logits` for the binned loss,
            `pfld.losses.binned_pose_loss`). Either way `forward` returns (B, 3) radians.
        bin_width: width of a bin in degrees (Hopenet: 3, so 66 bins span -99 to 99 degrees).
    """

    def __init__(
        self,
        in_channels: int,
        input_size: int,
        channels: tuple[int, int, int, int] = (128, 32, 128, 32),
        bins: int | None = None,
        bin_width: float = 3.0,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        if input_size < 16 or input_size % 16:
            raise ValueError(f"input_size must be a positive multiple of 16, got {input_size}")
        if len(channels) != 4 or min(channels) < 1:
            raise ValueError(f"channels must be four ints >= 1, got {channels}")
        if bins is not None and (isinstance(bins, bool) or not isinstance(bins, int) or bins < 2):
            raise ValueError(f"bins must be None or an int >= 2, got {bins!r}")
        if not bin_width > 0:
            raise ValueError(f"bin_width must be > 0 degrees, got {bin_width}")
        self.bins = bins
        self.bin_width = float(bin_width)
        c12, c3, c4, fc = channels
        self.convs = nn.Sequential(
            ConvBNReLU(in_channels, c12, kernel_size=3, stride=2),  # (B, 128, H/8, W/8)
            ConvBNReLU(c12, c12, kernel_size=3, stride=1),  # (B, 128, H/8, W/8)
            ConvBNReLU(c12, c3, kernel_size=3, stride=2),  # (B, 32, H/16, W/16)
            ConvBNReLU(c3, c4, kernel_size=final_kernel_size(input_size), padding=0, bn=False),
        )
        self.fc = nn.Sequential(nn.Linear(c4, fc), nn.ReLU(inplace=True), nn.Linear(fc, 3 * (bins or 1)))
        init_weights(self)
        if bins is not None:
            centres = torch.deg2rad(bin_centres_deg(bins, self.bin_width))
            self.register_buffer("bin_centres", centres, persistent=False)  # (bins,) rad

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Stride-4 features (B, C4, H/4, W/4) -> (B, 3) yaw, pitch, roll in radians."""
        if self.bins is None:
            return self.fc(self._pooled(features))  # (B, 3)
        return self.expectation(self.logits(features))

    def _pooled(self, features: torch.Tensor) -> torch.Tensor:
        return self.convs(features).mean(dim=(2, 3))  # (B, 128)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Stride-4 features -> (B, 3, bins) float32 logits of yaw, pitch, roll (binned nets only)."""
        if self.bins is None:
            raise RuntimeError("this pose net regresses its angles (bins=None): it has no logits")
        out = self.fc(self._pooled(features)).float()
        return out.reshape(out.shape[0], 3, self.bins)

    def expectation(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, 3, bins) logits -> (B, 3) radians: the softmax-weighted mean of the bin centres."""
        return (logits.float().softmax(dim=-1) * self.bin_centres).sum(dim=-1)

    def extra_repr(self) -> str:
        if self.bins is None:
            return ""
        return (
            f"bins={self.bins}, bin_width={self.bin_width} deg, span +-{self.bins * self.bin_width / 2:g} deg"
        )

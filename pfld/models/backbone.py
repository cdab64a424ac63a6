"""The native PFLD backbone: a MobileNetV2-style network (paper Table 1, rows conv1 to S1)."""

from __future__ import annotations

import math

import torch
from torch import nn

from pfld.models.blocks import ConvBNReLU, init_weights, make_divisible, make_stage

#: Channels of the S1 output; fixed, like the head (see `PFLDBackbone`).
S1_CHANNELS = 16


class PFLDBackbone(nn.Module):
    """PFLD backbone, input (B, C, H, W) with C = `in_channels` (3: RGB, 1: grey) and H and W multiples of 8.

    Layers (sizes for 112 x 112 input, width 1.0); every conv is conv + BN + ReLU, every block a
    MobileNetV2 inverted residual (expansion t, n repeats, only the first at stride s):

    ====  ===========================  ==========  =============
    row   layer                         output      stride
    ====  ===========================  ==========  =============
    1     conv3x3, s2                   56x56x64    2
    2     depthwise conv3x3, s1         56x56x64    2
    3     IR t=2 c=64 n=5 s=2           28x28x64    4  -> auxiliary features
    4     IR t=2 c=128 n=1 s=2          14x14x128   8
    5     IR t=4 c=128 n=6 s=1          14x14x128   8
    6     IR t=2 c=16 n=1 s=1           14x14x16    8  -> S1
    ====  ===========================  ==========  =============

    `width` scales the 64 and 128 channel counts of rows 1-5, rounded with MobileNetV2's
    `make_divisible(v, 8)` (at least 8): 0.25 gives 16/32 channels, 0.5 gives 32/64. The 16-channel S1
    output, the multi-scale head and the auxiliary net are not scaled: the head costs little and its
    width drives accuracy, so a thin model keeps the full head.

    Attributes:
        in_channels: channels of the input: only the first convolution depends on it.
        auxiliary_channels: channels of the stride-4 features (C4).
        out_channels: channels of the stride-8 S1 features (16).
    """

    def __init__(self, width: float = 1.0, in_channels: int = 3) -> None:
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, int | float) or not math.isfinite(width):
            raise ValueError(f"width must be a finite number > 0, got {width!r}")
        if width <= 0:
            raise ValueError(f"width must be > 0, got {width}")
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"in_channels must be an int >= 1 (3: RGB, 1: grey), got {in_channels!r}")
        self.width = float(width)
        self.in_channels: int = in_channels
        c64 = make_divisible(64 * width, 8)
        c128 = make_divisible(128 * width, 8)
        self.conv1 = ConvBNReLU(in_channels, c64, kernel_size=3, stride=2)
        self.conv2 = ConvBNReLU(c64, c64, kernel_size=3, stride=1, groups=c64)
        self.stage3 = make_stage(c64, c64, expand_ratio=2, repeats=5, stride=2)
        self.stage4 = make_stage(c64, c128, expand_ratio=2, repeats=1, stride=2)
        self.stage5 = make_stage(c128, c128, expand_ratio=4, repeats=6, stride=1)
        self.stage6 = make_stage(c128, S1_CHANNELS, expand_ratio=2, repeats=1, stride=1)
        self.auxiliary_channels: int = c64
        self.out_channels: int = S1_CHANNELS
        init_weights(self)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> (auxiliary features (B, C4, H/4, W/4), S1 features (B, 16, H/8, W/8))."""
        x = self.conv2(self.conv1(x))  # (B, C64, H/2, W/2)
        aux = self.stage3(x)  # (B, C64, H/4, W/4)
        s1 = self.stage6(self.stage5(self.stage4(aux)))  # (B, 16, H/8, W/8)
        return aux, s1

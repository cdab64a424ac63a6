"""Building blocks shared by the PFLD networks: conv-BN-ReLU, the MobileNetV2 inverted residual, init."""

from __future__ import annotations

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round a channel count to a multiple of `divisor`, as MobileNetV2 does.

    Never rounds down by more than 10 % and never returns less than `min_value` (default: `divisor`).
    """
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    min_value = divisor if min_value is None else min_value
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class ConvBNReLU(nn.Sequential):
    """Conv2d, then optional BatchNorm2d, then optional ReLU. (B, C_in, H, W) -> (B, C_out, H', W').

    Args:
        kernel_size: square kernel side.
        stride: convolution stride.
        groups: convolution groups (`groups == in_channels == out_channels` is a depthwise conv).
        padding: defaults to `kernel_size // 2` ("same" at stride 1); pass 0 for a valid convolution.
        bn: add BatchNorm2d; the convolution has a bias only when there is no BN.
        relu: add ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        padding: int | None = None,
        bn: bool = True,
        relu: bool = True,
    ) -> None:
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be >= 1, got in={in_channels}, out={out_channels}")
        if kernel_size < 1 or stride < 1:
            raise ValueError(f"kernel_size and stride must be >= 1, got {kernel_size}, {stride}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"groups={groups} must divide in={in_channels} and out={out_channels}")
        padding = kernel_size // 2 if padding is None else padding
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=not bn)
        ]
        if bn:
            layers.append(nn.BatchNorm2d(out_channels))
        if relu:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (BN, ReLU), 3x3 depthwise at `stride` (BN, ReLU), 1x1 project (BN).

    (B, C_in, H, W) -> (B, C_out, H / stride, W / stride). The input is added to the output when
    `stride == 1` and `in_channels == out_channels`. With `expand_ratio == 1` the expansion is skipped.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if expand_ratio < 1:
            raise ValueError(f"expand_ratio must be >= 1, got {expand_ratio}")
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"channels must be >= 1, got in={in_channels}, out={out_channels}")
        hidden = in_channels * expand_ratio
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(in_channels, hidden, kernel_size=1))
        layers.append(ConvBNReLU(hidden, hidden, kernel_size=3, stride=stride, groups=hidden))
        layers.append(ConvBNReLU(hidden, out_channels, kernel_size=1, relu=False))
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_channels == out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, H, W) -> (B, C_out, H / stride, W / stride)."""
        out = self.conv(x)
        return x + out if self.use_residual else out


def make_stage(
    in_channels: int, out_channels: int, expand_ratio: int, repeats: int, stride: int
) -> nn.Sequential:
    """`repeats` inverted residuals; only the first has `stride` (and changes the channel count)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    blocks = [InvertedResidual(in_channels, out_channels, stride, expand_ratio)]
    blocks += [InvertedResidual(out_channels, out_channels, 1, expand_ratio) for _ in range(repeats - 1)]
    return nn.Sequential(*blocks)


def init_weights(module: nn.Module) -> None:
    """Initialise in place: convs kaiming-normal (fan_out, relu), BN weight 1 bias 0, Linear N(0, 0.01).

    Biases are zeroed. Each network calls this on itself, so `PFLD` never re-initialises a backbone
    that may hold pretrained weights.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            if m.bias is not None:
                nn.init.zeros_(m.bias)

"""From the uint8 crops the data loader delivers to the model's input: one place, run on the batch.

Workers send uint8 RGB crops (4x less to copy between processes than float32); the training process
normalises whole batches on the model's device (`pfld.training.module.PFLDModule.on_after_batch_transfer`), and
so do evaluation, calibration and export. The model's input is ``(pixel / 255 - mean) / std`` per RGB
channel, (B, 3, S, S) float32 in channels_last memory (NHWC), the layout PFLD's depthwise layers run
fastest in on a CPU; a permuted NHWC batch is already that layout, so no copy is made for it.

A one-channel (grey) model has one ``mean`` and one ``std`` value: its input is ``(grey / 255 - mean) /
std``, (B, 1, S, S), with grey the ITU-R BT.601 luma of the RGB crop, ``0.299 R + 0.587 G + 0.114 B``
(`grey`, unrounded; a grey photo stored as R = G = B keeps its values). The data stays RGB up to here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: ITU-R BT.601 luma weights of R, G and B.
LUMA: tuple[float, float, float] = (0.299, 0.587, 0.114)
#: The input channels a model may take: 3 (RGB) or 1 (grey).
CHANNELS: tuple[int, ...] = (3, 1)

Pixels = TypeVar("Pixels", np.ndarray, torch.Tensor)


def grey(rgb: Pixels) -> Pixels:
    """(..., 3) float RGB -> (..., 1) luma ``0.299 R + 0.587 G + 0.114 B``, same type and dtype
    (a NumPy array or a tensor: the photo pipeline and the batches convert with this one formula)."""
    if rgb.shape[-1] != 3:
        raise ValueError(f"grey takes RGB values on the last axis, got shape {tuple(rgb.shape)}")
    red, green, blue = LUMA
    return rgb[..., 0:1] * red + rgb[..., 1:2] * green + rgb[..., 2:3] * blue


def channel_values(values: Sequence[float], channels: int, name: str = "mean") -> tuple[float, ...]:
    """A mean or std for a ``channels``-channel input: ``channels`` values as given, or for a grey model
    three RGB values reduced to their luma (ImageNet's mean and std: 0.459 and 0.226)."""
    if channels not in CHANNELS:
        raise ValueError(f"channels must be 3 (RGB) or 1 (grey), got {channels!r}")
    values = tuple(float(v) for v in values)
    if channels == 1 and len(values) == 3:
        return (sum(w * v for w, v in zip(LUMA, values, strict=True)),)
    if len(values) != channels:
        raise ValueError(f"{name} must hold {channels} value(s) for a {channels}-channel input, got {values}")
    return values


def model_input(
    images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """(B, S, S, 3) or (S, S, 3) uint8 RGB -> (B, C, S, S) float32 ``(x / 255 - mean) / std``,
    channels_last, on the images' device; C = len(mean): 3 (RGB) or 1 (`grey`). Anything but uint8
    with 3 channels last is refused."""
    if images.dtype != torch.uint8:
        raise TypeError(f"model_input takes uint8 RGB crops, got {images.dtype}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"model_input takes (B, S, S, 3) or (S, S, 3) crops, got shape {tuple(images.shape)}"
        )
    if len(mean) != len(std) or len(mean) not in CHANNELS:
        raise ValueError(f"mean and std must hold 3 (RGB) or 1 (grey) values each, got {mean}, {std}")
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=images.device)
    offset = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)], device=images.device)
    # (B, S, S, 3) contiguous whatever the input's strides, so the permuted result is channels_last
    batch = images.to(torch.float32, memory_format=torch.contiguous_format)
    if len(mean) == 1:
        batch = grey(batch)  # (B, S, S, 1)
    return torch.addcmul(offset, batch, scale, out=batch).permute(0, 3, 1, 2)

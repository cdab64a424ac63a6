"""From the uint8 crops the data loader delivers to the model's input: one place, run on the batch.

Workers send uint8 RGB crops (4x less to copy between processes than float32); the training process
normalises whole batches on the model's device (`pfld.training.module.PFLDModule.on_after_batch_transfer`), and
so do evaluation, calibration and export. The model's input is ``(pixel / 255 - mean) / std`` per RGB
channel, (B, 3, S, S) float32 in channels_last memory (NHWC), the layout PFLD's depthwise layers run
fastest in on a CPU; a permuted NHWC batch is already that layout, so no copy is made for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def model_input(
    images: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """(B, S, S, 3) or (S, S, 3) uint8 RGB -> (B, 3, S, S) float32 ``(x / 255 - mean) / std``,
    channels_last, on the images' device. Anything but uint8 with 3 channels last is refused."""
    if images.dtype != torch.uint8:
        raise TypeError(f"model_input takes uint8 RGB crops, got {images.dtype}")
    if images.ndim == 3:
        images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(
            f"model_input takes (B, S, S, 3) or (S, S, 3) crops, got shape {tuple(images.shape)}"
        )
    scale = torch.tensor([1.0 / (255.0 * s) for s in std], device=images.device)
    offset = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)], device=images.device)
    # (B, S, S, 3) contiguous whatever the input's strides, so the permuted result is channels_last
    batch = images.to(torch.float32, memory_format=torch.contiguous_format)
    return torch.addcmul(offset, batch, scale, out=batch).permute(0, 3, 1, 2)

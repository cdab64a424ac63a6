"""Model size and compute: parameter count, and multiply-accumulates counted with forward hooks."""

from __future__ import annotations

import torch
from torch import nn


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (trainable or not); buffers such as BN running statistics excluded."""
    return sum(p.numel() for p in model.parameters())


def _conv_macs(module: nn.Conv2d, output: torch.Tensor) -> int:
    kh, kw = module.kernel_size
    return output.numel() * (module.in_channels // module.groups) * kh * kw


def _linear_macs(module: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


def count_macs(model: nn.Module, input_size: int, channels: int = 3) -> int:
    """Multiply-accumulates of one eval-mode forward pass on a (1, channels, S, S) zero input.

    Counted: nn.Conv2d (output elements x in_channels / groups x kh x kw) and nn.Linear (output
    elements x in_features). Not counted: biases, BatchNorm (foldable into the conv), activations,
    pooling, additions and reshapes, nor modules that eval mode skips (PFLD's auxiliary net). Every
    submodule's training flag is restored afterwards.
    """
    if input_size < 1 or channels < 1:
        raise ValueError(f"input_size and channels must be >= 1, got {input_size}, {channels}")
    total = 0

    def hook(module: nn.Module, _inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += _conv_macs(module, output)
        elif isinstance(module, nn.Linear):
            total += _linear_macs(module, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    param = next(model.parameters(), None)
    x = torch.zeros(
        1,
        channels,
        input_size,
        input_size,
        device=param.device if param is not None else None,
        dtype=param.dtype if param is not None else None,
    )
    modes = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for module, mode in modes:
            module.training = mode
        for handle in handles:
            handle.remove()
    return total

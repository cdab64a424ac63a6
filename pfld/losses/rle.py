"""Residual log-likelihood estimation (RLE; Li et al., "Human Pose Regression with Residual
Log-likelihood Estimation", ICCV 2021), as a base point loss.

Direct regression with L1 assumes a Laplace error of fixed scale. RLE lets the model predict a scale
``sigma`` for each coordinate (a training-only head, `PFLD.uncertainty`) and learns the shape of the
normalised error ``(pred - target) / sigma`` with a small normalising flow (RealNVP). The loss is the
negative log-likelihood of the target under that density, with the "residual" design of the paper: a
Laplace density times the flow's correction, so that early in training, when the flow is near the
identity, it behaves like a scale-aware L1. Nothing of this reaches inference: the landmarks are the
same regression output, so it is free at run time.

The flow follows the paper's reference (and mmpose's ``RealNVP``): three pairs of affine coupling layers on
2-D points, each with 64-unit scale (tanh-bounded) and translation nets, a standard normal prior.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

#: Added to sigma before dividing, as in the reference implementation.
SIGMA_EPS = 1e-9
_LOG_2PI = math.log(2.0 * math.pi)


def _coupling_net(hidden: int, bounded: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Linear(2, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, hidden),
        nn.LeakyReLU(),
        nn.Linear(hidden, 2),
    ]
    if bounded:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


class RealNVP(nn.Module):
    """A 2-D RealNVP density: ``log_prob(x)`` of (N, 2) points, through ``2 * pairs`` affine couplings.

    Initialised near the identity (Xavier with gain 0.01), so at the start ``log_prob`` is close to the
    standard normal's.
    """

    masks: Tensor

    def __init__(self, pairs: int = 3, hidden: int = 64) -> None:
        super().__init__()
        if pairs < 1 or hidden < 1:
            raise ValueError(f"RealNVP needs pairs >= 1 and hidden >= 1, got {pairs}, {hidden}")
        self.register_buffer("masks", torch.tensor([[0.0, 1.0], [1.0, 0.0]] * pairs))
        self.scale = nn.ModuleList(_coupling_net(hidden, bounded=True) for _ in range(2 * pairs))
        self.shift = nn.ModuleList(_coupling_net(hidden, bounded=False) for _ in range(2 * pairs))
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight, gain=0.01)
                nn.init.zeros_(module.bias)

    def log_prob(self, x: Tensor) -> Tensor:
        """(N, 2) -> (N,) log density, in float32."""
        z = x.float()
        log_det = z.new_zeros(z.shape[0])
        for i in reversed(range(len(self.masks))):  # data -> latent: invert the couplings in reverse order
            kept = self.masks[i] * z
            free = 1.0 - self.masks[i]
            s = self.scale[i](kept) * free
            t = self.shift[i](kept) * free
            z = free * (z - t) * torch.exp(-s) + kept
            log_det = log_det - s.sum(dim=1)
        prior = -0.5 * (z * z).sum(dim=1) - _LOG_2PI  # standard normal in 2-D
        return prior + log_det


def rle_errors(difference: Tensor, sigma: Tensor, flow: RealNVP) -> Tensor:
    """Per-coordinate RLE negative log-likelihood, (B, K, 2).

    Args:
        difference: (B, K, 2) ``pred - target`` in crop units (0 at unlabelled points).
        sigma: (B, K, 2) predicted scales in (0, 1) of the crop (a sigmoid).
        flow: the 2-D density of the normalised error ``difference / sigma``, per point.

    Returns:
        ``log sigma - log phi(e) + log(2 sigma) + |e|`` with ``e = difference / sigma``, the residual
        form with a Laplace base (the flow's ``log phi`` is shared by a point's two coordinates, as in
        the reference). Not zero at a perfect prediction: a log-likelihood, lowest where the error is
        small relative to a small sigma. Finite with a finite gradient at zero error.
    """
    if sigma.shape != difference.shape:
        raise ValueError(
            f"sigma {tuple(sigma.shape)} and landmarks {tuple(difference.shape)} differ in shape"
        )
    with torch.autocast(difference.device.type, enabled=False):
        sigma = sigma.float()
        error = difference.float() / (sigma + SIGMA_EPS)  # (B, K, 2)
        b, k = error.shape[:2]
        log_phi = flow.log_prob(error.reshape(-1, 2)).reshape(b, k, 1)
        log_sigma = torch.log(sigma + SIGMA_EPS)
        return (log_sigma - log_phi) + (math.log(2.0) + log_sigma + error.abs())

"""Tests for pfld.models.complexity on models whose counts are worked out by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pfld.models import PFLD, PFLDBackbone, count_macs, count_parameters


class _Tiny(nn.Module):
    """conv3x3 3->4 (pad 1), BN, ReLU, depthwise conv3x3 4->4 stride 2 (pad 1), global mean, Linear 4->5."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.dw = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=4)
        self.fc = nn.Linear(4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dw(torch.relu(self.bn(self.conv(x))))
        return self.fc(x.mean(dim=(2, 3)))


def test_tiny_model_by_hand() -> None:
    model = _Tiny()
    # conv: 4*8*8 outputs x 3*3*3 = 6912; dw: 4*4*4 outputs x 1*3*3 = 576; fc: 5 outputs x 4 = 20
    assert count_macs(model, input_size=8) == 6912 + 576 + 20
    # conv 3*4*9 + 4; bn 4 + 4; dw 4*9 + 4; fc 4*5 + 5
    assert count_parameters(model) == 112 + 8 + 40 + 25


def test_channels_argument() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 1))
    assert count_macs(model, input_size=5, channels=1) == 2 * 25


def test_training_flags_restored() -> None:
    model = _Tiny().train()
    model.bn.eval()
    count_macs(model, input_size=8)
    assert model.training and model.conv.training and not model.bn.training
    assert torch.equal(model.bn.running_mean, torch.zeros(4))  # ran in eval mode


def test_auxiliary_net_not_counted() -> None:
    model = PFLD(PFLDBackbone(0.25), 68, 64)
    assert count_macs(model, 64) == count_macs(model.without_auxiliary(), 64)
    assert count_parameters(model) > count_parameters(model.without_auxiliary())


def test_invalid_input_size() -> None:
    with pytest.raises(ValueError, match="input_size"):
        count_macs(_Tiny(), input_size=0)

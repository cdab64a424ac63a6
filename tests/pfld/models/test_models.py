"""Tests for pfld.models: shapes, validation, auxiliary handling, mean shape, memory format, timm adapter."""

from __future__ import annotations

import copy
import math
import sys
import types

import pytest
import torch
from torch import nn

from pfld.models import PFLD, AuxiliaryPoseNet, MultiScaleHead, PFLDBackbone, TimmBackbone
from pfld.models.blocks import InvertedResidual, make_divisible


def build(width: float = 0.25, num_points: int = 68, input_size: int = 112, auxiliary: bool = True) -> PFLD:
    torch.manual_seed(0)
    return PFLD(PFLDBackbone(width), num_points, input_size, auxiliary=auxiliary)


@pytest.mark.parametrize("num_points", [68, 98, 5])
@pytest.mark.parametrize("input_size", [64, 96, 112, 128])
@pytest.mark.parametrize("width", [0.25, 0.5, 1.0])
def test_output_shapes(width: float, input_size: int, num_points: int) -> None:
    model = build(width, num_points, input_size)
    x = torch.randn(2, 3, input_size, input_size)
    model.train()
    landmarks, angles = model(x)
    assert landmarks.shape == (2, num_points, 2)
    assert angles.shape == (2, 3)
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (2, num_points, 2)


@pytest.mark.parametrize(("width", "aux_channels"), [(0.25, 16), (0.5, 32), (0.75, 48), (1.0, 64)])
def test_feature_sizes_at_112(width: float, aux_channels: int) -> None:
    backbone = PFLDBackbone(width).eval()
    with torch.no_grad():
        aux, s1 = backbone(torch.randn(1, 3, 112, 112))
    assert aux.shape == (1, aux_channels, 28, 28)
    assert s1.shape == (1, 16, 14, 14)
    assert backbone.auxiliary_channels == aux_channels
    assert backbone.out_channels == 16


def test_make_divisible() -> None:
    assert [make_divisible(v) for v in (16, 32, 48, 96, 4, 1)] == [16, 32, 48, 96, 8, 8]
    assert make_divisible(128 * 0.3) == 40  # 38.4 rounds to 40


def test_inverted_residual_skip_only_when_shapes_match() -> None:
    assert InvertedResidual(16, 16, 1, 2).use_residual
    assert not InvertedResidual(16, 16, 2, 2).use_residual
    assert not InvertedResidual(16, 32, 1, 2).use_residual
    with pytest.raises(ValueError, match="stride"):
        InvertedResidual(16, 16, 3, 2)


@pytest.mark.parametrize("width", [0, -0.5, math.nan, math.inf, True, "1.0"])
def test_invalid_width_raises(width: object) -> None:
    with pytest.raises(ValueError, match="width"):
        PFLDBackbone(width)  # type: ignore[arg-type]


@pytest.mark.parametrize("input_size", [100, 48, 0, 112.0])
def test_invalid_input_size_raises(input_size: object) -> None:
    with pytest.raises(ValueError, match="input_size"):
        PFLD(PFLDBackbone(0.25), 68, input_size)  # type: ignore[arg-type]


@pytest.mark.parametrize("num_points", [2, 0, -1])
def test_invalid_num_points_raises(num_points: int) -> None:
    with pytest.raises(ValueError, match="num_points"):
        PFLD(PFLDBackbone(0.25), num_points)


def test_backbone_without_channel_attributes_raises() -> None:
    with pytest.raises(ValueError, match="out_channels"):
        PFLD(nn.Identity(), 68)


@pytest.mark.parametrize("shape", [(1, 3, 96, 96), (1, 3, 112, 128), (3, 112, 112)])
def test_wrong_input_size_raises(shape: tuple[int, ...]) -> None:
    model = build().eval()
    with pytest.raises(ValueError, match="112"):
        model(torch.randn(*shape))
    with pytest.raises(ValueError, match="112"):
        model.forward_with_pose(torch.randn(*shape))


def test_forward_with_pose_in_both_modes() -> None:
    model = build()
    x = torch.randn(2, 3, 112, 112)
    for training in (True, False):
        model.train(training)
        landmarks, angles = model.forward_with_pose(x)
        assert landmarks.shape == (2, 68, 2)
        assert angles.shape == (2, 3)
    with pytest.raises(RuntimeError, match="auxiliary"):
        model.without_auxiliary().forward_with_pose(x)


def test_auxiliary_false_returns_landmarks_in_training() -> None:
    model = build(auxiliary=False).train()
    assert model.auxiliary is None
    assert model(torch.randn(2, 3, 112, 112)).shape == (2, 68, 2)


def test_state_dict_prefixes() -> None:
    prefixes = {key.split(".")[0] for key in build().state_dict()}
    assert prefixes == {"backbone", "head", "auxiliary"}


def test_without_auxiliary() -> None:
    model = build().eval()
    inference = model.without_auxiliary()
    assert inference.auxiliary is None
    assert model.auxiliary is not None  # the original is untouched
    keys = inference.state_dict().keys()
    assert not any(key.startswith("auxiliary.") for key in keys)
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(inference(x), model(x))
    fresh = build(auxiliary=False)
    full = model.state_dict()
    fresh.load_state_dict({k: v for k, v in full.items() if not k.startswith("auxiliary.")}, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), model(x))


def test_set_mean_shape() -> None:
    model = build(width=0.5, num_points=98).eval()
    mean = torch.rand(98, 2) * 0.6 + 0.2
    weight_before = model.head.fc.weight.detach().clone()
    model.set_mean_shape(mean)
    torch.testing.assert_close(model.head.fc.bias.detach(), mean.reshape(-1))
    torch.testing.assert_close(model.head.fc.weight.detach(), weight_before * 0.1)
    with torch.no_grad():
        out = model(torch.rand(4, 3, 112, 112))  # (4, 98, 2)
    assert (out - mean).abs().max() < 0.02
    with pytest.raises(ValueError, match="shape"):
        model.set_mean_shape(torch.rand(68, 2))


def test_channels_last_matches_contiguous() -> None:
    model = build(width=0.5).eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        expected = model.forward_with_pose(x)
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        got = model_cl.forward_with_pose(x.to(memory_format=torch.channels_last))
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_landmarks_leave_in_float32_under_bf16_autocast() -> None:
    """The head's last layer runs in float32: bf16 would round coordinates to 1/512 of the crop."""
    model = build().eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        expected = model(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = model(x)
            features = torch.randn(2, 176)
            assert model.head.fc(features).dtype == torch.bfloat16  # what it would be otherwise
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=0, atol=0.05)  # the backbone ran in bf16


def test_gradients_reach_backbone_from_both_outputs() -> None:
    model = build().train()
    x = torch.randn(2, 3, 112, 112)
    first_conv = model.backbone.conv1[0].weight
    deep_conv = model.backbone.stage5[0].conv[0][0].weight

    landmarks, _ = model(x)
    landmarks.sum().backward()
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert deep_conv.grad is not None and deep_conv.grad.abs().sum() > 0

    model.zero_grad(set_to_none=True)
    _, angles = model(x)
    angles.sum().backward()
    assert first_conv.grad is not None and first_conv.grad.abs().sum() > 0
    assert deep_conv.grad is None  # the pose net reads the stride-4 features only
    assert all(p.grad is not None for p in model.auxiliary.parameters())


def test_training_with_batch_of_one() -> None:
    landmarks, angles = build().train()(torch.randn(1, 3, 112, 112))
    assert landmarks.shape == (1, 68, 2) and angles.shape == (1, 3)


def test_head_sizes_derive_from_arguments() -> None:
    head = MultiScaleHead(in_channels=24, num_points=5, input_size=160)
    assert head.fc.in_features == 24 + 32 + 128
    assert head.fc.out_features == 10
    assert head(torch.randn(2, 24, 20, 20)).shape == (2, 5, 2)
    with pytest.raises(ValueError, match="input_size"):
        MultiScaleHead(16, 68, 120)


def test_auxiliary_net_shapes() -> None:
    net = AuxiliaryPoseNet(in_channels=16, input_size=64)
    assert net(torch.randn(2, 16, 16, 16)).shape == (2, 3)
    with pytest.raises(ValueError, match="in_channels"):
        AuxiliaryPoseNet(0, 112)


def test_timm_import_error_is_clear(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(ImportError, match=r"pip install 'pfld\[timm\]'") as info:
        TimmBackbone()
    assert "torchvision" in str(info.value)
    assert info.value.__cause__ is not None


class _FakeFeatureInfo:
    def __init__(self, reductions: list[int], channels: list[int]) -> None:
        self._reductions, self._channels = reductions, channels

    def reduction(self) -> list[int]:
        return self._reductions

    def channels(self) -> list[int]:
        return self._channels


class _FakeFeatures(nn.Module):
    """Five stride-2 convs; like timm's features_only, returns the levels in `out_indices`."""

    CHANNELS = (8, 12, 20, 24, 32)

    def __init__(self, out_indices: tuple[int, ...] | None) -> None:
        super().__init__()
        self.out_indices = tuple(range(5)) if out_indices is None else tuple(out_indices)
        ins = (3, *self.CHANNELS[:-1])
        self.levels = nn.ModuleList(nn.Conv2d(i, o, 3, 2, 1) for i, o in zip(ins, self.CHANNELS, strict=True))
        self.feature_info = _FakeFeatureInfo(
            [2 ** (i + 1) for i in self.out_indices], [self.CHANNELS[i] for i in self.out_indices]
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, level in enumerate(self.levels):
            x = level(x)
            if i in self.out_indices:
                outs.append(x)
        return outs


def test_timm_backbone_with_fake_timm(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[dict[str, object]] = []

    def create_model(name: str, **kwargs: object) -> nn.Module:
        calls.append({"name": name, **kwargs})
        assert kwargs["features_only"] is True
        return _FakeFeatures(kwargs.get("out_indices"))  # type: ignore[arg-type]

    fake = types.ModuleType("timm")
    fake.create_model = create_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "timm", fake)

    backbone = TimmBackbone("fake_net", pretrained=True)
    assert calls[-1]["out_indices"] == (1, 2)
    assert calls[-1]["pretrained"] is True
    assert (backbone.auxiliary_channels, backbone.out_channels) == (12, 20)
    aux, s1 = backbone(torch.randn(1, 3, 64, 64))
    assert aux.shape == (1, 12, 16, 16)
    assert s1.shape == (1, 20, 8, 8)

    model = PFLD(backbone, num_points=5, input_size=64).train()
    landmarks, angles = model(torch.randn(2, 3, 64, 64))
    assert landmarks.shape == (2, 5, 2) and angles.shape == (2, 3)

    with pytest.raises(ValueError, match="out_indices"):
        TimmBackbone("fake_net", out_indices=(0, 1))


def test_pose_from_the_head_is_one_linear_beside_the_landmarks():
    from pfld.models.pfld import HeadPose

    model = PFLD(PFLDBackbone(0.25), 68, 112, pose_from="head")
    assert isinstance(model.auxiliary, HeadPose)
    assert sum(p.numel() for p in model.auxiliary.parameters()) == model.head.fc.in_features * 3 + 3
    x = torch.randn(2, 3, 112, 112)
    out = model.forward_train(x)
    assert out.angles.shape == (2, 3) and out.angle_logits is None
    model.eval()
    landmarks, angles = model.forward_with_pose(x)
    assert angles.shape == (1, 3) or angles.shape == (2, 3)
    assert torch.equal(landmarks, model(x)) and torch.equal(model.without_auxiliary()(x), landmarks)
    with pytest.raises(ValueError, match="pose_from"):
        PFLD(PFLDBackbone(0.25), 68, 112, pose_from="s3")
    with pytest.raises(ValueError, match="no bins"):
        PFLD(PFLDBackbone(0.25), 68, 112, pose_from="head", pose_bins=66)


def test_binned_pose_net_returns_the_expectation_in_radians():
    model = PFLD(PFLDBackbone(0.25), 68, 112, pose_bins=66).eval()
    with torch.no_grad():
        model.auxiliary.fc[-1].weight.zero_()
        model.auxiliary.fc[-1].bias.zero_()
        model.auxiliary.fc[-1].bias.view(3, 66)[0, 40] = 50.0  # yaw: all mass on bin 40
        _, angles = model.forward_with_pose(torch.randn(1, 3, 112, 112))
    assert float(torch.rad2deg(angles[0, 0])) == pytest.approx((40 + 0.5 - 33) * 3.0, abs=1e-3)
    assert float(angles[0, 1]) == pytest.approx(0.0, abs=1e-6)  # uniform bins: the mean centre, 0


def test_uncertainty_head_gives_scales_in_zero_one_and_leaves_with_the_pose_net():
    model = PFLD(PFLDBackbone(0.25), 68, 112, uncertainty=True)
    sigma = model.forward_train(torch.randn(2, 3, 112, 112)).sigma
    assert sigma.shape == (2, 68, 2) and bool(((sigma > 0) & (sigma < 1)).all())
    assert model.without_auxiliary().uncertainty is None

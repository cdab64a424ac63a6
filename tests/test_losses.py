"""Tests of pfld.losses against brute-force formulas."""

from __future__ import annotations

import math

import pytest
import torch

from pfld.losses import (
    CLASS_NAMES,
    L1Loss,
    L2Loss,
    PFLDLoss,
    WingLoss,
    class_fractions_from_memberships,
    class_weights,
)

B, K, C = 8, 5, len(CLASS_NAMES)


def _random_classes(generator: torch.Generator, b: int = B, c: int = C) -> torch.Tensor:
    """(b, c) bool memberships with every sample in at least one class; the last column stays empty."""
    member = torch.rand(b, c, generator=generator) < 0.4
    member[:, -1] = False  # a class this "data set" cannot tell
    member[torch.arange(b), torch.randint(0, c - 1, (b,), generator=generator)] = True
    return member


def _inputs(seed: int = 0, b: int = B) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    pred = torch.rand(b, K, 2, generator=g, dtype=torch.float64)
    target = torch.rand(b, K, 2, generator=g, dtype=torch.float64)
    pred_angles = (torch.rand(b, 3, generator=g, dtype=torch.float64) - 0.5) * 2.0
    target_angles = (torch.rand(b, 3, generator=g, dtype=torch.float64) - 0.5) * 2.0
    return pred, target, pred_angles, target_angles, _random_classes(g, b)


def _brute_force(pred, target, pred_angles, target_angles, classes, fractions=None) -> float:
    b, c = classes.shape
    if fractions is None:
        counts = [sum(int(classes[n, j]) for n in range(b)) for j in range(c)]
        w = [b / counts[j] if counts[j] > 0 else 0.0 for j in range(c)]
    else:
        w = [1.0 / f if f > 0 else 0.0 for f in fractions]
    total = 0.0
    for n in range(b):
        weight = sum(w[j] * int(classes[n, j]) for j in range(c))
        angle = sum(1.0 - math.cos(float(pred_angles[n, a] - target_angles[n, a])) for a in range(3))
        sq = 0.0
        for k in range(pred.shape[1]):
            for d in range(2):
                sq += float(pred[n, k, d] - target[n, k, d]) ** 2
        total += weight * angle * sq
    return total / b


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pfld_batch_weighting_matches_brute_force(seed: int) -> None:
    args = _inputs(seed)
    got = PFLDLoss("batch")(*args).item()
    assert got == pytest.approx(_brute_force(*args), rel=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pfld_dataset_weighting_matches_brute_force(seed: int) -> None:
    args = _inputs(seed)
    fractions = [0.1, 0.9, 0.2, 0.15, 0.3, 0.0]  # occlusion unknown to this data set
    loss = PFLDLoss("dataset", class_fractions=fractions)
    assert loss(*args).item() == pytest.approx(_brute_force(*args, fractions=fractions), rel=1e-5)
    later = PFLDLoss("dataset")
    later.set_class_fractions(fractions)
    assert later(*args).item() == pytest.approx(loss(*args).item(), rel=1e-12)


def test_float_memberships_equal_bool() -> None:
    pred, target, pa, ta, classes = _inputs(3)
    loss = PFLDLoss()
    assert loss(pred, target, pa, ta, classes.float()).item() == pytest.approx(
        loss(pred, target, pa, ta, classes).item(), rel=1e-6
    )


def test_zero_for_perfect_landmarks() -> None:
    _, target, pa, ta, classes = _inputs(4)
    for loss in (PFLDLoss(), PFLDLoss("dataset", [0.5] * C), L2Loss(), L1Loss(), WingLoss()):
        assert loss(target.clone(), target, pa, ta, classes).item() == pytest.approx(0.0, abs=1e-12)


def test_every_face_has_positive_weight() -> None:
    g = torch.Generator().manual_seed(5)
    for _ in range(20):
        classes = _random_classes(g)
        assert (class_weights(classes) > 0).all()
        assert (class_weights(classes, [0.3, 0.7, 0.1, 0.1, 0.2, 0.0]) > 0).all()


def test_face_with_no_class_raises() -> None:
    pred, target, pa, ta, classes = _inputs(6)
    classes[2] = False
    with pytest.raises(ValueError, match="no class"):
        PFLDLoss()(pred, target, pa, ta, classes)
    with pytest.raises(ValueError, match="no class"):
        class_weights(classes, [0.5] * C)


def test_batch_weights_by_hand() -> None:
    # profile, frontal: sample 0 profile, samples 1-3 frontal, sample 3 also occluded.
    classes = torch.zeros(4, C, dtype=torch.bool)
    classes[0, 0] = classes[1:, 1] = classes[3, 5] = True
    w = class_weights(classes)
    assert torch.allclose(w, torch.tensor([4.0, 4 / 3, 4 / 3, 4 / 3 + 4.0]))


def test_ten_and_370_degrees_agree() -> None:
    pred, target, _, ta, classes = _inputs(7)
    ta = torch.zeros_like(ta)
    loss = PFLDLoss()
    a10 = torch.full_like(ta, math.radians(10.0))
    a370 = torch.full_like(ta, math.radians(370.0))
    assert loss(pred, target, a370, ta, classes).item() == pytest.approx(
        loss(pred, target, a10, ta, classes).item(), rel=1e-5
    )


def test_degrees_would_give_a_different_loss() -> None:
    # Why radians matter: cos of 10 "radians" is not cos of 10 degrees.
    pred, target, _, ta, classes = _inputs(8)
    ta = torch.zeros_like(ta)
    loss = PFLDLoss()
    radians = loss(pred, target, torch.full_like(ta, math.radians(10.0)), ta, classes).item()
    degrees = loss(pred, target, torch.full_like(ta, 10.0), ta, classes).item()
    assert abs(radians - degrees) > 0.1 * radians


def test_gradients_reach_landmarks_and_angles() -> None:
    pred, target, pa, ta, classes = _inputs(9)
    pred.requires_grad_(True)
    pa.requires_grad_(True)
    PFLDLoss()(pred, target, pa, ta, classes).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert pa.grad is not None and pa.grad.abs().sum() > 0


def test_missing_inputs_and_bad_shapes_raise() -> None:
    pred, target, pa, ta, classes = _inputs(10)
    loss = PFLDLoss()
    with pytest.raises(ValueError, match="needs"):
        loss(pred, target)
    with pytest.raises(ValueError, match="needs"):
        loss(pred, target, pa, ta)
    with pytest.raises(ValueError):
        loss(pred, target[:, :-1], pa, ta, classes)
    with pytest.raises(ValueError):
        loss(pred, target, pa[:, :2], ta, classes)
    with pytest.raises(ValueError):
        loss(pred, target, pa, ta, classes[:-1])
    with pytest.raises(ValueError):
        loss(pred, target, pa, ta, classes.float() * 0.5 + 0.5)
    with pytest.raises(ValueError):
        PFLDLoss("sample")  # type: ignore[arg-type]


def test_dataset_weighting_without_fractions_raises() -> None:
    args = _inputs(11)
    with pytest.raises(RuntimeError, match="set_class_fractions"):
        PFLDLoss("dataset")(*args)


def test_dataset_fraction_zero_for_present_class_raises() -> None:
    pred, target, pa, ta, classes = _inputs(12)
    classes[0, 5] = True
    loss = PFLDLoss("dataset", [0.5, 0.5, 0.5, 0.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="occlusion"):
        loss(pred, target, pa, ta, classes)
    with pytest.raises(ValueError, match="5 class fractions"):
        PFLDLoss("dataset", [0.5] * 5)(pred, target, pa, ta, classes)
    with pytest.raises(ValueError):
        loss.set_class_fractions([1.5] * C)


def test_fractions_are_saved_and_restored() -> None:
    classes = _inputs(13)[-1]
    fractions = class_fractions_from_memberships(classes)
    assert torch.allclose(fractions, classes.double().mean(0).to(fractions.dtype))
    saved = PFLDLoss("dataset", fractions.tolist()).state_dict()
    restored = PFLDLoss("dataset")
    restored.load_state_dict(saved)
    assert restored.class_fractions is not None
    assert torch.equal(restored.class_fractions, saved["class_fractions"])
    assert PFLDLoss().state_dict() == {}


def test_l1_l2_match_simple_formulas() -> None:
    pred, target, *_ = _inputs(14)
    diff = pred - target
    l2 = sum(float((diff[n] ** 2).sum()) for n in range(B)) / B
    l1 = sum(float(diff[n].abs().sum()) for n in range(B)) / B
    assert L2Loss()(pred, target).item() == pytest.approx(l2, rel=1e-9)
    assert L1Loss()(pred, target).item() == pytest.approx(l1, rel=1e-9)


def test_wing_loss_by_hand() -> None:
    w, eps, scale = 10.0, 2.0, 100.0
    c = w - w * math.log(1 + w / eps)
    target = torch.zeros(1, 2, 2, dtype=torch.float64)
    pred = torch.tensor([[[0.01, -0.05], [0.2, 0.0]]], dtype=torch.float64)  # 1, 5, 20, 0 pixels
    expected = w * math.log(1 + 1 / eps) + w * math.log(1 + 5 / eps) + (20 - c) + 0.0
    got = WingLoss(w, eps, coordinate_scale=scale)(pred, target).item()
    assert got == pytest.approx(expected, rel=1e-9)
    # The two pieces join at |x| = width.
    at_width = torch.tensor([[[w / scale, 0.0]]], dtype=torch.float64)
    assert WingLoss(w, eps, scale)(at_width, torch.zeros_like(at_width)).item() == pytest.approx(
        w * math.log(1 + w / eps), rel=1e-9
    )


@pytest.mark.parametrize("kwargs", [{"width": 0.0}, {"curvature": -1.0}, {"coordinate_scale": 0.0}])
def test_wing_loss_validates(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        WingLoss(**kwargs)

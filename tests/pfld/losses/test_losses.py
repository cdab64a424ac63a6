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
    PoseBalanceLoss,
    WingLoss,
    class_fractions_from_memberships,
    class_weights,
    l1_loss,
    l2_loss,
    masked_point_sum,
    pfld_loss,
    point_weights,
    pose_loss,
    wing_loss,
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


# --- Partially labelled faces: point masks and invalid poses ---------------------------------------------


def _holes(seed: int = 20, b: int = B) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, K) bool point mask with holes (face 0 fully labelled, face 1 with one label) and (b,) pose_valid."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.rand(b, K, generator=g) < 0.6
    mask[0] = True
    mask[1] = False
    mask[1, 2] = True
    pose_valid = torch.rand(b, generator=g) < 0.6
    pose_valid[0] = True
    pose_valid[1] = False
    return mask, pose_valid


def _brute_force_masked(pred, target, pred_angles, target_angles, classes, mask, pose_valid) -> float:
    """PFLD loss with holes, written out: labelled points weigh B * K / n; invalid poses get the valid mean."""
    b, k = mask.shape
    counts = [int(classes[:, j].sum()) for j in range(classes.shape[1])]
    w = [b / n if n > 0 else 0.0 for n in counts]
    scale = b * k / int(mask.sum())
    angle = [
        sum(1.0 - math.cos(float(pred_angles[n, a] - target_angles[n, a])) for a in range(3))
        for n in range(b)
    ]
    valid = [n for n in range(b) if pose_valid[n]]
    fill = sum(angle[n] for n in valid) / len(valid) if valid else 1.0
    total = 0.0
    for n in range(b):
        weight = sum(w[j] * int(classes[n, j]) for j in range(len(w)))
        sq = sum(
            float(pred[n, p, d] - target[n, p, d]) ** 2 for p in range(k) if mask[n, p] for d in range(2)
        )
        total += weight * (angle[n] if pose_valid[n] else fill) * scale * sq
    return total / b


def _hand_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """B = 2, K = 4; face 0 misses point 3 (target NaN there). Squared errors: face 0 -> 1 + 4 = 5,
    face 1 -> 2 + 1 = 3; absolute errors: 3 and 3; 7 labelled points, so the scale is 8 / 7."""
    target = torch.zeros(2, 4, 2, dtype=torch.float64)
    target[0, 3] = float("nan")
    pred = torch.tensor(
        [[[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [9.0, 9.0]], [[1.0, 1.0], [0.0, 0.0], [0.0, 0.0], [0.0, 1.0]]],
        dtype=torch.float64,
    )
    mask = torch.ones(2, 4, dtype=torch.bool)
    mask[0, 3] = False
    return pred, target, mask


def test_masked_point_sum_by_hand() -> None:
    errors = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], dtype=torch.float64)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    assert masked_point_sum(errors, mask).tolist() == pytest.approx([6.0 * 8 / 7, 26.0 * 8 / 7])
    assert torch.equal(masked_point_sum(errors, torch.ones_like(mask)), masked_point_sum(errors))
    assert torch.equal(masked_point_sum(errors), errors.sum(dim=1))
    # (B, K, D) errors: the mask covers every coordinate of a point.
    per_coordinate = torch.stack([errors, 2 * errors], dim=-1)
    assert torch.allclose(masked_point_sum(per_coordinate, mask), 3 * masked_point_sum(errors, mask))


def test_l2_l1_wing_with_a_hole_by_hand() -> None:
    pred, target, mask = _hand_batch()
    assert l2_loss(pred, target, mask).item() == pytest.approx((5 + 3) * 8 / 7 / 2, rel=1e-12)
    assert L2Loss()(pred, target, mask=mask).item() == pytest.approx(32 / 7, rel=1e-12)
    assert l1_loss(pred, target, mask).item() == pytest.approx((3 + 3) * 8 / 7 / 2, rel=1e-12)
    assert L1Loss()(pred, target, mask=mask).item() == pytest.approx(24 / 7, rel=1e-12)
    # Wing in pixels of a 1-pixel "crop": errors 1, 2 (face 0) and 1, 1, 1 (face 1) are all < width.
    w, eps = 10.0, 2.0
    expected = (4 * w * math.log(1 + 1 / eps) + w * math.log(1 + 2 / eps)) * 8 / 7 / 2
    assert wing_loss(pred, target, w, eps, 1.0, mask).item() == pytest.approx(expected, rel=1e-12)
    assert WingLoss(w, eps, 1.0)(pred, target, mask=mask).item() == pytest.approx(expected, rel=1e-12)


def test_each_labelled_point_weighs_the_same() -> None:
    # A face with a single label is not inflated: its point gets the gradient of any other point.
    pred, target, mask = _hand_batch()
    mask[1] = False
    mask[1, 0] = True
    pred.requires_grad_(True)
    l2_loss(pred, target, mask).backward()
    assert pred.grad is not None
    assert pred.grad[1, 0, 0].item() == pytest.approx(pred.grad[0, 0, 0].item(), rel=1e-12)  # same residual 1
    assert pred.grad[1, 0, 0].item() == pytest.approx(2 * 1.0 * (2 * 4 / 4) / 2, rel=1e-12)  # 4 labelled of 8


def test_pfld_loss_with_hole_and_invalid_pose_by_hand() -> None:
    pred, target, mask = _hand_batch()
    classes = torch.zeros(2, C, dtype=torch.bool)
    classes[:, 1] = True  # both frontal: batch weights 1
    pred_angles = torch.tensor([[math.pi / 3, 0.0, 0.0], [2.0, -1.0, 0.5]], dtype=torch.float64)
    target_angles = torch.tensor([[0.0, 0.0, 0.0], [float("nan")] * 3], dtype=torch.float64)
    pose_valid = torch.tensor([True, False])
    pred.requires_grad_(True)
    pred_angles.requires_grad_(True)
    loss = PFLDLoss()(pred, target, pred_angles, target_angles, classes, mask, pose_valid)
    # Face 0 has angle factor 1 - cos(pi / 3) = 1/2; face 1 borrows it: (1/2 * 5 + 1/2 * 3) * 8/7 / 2.
    assert loss.item() == pytest.approx(16 / 7, rel=1e-12)
    loss.backward()
    assert pred_angles.grad is not None
    assert torch.equal(pred_angles.grad[1], torch.zeros(3, dtype=torch.float64))
    # The borrowed factor is detached: face 0's angle gets the gradient of its own term only.
    own = 0.5 * math.sin(math.pi / 3) * 5 * 8 / 7
    assert pred_angles.grad[0].tolist() == pytest.approx([own, 0.0, 0.0], rel=1e-12)
    # With no valid pose in the batch, every face gets factor 1.0: not zero, not NaN.
    none_valid = torch.zeros(2, dtype=torch.bool)
    got = pfld_loss(pred, target, pred_angles, target_angles, torch.ones(2), mask, none_valid)
    assert got.item() == pytest.approx((5 + 3) * 8 / 7 / 2, rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pfld_masked_matches_brute_force(seed: int) -> None:
    pred, target, pa, ta, classes = _inputs(seed)
    mask, pose_valid = _holes(seed + 20)
    got = PFLDLoss()(pred, target, pa, ta, classes, mask=mask, pose_valid=pose_valid).item()
    expected = _brute_force_masked(pred, target, pa, ta, classes, mask, pose_valid)
    assert got == pytest.approx(expected, rel=1e-6)  # class weights are float32
    assert got > 0.0


def _all_losses() -> list[torch.nn.Module]:
    return [PFLDLoss(), PFLDLoss("dataset", [0.5] * C), L2Loss(), L1Loss(), WingLoss()]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_full_mask_equals_no_mask_exactly(dtype: torch.dtype) -> None:
    pred, target, pa, ta, classes = (t.to(dtype) if t.is_floating_point() else t for t in _inputs(21))
    full = torch.ones(B, K, dtype=torch.bool)
    valid = torch.ones(B, dtype=torch.bool)
    for loss in _all_losses():
        plain = loss(pred, target, pa, ta, classes)
        assert torch.equal(loss(pred, target, pa, ta, classes, mask=full), plain), loss
        assert torch.equal(loss(pred, target, pa, ta, classes, mask=full, pose_valid=valid), plain), loss


def test_masked_points_get_zero_gradient_with_nan_targets() -> None:
    pred, target, pa, ta, classes = _inputs(22)
    mask, pose_valid = _holes(22)
    target[~mask] = float("nan")
    ta[~pose_valid] = float("nan")
    for loss in _all_losses():
        p = pred.clone().requires_grad_(True)
        a = pa.clone().requires_grad_(True)
        value = loss(p, target, a, ta, classes, mask=mask, pose_valid=pose_valid)
        assert torch.isfinite(value) and value.item() > 0.0, loss
        value.backward()
        assert p.grad is not None and torch.isfinite(p.grad).all(), loss
        assert torch.equal(p.grad[~mask], torch.zeros_like(p.grad[~mask])), loss
        assert (p.grad[mask].abs().sum(dim=-1) > 0).all(), loss
        if isinstance(loss, PFLDLoss):
            assert a.grad is not None and torch.isfinite(a.grad).all()
            assert torch.equal(a.grad[~pose_valid], torch.zeros_like(a.grad[~pose_valid]))


def test_batch_without_labels_gives_connected_zero() -> None:
    pred, target, pa, ta, classes = _inputs(23)
    none = torch.zeros(B, K, dtype=torch.bool)
    target[:] = float("nan")
    for loss in _all_losses():
        p = pred.clone().requires_grad_(True)
        value = loss(p, target, pa, ta, classes, mask=none)
        assert value.item() == 0.0 and value.grad_fn is not None, loss
        value.backward()
        assert p.grad is not None and torch.equal(p.grad, torch.zeros_like(p.grad)), loss


def test_bad_mask_or_pose_valid_raises() -> None:
    pred, target, pa, ta, classes = _inputs(24)
    mask, pose_valid = _holes(24)
    for loss in _all_losses():
        with pytest.raises(ValueError, match="mask"):
            loss(pred, target, pa, ta, classes, mask=mask.long())
        with pytest.raises(ValueError, match="mask"):
            loss(pred, target, pa, ta, classes, mask=mask[:, :-1])
    with pytest.raises(ValueError, match="pose_valid"):
        PFLDLoss()(pred, target, pa, ta, classes, mask=mask, pose_valid=pose_valid[:-1])
    with pytest.raises(ValueError, match="pose_valid"):
        PFLDLoss()(pred, target, pa, ta, classes, pose_valid=pose_valid.long())


# --- The auxiliary pose term of the plain losses ---------------------------------------------------------


def test_pose_loss_by_hand_ignores_invalid_faces() -> None:
    pred_angles = torch.tensor([[math.pi / 3, 0.0, math.pi], [2.0, -1.0, 0.5]], dtype=torch.float64)
    target_angles = torch.tensor([[0.0, 0.0, 0.0], [float("nan")] * 3], dtype=torch.float64)
    pose_valid = torch.tensor([True, False])
    pred_angles.requires_grad_(True)
    # Face 0 only: (1 - cos(pi / 3)) + 0 + (1 - cos(pi)) = 1/2 + 2, mean over the one valid face.
    value = pose_loss(pred_angles, target_angles, pose_valid)
    assert value.item() == pytest.approx(2.5, rel=1e-12)
    value.backward()
    assert pred_angles.grad is not None
    assert pred_angles.grad[0].tolist() == pytest.approx([math.sin(math.pi / 3), 0.0, 0.0], abs=1e-12)
    assert torch.equal(pred_angles.grad[1], torch.zeros(3, dtype=torch.float64))
    # Every face valid: the mean over both.
    both = pose_loss(pred_angles.detach(), torch.zeros_like(pred_angles))
    second = sum(1.0 - math.cos(a) for a in (2.0, -1.0, 0.5))
    assert both.item() == pytest.approx((2.5 + second) / 2, rel=1e-12)
    # Periodic: 10 deg and 370 deg agree.
    ten = torch.deg2rad(torch.tensor([[10.0, 0.0, 0.0]], dtype=torch.float64))
    assert pose_loss(ten, torch.zeros_like(ten)).item() == pytest.approx(
        pose_loss(ten + 2 * math.pi, torch.zeros_like(ten)).item(), rel=1e-9
    )


def test_pose_loss_without_valid_faces_is_a_connected_zero() -> None:
    pred_angles = torch.rand(3, 3, dtype=torch.float64, requires_grad=True)
    target_angles = torch.full((3, 3), float("nan"), dtype=torch.float64)
    value = pose_loss(pred_angles, target_angles, torch.zeros(3, dtype=torch.bool))
    assert value.item() == 0.0 and value.grad_fn is not None
    value.backward()
    assert pred_angles.grad is not None and torch.equal(pred_angles.grad, torch.zeros_like(pred_angles))


def _point_losses(pose_weight: float) -> list[torch.nn.Module]:
    return [L2Loss(pose_weight), L1Loss(pose_weight), WingLoss(pose_weight=pose_weight)]


def test_zero_pose_weight_is_exactly_the_point_loss() -> None:
    pred, target, pa, ta, classes = _inputs(30)
    mask, pose_valid = _holes(30)
    ta[~pose_valid] = float("nan")
    plain = [l2_loss(pred, target, mask), l1_loss(pred, target, mask), wing_loss(pred, target, mask=mask)]
    for loss, expected in zip(_point_losses(0.0), plain, strict=True):
        assert torch.equal(loss(pred, target, pa, ta, classes, mask, pose_valid), expected), loss
        assert torch.equal(loss(pred, target, mask=mask), expected), loss  # angles not needed


def test_pose_weight_adds_the_weighted_pose_loss() -> None:
    pred, target, pa, ta, classes = _inputs(31)
    mask, pose_valid = _holes(31)
    ta[~pose_valid] = float("nan")
    term = pose_loss(pa, ta, pose_valid)
    assert term.item() > 0
    for plain, weighted in zip(_point_losses(0.0), _point_losses(0.5), strict=True):
        got = weighted(pred, target, pa, ta, classes, mask, pose_valid)
        expected = plain(pred, target, mask=mask) + 0.5 * term
        assert got.item() == pytest.approx(expected.item(), rel=1e-12), weighted
        a = pa.clone().requires_grad_(True)
        weighted(pred, target, a, ta, classes, mask, pose_valid).backward()
        assert a.grad is not None and torch.isfinite(a.grad).all()
        assert torch.equal(a.grad[~pose_valid], torch.zeros_like(a.grad[~pose_valid]))
        assert (a.grad[pose_valid].abs().sum(dim=-1) > 0).all()
        # No valid pose in the batch: the point loss alone, still connected to the angles.
        none = torch.zeros(B, dtype=torch.bool)
        a = pa.clone().requires_grad_(True)
        got = weighted(pred, target, a, ta, classes, mask, none)
        assert got.item() == pytest.approx(plain(pred, target, mask=mask).item(), rel=1e-12)
        got.backward()
        assert a.grad is not None and torch.equal(a.grad, torch.zeros_like(a.grad))


def test_pose_weight_needs_angles_and_is_not_negative() -> None:
    pred, target, *_ = _inputs(32)
    for loss in _point_losses(1.0):
        with pytest.raises(ValueError, match="auxiliary"):
            loss(pred, target)
    for cls in (L1Loss, L2Loss):
        with pytest.raises(ValueError, match="pose_weight"):
            cls(-0.1)
    with pytest.raises(ValueError, match="pose_weight"):
        WingLoss(pose_weight=-1.0)
    with pytest.raises(ValueError, match="pose_valid"):
        L1Loss(1.0)(pred, target, *_inputs(32)[2:4], pose_valid=torch.ones(B))


def test_point_weights_shift_the_loss_between_points_not_its_scale() -> None:
    """A float mask weighs each labelled point (pseudo-labels less than annotations): the per-face sums
    are weighted and rescaled by B * K / (sum of the weights), so weights all 1 are the bool mask."""
    errors = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]], dtype=torch.float64)
    weights = torch.tensor([[1.0, 1.0, 0.5, 0.0], [1.0, 0.5, 1.0, 1.0]])
    # face 0: 1 + 2 + 1.5 = 4.5; face 1: 5 + 3 + 7 + 8 = 23; weights sum to 6 over 8 points
    assert masked_point_sum(errors, weights).tolist() == pytest.approx([4.5 * 8 / 6, 23.0 * 8 / 6], rel=1e-12)
    pred, target, pa, ta, classes = _inputs(25)
    mask, pose_valid = _holes(25)
    for loss in [*_all_losses(), PoseBalanceLoss()]:
        as_bool = loss(pred, target, pa, ta, classes, mask=mask, pose_valid=pose_valid)
        as_ones = loss(pred, target, pa, ta, classes, mask=mask.float(), pose_valid=pose_valid)
        assert torch.equal(as_ones, as_bool), loss


def test_a_pseudo_point_at_weight_w_gets_w_times_the_gradient_and_weight_0_is_unlabelled() -> None:
    pred, target, pa, ta, classes = _inputs(26)
    visible, pose_valid = _holes(26)
    pseudo = torch.zeros_like(visible)
    pseudo[0, :2] = True  # two of face 0's labelled points are a model's
    target[~visible] = float("nan")
    pred[0, 2:4] = pred[0, :2]  # points 2, 3 (annotated) have the residuals of points 0, 1 (pseudo)
    target[0, 2:4] = target[0, :2]
    for loss in (L1Loss(), L2Loss(), PoseBalanceLoss()):
        p = pred.clone().requires_grad_(True)
        weights = point_weights(visible, pseudo, 0.25)
        loss(p, target, pa, ta, classes, mask=weights, pose_valid=pose_valid).backward()
        assert p.grad is not None and torch.isfinite(p.grad).all(), loss
        torch.testing.assert_close(p.grad[0, :2], 0.25 * p.grad[0, 2:4]), loss
        # weight 0: the same loss as leaving the pseudo-labelled points out of the mask
        dropped = loss(pred, target, pa, ta, classes, mask=visible & ~pseudo, pose_valid=pose_valid)
        zero = loss(
            pred, target, pa, ta, classes, mask=point_weights(visible, pseudo, 0.0), pose_valid=pose_valid
        )
        torch.testing.assert_close(zero, dropped)
    assert torch.equal(point_weights(visible, pseudo, 1.0), visible.float())
    assert torch.equal(point_weights(visible, None, 0.5), visible.float())
    with pytest.raises(ValueError, match="pseudo_weight"):
        point_weights(visible, pseudo, -1.0)
    with pytest.raises(ValueError, match="shape"):
        point_weights(visible, pseudo[:, :-1], 0.5)

"""The pose-and-balance loss family, RLE and the binned (Hopenet) pose loss, against brute-force loops."""

from __future__ import annotations

import contextlib
import itertools
import math

import pytest
import torch

from pfld.losses import (
    BALANCES,
    BASE_LOSSES,
    CLASS_NAMES,
    POSE_FACTORS,
    PoseBalanceLoss,
    RealNVP,
    binned_pose_loss,
    effective_number_weights,
    loss_trains_pose_net,
    rle_errors,
)

B, K, C = 6, 4, len(CLASS_NAMES)
FRACTIONS = [0.2, 0.8, 0.1, 0.15, 0.05, 0.0]  # the last class: no training face
N_FACES = 1000


def _classes(g: torch.Generator, b: int = B) -> torch.Tensor:
    member = torch.rand(b, C, generator=g) < 0.4
    member[:, -1] = False
    member[torch.arange(b), torch.randint(0, C - 1, (b,), generator=g)] = True
    return member


def _batch(seed: int = 0, b: int = B) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "pred": torch.rand(b, K, 2, generator=g, dtype=torch.float64),
        "target": torch.rand(b, K, 2, generator=g, dtype=torch.float64),
        "pred_angles": (torch.rand(b, 3, generator=g, dtype=torch.float64) - 0.5) * 2.0,
        "target_angles": (torch.rand(b, 3, generator=g, dtype=torch.float64) - 0.5) * 2.0,
        "classes": _classes(g, b),
        "sigma": torch.rand(b, K, 2, generator=g, dtype=torch.float64) * 0.9 + 0.05,
    }


def _loss(**kwargs) -> PoseBalanceLoss:
    loss = PoseBalanceLoss(coordinate_scale=112.0, **kwargs)
    with (
        pytest.warns(UserWarning, match="occlusion")
        if kwargs.get("balance", "none") != "none"
        else contextlib.nullcontext()
    ):
        loss.set_class_statistics(FRACTIONS, N_FACES)
    return loss.double()


def _call(loss: PoseBalanceLoss, batch: dict[str, torch.Tensor], **overrides) -> torch.Tensor:
    x = dict(batch, **overrides)
    return loss(
        x["pred"],
        x["target"],
        x["pred_angles"],
        x["target_angles"],
        x["classes"],
        mask=x.get("mask"),
        pose_valid=x.get("pose_valid"),
        sigma=x["sigma"],
        angle_logits=x.get("angle_logits"),
    )


def _base_brute(base: str, d: float) -> float:
    a = abs(d)
    if base == "l2":
        return d * d
    if base == "l1":
        return a
    if base == "smooth_l1":
        beta = 1.0 / 112.0
        return 0.5 * a * a / beta if a < beta else a - 0.5 * beta
    if base == "wing":
        x, w, e = a * 112.0, 10.0, 2.0
        return w * math.log1p(x / e) if x < w else x - (w - w * math.log1p(w / e))
    raise AssertionError(base)


def _brute(batch, base, factor, balance, lam=1.0, floor=0.0) -> float:
    b = batch["pred"].shape[0]
    classes = batch["classes"]
    if balance == "reciprocal":
        w_c = [1.0 / f if f > 0 else 0.0 for f in FRACTIONS]
    elif balance == "effective":
        beta = 0.999
        w_c = [(1 - beta) / (1 - beta ** (f * N_FACES)) if f > 0 else 0.0 for f in FRACTIONS]
    else:
        w_c = None
    weights, errors = [], []
    for n in range(b):
        bal = 1.0 if w_c is None else sum(w_c[c] for c in range(C) if classes[n, c])
        t = [float(v) for v in batch["target_angles"][n]]
        p = [float(v) for v in batch["pred_angles"][n]]
        if factor == "none":
            pf = 1.0
        elif factor == "truth":
            pf = 1.0 + lam * sum(1 - math.cos(v) for v in t)
        elif factor == "error":
            pf = floor + sum(1 - math.cos(p[i] - t[i]) for i in range(3))
        else:
            pf = 1.0 + lam * sum(1 - math.cos(p[i] - t[i]) for i in range(3))
        weights.append(bal * pf)
        errors.append(
            sum(
                _base_brute(base, float(batch["pred"][n, k, d] - batch["target"][n, k, d]))
                for k in range(K)
                for d in range(2)
            )
        )
    mean_w = sum(weights) / b
    point = sum(w / mean_w * e for w, e in zip(weights, errors, strict=True)) / b
    pose = (
        sum(
            sum(
                1 - math.cos(float(batch["pred_angles"][n, i] - batch["target_angles"][n, i]))
                for i in range(3)
            )
            for n in range(b)
        )
        / b
    )
    return point + pose


@pytest.mark.parametrize(
    ("base", "factor", "balance"),
    [(b, f, bal) for b in ("l2", "l1", "wing", "smooth_l1") for f in POSE_FACTORS for bal in BALANCES],
)
def test_matches_a_brute_force_loop(base, factor, balance):
    for seed in range(2):
        batch = _batch(seed)
        loss = _loss(
            base=base, pose_factor=factor, balance=balance, pose_lambda=0.7 if factor != "error" else 1.0
        )
        lam = 0.7 if factor != "error" else 1.0
        expected = _brute(batch, base, factor, balance, lam=lam)
        assert float(_call(loss, batch)) == pytest.approx(expected, rel=1e-6)  # float32 class weights


@pytest.mark.parametrize("base", ["l2", "l1", "wing", "smooth_l1"])
@pytest.mark.parametrize("factor", POSE_FACTORS)
def test_zero_at_a_perfect_prediction(base, factor):
    batch = _batch(1)
    perfect = dict(batch, pred=batch["target"].clone(), pred_angles=batch["target_angles"].clone())
    loss = _loss(base=base, pose_factor=factor, balance="effective")
    assert float(_call(loss, perfect)) == 0.0


@pytest.mark.parametrize(
    ("factor", "balance"), list(itertools.product(["error_detached", "truth", "none"], BALANCES))
)
def test_no_face_weighs_zero(factor, balance):
    batch = _batch(2)
    exact = dict(batch, pred_angles=batch["target_angles"].clone())  # where the paper's factor is 0
    loss = _loss(pose_factor=factor, balance=balance)
    weights = loss.face_weights(
        exact["pred_angles"], exact["target_angles"], exact["classes"], None, B, torch.device("cpu")
    )
    assert (weights > 0).all()
    assert float(weights.mean()) == pytest.approx(1.0)  # normalised


def test_paper_error_factor_with_a_floor_keeps_every_face():
    batch = _batch(3)
    exact = dict(batch, pred_angles=batch["target_angles"].clone())
    weights = _loss(pose_factor="error", error_floor=0.1).face_weights(
        exact["pred_angles"], exact["target_angles"], None, None, B, torch.device("cpu")
    )
    assert torch.allclose(weights, torch.ones(B, dtype=weights.dtype))


@pytest.mark.parametrize("factor", ["error", "error_detached", "truth"])
def test_ten_and_370_degrees_alike(factor):
    batch = _batch(4)
    turned = dict(batch, target_angles=batch["target_angles"] + 2 * math.pi)
    loss = _loss(pose_factor=factor)
    assert float(_call(loss, turned)) == pytest.approx(float(_call(loss, batch)), rel=1e-9)


def test_binned_pose_loss_ten_and_370_degrees_alike_and_brute_force():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(B, 3, 66, generator=g, dtype=torch.float64)
    angles = torch.deg2rad(torch.tensor([[10.0, -20.0, 5.0]] * B, dtype=torch.float64))
    a = binned_pose_loss(logits, angles)
    assert float(binned_pose_loss(logits, angles + 2 * math.pi)) == pytest.approx(float(a), rel=1e-9)
    # brute force: bin 10 deg -> floor(10 / 3 + 33) = 36, centres (i + 0.5 - 33) * 3
    total = 0.0
    for n in range(B):
        for i, deg in enumerate((10.0, -20.0, 5.0)):
            row = [float(v) for v in logits[n, i]]
            log_z = math.log(sum(math.exp(v) for v in row))
            index = math.floor(deg / 3.0 + 33)
            p = [math.exp(v - log_z) for v in row]
            expectation = sum(p[j] * (j + 0.5 - 33) * 3.0 for j in range(66))
            total += (log_z - row[index]) + 0.001 * (expectation - deg) ** 2
    assert float(a) == pytest.approx(total / B, rel=1e-6)  # computed in float32


def test_binned_pose_loss_skips_invalid_faces_and_clamps_beyond_the_bins():
    logits = torch.zeros(2, 3, 66, requires_grad=True)
    angles = torch.tensor([[float("nan")] * 3, [math.radians(150.0), 0.0, 0.0]])
    loss = binned_pose_loss(logits, angles, pose_valid=torch.tensor([False, True]))
    loss.backward()
    assert torch.isfinite(loss)
    assert logits.grad is not None and (logits.grad[0] == 0).all()


def test_rle_gradient_finite_at_zero_error_and_flow_starts_near_a_normal():
    flow = RealNVP().double()
    x = torch.randn(50, 2, dtype=torch.float64)
    normal = -0.5 * (x * x).sum(1) - math.log(2 * math.pi)
    assert torch.allclose(flow.log_prob(x).double(), normal, atol=1e-2)
    difference = torch.zeros(2, K, 2, dtype=torch.float64, requires_grad=True)
    sigma = torch.full((2, K, 2), 0.1, dtype=torch.float64, requires_grad=True)
    errors = rle_errors(difference, sigma, flow)
    errors.sum().backward()
    assert torch.isfinite(errors).all()
    assert torch.isfinite(difference.grad).all() and torch.isfinite(sigma.grad).all()
    for p in flow.parameters():
        assert p.grad is None or torch.isfinite(p.grad).all()


def test_rle_brute_force_at_an_identity_flow():
    flow = RealNVP()
    for p in flow.parameters():
        torch.nn.init.zeros_(p)  # every coupling is the identity: log phi = the standard normal's
    difference = torch.tensor([[[0.01, -0.02]]])
    sigma = torch.tensor([[[0.1, 0.05]]])
    ex, ey = 0.01 / 0.1, -0.02 / 0.05
    log_phi = -0.5 * (ex * ex + ey * ey) - math.log(2 * math.pi)
    expected = [math.log(s) - log_phi + math.log(2 * s) + abs(e) for s, e in ((0.1, ex), (0.05, ey))]
    assert rle_errors(difference, sigma, flow).flatten().tolist() == pytest.approx(expected, rel=1e-5)


def test_rle_loss_trains_through_the_model_scale_head():
    loss = _loss(base="rle", pose_factor="truth")
    batch = _batch(5)
    sigma = batch["sigma"].clone().requires_grad_(True)
    value = _call(loss, batch, sigma=sigma)
    value.backward()
    assert torch.isfinite(value) and sigma.grad is not None and torch.isfinite(sigma.grad).all()
    assert loss.model_requirements() == {"uncertainty": True}
    with pytest.raises(ValueError, match="sigma"):
        _call(loss, batch, sigma=None)


@pytest.mark.parametrize("base", BASE_LOSSES)
def test_masked_points_get_no_gradient_and_nan_targets_are_harmless(base):
    batch = _batch(6)
    mask = torch.ones(B, K, dtype=torch.bool)
    mask[0, :2] = False
    target = batch["target"].clone()
    target[~mask] = float("nan")
    pred = batch["pred"].clone().requires_grad_(True)
    value = _call(_loss(base=base, pose_factor="truth"), batch, pred=pred, target=target, mask=mask)
    value.backward()
    assert torch.isfinite(value)
    assert (pred.grad[~mask] == 0).all()


def test_invalid_poses_take_the_mean_factor_and_nan_angles_are_an_error():
    batch = _batch(7)
    valid = torch.tensor([True, True, False, True, True, False])
    angles = batch["target_angles"].clone()
    angles[~valid] = float("nan")
    loss = _loss(pose_factor="truth", normalize=False)
    weights = loss.face_weights(None, angles, None, valid, B, torch.device("cpu"))
    truth = 1.0 + (1.0 - torch.cos(batch["target_angles"][valid])).sum(1)
    assert torch.allclose(weights[~valid], truth.mean().expand(2))
    assert torch.isfinite(_call(loss, batch, target_angles=angles, pose_valid=valid))
    with pytest.raises(ValueError, match="marked pose_valid"):
        _call(loss, batch, target_angles=angles, pose_valid=torch.ones(B, dtype=torch.bool))


def test_no_valid_pose_in_the_batch_gives_factor_one():
    batch = _batch(8)
    invalid = torch.zeros(B, dtype=torch.bool)
    loss = _loss(pose_factor="error_detached", normalize=False)
    weights = loss.face_weights(
        batch["pred_angles"], batch["target_angles"], None, invalid, B, torch.device("cpu")
    )
    assert torch.equal(weights, torch.ones(B, dtype=weights.dtype))


def test_a_face_without_a_class_is_an_error_and_statistics_are_required():
    batch = _batch(9)
    orphan = batch["classes"].clone()
    orphan[0] = False
    with pytest.raises(ValueError, match="belong to no class"):
        _call(_loss(balance="effective"), batch, classes=orphan)
    unset = PoseBalanceLoss(balance="reciprocal").double()
    with pytest.raises(RuntimeError, match="set_class_statistics"):
        _call(unset, batch)


def test_a_class_without_training_faces_warns_naming_it():
    loss = PoseBalanceLoss(balance="reciprocal")
    with pytest.warns(UserWarning, match="occlusion have no face"):
        loss.set_class_statistics(FRACTIONS, N_FACES)


def test_batch_balance_uses_the_batch_counts():
    batch = _batch(10)
    loss = PoseBalanceLoss(balance="effective", balance_from="batch", pose_factor="none", normalize=False)
    member = batch["classes"].double()
    expected = member @ effective_number_weights(member.sum(0), 0.999).double()  # float32 inside
    got = loss.balance_weights(batch["classes"], B, torch.device("cpu"))
    assert torch.allclose(got.double(), expected, rtol=1e-6)


def test_statistics_survive_a_checkpoint():
    loss = _loss(balance="effective")
    restored = PoseBalanceLoss(balance="effective")
    restored.load_state_dict(loss.state_dict())
    assert restored.num_faces is not None and float(restored.num_faces) == N_FACES
    assert torch.allclose(restored.class_fractions.double(), torch.tensor(FRACTIONS, dtype=torch.float64))


def test_bad_settings_name_the_setting():
    for kwargs, name in (
        ({"base": "l3"}, "loss.base"),
        ({"pose_factor": "pred"}, "loss.pose_factor"),
        ({"balance": "focal"}, "loss.balance"),
        ({"beta": 1.0}, "loss.beta"),
        ({"pose_weight": -1.0}, "loss.pose_weight"),
    ):
        with pytest.raises(ValueError, match=name):
            PoseBalanceLoss(**kwargs)


def test_which_losses_train_the_pose_net():
    assert loss_trains_pose_net({"_target_": "pfld.losses.PFLDLoss"})
    assert loss_trains_pose_net({"_target_": "pfld.losses.L1Loss", "pose_weight": 1.0})
    assert not loss_trains_pose_net({"_target_": "pfld.losses.L1Loss", "pose_weight": 0.0})
    family = "pfld.losses.PoseBalanceLoss"
    assert loss_trains_pose_net({"_target_": family, "pose_factor": "error", "pose_weight": 0.0})
    assert not loss_trains_pose_net({"_target_": family, "pose_factor": "truth", "pose_weight": 0.0})
    assert loss_trains_pose_net({"_target_": family})  # pose_weight 1 by default

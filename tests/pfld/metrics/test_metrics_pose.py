"""Tests of the head-pose error (pfld.metrics.pose_errors, PoseErrorMetric) on hand-computed examples."""

from __future__ import annotations

import math

import pytest
import torch

from pfld.metrics import PoseErrorMetric, pose_errors


def _radians(*degrees: list[float]) -> torch.Tensor:
    """Rows of (yaw, pitch, roll) in degrees -> (N, 3) float64 radians."""
    return torch.deg2rad(torch.tensor(degrees, dtype=torch.float64))


def test_pose_errors_wrap_around_by_hand() -> None:
    pred = _radians([179.0, 10.0, 0.0], [90.0, -170.0, 30.0])
    target = _radians([-179.0, 0.0, 90.0], [-90.0, 170.0, 30.0])
    got = pose_errors(pred, target)
    # 179 - (-179) = 358 -> -2; 90 - (-90) = 180 -> -180 (the range is [-180, 180)); -170 - 170 = -340 -> 20.
    assert got.tolist()[0] == pytest.approx([-2.0, 10.0, -90.0], abs=1e-9)
    assert got.tolist()[1] == pytest.approx([-180.0, 20.0, 0.0], abs=1e-9)
    assert got.dtype == torch.float64
    # Whole turns do not matter.
    torch.testing.assert_close(pose_errors(pred + 2 * math.pi, target - 4 * math.pi), got)


def test_pose_errors_rejects_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        pose_errors(torch.zeros(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="differ"):
        pose_errors(torch.zeros(2, 3), torch.zeros(3, 3))


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_pose_metric_by_hand_over_batches_and_valid_faces() -> None:
    metric = PoseErrorMetric()
    nan = float("nan")
    # Batch 1: face 0 valid, errors (2, 10, 90) deg; face 1 invalid, target NaN (never read).
    metric.update(
        _radians([179.0, 10.0, 0.0], [5.0, 5.0, 5.0]).float(),
        _radians([-179.0, 0.0, 90.0], [nan, nan, nan]).float(),
        torch.tensor([True, False]),
    )
    # Batch 2: one valid face, errors (4, 20, 0) deg (wrapped pitch: -170 - 170 -> 20).
    metric.update(_radians([4.0, -170.0, 30.0]), _radians([0.0, 170.0, 30.0]), torch.tensor([True]))
    got = metric.compute()
    assert got["faces"].item() == 2
    assert got["yaw_mae"].item() == pytest.approx(3.0, abs=1e-4)
    assert got["pitch_mae"].item() == pytest.approx(15.0, abs=1e-4)
    assert got["roll_mae"].item() == pytest.approx(45.0, abs=1e-4)
    assert got["pose_mae"].item() == pytest.approx(21.0, abs=1e-4)
    metric.reset()
    metric.update(_radians([1.0, 2.0, 3.0]), _radians([0.0, 0.0, 0.0]))  # pose_valid None: all valid
    assert metric.compute()["pose_mae"].item() == pytest.approx(2.0, abs=1e-9)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_pose_metric_without_valid_faces_gives_nan() -> None:
    metric = PoseErrorMetric()
    metric.update(_radians([1.0, 2.0, 3.0]), _radians([0.0, 0.0, 0.0]), torch.tensor([False]))
    got = metric.compute()
    assert got["faces"].item() == 0
    assert all(math.isnan(got[key].item()) for key in ("yaw_mae", "pitch_mae", "roll_mae", "pose_mae"))


def test_pose_metric_rejects_a_bad_pose_valid() -> None:
    metric = PoseErrorMetric()
    with pytest.raises(ValueError, match="pose_valid"):
        metric.update(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match="pose_valid"):
        metric.update(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3, dtype=torch.bool))


def test_pose_metric_sums_its_state_across_processes() -> None:
    # Two "processes" holding different faces: sums and counts are added before compute.
    metric = PoseErrorMetric(
        dist_sync_fn=lambda tensor, group=None: [tensor, 3 * tensor],
        distributed_available_fn=lambda: True,
    )
    metric.update(_radians([2.0, 4.0, 6.0]), _radians([0.0, 0.0, 0.0]))
    got = metric.compute()
    # The other "process" has 3 faces with the same errors: still a mean of 2, 4, 6 over 4 faces.
    assert got["faces"].item() == 4
    assert [got[f"{a}_mae"].item() for a in ("yaw", "pitch", "roll")] == pytest.approx([2.0, 4.0, 6.0])


def test_pose_metric_update_does_not_write_into_its_state() -> None:
    # Under ddp_spawn on CPU the states arrive in memory shared by the processes: an in-place update
    # would add every process's faces into one tensor.
    metric = PoseErrorMetric()
    before_sum, before_count = metric.abs_error_sum, metric.count
    metric.update(_radians([1.0, 2.0, 3.0]), _radians([0.0, 0.0, 0.0]))
    assert before_count.item() == 0 and torch.equal(before_sum, torch.zeros(3, dtype=torch.float64))
    assert metric.count.item() == 1

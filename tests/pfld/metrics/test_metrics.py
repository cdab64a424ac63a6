"""Tests of pfld.metrics on hand-computed examples."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pfld.evaluation.figures import plot_ced
from pfld.metrics import (
    NMEMetric,
    auc,
    ced_curve,
    failure_rate,
    nme,
    normalized_residuals,
    normalizing_distance,
    paired_difference,
    resolve_normalization,
    scored_nmes,
)


def _faces(n: int, k: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, k, 2, generator=g)
    pred = target + 0.02 * torch.randn(n, k, 2, generator=g)
    return pred, target


def test_nme_by_hand() -> None:
    # Normalising points 0 and 1 are 2 apart; errors 0, 1 (dx) and 5 (3-4-5) -> mean 2 -> NME 1.
    target = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [1.0, 1.0]]])
    pred = torch.tensor([[[0.0, 0.0], [3.0, 0.0], [4.0, 5.0]]])
    assert nme(pred, target, (0, 1)).tolist() == pytest.approx([1.0])
    # Normalising by points 0 and 2 instead: distance sqrt(2).
    assert nme(pred, target, (0, 2)).item() == pytest.approx(2.0 / math.sqrt(2.0))


def test_nme_zero_for_identical_and_scale_invariant() -> None:
    pred, target = _faces(5)
    assert torch.equal(nme(target, target, (0, 3)), torch.zeros(5))
    assert torch.allclose(nme(pred * 112.0, target * 112.0, (0, 3)), nme(pred, target, (0, 3)), rtol=1e-5)


def test_nme_rejects_zero_distance_and_bad_input() -> None:
    pred, target = _faces(4)
    target[2, 1] = target[2, 0]
    with pytest.raises(ValueError, match=r"samples \[2\]"):
        nme(pred, target, (0, 1))
    with pytest.raises(ValueError):
        nme(pred, target, (0, 6))
    with pytest.raises(ValueError):
        nme(pred[:, :-1], target, (0, 2))


def test_failure_rate_and_auc_extremes() -> None:
    zeros = torch.zeros(10)
    assert failure_rate(zeros) == 0.0
    assert auc(zeros) == pytest.approx(1.0, abs=1e-3)
    high = torch.full((10,), 0.2)
    assert failure_rate(high) == 1.0
    assert auc(high) == 0.0


def test_failure_rate_and_auc_by_hand() -> None:
    nmes = torch.tensor([0.02, 0.05, 0.2])
    assert failure_rate(nmes) == pytest.approx(1 / 3)
    # CED is 0 up to 0.02, 1/3 up to 0.05, 2/3 up to 0.1.
    expected = (1 / 3 * 0.03 + 2 / 3 * 0.05) / 0.1
    assert auc(nmes) == pytest.approx(expected, abs=1e-3)
    # A uniform spread over [0, 0.1] gives a straight CED and AUC 1/2.
    assert auc(torch.linspace(0.0, 0.1, 2001)) == pytest.approx(0.5, abs=2e-3)


def test_ced_curve_shape_and_values() -> None:
    x, y = ced_curve(torch.tensor([0.0, 0.05, 0.5]), threshold=0.1, steps=11)
    assert x[0] == 0.0 and x[-1] == pytest.approx(0.1)
    assert y.tolist() == pytest.approx([1 / 3] * 5 + [2 / 3] * 6)
    # The CED at the threshold agrees with the failure rate, even for a face exactly at it.
    nmes = torch.tensor([0.1, 0.1, 0.3, 0.02])
    assert failure_rate(nmes) == 0.25
    assert ced_curve(nmes)[1][-1].item() == 0.75


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_metric_accumulates_like_nme_on_concatenation() -> None:
    p1, t1 = _faces(7, seed=1)
    p2, t2 = _faces(5, seed=2)
    metric = NMEMetric(normalization=(0, 3), failure_threshold=0.05)
    metric.update(p1, t1)
    metric.update(p2, t2)
    got = metric.compute()
    all_nmes = nme(torch.cat([p1, p2]), torch.cat([t1, t2]), (0, 3))
    assert set(got) == {"nme", "failure_rate", "auc", "unscored"}
    assert got["unscored"].item() == 0
    assert got["nme"].item() == pytest.approx(all_nmes.mean().item(), rel=1e-6)
    assert got["failure_rate"].item() == pytest.approx(failure_rate(all_nmes, 0.05))
    assert got["auc"].item() == pytest.approx(auc(all_nmes, 0.05), rel=1e-6)
    metric.reset()
    with pytest.raises(RuntimeError, match="update"):
        metric.compute()


def test_plot_ced_writes_png(tmp_path: Path) -> None:
    nmes_a = nme(*_faces(20, seed=3), (0, 3))
    nmes_b = nmes_a * 1.5
    path = tmp_path / "plots" / "ced.png"
    fig = plot_ced({"a": nmes_a, "b": nmes_b}, path=path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("a: NME") and "AUC" in labels[1]


# --- Partially labelled faces ----------------------------------------------------------------------------


def _holey_face() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """K = 4; eyes are points 0 and 1, 2 apart; point 3 unlabelled (target NaN, huge prediction)."""
    target = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [1.0, 1.0], [float("nan"), 0.0]]])
    pred = torch.tensor([[[0.0, 0.0], [3.0, 0.0], [4.0, 5.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, True, False]])
    return pred, target, mask


def test_nme_with_a_hole_by_hand() -> None:
    # Errors 0, 1, 5 at the labelled points -> mean 2; distance 2 -> NME 1. Point 3 is not read.
    pred, target, mask = _holey_face()
    assert nme(pred, target, (0, 1), mask).tolist() == pytest.approx([1.0])
    assert nme(pred, target, (0, 2), mask).item() == pytest.approx(2.0 / math.sqrt(2.0))


def test_nme_full_mask_equals_no_mask() -> None:
    pred, target = _faces(5)
    full = torch.ones(5, 6, dtype=torch.bool)
    assert torch.equal(nme(pred, target, (0, 3), full), nme(pred, target, (0, 3)))


@pytest.mark.parametrize("normalization", [(0, 1), "box"])
def test_normalized_residuals_are_signed_and_average_to_the_nme(normalization) -> None:
    pred, target = _faces(4)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 4] = False  # a hole: NaN there
    mask[2, 0] = False  # an eye point missing: the face is unscored (pair mode), NaN everywhere
    target[1, 4] = target[2, 0] = float("nan")
    residuals = normalized_residuals(pred, target, normalization, mask)
    assert residuals.shape == (4, 6, 2)
    faces = nme(pred, target, normalization, mask)
    lengths = torch.linalg.vector_norm(residuals, dim=-1).nanmean(dim=1)
    scored = ~faces.isnan()
    assert torch.allclose(lengths[scored], faces[scored])
    assert residuals[1, 4].isnan().all() and not residuals[1, 3].isnan().any()
    assert residuals[2].isnan().all() == (normalization != "box")
    # signed: a face moved by +d in x has residual +d / distance at every point
    shifted = normalized_residuals(target[:1] + torch.tensor([0.1, 0.0]), target[:1], (0, 1))
    distance = torch.linalg.vector_norm(target[0, 0] - target[0, 1])
    assert torch.allclose(shifted[0], torch.tensor([0.1, 0.0]) / distance)


def test_nme_is_nan_when_an_eye_point_is_missing() -> None:
    pred, target, mask = _holey_face()
    pred, target, mask = pred.repeat(3, 1, 1), target.repeat(3, 1, 1), mask.repeat(3, 1)
    mask[1, 0] = False  # left eye missing
    target[1, 0] = float("nan")
    mask[2, 1] = False  # right eye missing
    got = nme(pred, target, (0, 1), mask)
    assert got[0].item() == pytest.approx(1.0)
    assert torch.isnan(got[1:]).all()
    assert scored_nmes(got).tolist() == pytest.approx([1.0])


def test_nme_zero_distance_only_checked_for_scored_faces() -> None:
    pred, target = _faces(3)
    mask = torch.ones(3, 6, dtype=torch.bool)
    target[1, 1] = target[1, 0]
    mask[1, 1] = False  # unscored: its (garbage) eye distance does not matter
    assert torch.isnan(nme(pred, target, (0, 1), mask)).tolist() == [False, True, False]
    mask[1, 1] = True
    with pytest.raises(ValueError, match=r"samples \[1\]"):
        nme(pred, target, (0, 1), mask)
    with pytest.raises(ValueError, match="mask"):
        nme(pred, target, (0, 1), mask.float())
    with pytest.raises(ValueError, match="mask"):
        nme(pred, target, (0, 1), mask[:, :-1])


def test_pure_curve_functions_reject_unscored_faces() -> None:
    nmes = torch.tensor([0.02, float("nan"), 0.2])
    for fn in (failure_rate, auc, ced_curve):
        with pytest.raises(ValueError, match="scored_nmes"):
            fn(nmes)
    assert failure_rate(scored_nmes(nmes)) == pytest.approx(0.5)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_metric_excludes_and_counts_unscored_faces() -> None:
    p1, t1 = _faces(4, seed=4)
    p2, t2 = _faces(3, seed=5)
    m1 = torch.ones(4, 6, dtype=torch.bool)
    m2 = torch.ones(3, 6, dtype=torch.bool)
    m1[1, 3] = m2[2, 0] = False  # eye points (0, 3) missing: unscored
    m1[2, 5] = False  # another point missing: scored on the rest
    t1[1, 3] = t2[2, 0] = t1[2, 5] = float("nan")
    metric = NMEMetric(normalization=(0, 3), failure_threshold=0.05)
    metric.update(p1, t1, m1)
    metric.update(p2, t2, m2)
    per_face = metric.per_face()
    assert per_face.shape == (7,)
    assert torch.isnan(per_face).nonzero().flatten().tolist() == [1, 6]  # aligned with the inputs
    expected = scored_nmes(nme(torch.cat([p1, p2]), torch.cat([t1, t2]), (0, 3), torch.cat([m1, m2])))
    assert expected.numel() == 5
    got = metric.compute()
    assert got["unscored"].item() == 2 and got["unscored"].dtype == torch.int64
    assert got["nme"].item() == pytest.approx(expected.mean().item(), rel=1e-6)
    assert got["failure_rate"].item() == pytest.approx(failure_rate(expected, 0.05))
    assert got["auc"].item() == pytest.approx(auc(expected, 0.05), rel=1e-6)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_metric_with_no_scored_face_gives_nan() -> None:
    pred, target = _faces(3)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[:, 0] = False
    metric = NMEMetric(normalization=(0, 3))
    metric.update(pred, target, mask)
    got = metric.compute()
    assert got["unscored"].item() == 3
    assert all(torch.isnan(got[key]) for key in ("nme", "failure_rate", "auc"))


def test_metric_syncs_unscored_faces_across_processes() -> None:
    # Two "processes" holding the same faces: the state is gathered before compute, NaNs included.
    pred, target = _faces(4, seed=6)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[0, 0] = False
    metric = NMEMetric(
        normalization=(0, 3),
        dist_sync_fn=lambda tensor, group=None: [tensor, tensor],
        distributed_available_fn=lambda: True,
    )
    metric.update(pred, target, mask)
    got = metric.compute()
    scored = scored_nmes(nme(pred, target, (0, 3), mask))
    assert got["unscored"].item() == 2
    assert got["nme"].item() == pytest.approx(scored.mean().item(), rel=1e-6)


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_metric_reports_each_groups_nme_over_its_scored_faces() -> None:
    p1, t1 = _faces(4, seed=7)
    p2, t2 = _faces(3, seed=8)
    mask = torch.ones(7, 6, dtype=torch.bool)
    mask[2, 0] = False  # unscored: counted in no group
    g1 = torch.tensor(
        [[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float32
    )  # float 0/1, as batches
    g2 = torch.tensor([[0, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=torch.float32)
    metric = NMEMetric(normalization=(0, 3))
    metric.update(p1, t1, mask[:4], groups=g1)
    metric.update(p2, t2, mask[4:], groups=g2)
    got = metric.compute()["group_nme"]
    per_face = nme(torch.cat([p1, p2]), torch.cat([t1, t2]), (0, 3), mask)
    assert got.shape == (3,)
    assert got[0].item() == pytest.approx(per_face[[0, 1, 5]].mean().item(), rel=1e-6)  # face 2 unscored
    assert got[1].item() == pytest.approx(per_face[[1, 3, 4, 6]].mean().item(), rel=1e-6)
    assert torch.isnan(got[2])  # a group without a face


def test_paired_difference_by_hand_over_the_faces_both_scored() -> None:
    a = torch.tensor([0.05, 0.04, float("nan"), 0.10, 0.06])
    b = torch.tensor([0.04, 0.05, 0.03, 0.07, float("nan")])  # faces 2 and 4: one model could not score them
    got = paired_difference(a, b)
    d = [-0.01, 0.01, -0.03]
    mean = sum(d) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / 2)
    assert got["faces"] == 3 and got["mean"] == pytest.approx(mean, abs=1e-9)
    assert got["se"] == pytest.approx(sd / math.sqrt(3), rel=1e-6)
    assert got["b_better"] == pytest.approx(2 / 3)
    assert math.isnan(paired_difference(a[:1], b[:1])["se"])  # one face: no spread
    with pytest.raises(ValueError, match="same faces"):
        paired_difference(a, b[:4])
    with pytest.raises(ValueError, match="no face is scored by both"):
        paired_difference(a[2:3], b[4:5])


def test_metric_without_groups_reports_none_and_refuses_a_mix() -> None:
    pred, target = _faces(3, seed=9)
    metric = NMEMetric(normalization=(0, 3))
    metric.update(pred, target)
    assert "group_nme" not in metric.compute()
    with pytest.raises(ValueError, match="some batches and not others"):
        metric.update(pred, target, groups=torch.ones(3, 2))
    grouped = NMEMetric(normalization=(0, 3))
    grouped.update(pred, target, groups=torch.ones(3, 2))
    with pytest.raises(ValueError, match="some batches and not others"):
        grouped.update(pred, target)
    with pytest.raises(ValueError, match=r"\(B, G\) for 3 faces"):
        grouped.update(pred, target, groups=torch.ones(2, 2))


def test_metric_syncs_groups_across_processes() -> None:
    # Two "processes" with different faces: each group's mean is over both, memberships kept aligned.
    p1, t1 = _faces(2, seed=10)
    p2, t2 = _faces(2, seed=11)
    states = {}

    def gather(tensor, group=None):  # the other process holds the second pair of faces
        other = states[tensor.shape[-1] if tensor.ndim == 2 else 0]
        return [tensor, other]

    second = NMEMetric(normalization=(0, 3))
    second.update(p2, t2, groups=torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    states[0] = second.nmes[0]
    states[2] = second.groups[0]
    metric = NMEMetric(normalization=(0, 3), dist_sync_fn=gather, distributed_available_fn=lambda: True)
    metric.update(p1, t1, groups=torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    got = metric.compute()["group_nme"]
    per_face = nme(torch.cat([p1, p2]), torch.cat([t1, t2]), (0, 3))
    assert got[0].item() == pytest.approx(per_face[[0, 1, 2]].mean().item(), rel=1e-6)
    assert got[1].item() == pytest.approx(per_face[3].item(), rel=1e-6)


# --- Normalisation modes ---------------------------------------------------------------------------------


def _box_face() -> tuple[torch.Tensor, torch.Tensor]:
    """K = 4: a box 4 wide and 9 high (area 36, so 6); eyes 0 and 1 are 4 apart; points 2 and 3 are
    sqrt(65) apart. Point errors 0, 3, 0 and 5 (3-4-5): mean 2."""
    target = torch.tensor([[[0.0, 0.0], [4.0, 0.0], [2.0, 9.0], [1.0, 1.0]]])
    pred = torch.tensor([[[0.0, 0.0], [4.0, 3.0], [2.0, 9.0], [4.0, 5.0]]])
    return pred, target


def test_normalizing_distance_by_hand() -> None:
    _, target = _box_face()
    assert normalizing_distance(target, "inter_ocular", (0, 1)).tolist() == pytest.approx([4.0])
    assert normalizing_distance(target, "inter_pupil", (2, 3)).tolist() == pytest.approx([math.sqrt(65.0)])
    assert normalizing_distance(target, "box").tolist() == pytest.approx([6.0])
    # Unlabelled points are not in the box (nor read): without point 2 the box is 4 x 1.
    holey = target.clone()
    holey[0, 2] = float("nan")
    mask = torch.tensor([[True, True, False, True]])
    assert normalizing_distance(holey, "box", mask=mask).tolist() == pytest.approx([2.0])
    assert torch.isnan(normalizing_distance(holey, "inter_pupil", (2, 3), mask)).all()


def test_nme_modes_by_hand() -> None:
    pred, target = _box_face()
    assert nme(pred, target, (0, 1)).tolist() == pytest.approx([2.0 / 4.0])
    assert nme(pred, target, (2, 3)).tolist() == pytest.approx([2.0 / math.sqrt(65.0)])
    assert nme(pred, target, "box").tolist() == pytest.approx([2.0 / 6.0])
    # Point 2 unlabelled: errors 0, 3, 5 -> mean 8/3; box 4 x 1 -> 2.
    mask = torch.tensor([[True, True, False, True]])
    assert nme(pred, target, "box", mask).tolist() == pytest.approx([4.0 / 3.0])


def test_box_nme_is_scale_and_translation_free() -> None:
    pred, target = _faces(5)
    base = nme(pred, target, "box")
    moved = nme(pred * 112.0 + 3.0, target * 112.0 + 3.0, "box")
    assert torch.allclose(moved, base, rtol=1e-5)


def test_box_unscored_and_flat_faces() -> None:
    pred, target = _faces(3, k=4)
    mask = torch.ones(3, 4, dtype=torch.bool)
    mask[1, 1:] = False  # a single labelled point: no box
    target[1, 1:] = float("nan")
    got = nme(pred, target, "box", mask)
    assert torch.isnan(got).tolist() == [False, True, False]
    target[2, :, 1] = 0.5  # every point on one horizontal line: zero area
    with pytest.raises(ValueError, match=r"box area in samples \[2\]"):
        nme(pred, target, "box", mask)


def test_normalizing_distance_rejects_bad_arguments() -> None:
    _, target = _box_face()
    with pytest.raises(ValueError, match="mode"):
        normalizing_distance(target, "eyes", (0, 1))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no point indices"):
        normalizing_distance(target, "box", (0, 1))
    with pytest.raises(ValueError, match="pair"):
        normalizing_distance(target, "inter_pupil")
    with pytest.raises(ValueError, match="distinct"):
        normalizing_distance(target, "inter_ocular", (1, 1))
    with pytest.raises(ValueError, match="pair of point indices or 'box'"):
        nme(target, target, "inter_ocular")  # type: ignore[arg-type]


def test_resolve_normalization() -> None:
    assert resolve_normalization("inter_ocular", [36, 45]) == (36, 45)
    assert resolve_normalization("inter_pupil", (96, 97)) == (96, 97)
    assert resolve_normalization("box", [36, 45]) == "box"
    assert resolve_normalization("box", None) == "box"
    with pytest.raises(ValueError, match="pair"):
        resolve_normalization("inter_pupil", None)
    with pytest.raises(ValueError, match="mode"):
        resolve_normalization("bbox", [0, 1])


@pytest.mark.filterwarnings("ignore:The ``compute`` method")
def test_metric_with_box_normalization() -> None:
    p1, t1 = _faces(6, seed=7)
    p2, t2 = _faces(4, seed=8)
    metric = NMEMetric("box", failure_threshold=0.05)
    assert metric.normalization == "box"
    metric.update(p1, t1)
    metric.update(p2, t2)
    expected = nme(torch.cat([p1, p2]), torch.cat([t1, t2]), "box")
    torch.testing.assert_close(metric.per_face(), expected)
    assert metric.compute()["nme"].item() == pytest.approx(expected.mean().item(), rel=1e-6)
    assert not torch.allclose(expected, nme(torch.cat([p1, p2]), torch.cat([t1, t2]), (0, 3)))
    with pytest.raises(ValueError, match="'box'"):
        NMEMetric("inter_ocular")  # type: ignore[arg-type]

"""Tests of pfld.metrics on hand-computed examples."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from pfld.metrics import NMEMetric, auc, ced_curve, failure_rate, nme, plot_ced


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
    assert set(got) == {"nme", "failure_rate", "auc"}
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

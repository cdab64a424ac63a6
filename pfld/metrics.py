"""Landmark metrics: per-face NME, failure rate, CED curve and AUC, and a torchmetrics wrapper.

Landmarks are ``(N, K, 2)``, x then y, in any one unit shared by prediction and target (the NME is
scale-free). NMEs are fractions of the normalising distance (0.05 = 5 % of the inter-ocular distance).

Partially labelled faces: ``mask`` is ``(N, K)`` bool, True where a point is labelled. `nme` averages
over the labelled points and gives NaN for a face whose two normalising points are not both labelled
("unscored": it cannot be scored in inter-ocular terms). NaN policy: `failure_rate`, `ced_curve`, `auc`
and `plot_ced` take finite NMEs only and raise otherwise, so that an unscored face is never silently
counted; drop unscored faces first with `scored_nmes`. `NMEMetric` does this itself and reports how many
faces it dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def nme(pred: Tensor, target: Tensor, normalization: tuple[int, int], mask: Tensor | None = None) -> Tensor:
    """Normalised mean error of each face.

    Args:
        pred, target: (N, K, 2) landmarks.
        normalization: indices (i, j) of the target points whose distance normalises the error, e.g.
            the outer eye corners (36, 45) for 300W or (60, 72) for WFLW.
        mask: (N, K) bool, True where the target point is labelled; None means every point is. Target
            values at unlabelled points are never read (NaN is fine there).

    Returns:
        (N,) mean over labelled points of the Euclidean point error, divided by
        ``||target[i] - target[j]||``; NaN for a face where point i or j is unlabelled.

    Raises:
        ValueError: shapes disagree, an index is out of range, the mask is not (N, K) bool, or a scored
            face has zero normalising distance.
    """
    if pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred must be (N, K, 2), got {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    k = pred.shape[1]
    i, j = normalization
    if not (0 <= i < k and 0 <= j < k) or i == j:
        raise ValueError(f"normalization {normalization} must be two distinct indices in 0..{k - 1}")
    if mask is None:
        mask = torch.ones(pred.shape[:2], dtype=torch.bool, device=pred.device)
    elif mask.dtype != torch.bool or mask.shape != pred.shape[:2]:
        raise ValueError(
            f"mask must be a bool tensor of shape {tuple(pred.shape[:2])}, got {mask.dtype} "
            f"{tuple(mask.shape)}"
        )
    mask = mask.to(pred.device)
    scored = mask[:, i] & mask[:, j]  # (N,)
    difference = torch.where(mask.unsqueeze(-1), pred - target, torch.zeros_like(pred))  # (N, K, 2)
    point_error = torch.linalg.vector_norm(difference, dim=-1)  # (N, K), 0 at unlabelled points
    eyes = torch.where(scored.unsqueeze(-1), target[:, i] - target[:, j], torch.ones_like(target[:, i]))
    norm = torch.linalg.vector_norm(eyes, dim=-1)  # (N,)
    bad = (scored & (norm <= 0)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"zero normalising distance between points {i} and {j} in samples {bad}")
    labelled = mask.sum(dim=1).clamp(min=1).to(point_error.dtype)  # >= 2 where scored
    errors = point_error.sum(dim=1) / labelled / norm
    return torch.where(scored, errors, torch.full_like(errors, float("nan")))


def scored_nmes(nmes: Tensor) -> Tensor:
    """The NMEs of the scored faces: (N,) -> (M,), dropping the NaNs `nme` gives unscored faces."""
    nmes = torch.as_tensor(nmes)
    return nmes[~torch.isnan(nmes)]


def _check_nmes(nmes: Tensor, threshold: float) -> Tensor:
    nmes = torch.as_tensor(nmes)
    if not nmes.is_floating_point():
        nmes = nmes.to(torch.get_default_dtype())
    if nmes.ndim != 1 or nmes.numel() == 0:
        raise ValueError(f"nmes must be a non-empty (N,) tensor, got shape {tuple(nmes.shape)}")
    if not torch.isfinite(nmes).all():
        raise ValueError(
            "nmes contain NaN or infinity: drop unscored faces (NaN from nme) first with scored_nmes(nmes)"
        )
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    return nmes


def failure_rate(nmes: Tensor, threshold: float = 0.10) -> float:
    """Fraction of faces whose NME exceeds ``threshold``; nmes: (N,) finite (see `scored_nmes`)."""
    nmes = _check_nmes(nmes, threshold)
    return (nmes > threshold).double().mean().item()


def ced_curve(nmes: Tensor, threshold: float = 0.10, steps: int = 1000) -> tuple[Tensor, Tensor]:
    """Cumulative error distribution.

    Args:
        nmes: (N,) per-face NMEs, finite (drop unscored faces with `scored_nmes`).
        threshold: right end of the curve.
        steps: number of sample points, >= 2.

    Returns:
        x: (steps,) evenly spaced in [0, threshold]; y: (steps,) fraction of faces with NME <= x.
        Both float64, on the device of ``nmes``.
    """
    nmes = _check_nmes(nmes, threshold)
    if steps < 2:
        raise ValueError(f"steps must be >= 2, got {steps}")
    sorted_nmes = nmes.detach().sort().values
    x = torch.linspace(0.0, threshold, steps, dtype=torch.float64, device=nmes.device)
    # Compare in the NMEs' own precision, so that y[-1] == 1 - failure_rate(nmes, threshold) exactly.
    y = torch.searchsorted(sorted_nmes, x.to(nmes.dtype), right=True).double() / nmes.numel()
    return x, y


def auc(nmes: Tensor, threshold: float = 0.10, steps: int = 1000) -> float:
    """Area under the CED curve up to ``threshold``, divided by it (AUC@threshold, in [0, 1]).

    Uses the trapezoid rule on `ced_curve`, so the result is within about ``1 / steps`` of the exact area.
    ``nmes``: (N,) finite (see `scored_nmes`).
    """
    x, y = ced_curve(nmes, threshold, steps)
    return (torch.trapezoid(y, x) / threshold).item()


class NMEMetric(Metric):
    """Accumulates per-face NMEs across batches (and processes) and reports NME, failure rate and AUC.

    Args:
        normalization: indices of the two normalising points, see `nme`.
        failure_threshold: NME above which a face counts as a failure; also the AUC's upper limit.
        **kwargs: passed to ``torchmetrics.Metric``.

    ``compute()`` returns ``{"nme": mean NME, "failure_rate": ..., "auc": ..., "unscored": count}`` as
    scalar tensors. The first three are over the scored faces only; "unscored" (int64) counts the faces
    whose normalising points were not both labelled (NaN in `per_face`). If no face could be scored,
    the first three are NaN. All are over every process: the state is synchronised before ``compute``.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    nmes: list[Tensor] | Tensor

    def __init__(
        self, normalization: tuple[int, int], failure_threshold: float = 0.10, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        i, j = normalization
        if i == j or i < 0 or j < 0:
            raise ValueError(f"normalization must be two distinct non-negative indices, got {normalization}")
        if not failure_threshold > 0:
            raise ValueError(f"failure_threshold must be > 0, got {failure_threshold}")
        self.normalization = (int(i), int(j))
        self.failure_threshold = float(failure_threshold)
        self.add_state("nmes", default=[], dist_reduce_fx="cat")

    def update(self, pred: Tensor, target: Tensor, mask: Tensor | None = None) -> None:
        """Add a batch of (B, K, 2) predictions and targets, with (B, K) bool labelled points (None: all)."""
        self.nmes.append(nme(pred.detach(), target.detach(), self.normalization, mask))

    def per_face(self) -> Tensor:
        """(N,) NMEs accumulated so far, NaN for unscored faces so that faces stay aligned with the
        inputs (synchronised across processes inside ``compute``)."""
        if isinstance(self.nmes, list) and len(self.nmes) == 0:
            raise RuntimeError("NMEMetric has no faces: call update() before compute()")
        values = dim_zero_cat(self.nmes)
        if values.numel() == 0:
            raise RuntimeError("NMEMetric has no faces: call update() before compute()")
        return values

    def compute(self) -> dict[str, Tensor]:
        values = self.per_face()
        scored = scored_nmes(values)
        t = self.failure_threshold

        def as_tensor(v: float) -> Tensor:
            return torch.tensor(v, dtype=values.dtype, device=values.device)

        unscored = torch.tensor(values.numel() - scored.numel(), dtype=torch.int64, device=values.device)
        if scored.numel() == 0:
            nan = as_tensor(float("nan"))
            return {"nme": nan, "failure_rate": nan.clone(), "auc": nan.clone(), "unscored": unscored}
        return {
            "nme": scored.mean(),
            "failure_rate": as_tensor(failure_rate(scored, t)),
            "auc": as_tensor(auc(scored, t)),
            "unscored": unscored,
        }


def plot_ced(curves: dict[str, Tensor], threshold: float = 0.10, path: str | Path | None = None) -> Figure:
    """CED curves of several models on one plot, with NME / failure rate / AUC in the legend.

    Args:
        curves: model name -> (N,) per-face NMEs, finite (drop unscored faces with `scored_nmes`).
        threshold: NME range of the plot, the failure threshold and the AUC limit.
        path: if given, the figure is saved there as PNG (parent folders are created).

    Returns:
        The matplotlib Figure (drawn on an Agg canvas, without pyplot or a change of global backend).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("plot_ced needs at least one curve")
    fig = Figure(figsize=(6.0, 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, nmes in curves.items():
        nmes = torch.as_tensor(nmes).detach().cpu()
        x, y = ced_curve(nmes, threshold)
        label = (
            f"{name}: NME {nmes.double().mean().item():.2%}, FR@{threshold:g} "
            f"{failure_rate(nmes, threshold):.2%}, AUC@{threshold:g} {auc(nmes, threshold):.4f}"
        )
        ax.plot(x.numpy(), y.numpy(), label=label)
    ax.set_xlim(0.0, threshold)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("NME")
    ax.set_ylabel("fraction of faces")
    ax.set_title("Cumulative error distribution")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png", dpi=150)
    return fig

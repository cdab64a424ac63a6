"""Landmark metrics: per-face NME and normalised residuals, failure rate, CED curve and AUC and their
torchmetrics wrapper; see `pfld.metrics` for the conventions (units, masks, the NaN policy)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

NormalizationMode = Literal["inter_ocular", "inter_pupil", "box"]
#: What can divide the NME: the distance between two points (outer eye corners or pupils), or the square
#: root of the area of the target's landmark box (as for COFW / AFLW).
NORMALIZATION_MODES: tuple[str, ...] = ("inter_ocular", "inter_pupil", "box")
#: The NME's normalisation unless a data config says otherwise (and in checkpoints older than the choice).
DEFAULT_NORMALIZATION: NormalizationMode = "inter_ocular"

#: The ``normalization`` argument of `nme` and `NMEMetric`: a pair of point indices, or "box".
Normalization = tuple[int, int] | Literal["box"]


def _check_landmarks(pred: Tensor, target: Tensor) -> None:
    if pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(f"pred must be (N, K, 2), got {tuple(pred.shape)}")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")


def _full_mask(mask: Tensor | None, target: Tensor) -> Tensor:
    """``mask`` checked to be (N, K) bool on ``target``'s device; None becomes all True."""
    if mask is None:
        return torch.ones(target.shape[:2], dtype=torch.bool, device=target.device)
    if mask.dtype != torch.bool or mask.shape != target.shape[:2]:
        raise ValueError(
            f"mask must be a bool tensor of shape {tuple(target.shape[:2])}, got {mask.dtype} "
            f"{tuple(mask.shape)}"
        )
    return mask.to(target.device)


def resolve_normalization(mode: str, indices: Sequence[int] | None) -> Normalization:
    """The ``normalization`` argument of `nme` for a mode: the point pair ``indices`` for "inter_ocular"
    (outer eye corners) and "inter_pupil" (pupils), "box" for "box" (``indices`` are then unused)."""
    if mode not in NORMALIZATION_MODES:
        raise ValueError(f"normalization mode must be one of {NORMALIZATION_MODES}, got {mode!r}")
    if mode == "box":
        return "box"
    if indices is None or len(indices) != 2:
        raise ValueError(f"normalization mode {mode!r} needs a pair of point indices, got {indices!r}")
    return (int(indices[0]), int(indices[1]))


def normalizing_distance(
    target: Tensor,
    mode: NormalizationMode,
    indices: tuple[int, int] | None = None,
    mask: Tensor | None = None,
) -> Tensor:
    """The distance that divides each face's error in `nme`.

    Args:
        target: (N, K, 2) ground-truth landmarks.
        mode: "inter_ocular" or "inter_pupil": ``||target[i] - target[j]||`` for ``indices = (i, j)``
            (the outer eye corners, or the pupils); "box": ``sqrt(w * h)`` of the bounding box of the
            face's labelled target points (``indices`` must be None).
        indices: the two points of the pair modes.
        mask: (N, K) bool, True where the target point is labelled; None means every point is. Target
            values at unlabelled points are never read (NaN is fine there).

    Returns:
        (N,) distances in the unit of ``target``; NaN for an unscored face: point i or j unlabelled
        (pair modes), or fewer than 2 labelled points ("box").

    Raises:
        ValueError: unknown mode, bad indices, bad mask, or a scored face with zero distance (coincident
            pair points, or a flat box).
    """
    if target.ndim != 3 or target.shape[-1] != 2:
        raise ValueError(f"target must be (N, K, 2), got {tuple(target.shape)}")
    if mode not in NORMALIZATION_MODES:
        raise ValueError(f"normalization mode must be one of {NORMALIZATION_MODES}, got {mode!r}")
    mask = _full_mask(mask, target)
    k = target.shape[1]
    if mode == "box":
        if indices is not None:
            raise ValueError(f"box normalisation takes no point indices, got {indices}")
        scored = mask.sum(dim=1) >= 2  # (N,)
        labelled = mask.unsqueeze(-1)  # (N, K, 1)
        high = torch.where(labelled, target, torch.full_like(target, -torch.inf)).amax(dim=1)  # (N, 2)
        low = torch.where(labelled, target, torch.full_like(target, torch.inf)).amin(dim=1)  # (N, 2)
        size = torch.where(scored.unsqueeze(-1), high - low, torch.ones_like(high))  # (N, 2): w, h
        distance = (size[:, 0] * size[:, 1]).sqrt()
        what = "box area"
    else:
        if indices is None or len(indices) != 2:
            raise ValueError(f"normalization mode {mode!r} needs a pair of point indices, got {indices!r}")
        i, j = indices
        if not (0 <= i < k and 0 <= j < k) or i == j:
            raise ValueError(f"normalization {tuple(indices)} must be two distinct indices in 0..{k - 1}")
        scored = mask[:, i] & mask[:, j]  # (N,)
        pair = torch.where(scored.unsqueeze(-1), target[:, i] - target[:, j], torch.ones_like(target[:, i]))
        distance = torch.linalg.vector_norm(pair, dim=-1)  # (N,)
        what = f"distance between points {i} and {j}"
    bad = (scored & (distance <= 0)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"zero normalising {what} in samples {bad}")
    return torch.where(scored, distance, torch.full_like(distance, float("nan")))


def _distance(target: Tensor, normalization: Normalization, mask: Tensor) -> Tensor:
    """(N,) `normalizing_distance` for `nme`'s ``normalization`` argument (a pair, or "box")."""
    if isinstance(normalization, str):
        if normalization != "box":
            raise ValueError(
                f"normalization must be a pair of point indices or 'box', got {normalization!r}; for "
                "inter_ocular / inter_pupil pass the pair (see resolve_normalization)"
            )
        return normalizing_distance(target, "box", None, mask)
    return normalizing_distance(target, "inter_ocular", tuple(normalization), mask)


def nme(pred: Tensor, target: Tensor, normalization: Normalization, mask: Tensor | None = None) -> Tensor:
    """Normalised mean error of each face.

    Args:
        pred, target: (N, K, 2) landmarks.
        normalization: indices (i, j) of the target points whose distance normalises the error, e.g.
            the outer eye corners (36, 45) for 300W or (60, 72) for WFLW, or the pupils; or "box" for
            the square root of the area of the target's landmark box. See `normalizing_distance`, and
            `resolve_normalization` to get this argument from a mode name.
        mask: (N, K) bool, True where the target point is labelled; None means every point is. Target
            values at unlabelled points are never read (NaN is fine there).

    Returns:
        (N,) mean over labelled points of the Euclidean point error, divided by the normalising
        distance; NaN for an unscored face (point i or j unlabelled; for "box", fewer than 2 labelled).

    Raises:
        ValueError: shapes disagree, an index is out of range, the mask is not (N, K) bool, or a scored
            face has zero normalising distance.
    """
    _check_landmarks(pred, target)
    mask = _full_mask(mask, pred).to(pred.device)
    distance = _distance(target, normalization, mask)
    difference = torch.where(mask.unsqueeze(-1), pred - target, torch.zeros_like(pred))  # (N, K, 2)
    point_error = torch.linalg.vector_norm(difference, dim=-1)  # (N, K), 0 at unlabelled points
    labelled = mask.sum(dim=1).clamp(min=1).to(point_error.dtype)  # >= 2 where scored
    return point_error.sum(dim=1) / labelled / distance  # NaN where the distance is NaN (unscored)


def normalized_residuals(
    pred: Tensor, target: Tensor, normalization: Normalization, mask: Tensor | None = None
) -> Tensor:
    """(N, K, 2) ``pred - target`` of each point over its face's normalising distance (x then y, signed);
    NaN at unlabelled points and on unscored faces. Arguments as `nme`'s; the length of a face's
    residuals averaged over its labelled points is its `nme`."""
    _check_landmarks(pred, target)
    mask = _full_mask(mask, pred).to(pred.device)
    distance = _distance(target, normalization, mask)
    residual = (pred - target) / distance[:, None, None]
    return torch.where(mask.unsqueeze(-1), residual, torch.full_like(residual, float("nan")))


def scored_nmes(nmes: Tensor) -> Tensor:
    """The NMEs of the scored faces: (N,) -> (M,), dropping the NaNs `nme` gives unscored faces."""
    nmes = torch.as_tensor(nmes)
    return nmes[~torch.isnan(nmes)]


def group_nmes(nmes: Tensor, members: Tensor) -> tuple[Tensor, Tensor]:
    """Per-face NMEs (N,) (NaN: unscored) and an (N, G) 0/1 membership of G groups -> the (G,) mean NME
    of each group's scored faces (NaN for a group without one) and the (G,) count of those faces."""
    nmes = torch.as_tensor(nmes)
    scored = ~torch.isnan(nmes)
    means, counts = [], []
    for member in (torch.as_tensor(members) > 0).T:
        chosen = nmes[member & scored]
        means.append(chosen.mean() if len(chosen) else nmes.new_tensor(float("nan")))
        counts.append(len(chosen))
    return (torch.stack(means) if means else nmes.new_zeros(0)), torch.tensor(counts)


def paired_difference(a: Tensor, b: Tensor) -> dict[str, float]:
    """How model B's per-face NMEs (N,) differ from model A's on the same N faces, over the faces both
    scored (NaN: unscored): ``mean`` of B - A, its standard error ``se`` (sd / sqrt(n), NaN for one face),
    ``b_better`` the share of those faces where B's NME is lower, and ``faces``.

    Pairing takes out what the faces share (a hard face is hard for both), so a difference between two
    models is measured against the spread of their per-face differences, not of their NMEs.
    """
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(
            f"paired NMEs must be two (N,) tensors of the same faces, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    both = ~(torch.isnan(a) | torch.isnan(b))
    d = (b - a)[both]
    n = len(d)
    if not n:
        raise ValueError("no face is scored by both models")
    se = float(d.std() / n**0.5) if n > 1 else float("nan")
    return {"mean": float(d.mean()), "se": se, "b_better": float((d < 0).double().mean()), "faces": float(n)}


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
        normalization: indices (i, j) of the two normalising points, or "box", see `nme`.
        failure_threshold: NME above which a face counts as a failure; also the AUC's upper limit.
        **kwargs: passed to ``torchmetrics.Metric``.

    ``compute()`` returns ``{"nme": mean NME, "failure_rate": ..., "auc": ..., "unscored": count}`` as
    scalar tensors. The first three are over the scored faces only; "unscored" (int64) counts the faces
    whose normalising points were not both labelled (NaN in `per_face`). If no face could be scored,
    the first three are NaN. All are over every process: the state is synchronised before ``compute``.

    Faces may also carry a (B, G) membership of G groups (``update(..., groups=)``, e.g. the face
    classes of `pfld.data.attributes.FACE_CLASSES`); ``compute()`` then adds ``"group_nme"``, the (G,)
    mean NME of each group's scored faces (NaN for a group without one), over every process too.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    nmes: list[Tensor] | Tensor

    def __init__(self, normalization: Normalization, failure_threshold: float = 0.10, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(normalization, str):
            if normalization != "box":
                raise ValueError(
                    f"normalization must be a pair of point indices or 'box', got {normalization!r}"
                )
            self.normalization: Normalization = "box"
        else:
            i, j = normalization
            if i == j or i < 0 or j < 0:
                raise ValueError(
                    f"normalization must be two distinct non-negative indices, got {normalization}"
                )
            self.normalization = (int(i), int(j))
        if not failure_threshold > 0:
            raise ValueError(f"failure_threshold must be > 0, got {failure_threshold}")
        self.failure_threshold = float(failure_threshold)
        self.add_state("nmes", default=[], dist_reduce_fx="cat")
        self.add_state("groups", default=[], dist_reduce_fx="cat")  # (B, G) per batch, aligned with nmes

    def update(
        self, pred: Tensor, target: Tensor, mask: Tensor | None = None, groups: Tensor | None = None
    ) -> None:
        """Add a batch of (B, K, 2) predictions and targets, with (B, K) bool labelled points (None: all)
        and optionally the faces' (B, G) 0/1 group membership: give it with every batch or with none."""
        values = nme(pred.detach(), target.detach(), self.normalization, mask)
        if len(self.nmes) and (groups is not None) != bool(len(self.groups)):
            raise ValueError("groups given with some batches and not others")
        if groups is not None:
            if groups.ndim != 2 or len(groups) != len(values):
                raise ValueError(f"groups must be (B, G) for {len(values)} faces, got {tuple(groups.shape)}")
            self.groups.append((groups.detach() > 0).to(values.dtype))  # float: every backend gathers it
        self.nmes.append(values)

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
            results = {"nme": nan, "failure_rate": nan.clone(), "auc": nan.clone(), "unscored": unscored}
        else:
            results = {
                "nme": scored.mean(),
                "failure_rate": as_tensor(failure_rate(scored, t)),
                "auc": as_tensor(auc(scored, t)),
                "unscored": unscored,
            }
        groups = self.groups if isinstance(self.groups, Tensor) else dim_zero_cat(self.groups or [values[:0]])
        if groups.numel():  # (a synchronised metric without groups holds an empty tensor)
            results["group_nme"] = group_nmes(values, groups)[0]
        return results

"""Training one model on faces of several landmark schemes (68-point and five-point faces in one run).

A face of another scheme is related to the model's scheme by a `SchemeMapping`: its *direct* points
(a five-point face's nose tip is iBUG point 30) become labelled model points, its *derived* points (an
eye centre is the mean of six iBUG points) become extra training targets after the model's K points,
and the rest of its model points are unlabelled. During training the model's prediction of a derived
point is the same weighted mean of its predicted points (`extend_points`), so the masked point loss
supervises exactly what each face knows. The extra targets swap on a flip like the points they are
made of (`extended_scheme`).

A face with a few points has a small landmark box, so it would be cut tighter than a 68-point face.
`estimate_box` instead predicts the box its model-scheme points would have, from its few points (a
linear model in the frame of a similarity fit, learnt by `fit_box_model` on fully annotated faces and
kept in the mapping file): the crop a fully annotated face would have had.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from pfld.data.cache import FaceCache
from pfld.data.crop import landmark_box
from pfld.data.readers.common import OnError
from pfld.data.records import FaceRecord
from pfld.data.schemes import LandmarkScheme
from pfld.data.schemes.mapping import SchemeMapping


@dataclass(frozen=True)
class DerivedPoints:
    """The extra training targets of a run: D weighted means of the model's K points.

    weights: (D, K) float64, each row summing to 1; closed under the scheme's flip (the mirror of each
    row is a row), so that flipped faces keep a target for every derived point.
    """

    weights: np.ndarray

    @property
    def count(self) -> int:
        return int(self.weights.shape[0])

    def index_of(self, row: np.ndarray) -> int:
        """The index of a (K,) weight row among the D rows; -1 if it is not one."""
        matches = np.flatnonzero(np.abs(self.weights - row).max(axis=1) < 1e-9) if self.count else []
        return int(matches[0]) if len(matches) else -1


def derived_points(mappings: Sequence[SchemeMapping], scheme: LandmarkScheme) -> DerivedPoints:
    """The derived rows of ``mappings`` (each once), plus the mirror of any row whose mirror is missing."""
    rows: list[np.ndarray] = []

    def add(row: np.ndarray) -> None:
        if not any(np.abs(r - row).max() < 1e-9 for r in rows):
            rows.append(row)

    for mapping in mappings:
        if mapping.target.name != scheme.name:
            raise ValueError(
                f"{mapping.where}: maps to scheme {mapping.target.name!r}, but the model's is {scheme.name!r}"
            )
        for s in np.flatnonzero(mapping.derived):
            add(mapping.weights[s])
    for row in rows:
        add(row[scheme.flip_permutation])
    k = scheme.num_points
    return DerivedPoints(np.stack(rows) if rows else np.zeros((0, k), dtype=np.float64))


def extended_scheme(scheme: LandmarkScheme, derived: DerivedPoints) -> LandmarkScheme:
    """``scheme`` with the D derived points appended as points K..K+D-1, paired for the flip with their
    mirrors. Only for the training data (its flips and checks): the model still predicts K points."""
    if not derived.count:
        return scheme
    k, perm = scheme.num_points, scheme.flip_permutation
    pairs = list(scheme.flip_pairs)
    for d in range(derived.count):
        mirror = derived.index_of(derived.weights[d][perm])
        if mirror < 0:
            raise ValueError(f"derived point {d} has no mirror among the derived points")
        if d < mirror:
            pairs.append((k + d, k + mirror))
    return replace(
        scheme,
        name=f"{scheme.name}+{derived.count}",
        num_points=k + derived.count,
        flip_pairs=tuple(pairs),
        point_names=scheme.point_names + tuple(f"derived_{d}" for d in range(derived.count))
        if scheme.point_names
        else (),
    )


def map_faces(faces: FaceCache, mapping: SchemeMapping | None, derived: DerivedPoints) -> FaceCache:
    """Faces of ``mapping.source`` (or of the model's scheme when ``mapping`` is None) -> the same faces
    with K + D points in the model's scheme: direct points placed, derived points appended, the rest NaN.
    """
    n = len(faces)
    if mapping is None:
        if not derived.count:
            return faces
        extra = np.full((n, derived.count, 2), np.nan, dtype=np.float32)
        sources = faces.point_sources
        if sources is not None:
            sources = np.concatenate([sources, np.zeros((n, derived.count), np.uint8)], axis=1)
        return replace(
            faces, landmarks=np.concatenate([faces.landmarks, extra], axis=1), point_sources=sources
        )
    if faces.point_sources is not None:
        raise ValueError(
            f"faces from {faces.sources[0]}: pseudo-labelled faces are mapped only in their scheme"
        )
    k = mapping.target.num_points
    if faces.num_points != mapping.source.num_points:
        raise ValueError(
            f"faces from {faces.sources[0]}: {faces.num_points} points, but {mapping.where} maps "
            f"{mapping.source.name!r} faces of {mapping.source.num_points} points"
        )
    points = np.full((n, k + derived.count, 2), np.nan, dtype=np.float32)
    for s in np.flatnonzero(mapping.used):
        slot = int(mapping.direct[s]) if mapping.direct[s] >= 0 else k + derived.index_of(mapping.weights[s])
        points[:, slot] = faces.landmarks[:, s]
    return replace(faces, landmarks=points, scheme=mapping.target.name)


def extend_points(points: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, K, C) predicted points (or per-point values) -> (B, K + D, C): the derived points appended as
    the weighted means ``weights`` (D, K) of the K points."""
    return torch.cat([points, torch.einsum("dk,bkc->bdc", weights.to(points), points)], dim=1)


def extend_sigma(sigma: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, K, 2) per-point error scales -> (B, K + D, 2): a derived point's scale is that of a weighted
    mean of independent errors, ``sqrt(sum_k w_k^2 sigma_k^2)``."""
    w2 = weights.to(sigma).square()
    return torch.cat([sigma, torch.einsum("dk,bkc->bdc", w2, sigma.square()).sqrt()], dim=1)


def similarity_fit(source: np.ndarray, target: np.ndarray, rotation: bool = True) -> np.ndarray:
    """The (2, 3) similarity (scale, rotation, shift; no mirror) taking (N, 2) ``source`` points closest
    to ``target`` in least squares (Umeyama 1991); N >= 2. ``rotation=False``: scale and shift only."""
    src, dst = np.asarray(source, dtype=np.float64), np.asarray(target, dtype=np.float64)
    mu_s, mu_d = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - mu_s, dst - mu_d
    var = (a**2).sum()
    if len(src) < 2 or var <= 0:
        raise ValueError("a similarity needs at least two distinct points")
    if not rotation:
        scale = float((a * b).sum() / var)
        return np.array([[scale, 0.0, mu_d[0] - scale * mu_s[0]], [0.0, scale, mu_d[1] - scale * mu_s[1]]])
    u, sigma, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
    rotation = u @ d @ vt
    scale = float((sigma * np.diag(d)).sum() / var)
    return np.hstack([scale * rotation, (mu_d - scale * rotation @ mu_s)[:, None]])


def procrustes_mean(shapes: np.ndarray, iterations: int = 10) -> np.ndarray:
    """(N, P, 2) fully labelled shapes -> (P, 2) their generalised Procrustes mean (similarity-aligned),
    centred on the origin with unit root-mean-square radius."""
    shapes = np.asarray(shapes, dtype=np.float64)
    if np.isnan(shapes).any():
        raise ValueError("procrustes_mean needs fully labelled shapes")
    mean = shapes[0]
    for _ in range(iterations):
        mean = mean - mean.mean(axis=0)
        mean = mean / np.sqrt((mean**2).sum(axis=1).mean())
        mean = np.stack([_apply(similarity_fit(s, mean), s) for s in shapes]).mean(axis=0)
    mean = mean - mean.mean(axis=0)
    return mean / np.sqrt((mean**2).sum(axis=1).mean())


def _box_features(points: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P, 2) mapped points -> (features (2P + 1,), the (2, 3) similarity into the reference frame)."""
    to_reference = similarity_fit(points, reference, rotation=False)
    aligned = _apply(to_reference, points)
    return np.concatenate([(aligned - reference).ravel(), [1.0]]), to_reference


def fit_box_model(shapes: np.ndarray, mapping: SchemeMapping) -> tuple[np.ndarray, np.ndarray]:
    """Learn to place the crop of a face that has only ``mapping``'s source points.

    ``shapes``: (N, K, 2) fully labelled faces of the target scheme. Their source points (projected
    through the mapping) give a Procrustes reference (P, 2); in the frame that aligns a face's source
    points to it, a least-squares linear map from the aligned points' offsets to the target landmark
    box's corners is fitted, (2P + 1, 4). A similarity alone cannot see how far a turned face's jaw
    reaches; the offsets (the nose tip beside the eyes' midpoint) can.
    """
    projected = mapping.project(shapes)[:, mapping.used]  # (N, P, 2)
    keep = ~np.isnan(projected).any(axis=(1, 2)) & ~np.isnan(shapes).any(axis=(1, 2))
    if keep.sum() < 4 * (2 * projected.shape[1] + 1):
        raise ValueError(f"{int(keep.sum())} complete faces are too few to fit a box model")
    reference = procrustes_mean(projected[keep])
    features, targets = [], []
    for shape, points in zip(shapes[keep], projected[keep], strict=True):
        x, to_reference = _box_features(points, reference)
        features.append(x)
        targets.append(landmark_box(_apply(to_reference, shape)))
    regression, *_ = np.linalg.lstsq(np.array(features), np.array(targets), rcond=None)
    return reference, regression


def estimate_box(points: np.ndarray, mapping: SchemeMapping) -> np.ndarray:
    """(S, 2) pixels of a face of ``mapping.source`` -> (4,) ``x_min, y_min, x_max, y_max``: the landmark
    box its target-scheme points would have, by the mapping's box model (`fit_box_model`). Every mapped
    point must be labelled. The box is axis-aligned in the face's own frame, mapped back to the photo
    (its centre and its side are what the crop uses)."""
    if mapping.box_reference is None or mapping.box_regression is None:
        raise ValueError(
            f"{mapping.where}: no box model, so a {mapping.target.name!r} face box cannot be estimated "
            f"from {mapping.source.name!r} points; fit one with scripts/fit_box_model.py, or prepare "
            "with the data set's own boxes (--box dataset)"
        )
    mapped = np.asarray(points, dtype=np.float64)[mapping.used]
    if np.isnan(mapped).any():
        raise ValueError(
            f"{int((~np.isnan(mapped[:, 0])).sum())} of the {len(mapped)} mapped points are labelled; "
            "estimating the face box needs all of them"
        )
    features, to_reference = _box_features(mapped, mapping.box_reference)
    low_x, low_y, high_x, high_y = features @ mapping.box_regression
    scale = float(to_reference[0, 0])
    centre = (np.array([(low_x + high_x) / 2, (low_y + high_y) / 2]) - to_reference[:, 2]) / scale
    half = max(high_x - low_x, high_y - low_y) / 2 / scale
    return np.array(
        [centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half], dtype=np.float32
    )


def with_estimated_boxes(
    records: Sequence[FaceRecord], mapping: SchemeMapping, on_error: OnError | None = None
) -> list[FaceRecord]:
    """The records with ``box`` set to `estimate_box` of their points, for ``box_source="estimated"``;
    a face whose box cannot be estimated is reported through ``on_error`` and left out (raises without)."""
    out = []
    for record in records:
        try:
            out.append(replace(record, box=estimate_box(record.landmarks, mapping)))
        except ValueError as error:
            message = f"{record.source}: cannot estimate its {mapping.target.name} face box: {error}"
            if on_error is None:
                raise ValueError(message) from None
            on_error(message)
    return out


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


__all__ = [
    "DerivedPoints",
    "derived_points",
    "estimate_box",
    "extend_points",
    "extend_sigma",
    "extended_scheme",
    "fit_box_model",
    "map_faces",
    "procrustes_mean",
    "similarity_fit",
    "with_estimated_boxes",
]

"""How the points of one scheme relate to another's: train a 68-point model on five-point faces too.

A mapping file says, for points of a *source* scheme (the faces' scheme), which point or mean of points
of the *target* scheme (the model's) they are. A five-point face's eye centre is the mean of the six
68-point eye points; its nose tip is point 30. Listed source points supervise the target model through
the masked loss; unlisted ones are not used. File format (see ``mappings/five_point-ibug68.yaml``)::

    source: five_point                 the faces' scheme (a shipped name or a YAML path)
    target: ibug68                     the model's scheme
    points:                            source point (name or index) -> target
      nose_tip: 30                     the same point
      right_eye: [36, 37, 38, 39, 40, 41]   the mean of these target points
      some_point: {10: 0.25, 11: 0.75} a weighted mean (weights sum to 1)
    box:                               optional: how to place the crop of a face that has only the
      reference: [[x, y], ...]         mapped points (`pfld.data.mixed.estimate_box`), written by
      regression: [[a, b, c, d], ...]  scripts/fit_box_model.py

A source point that is one target point is *direct*; any other is *derived*: the model's prediction of
it is the same weighted mean of its predicted points (see `pfld.data.mixed`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from pfld.data.schemes.loader import load_scheme
from pfld.data.schemes.scheme import LandmarkScheme

_SHIPPED = Path(__file__).resolve().parent / "mappings"
_KEYS = ("source", "target", "points")
_BOX_KEYS = ("reference", "regression")
#: Weights of a derived point must sum to 1 within this (a mean of points, not a scaled one).
_WEIGHT_TOLERANCE = 1e-6


@dataclass(frozen=True, eq=False)
class SchemeMapping:
    """Source points as weighted means of target points.

    Args:
        source, target: the faces' scheme and the model's scheme.
        weights: (S, K) float64; row s holds the weights of source point s over the K target points
            (summing to 1), or zeros when source point s is not used.
        where: the file the mapping came from, for messages.
        box_reference, box_regression: (P, 2) and (2P + 1, 4), P = used source points: the box model of
            `pfld.data.mixed.fit_box_model`, or None.
    """

    source: LandmarkScheme
    target: LandmarkScheme
    weights: np.ndarray
    where: str = ""
    box_reference: np.ndarray | None = None
    box_regression: np.ndarray | None = None

    def __post_init__(self) -> None:
        s, k = self.source.num_points, self.target.num_points
        if self.weights.shape != (s, k):
            raise ValueError(f"{self.where}: weights must have shape ({s}, {k}), got {self.weights.shape}")
        if not self.used.any():
            raise ValueError(f"{self.where}: the mapping uses no source point")
        p = int(self.used.sum())
        if (self.box_reference is None) != (self.box_regression is None) or (
            self.box_reference is not None
            and (self.box_reference.shape != (p, 2) or self.box_regression.shape != (2 * p + 1, 4))
        ):
            raise ValueError(
                f"{self.where}: box needs reference ({p} x 2) and regression ({2 * p + 1} x 4) together"
            )

    @cached_property
    def used(self) -> np.ndarray:
        """(S,) bool: source points the mapping relates to the target."""
        return np.abs(self.weights).sum(axis=1) > 0

    @cached_property
    def direct(self) -> np.ndarray:
        """(S,) int64: the target point a source point is, or -1 (unused or derived)."""
        out = np.full(self.source.num_points, -1, dtype=np.int64)
        for s in np.flatnonzero(self.used):
            nonzero = np.flatnonzero(self.weights[s])
            if len(nonzero) == 1:
                out[s] = int(nonzero[0])
        return out

    @cached_property
    def derived(self) -> np.ndarray:
        """(S,) bool: used source points that are a mean of several target points."""
        return self.used & (self.direct < 0)

    def project(self, target_points: np.ndarray) -> np.ndarray:
        """(..., K, 2) target points -> (..., S, 2) source points (NaN where unused or where a
        contributing target point is NaN)."""
        points = np.asarray(target_points, dtype=np.float64)
        out = np.einsum("sk,...kc->...sc", self.weights, np.nan_to_num(points))
        unknown = (np.isnan(points[..., 0]).astype(np.float64) @ (self.weights != 0).T) > 0  # (..., S)
        out[unknown | ~self.used] = np.nan
        return out


def load_mapping(source: str | Path, target: str | Path, path: str | Path | None = None) -> SchemeMapping:
    """The mapping from scheme ``source`` to scheme ``target``: from ``path`` when given, else the
    shipped ``mappings/<source>-<target>.yaml``. Raises ValueError naming the file and the problem."""
    if path is None:
        source_name, target_name = load_scheme(source).name, load_scheme(target).name
        path = _SHIPPED / f"{source_name}-{target_name}.yaml"
        if not path.is_file():
            raise ValueError(
                f"no shipped mapping from scheme {source_name!r} to {target_name!r} (shipped: "
                f"{list(available_mappings())}); write one (see pfld/data/schemes/mapping.py) and "
                "list it in data.mappings"
            )
    mapping = read_mapping(path)
    if mapping.source.name != load_scheme(source).name or mapping.target.name != load_scheme(target).name:
        raise ValueError(
            f"{path}: maps {mapping.source.name!r} to {mapping.target.name!r}, not "
            f"{load_scheme(source).name!r} to {load_scheme(target).name!r}"
        )
    return mapping


def find_mapping(source: str | Path, target: str | Path, files: Sequence[str | Path] = ()) -> SchemeMapping:
    """The mapping from scheme ``source`` to ``target``: the first of ``files`` (e.g. ``data.mappings``)
    between them, else the shipped one (`load_mapping`, ValueError when there is none)."""
    source_name, target_name = load_scheme(source).name, load_scheme(target).name
    for path in files:
        mapping = read_mapping(path)
        if mapping.source.name == source_name and mapping.target.name == target_name:
            return mapping
    return load_mapping(source_name, target_name)


def available_mappings() -> tuple[str, ...]:
    """The shipped mappings, as ``<source>-<target>``."""
    return tuple(sorted(p.stem for p in _SHIPPED.glob("*.yaml")))


def read_mapping(path: str | Path) -> SchemeMapping:
    """Parse and check one mapping file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scheme mapping file {path} not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"scheme mapping file {path}: not valid YAML: {error}") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"scheme mapping file {path}: not UTF-8 text ({error.reason})") from None
    try:
        return _mapping_from_data(data, str(path))
    except ValueError as error:
        raise ValueError(f"scheme mapping file {path}: {error}") from error


def _mapping_from_data(data: Any, where: str) -> SchemeMapping:
    if not isinstance(data, dict):
        raise ValueError(f"the file must hold a mapping of keys, got {type(data).__name__}")  # noqa: TRY004
    unknown = sorted(set(map(str, data)) - {*_KEYS, "box"})
    missing = [k for k in _KEYS if k not in data]
    if unknown or missing:
        raise ValueError(
            f"keys must be {list(_KEYS)} and optionally box; unknown {unknown}, missing {missing}"
        )
    source, target = load_scheme(str(data["source"])), load_scheme(str(data["target"]))
    points = data["points"]
    if not isinstance(points, dict) or not points:
        raise ValueError("points must map source points (names or indices) to target points")
    weights = np.zeros((source.num_points, target.num_points), dtype=np.float64)
    for key, value in points.items():
        s = _source_index(key, source)
        if weights[s].any():
            raise ValueError(f"source point {key!r} is given twice")
        weights[s] = _target_weights(value, target, f"points.{key}")
    box = data.get("box")
    if box is None:
        return SchemeMapping(source, target, weights, where)
    if not isinstance(box, dict) or sorted(box) != sorted(_BOX_KEYS):
        raise ValueError(f"box must have exactly the keys {list(_BOX_KEYS)}")
    reference, regression = (_number_table(box[k], f"box.{k}") for k in _BOX_KEYS)
    return SchemeMapping(source, target, weights, where, reference, regression)


def _number_table(value: Any, what: str) -> np.ndarray:
    """A list of equally long lists of finite numbers -> 2-D float64 array."""
    try:
        table = np.array(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a table (list of lists) of numbers") from None
    if table.ndim != 2 or not np.isfinite(table).all():
        raise ValueError(f"{what} must be a table (list of lists) of finite numbers")
    return table


def _source_index(key: Any, scheme: LandmarkScheme) -> int:
    if isinstance(key, bool):
        raise ValueError(f"source point {key!r} is neither a point name nor an index")  # noqa: TRY004
    if isinstance(key, int):
        if not 0 <= key < scheme.num_points:
            raise ValueError(f"source point {key} outside 0..{scheme.num_points - 1} of {scheme.name!r}")
        return key
    if isinstance(key, str) and key in scheme.point_names:
        return scheme.point_names.index(key)
    raise ValueError(
        f"source point {key!r} is not a point of {scheme.name!r} (names: {list(scheme.point_names)})"
    )


def _target_weights(value: Any, scheme: LandmarkScheme, what: str) -> np.ndarray:
    """A target index, a list (their mean) or {index: weight} -> (K,) weights summing to 1."""
    if isinstance(value, int) and not isinstance(value, bool):
        pairs = {value: 1.0}
    elif isinstance(value, list) and value:
        if len(set(value)) != len(value):
            raise ValueError(f"{what}: repeated target points {value}")
        pairs = {i: 1.0 / len(value) for i in value}
    elif isinstance(value, dict) and value:
        pairs = value
    else:
        raise ValueError(
            f"{what}: expected a target index, a list of indices or {{index: weight}}, got {value!r}"
        )
    out = np.zeros(scheme.num_points, dtype=np.float64)
    for index, weight in pairs.items():
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < scheme.num_points:
            raise ValueError(f"{what}: target point {index!r} outside 0..{scheme.num_points - 1}")
        if not isinstance(weight, int | float) or isinstance(weight, bool) or not weight > 0:
            raise ValueError(f"{what}: weight of point {index} must be a positive number, got {weight!r}")
        out[index] = float(weight)
    if abs(out.sum() - 1.0) > _WEIGHT_TOLERANCE:
        raise ValueError(f"{what}: weights sum to {out.sum():g}, not 1")
    return out


__all__ = ["SchemeMapping", "available_mappings", "load_mapping", "read_mapping"]

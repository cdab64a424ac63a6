"""Landmark schemes from YAML files: the shipped ones (``ibug68``, ``wflw98``...) or a user's own.

File format (see ``kaggle15.yaml`` for a commented example):
    name: str                        required
    num_points: int                  required, K
    point_names: [str] * K           optional
    flip_pairs: [[right, left], ...] required, unless flip_partner is given (not both)
    flip_partner: [int] * K          the partner of each point (itself on the midline)
    eye_corners: [right, left]       required, outer eye corners: the NME's inter-ocular distance
    pupils: [right, left]            optional
    groups: {name: [int, ...]}       optional (for plots and per-part errors)
    pose_reference: {name: int}      optional; none, or at least MIN_POSE_REFERENCE_POINTS names
                                     from POSE_REFERENCE_NAMES
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from pfld.data.schemes.scheme import POSE_REFERENCE_NAMES, LandmarkScheme

_SHIPPED = Path(__file__).resolve().parent
_REQUIRED = ("name", "num_points", "eye_corners")
_OPTIONAL = ("groups", "point_names", "flip_pairs", "flip_partner", "pupils", "pose_reference")
_ALLOWED = _REQUIRED + _OPTIONAL


def available_schemes() -> tuple[str, ...]:
    """Names of the schemes shipped with pfld, for `load_scheme`."""
    return tuple(sorted(p.stem for p in _SHIPPED.glob("*.yaml")))


def load_scheme(name_or_path: str | Path) -> LandmarkScheme:
    """A shipped scheme by bare name (``"wflw98"``), or a user's YAML file by path.

    A value ending in ``.yaml`` / ``.yml``, or naming an existing file, is a path. Loads are cached
    (schemes are frozen); an edited file is read again. Raises ValueError naming the file and the problem.
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or Path(text).is_file():
        path = Path(text).expanduser().resolve()
        if not path.is_file():
            raise FileNotFoundError(f"landmark scheme file {path} not found")
    else:
        path = _SHIPPED / f"{text}.yaml"
        if not path.is_file():
            raise ValueError(
                f"unknown landmark scheme {text!r}; shipped schemes: {list(available_schemes())}, "
                "or give the path of a .yaml file"
            )
    return _load_file(str(path), path.stat().st_mtime_ns)


def ibug_68() -> LandmarkScheme:
    """The 68-point iBUG scheme of 300W (0-based): 0-16 jaw, 17-21 right brow, 22-26 left brow,
    27-35 nose, 36-41 right eye, 42-47 left eye, 48-67 mouth. Inter-ocular: 36 and 45."""
    return load_scheme("ibug68")


@lru_cache(maxsize=32)
def _load_file(path: str, mtime_ns: int) -> LandmarkScheme:
    """Parse and check one file; ``mtime_ns`` is only part of the cache key."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = yaml.load(handle, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.YAMLError as error:
        raise ValueError(f"landmark scheme file {path}: not valid YAML: {error}") from error
    except UnicodeDecodeError as error:
        raise ValueError(f"landmark scheme file {path}: not UTF-8 text ({error.reason})") from None
    try:
        return _scheme_from_mapping(data)
    except ValueError as error:
        raise ValueError(f"landmark scheme file {path}: {error}") from error


class _UniqueKeyLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _scheme_from_mapping(data: Any) -> LandmarkScheme:
    """Check the file's keys and value types, then build the scheme (which checks the indices)."""
    # Wrong types in a file are refused with ValueError, like every other problem in it.
    if not isinstance(data, dict):
        raise ValueError(f"the file must hold a mapping of keys, got {type(data).__name__}")  # noqa: TRY004
    unknown = sorted(str(k) for k in set(data) - set(_ALLOWED))
    if unknown:
        raise ValueError(f"unknown keys {unknown}; allowed keys: {list(_ALLOWED)}")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"missing required keys {missing}")
    if ("flip_pairs" in data) == ("flip_partner" in data):
        raise ValueError("give exactly one of flip_pairs (list of [right, left]) or flip_partner (K indices)")
    name, k = data["name"], data["num_points"]
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if not isinstance(k, int) or isinstance(k, bool) or k < 3:
        raise ValueError(f"num_points must be an integer of at least 3, got {k!r}")
    names = data.get("point_names") or []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError("point_names must be a list of strings")
    if names and len(names) != k:
        raise ValueError(f"num_points is {k} but point_names has {len(names)} names")
    if "flip_partner" in data:
        flip_pairs = _pairs_from_partners(_indices(data["flip_partner"], "flip_partner", k, length=k))
    else:
        pairs = data["flip_pairs"] or []
        if not isinstance(pairs, list):
            raise ValueError("flip_pairs must be a list of [right, left] pairs")
        flip_pairs = [tuple(_indices(p, f"flip_pairs[{n}]", k, length=2)) for n, p in enumerate(pairs)]
    eyes = _indices(data["eye_corners"], "eye_corners", k, length=2)
    pupils = None if data.get("pupils") is None else _indices(data["pupils"], "pupils", k, length=2)
    groups = data.get("groups") or {}
    if not isinstance(groups, dict):
        raise ValueError("groups must map group names to lists of point indices")  # noqa: TRY004
    pose = _pose_reference(data.get("pose_reference") or {}, k)
    return LandmarkScheme(
        name=name,
        num_points=k,
        groups={str(g): tuple(_indices(v, f"groups.{g}", k)) for g, v in groups.items()},
        flip_pairs=tuple(flip_pairs),
        eye_corners=(eyes[0], eyes[1]),
        pupils=None if pupils is None else (pupils[0], pupils[1]),
        pose_reference=pose,
        point_names=tuple(names),
    )


def _indices(value: Any, what: str, k: int, length: int | None = None) -> list[int]:
    """A list of point indices in 0..k-1, of the given length if one is given."""
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
        raise ValueError(f"{what} must be a list of integer point indices, got {value!r}")
    if length is not None and len(value) != length:
        raise ValueError(f"{what} must have {length} entries, got {len(value)}")
    bad = [i for i in value if not 0 <= i < k]
    if bad:
        raise ValueError(f"{what}: indices {bad} outside 0..{k - 1}")
    return value


def _pairs_from_partners(partner: list[int]) -> list[tuple[int, int]]:
    """K partner indices -> pairs (lower index first: flip_partner says nothing of right and left)."""
    asymmetric = [i for i, p in enumerate(partner) if partner[p] != i]
    if asymmetric:
        shown = ", ".join(f"{i}->{partner[i]}->{partner[partner[i]]}" for i in asymmetric[:5])
        raise ValueError(f"flip_partner is not symmetric (partner of the partner must be the point): {shown}")
    return [(i, p) for i, p in enumerate(partner) if i < p]


def _pose_reference(value: Any, k: int) -> dict[str, int]:
    """Pose reference names -> indices: none, or at least MIN_POSE_REFERENCE_POINTS known names."""
    if not isinstance(value, dict):
        raise ValueError("pose_reference must map pose reference names to point indices")  # noqa: TRY004
    unknown = sorted(str(n) for n in set(value) - set(POSE_REFERENCE_NAMES))
    if unknown:
        raise ValueError(f"unknown pose reference names {unknown}; known: {list(POSE_REFERENCE_NAMES)}")
    indices = _indices(list(value.values()), "pose_reference", k)
    return dict(
        zip(value, indices, strict=True)
    )  # at least MIN_POSE_REFERENCE_POINTS: LandmarkScheme's check

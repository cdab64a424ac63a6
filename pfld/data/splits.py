"""Identity-disjoint train/validation splits: no person (or photo) on both sides."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np


def split_by_identity(
    identities: Sequence[str] | np.ndarray, val_fraction: float, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val) of faces that put about ``val_fraction`` of the identities (not faces) in
    validation, chosen with ``seed``."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    names = [str(i) for i in identities]
    unique = sorted(set(names))
    if len(unique) < 2:
        raise ValueError("an identity split needs at least two identities")
    random.Random(seed).shuffle(unique)
    count = min(len(unique) - 1, max(1, round(val_fraction * len(unique))))
    held_out = set(unique[:count])
    in_val = np.array([n in held_out for n in names])
    return np.flatnonzero(~in_val), np.flatnonzero(in_val)

"""Identity-disjoint train/validation splits: no person (or photo) on both sides."""

from __future__ import annotations

import random
from collections.abc import Sequence

from pfld.data.records import FaceRecord


def split_by_identity(
    records: Sequence[FaceRecord], val_fraction: float, seed: int = 0
) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """Put about ``val_fraction`` of the identities (not faces) in validation, chosen with ``seed``."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    identities = sorted({r.identity for r in records})
    if len(identities) < 2:
        raise ValueError("an identity split needs at least two identities")
    random.Random(seed).shuffle(identities)
    count = min(len(identities) - 1, max(1, round(val_fraction * len(identities))))
    held_out = set(identities[:count])
    train = [r for r in records if r.identity not in held_out]
    val = [r for r in records if r.identity in held_out]
    return train, val

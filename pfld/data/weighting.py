"""How much each training source and face class weighs in an epoch: ``data.train_repeats`` (a source's
faces listed several times, each copy seen once), ``data.train_shares`` (each source's share of the
draws, with replacement) and ``data.oversample`` (a face class drawn more often, with replacement); and
``data.train_conventions``, each source's annotation convention (`pfld.training.conventions`).
`pfld.data.datamodule.LandmarkDataModule` checks them when it is built and applies them to its faces."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pfld.data.attributes import FACE_CLASSES, PoseThresholds, class_memberships
from pfld.data.cache import FaceCache


def checked_weighting(
    sources: int,
    train_shares: Sequence[float] | None,
    train_repeats: Sequence[int] | None,
    oversample: Mapping[str, float] | None,
) -> tuple[list[float] | None, list[int] | None, dict[str, float]]:
    """The three settings as plain values, for ``sources`` train sources; ValueError names the bad one."""
    if train_shares is not None and (
        len(train_shares) != sources
        or any(not float(w) >= 0 for w in train_shares)
        or not sum(train_shares) > 0
    ):
        raise ValueError(
            f"data.train_shares must give one non-negative share per train source ({sources}), not all "
            f"zero; got {list(train_shares)}"
        )
    if train_repeats is not None and (
        len(train_repeats) != sources
        or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in train_repeats)
    ):
        raise ValueError(
            f"data.train_repeats must give one positive integer per train source ({sources}); got "
            f"{list(train_repeats)}"
        )
    if train_repeats is not None and train_shares is not None:
        raise ValueError(
            "data.train_repeats and data.train_shares both weight the train sources: give one of them"
        )
    for name, factor in (oversample or {}).items():
        if name not in FACE_CLASSES or not float(factor) > 0:
            raise ValueError(
                f"data.oversample: {name}={factor}: give a face class ({', '.join(FACE_CLASSES)}) and a factor > 0"
            )
    return (
        None if train_shares is None else [float(w) for w in train_shares],
        None if train_repeats is None else [int(r) for r in train_repeats],
        {str(k): float(v) for k, v in (oversample or {}).items()},
    )


def checked_conventions(conventions: Sequence[int] | None, sources: int) -> list[int] | None:
    """``data.train_conventions`` as a list of ints, one per train source, with at least one 0 (the
    reference); ValueError names the problem."""
    if conventions is None:
        return None
    values = list(conventions)
    if len(values) != sources or any(isinstance(c, bool) or not isinstance(c, int) or c < 0 for c in values):
        raise ValueError(
            f"data.train_conventions must give one integer >= 0 per train source ({sources}); got {values}"
        )
    if 0 not in values:
        raise ValueError(
            f"data.train_conventions {values} labels no source 0: the reference convention is what the "
            "model predicts, so at least one train source must be annotated in it"
        )
    return values


def repeated(parts: Sequence[FaceCache], repeats: Sequence[int]) -> list[FaceCache]:
    """Each source's faces ``repeats[i]`` times in a row (prints the epoch's make-up)."""
    shown = ", ".join(f"{len(part)} x {r}" for part, r in zip(parts, repeats, strict=True))
    print(f"training faces an epoch, by source: {shown}")
    return [part for part, r in zip(parts, repeats, strict=True) for _ in range(r)]


def share_weights(sizes: Sequence[int], shares: Sequence[float]) -> np.ndarray:
    """(sum(sizes),) sampling weights that give source i ``shares[i]`` (normalised) of the draws."""
    shares = np.asarray(shares) / sum(shares)
    shown = ", ".join(f"{share:.0%} from {n}" for n, share in zip(sizes, shares, strict=True))
    print(f"training batches drawn from the train sources in shares: {shown} faces")
    return np.concatenate([np.full(n, share / n) for n, share in zip(sizes, shares, strict=True)])


def oversampled(
    faces: FaceCache, base: np.ndarray | None, oversample: Mapping[str, float], thresholds: PoseThresholds
) -> np.ndarray:
    """(N,) sampling weights: ``base`` (or uniform) times each face's ``oversample`` factor (a face of no
    listed class keeps 1; of several, the largest); prints each class's share of the faces and draws."""
    classes = class_memberships(faces, thresholds).astype(bool)
    members = {name: classes[:, FACE_CLASSES.index(name)] for name in oversample}
    factor = np.full(len(faces), np.nan)
    for name, times in oversample.items():
        factor[members[name]] = np.fmax(factor[members[name]], times)
    weights = (base if base is not None else np.full(len(faces), 1.0)) * np.nan_to_num(factor, nan=1.0)
    shares = ", ".join(
        f"{name} {member.mean():.1%} of the faces -> {weights[member].sum() / weights.sum():.1%} of the draws"
        for name, member in members.items()
    )
    print(f"oversampling: {shares}")
    return weights


__all__ = ["checked_weighting", "oversampled", "repeated", "share_weights"]

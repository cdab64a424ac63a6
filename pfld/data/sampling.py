"""The order of the training faces as a pure function of (seed, epoch), so a run resumes exactly.

`EpochSampler` yields ``(epoch, index)`` keys: each epoch's order (a permutation, or weighted draws with
replacement for ``data.train_shares``) comes from a generator seeded with the run's seed and the epoch,
and `pfld.data.dataset.LandmarkDataset` seeds each sample's augmentation from the same key
(`sample_seed`). Nothing depends on how many samples came before, in which process or worker: a run
resumed in the middle of an epoch (`start_at`) skips the faces it had trained on and sees exactly the
samples, augmentations included, that the uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Sampler


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of face ``index`` in ``epoch`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([int(seed) % 2**32, int(epoch), int(index)]).generate_state(1)[0])


class EpochSampler(Sampler):
    """``(epoch, index)`` keys of a shuffled (or weighted) pass over ``size`` faces; Lightning calls
    `set_epoch` at every epoch's start (as for a DistributedSampler).

    Args:
        size: faces in the dataset (and samples per pass).
        seed: the run's seed.
        weights: (size,) sampling weights for draws with replacement, or None for a permutation.
    """

    def __init__(self, size: int, seed: int, weights: Sequence[float] | np.ndarray | None = None) -> None:
        self.size, self.seed, self.epoch = int(size), int(seed), 0
        self.weights = None if weights is None else torch.as_tensor(np.asarray(weights), dtype=torch.double)
        if self.weights is not None and len(self.weights) != self.size:
            raise ValueError(f"{len(self.weights)} sampling weights for {self.size} faces")
        self._start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def start_at(self, epoch: int, position: int) -> None:
        """Make the next pass be ``epoch``'s, from its ``position``-th sample on (a mid-epoch resume)."""
        self.epoch, self._start = int(epoch), max(0, int(position))

    def order(self, epoch: int) -> torch.Tensor:
        """(size,) int64 face indices of ``epoch``'s pass."""
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([self.seed % 2**32, epoch]).generate_state(1)[0])
        )
        if self.weights is None:
            return torch.randperm(self.size, generator=generator)
        return torch.multinomial(self.weights, self.size, replacement=True, generator=generator)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, start = self.epoch, self._start
        self._start = 0
        for index in self.order(epoch)[start:].tolist():
            yield (epoch, index)

    def __len__(self) -> int:
        return self.size


__all__ = ["EpochSampler", "sample_seed"]

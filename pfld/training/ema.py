"""An exponential moving average of the weights (EMA): validated, checkpointed and exported in place of
the weights the optimiser last reached; free at inference.

`EMA` is Lightning's `WeightAveraging` with two changes:

- **The decay warms up**: after ``n`` updates it is ``min(decay, (1 + n) / (10 + n))``, so the average
  follows the model closely at first and never keeps much of the random start, whatever the run's
  length; it reaches ``decay`` after ``(10 decay - 1) / (1 - decay)`` updates (8,990 for 0.999). A run of
  3,000 steps ends averaging over roughly its last 350.
- **Only while fitting**: Lightning's callback also acts when ``trainer.validate`` loads a checkpoint
  after the fit (``validate_best``): it puts the checkpoint's weights before averaging into the model
  and swaps the average in for the validation only, so the per-group report written afterwards would
  score the wrong weights. This one leaves a checkpoint loaded outside the fit as it is: its average.

A checkpoint holds the average as its ``state_dict`` (what inference, export, ``init_from`` and the zoo
read) and the optimiser's weights as ``current_model_state`` (what a resume continues from).
`raw_state` reads those back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import WeightAveraging
from lightning.pytorch.trainer.states import TrainerFn


def warmed_decay(decay: float, updates: int) -> float:
    """The decay after ``updates`` updates: ``min(decay, (1 + updates) / (10 + updates))``."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class _Lerp:
    """``multi_avg_fn`` for `torch.optim.swa_utils.AveragedModel`: average += (1 - decay_n) (model - average)."""

    def __init__(self, decay: float):
        self.decay = decay

    @torch.no_grad()
    def __call__(
        self, averaged: Sequence[torch.Tensor], current: Sequence[torch.Tensor], updates: torch.Tensor
    ) -> None:
        weight = 1.0 - warmed_decay(self.decay, int(updates))
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(list(averaged), list(current), weight)
        else:  # integer buffers (BatchNorm's num_batches_tracked): follow the model
            for average, value in zip(averaged, current, strict=True):
                average.copy_(value)


class EMA(WeightAveraging):
    """The exponential moving average of every parameter and buffer (BatchNorm statistics too), updated
    after each optimiser step; ``decay`` in (0, 1), warmed up (`warmed_decay`)."""

    def __init__(self, decay: float = 0.999):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        super().__init__(use_buffers=True, multi_avg_fn=_Lerp(decay))

    @staticmethod
    def _fitting(trainer: pl.Trainer) -> bool:
        return trainer.state.fn == TrainerFn.FITTING

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitting(trainer):
            super().on_validation_epoch_start(trainer, pl_module)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._fitting(trainer):
            super().on_validation_epoch_end(trainer, pl_module)

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._fitting(trainer):
            super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if self._fitting(trainer):
            super().on_save_checkpoint(trainer, pl_module, checkpoint)


def raw_state(checkpoint: str | Path | dict[str, Any]) -> dict[str, torch.Tensor]:
    """The optimiser's weights of a checkpoint written with `EMA` (its ``current_model_state``); its
    ``state_dict`` when it was written without."""
    if not isinstance(checkpoint, dict):
        checkpoint = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return checkpoint.get("current_model_state", checkpoint["state_dict"])

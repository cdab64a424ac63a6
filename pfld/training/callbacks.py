"""Lightning callbacks: validation pictures for the loggers, the best checkpoint as a wandb artifact."""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

from pfld.evaluation.figures import face_grid, figure_pixels, plot_ced
from pfld.metrics import nme, scored_nmes
from pfld.training.tracking import log_checkpoint_artifact, log_images


class ValidationPlots(Callback):
    """Every ``every_n_epochs`` epochs of fitting and at the last one, the CED curve (``val/ced``) and
    the worst and median faces (``val/faces``) of that epoch's validation go to every logger (see
    `pfld.training.tracking.log_images`).

    No second pass: on those epochs a forward hook on the model's landmark head (``model.head``, whose
    output is the (B, K, 2) landmarks) records each validation batch's predictions; only the dozen
    faces drawn are read again from the validation set. Single-process runs only: with several
    processes each sees a shard of the faces, so nothing is drawn.
    """

    def __init__(self, every_n_epochs: int = 10, faces_per_row: int = 6) -> None:
        if every_n_epochs < 1:
            raise ValueError(f"every_n_epochs must be at least 1, got {every_n_epochs}")
        self.every_n_epochs, self.faces_per_row = every_n_epochs, faces_per_row
        self._hook: torch.utils.hooks.RemovableHandle | None = None
        self._batch_output: torch.Tensor | None = None
        self._predictions: list[torch.Tensor] = []
        self._errors: list[torch.Tensor] = []
        self.seconds = 0.0  # time spent drawing and logging, for the curious

    def _due(self, trainer: L.Trainer) -> bool:
        if (
            trainer.sanity_checking
            or not trainer.loggers
            or trainer.state.fn != "fit"
            or trainer.world_size > 1
        ):
            return False
        epoch = trainer.current_epoch + 1
        return epoch % self.every_n_epochs == 0 or epoch == trainer.max_epochs

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._predictions, self._errors, self._batch_output = [], [], None
        head = getattr(getattr(pl_module, "model", None), "head", None)
        if self._due(trainer) and head is not None and hasattr(pl_module, "normalization"):
            self._hook = head.register_forward_hook(self._record)

    def _record(
        self,
        module: torch.nn.Module,
        inputs: tuple[Any, ...],
        output: torch.Tensor | tuple[torch.Tensor, ...],
    ) -> None:
        landmarks = (
            output[0] if isinstance(output, tuple) else output
        )  # (landmarks, features) in training passes
        self._batch_output = landmarks.detach()

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: dict[str, torch.Tensor],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if self._hook is None or self._batch_output is None:
            return
        predictions, self._batch_output = self._batch_output.float().cpu(), None
        target, visible = batch["landmarks"].cpu(), batch["visible"].cpu()
        self._predictions.append(predictions)
        self._errors.append(nme(predictions, target, pl_module.normalization, visible))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._hook is None:
            return
        self._hook.remove()
        self._hook = None
        if not self._errors:
            return
        start = time.perf_counter()
        errors, predictions = torch.cat(self._errors), torch.cat(self._predictions)
        self._predictions, self._errors = [], []
        scored = scored_nmes(errors)
        images = {}
        if scored.numel():
            epoch = trainer.current_epoch + 1
            images["val/ced"] = figure_pixels(plot_ced({f"epoch {epoch}": scored}))
            dataset = trainer.val_dataloaders.dataset
            images["val/faces"] = face_grid(dataset, predictions, errors, self.faces_per_row)
            log_images(trainer.loggers, images, trainer.global_step, trainer.current_epoch)
        self.seconds += time.perf_counter() - start


class BestCheckpointArtifact(Callback):
    """At the end of fitting, the best checkpoint of the `ModelCheckpoint` that monitors ``monitor``
    goes to each wandb logger as a ``model`` artifact (alias ``best``), offline too: the offline run
    records it and `wandb sync` uploads it (see `pfld.training.tracking.log_checkpoint_artifact`).

    Lightning's own ``log_model`` refuses offline runs, and with two checkpoint callbacks it would also
    tag the ``last`` checkpoint as best.
    """

    def __init__(self, monitor: str = "val/nme") -> None:
        self.monitor = monitor

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        checkpoint = next(
            (c for c in trainer.checkpoint_callbacks if c.monitor == self.monitor and c.best_model_path), None
        )
        if not wandb_loggers or checkpoint is None or not trainer.is_global_zero:
            return
        score = checkpoint.best_model_score
        metadata = {
            "monitor": self.monitor,
            "score": None if score is None else float(score),
            "original_filename": checkpoint.best_model_path.rsplit("/", 1)[-1],
            "epochs_trained": trainer.current_epoch,
        }
        for logger in wandb_loggers:
            log_checkpoint_artifact(logger.experiment, checkpoint.best_model_path, metadata)

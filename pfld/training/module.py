"""The LightningModule: one shared step for training and validation, metrics `train/*` and `val/*`."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate

from pfld.data.attributes import FACE_CLASSES
from pfld.data.mixed import extend_points, extend_sigma
from pfld.data.normalize import model_input
from pfld.inference.spec import ModelSpec
from pfld.losses import pose_loss
from pfld.losses.points import l1_loss, point_weights
from pfld.metrics import NMEMetric, PoseErrorMetric, nme
from pfld.models import PFLD
from pfld.training.conventions import ConventionAdapters
from pfld.training.finite_loss import NonFiniteLossError, non_finite_inputs, non_finite_loss_message
from pfld.training.hparams import plain_config

# The module normalises batches in `on_after_batch_transfer` (the model's input is its contract, see
# `data` below); Lightning warns that a datamodule was passed too, whose default hook it then skips.
warnings.filterwarnings("ignore", message=".*overridden `on_after_batch_transfer` in `LightningModule`")


class PFLDModule(L.LightningModule):
    """Trains a `PFLD` model; rebuilt from its own checkpoint's hyper-parameters.

    Args:
        model: config of the model (a ``_target_`` dict, e.g. `conf/model/pfld.yaml`).
        loss: config of the loss (`pfld.losses`).
        optimizer: config of a ``_partial_`` optimizer, called with the parameter groups.
        scheduler: config of a ``_partial_`` schedule called with ``(optimizer, total_steps=...)``,
            stepped every optimizer step; or None.
        data: what a deployed model must know about its input: ``input_size``, ``crop_scale``,
            ``mean``, ``std``, ``scheme`` (name), ``num_points``, ``normalization`` (a pair of point
            indices: the eye corners, or the pupils for inter_pupil) and ``normalization_mode``
            ("inter_ocular", "inter_pupil" or "box"; absent in older checkpoints: "inter_ocular") and,
            for a grey model, ``channels`` 1 (`pfld.inference.ModelSpec`).
        channels_last: run convolutions in NHWC (1.5x faster for PFLD's depthwise layers on CPU).
        distill_weight: weight of an L1 loss towards a teacher's points, on batches that carry them.
        pseudo_weight: weight of a pseudo-labelled point in the landmark loss (1 for an annotated one),
            on batches that carry the flags (`pfld.losses.point_weights`).

    Validation logs ``val/loss``, ``val/nme``, ``val/failure_rate``, ``val/auc`` (and ``val/unscored``
    when faces could not be normalised) and, with the auxiliary net, the head-pose errors in degrees
    ``val/yaw_mae``, ``val/pitch_mae``, ``val/roll_mae`` and their mean ``val/pose_mae`` (over the
    faces with a valid pose). Training logs ``train/loss``, ``train/nme`` and, when the loss has a pose
    term, ``train/pose_loss`` (unweighted). An auxiliary net that the loss does not train (a point loss
    with ``pose_weight`` 0) is frozen: its angles are still predicted and scored, from its initial weights.
    """

    def __init__(
        self,
        model: Mapping[str, Any],
        loss: Mapping[str, Any],
        optimizer: Mapping[str, Any],
        data: Mapping[str, Any],
        scheduler: Mapping[str, Any] | None = None,
        channels_last: bool = True,
        distill_weight: float = 0.0,
        pseudo_weight: float = 1.0,
    ) -> None:
        super().__init__()
        if pseudo_weight < 0:
            raise ValueError(f"pseudo_weight must be >= 0, got {pseudo_weight}")
        self.save_hyperparameters(
            {
                "model": plain_config(model),
                "loss": plain_config(loss),
                "optimizer": plain_config(optimizer),
                "scheduler": plain_config(scheduler),
                "data": plain_config(data),
                "channels_last": channels_last,
                "distill_weight": float(distill_weight),
                "pseudo_weight": float(pseudo_weight),
            },
            logger=False,  # train() logs the whole resolved config; this would overwrite its `data` entry
        )
        self.loss = instantiate(self.hparams.loss)
        self._apply_model_requirements()
        self.model: PFLD = instantiate(self.hparams.model)
        #: What the model takes and gives (`pfld.inference.ModelSpec`), from the ``data`` hyper-parameters.
        self.spec = ModelSpec.from_hparams(self.hparams.data, with_pose=self.model.auxiliary is not None)
        self.normalization_mode: str = self.spec.normalization_mode
        self.normalization = self.spec.nme_normalization  # (i, j) or "box": the `nme` argument
        if self.model.num_points != self.spec.num_points:
            raise ValueError(
                f"model has {self.model.num_points} points but the data has {self.spec.num_points}"
            )
        if self.model.in_channels != self.spec.channels:
            raise ValueError(
                f"model takes {self.model.in_channels} input channels but the data has {self.spec.channels}: "
                "leave model.backbone.in_channels at its default ${data.channels}"
            )
        self.val_metric = NMEMetric(self.normalization)
        self.val_pose_metric = PoseErrorMetric() if self.model.auxiliary is not None else None
        if self.model.auxiliary is not None and not getattr(self.loss, "uses_pose", True):
            # A pose net the loss does not train gets no gradient anyway; frozen, it is left out of the
            # optimiser and DDP does not stop on parameters unused by the loss.
            self.model.auxiliary.requires_grad_(False)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)
        #: (D, K) weights of the training faces' derived points (see `pfld.data.mixed`); none by default.
        #: Not a buffer: it belongs to the run's data, not to the model a checkpoint keeps.
        self.derived_weights = torch.zeros(0, self.model.num_points)
        #: Training-only corrections of the train sources' annotation conventions (`set_conventions`).
        self.conventions: ConventionAdapters | None = None

    def set_derived_points(self, weights: np.ndarray | torch.Tensor) -> None:
        """Train on faces with D derived points after the K points (`pfld.data.mixed`): the prediction
        of each is the weighted mean ``weights`` (D, K) of the predicted points. Set it on resume too."""
        weights = torch.as_tensor(weights, dtype=torch.float32)
        if weights.ndim != 2 or weights.shape[1] != self.model.num_points:
            raise ValueError(
                f"derived point weights must be (D, {self.model.num_points}), got {tuple(weights.shape)}"
            )
        self.derived_weights = weights

    def set_conventions(self, conventions: int, flip_permutation: np.ndarray, linear: bool = True) -> None:
        """Learn a correction for each of ``conventions`` - 1 annotation conventions besides the reference
        (`pfld.training.conventions`), for batches that carry ``convention``. Set it on resume too."""
        features = self.model.head.fc.in_features
        self.conventions = (
            ConventionAdapters(conventions, flip_permutation, features, linear) if conventions > 1 else None
        )

    def _apply_model_requirements(self) -> None:
        """Give the model the parts its loss reads (RLE's scale head, a binned pose net), in the saved
        hyper-parameters too, so the checkpoint rebuilds the same model; a model config that sets one of
        them otherwise is refused."""
        needs = getattr(self.loss, "model_requirements", dict)()
        model = self.hparams.model
        for key, value in needs.items():
            if model.get(key) not in (None, False, value):
                raise ValueError(
                    f"the loss needs model.{key}={value} but the model config sets {model[key]!r}: "
                    f"leave model.{key} unset (the loss sets it) or change the loss"
                )
            model[key] = value

    def initialize_from_data(
        self, mean_shape: np.ndarray, class_fractions: Sequence[float], num_faces: int | None = None
    ) -> None:
        """Start the landmark regressor at the training mean shape; give the loss the training set's
        class fractions (and size: ``num_faces``, for the effective-number balance), used when it
        weights classes over the data set. Not called on resume."""
        self.model.head.set_mean_shape(torch.as_tensor(mean_shape, dtype=torch.float32))
        if hasattr(self.loss, "set_class_statistics"):
            if num_faces is None:
                raise ValueError("this loss needs the training set's size: pass num_faces")
            self.loss.set_class_statistics(list(class_fractions), num_faces)
        elif (
            hasattr(self.loss, "set_class_fractions")
            and getattr(self.loss, "class_weighting", "") == "dataset"
        ):
            self.loss.set_class_fractions(list(class_fractions))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, S, S) normalised images -> (B, K, 2) landmarks in [0, 1] of the crop."""
        return self.model(self._layout(images))

    def _layout(self, images: torch.Tensor) -> torch.Tensor:
        layout = torch.channels_last if self.hparams.channels_last else torch.contiguous_format
        return images.contiguous(memory_format=layout)

    def on_after_batch_transfer(
        self, batch: dict[str, torch.Tensor], dataloader_idx: int
    ) -> dict[str, torch.Tensor]:
        """The loaders deliver (B, S, S, 3) uint8 crops; normalise them here, on the model's device,
        into the model's input (`pfld.data.normalize.model_input`) in its memory layout."""
        if batch["image"].dtype == torch.uint8:
            data = self.hparams.data
            batch["image"] = self._layout(model_input(batch["image"], data["mean"], data["std"]))
        return batch

    def compute_loss(
        self, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Loss, (B, K, 2) landmarks and (B, 3) angles in radians (None without the auxiliary net) of a
        normalised batch (see `on_after_batch_transfer`)."""
        images = self._layout(batch["image"])
        out = self.model.forward_train(images)  # (B, K, 2), (B, 3) radians or None, ...
        points, sigma = out.landmarks, out.sigma
        if self.conventions is not None and "convention" in batch:  # each face in its source's convention
            points = self.conventions(points, out.features, batch["convention"], batch["flipped"])
        if batch["landmarks"].shape[1] != points.shape[1]:  # faces with derived points after the K
            if batch["landmarks"].shape[1] != points.shape[1] + len(self.derived_weights):
                raise ValueError(
                    f"the batch has {batch['landmarks'].shape[1]} points for a model of {points.shape[1]} "
                    f"and {len(self.derived_weights)} derived points: call set_derived_points"
                )
            points = extend_points(points, self.derived_weights)
            sigma = None if sigma is None else extend_sigma(sigma, self.derived_weights)
        extras = {}
        if getattr(self.loss, "needs_sigma", False):
            extras["sigma"] = sigma
        if getattr(self.loss, "needs_angle_logits", False):
            extras["angle_logits"] = out.angle_logits
        mask = batch["visible"]
        pseudo_weight = self.hparams.get("pseudo_weight", 1.0)
        if pseudo_weight != 1.0 and "pseudo" in batch:  # pseudo-labelled points weigh pseudo_weight
            mask = point_weights(mask, batch["pseudo"], pseudo_weight)
        loss = self.loss(
            points,
            batch["landmarks"],
            out.angles,
            batch["angles"],
            batch["classes"],
            mask=mask,
            pose_valid=batch["pose_valid"],
            **extras,
        )
        if self.hparams.get("distill_weight", 0.0) > 0 and "teacher" in batch:
            # distillation: an L1 loss towards a teacher's points (pfld.teacher.pseudo_label), all points
            teacher = batch["teacher"]
            student = out.landmarks  # the reference convention's points, the teacher's too
            if teacher.shape[1] == points.shape[1] > student.shape[1]:  # with the derived points
                student = extend_points(student, self.derived_weights)
            loss = loss + self.hparams.distill_weight * l1_loss(
                student, teacher[:, : student.shape[1]], batch["teacher_visible"][:, : student.shape[1]]
            )
        return loss, out.landmarks, out.angles

    def _shared_step(
        self, batch: dict[str, torch.Tensor], stage: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """`compute_loss`, logged as ``<stage>/loss``."""
        loss, landmarks, angles = self.compute_loss(batch)
        self.log(
            f"{stage}/loss",
            loss,
            prog_bar=True,
            on_step=stage == "train",
            on_epoch=True,
            batch_size=len(landmarks),
            sync_dist=True,  # means over every process (a scalar all-reduce; nothing on one process)
        )
        return loss, landmarks, angles

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, landmarks, angles = self._shared_step(batch, "train")
        self._stop_if_not_finite(loss, batch, batch_idx)
        if angles is not None and getattr(self.loss, "pose_weight", 0.0) > 0:  # a point loss's pose term
            with torch.no_grad():
                pose = pose_loss(angles.detach(), batch["angles"], batch["pose_valid"])
            self.log(
                "train/pose_loss",
                pose,
                on_step=False,
                on_epoch=True,
                batch_size=len(landmarks),
                sync_dist=True,
            )
        with torch.no_grad():
            k = landmarks.shape[1]  # the model's points (not the derived ones after them)
            errors = nme(
                landmarks.detach(), batch["landmarks"][:, :k], self.normalization, batch["visible"][:, :k]
            )
            batch_nme = errors.nanmean()
        self.log(
            "train/nme", batch_nme, on_step=False, on_epoch=True, batch_size=len(landmarks), sync_dist=True
        )
        return loss

    def _stop_if_not_finite(self, loss: torch.Tensor, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        """Raise `NonFiniteLossError` when the loss is NaN or infinite on any process (all of them stop
        together), before the backward pass: the weights stay those of the last good step."""
        bad = not bool(torch.isfinite(loss.detach()))
        trainer = self._trainer
        if trainer is not None:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if not bad:
            return
        epoch, step = (trainer.current_epoch, trainer.global_step) if trainer is not None else (-1, -1)
        if torch.isfinite(loss.detach()):
            raise NonFiniteLossError(
                f"the training loss is not finite on another process at epoch {epoch}, batch {batch_idx} "
                f"(global step {step}); that process names the faces"
            )
        message = non_finite_loss_message(
            float(loss.detach()), epoch, batch_idx, step, self._batch_sources(batch), non_finite_inputs(batch)
        )
        raise NonFiniteLossError(message)

    def _batch_sources(self, batch: dict[str, torch.Tensor]) -> list[str]:
        """Where the batch's faces were annotated, through the dataset's `sources_of`; [] if unknown."""
        loader = getattr(self._trainer, "train_dataloader", None) if self._trainer is not None else None
        describe = getattr(getattr(loader, "dataset", None), "sources_of", None)
        if "index" not in batch or describe is None:
            return []
        return describe(batch["index"].tolist())

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, landmarks, angles = self._shared_step(batch, "val")
        self.val_metric.update(landmarks, batch["landmarks"], batch["visible"], groups=batch["classes"])
        if self.val_pose_metric is not None and angles is not None:
            self.val_pose_metric.update(angles, batch["angles"], batch["pose_valid"])

    def on_validation_epoch_end(self) -> None:
        results = self.val_metric.compute()  # over every process
        self._log_synced("val/nme", results["nme"], prog_bar=True)
        self._log_synced("val/failure_rate", results["failure_rate"])
        self._log_synced("val/auc", results["auc"])
        if results["unscored"] > 0:  # faces whose normalisation points are not both labelled
            self._log_synced("val/unscored", results["unscored"].float())
        for name, value in zip(FACE_CLASSES, results["group_nme"], strict=True):
            if not torch.isnan(value):  # the classes the validation faces have (AFW: 10 profiles)
                self._log_synced(f"val/nme_{name}", value)
        self.val_metric.reset()
        if self.val_pose_metric is not None:
            pose = self.val_pose_metric.compute()  # over every process
            if pose["faces"] > 0:
                for name in ("yaw_mae", "pitch_mae", "roll_mae", "pose_mae"):
                    self._log_synced(f"val/{name}", pose[name].float())
            self.val_pose_metric.reset()

    def _log_synced(self, name: str, value: torch.Tensor, prog_bar: bool = False) -> None:
        """Log a value that torchmetrics already synchronised, so it is the same on every process.
        ``max`` over processes keeps it exact (a mean over 3 processes may round) and tells Lightning it
        is synchronised (it warns about epoch-level values logged without ``sync_dist``)."""
        self.log(name, value, prog_bar=prog_bar, sync_dist=True, reduce_fx="max")

    def configure_optimizers(self) -> dict[str, Any]:
        decay, no_decay = [], []
        for parameter in self.parameters():
            if parameter.requires_grad:
                (decay if parameter.ndim > 1 else no_decay).append(parameter)
        groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = instantiate(self.hparams.optimizer)(groups)
        if not self.hparams.scheduler:
            return {"optimizer": optimizer}
        total_steps = int(self.trainer.estimated_stepping_batches)
        scheduler = instantiate(self.hparams.scheduler)(optimizer, total_steps=total_steps)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

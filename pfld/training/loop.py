"""`train(cfg)`: build everything from the Hydra config, fit, re-validate, report against a baseline."""

from __future__ import annotations

import signal
import sys
from typing import Any

import lightning as L
import numpy as np
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf, open_dict

from pfld.cpu_budget import AUTO, AdaptiveThreads, cpu_computes_bf16, plan_cpu
from pfld.data.attributes import FACE_CLASSES
from pfld.data.datamodule import LandmarkDataModule
from pfld.data.schemes import LandmarkScheme
from pfld.evaluation import breakdown_tables, write_report
from pfld.inference import ModelSpec, TorchLandmarkModel
from pfld.metrics import nme
from pfld.training.config_checks import check_train_config
from pfld.training.ema import EMA
from pfld.training.module import PFLDModule
from pfld.training.preemption import PreemptionCheckpoint, ResumeState, exit_status, resolve_ckpt_path
from pfld.training.tracking import finish_wandb, write_metrics
from pfld.training.warm_start import warm_start


def _instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group (callbacks, loggers)."""
    if not group:
        return []
    return [instantiate(entry) for entry in group.values() if entry and "_target_" in entry]


def mean_shape_nme(datamodule: LandmarkDataModule) -> float:
    """Validation NME of the trivial baseline: the training set's mean landmarks for every face."""
    faces = datamodule._require(datamodule.val_faces)
    target = torch.from_numpy(np.nan_to_num(faces.unit_landmarks(), nan=0.5))  # (N, K, 2)
    mean = torch.from_numpy(datamodule.mean_shape()).expand_as(target)
    visible = torch.from_numpy(faces.visible)
    normalization = model_spec(datamodule).nme_normalization
    return float(nme(mean, target, normalization, visible).nanmean())


def switch_off_pose_if_unavailable(cfg: DictConfig, scheme: LandmarkScheme) -> None:
    """A scheme without pose reference points has no Euler-angle targets: drop the auxiliary branch and
    a point loss's pose term (with a message), and refuse the PFLD loss, which needs them."""
    if scheme.has_pose:
        return
    if "PFLDLoss" in str(cfg.loss.get("_target_", "")):
        raise ValueError(
            f"scheme {scheme.name!r} declares no pose reference points, so there are no Euler angles "
            "for the PFLD loss: choose another loss (e.g. loss=l1) or add pose_reference to the scheme"
        )
    if cfg.model.get("auxiliary", True):
        print(f"scheme {scheme.name!r} declares no pose reference points: the pose branch is switched off")
        with open_dict(cfg):
            cfg.model.auxiliary = False
    if cfg.loss.get("pose_factor", "none") != "none":
        print(
            f"scheme {scheme.name!r} has no Euler angles: loss.pose_factor={cfg.loss.pose_factor} is set to "
            "none (every face's pose factor would be the same)"
        )
        with open_dict(cfg):
            cfg.loss.pose_factor = "none"
    if cfg.loss.get("pose_weight", 0.0):
        with open_dict(cfg):
            cfg.loss.pose_weight = 0.0


def warn_about_empty_classes(loss: object, datamodule: LandmarkDataModule) -> None:
    """A loss that balances classes gets a warning naming the classes no training face is in: their
    weight is never used (a face's classes are fixed, so no batch holds one), which is worth knowing
    when a data set lacks the flags that would fill them (expression, occlusion)."""
    balances = type(loss).__name__ == "PFLDLoss" or getattr(loss, "balance", "none") != "none"
    if not balances:
        return
    counts = datamodule.class_counts()
    empty = [name for name, count in zip(FACE_CLASSES, counts, strict=True) if count == 0]
    if empty:
        print(
            f"warning: no training face is in class {', '.join(empty)}: the loss's class balance has no "
            "weight to give there (each face is weighted by the classes it is in)"
        )


def _accelerator_and_processes(cfg: DictConfig) -> tuple[str, int]:
    """("cpu" or "gpu"-like, training processes on this machine sharing its cores)."""
    accelerator = str(cfg.trainer.get("accelerator", "cpu"))
    if accelerator == "auto":
        accelerator = "gpu" if torch.cuda.is_available() else "cpu"
    devices = cfg.trainer.get("devices", 1)
    return accelerator, devices if isinstance(devices, int) and accelerator == "cpu" else 1


def plan_threads_and_workers(cfg: DictConfig, datamodule: LandmarkDataModule) -> list[Callback]:
    """Choose the training process's threads and the DataLoader workers (``cpu.threads``,
    ``data.num_workers``; ``auto`` = from the free cores, see `pfld.cpu_budget`), apply them and say so;
    returns the callback that keeps the threads fitted to the free cores (none if not wanted)."""
    accelerator, processes = _accelerator_and_processes(cfg)
    cpu = cfg.get("cpu") or {}
    threads = cpu.get("threads", AUTO)
    plan = plan_cpu(accelerator, threads, datamodule.num_workers, processes)
    torch.set_num_threads(plan.threads)
    datamodule.num_workers = plan.workers
    datamodule.pin_memory = datamodule.pin_memory or accelerator in ("gpu", "cuda")
    print(f"cpu: {plan.describe()}")
    if accelerator == "cpu" and "bf16" in str(cfg.trainer.get("precision")) and not cpu_computes_bf16():
        print(
            "warning: this CPU has no native bf16 arithmetic (AMX or AVX512-BF16), so bf16-mixed runs "
            "slower here than 32-true; see the README's speed section"
        )
    every_s = cpu.get("adapt_every_s")
    if not every_s or threads != AUTO or accelerator != "cpu":
        return []
    return [AdaptiveThreads(float(every_s), processes)]


def model_spec(datamodule: LandmarkDataModule) -> ModelSpec:
    """The `ModelSpec` of a model trained on ``datamodule``'s crops: what its checkpoint carries (as
    ``data`` hyper-parameters) to be used without this config. Its ``normalization`` is the NME's pair of
    points (`LandmarkDataModule.normalization_pair`), ``normalization_mode`` what divides the NME."""
    return ModelSpec(
        scheme=datamodule.scheme.name,
        num_points=datamodule.scheme.num_points,
        input_size=datamodule.input_size,
        crop_scale=datamodule.crop_scale,
        mean=tuple(datamodule.mean),
        std=tuple(datamodule.std),
        normalization=datamodule.normalization_pair,
        normalization_mode=datamodule.normalization,
        channels=datamodule.channels,
    )


def train(cfg: DictConfig) -> dict[str, float]:
    """Fit a PFLD model as configured; returns the final metrics (``val/nme`` and the baseline).

    The config is checked first (`check_train_config`): a bad one fails before any data is prepared.
    ``ckpt_path`` resumes a run; ``init_from`` starts a new one from a checkpoint's matching weights.
    """
    with open_dict(cfg):  # last / auto / a run folder -> the checkpoint file to resume from
        cfg.ckpt_path = resolve_ckpt_path(cfg.get("ckpt_path"), cfg.paths.output_dir)
    check_train_config(cfg)
    L.seed_everything(cfg.seed, workers=True)
    datamodule: LandmarkDataModule = instantiate(cfg.data)
    datamodule.setup("fit")
    switch_off_pose_if_unavailable(cfg, datamodule.scheme)
    module = PFLDModule(
        model=cfg.model,
        loss=cfg.loss,
        optimizer=cfg.optimizer,
        scheduler=cfg.get("scheduler"),
        data=model_spec(datamodule).to_hparams(),
        channels_last=cfg.channels_last,
        distill_weight=cfg.get("distill_weight", 0.0),
        pseudo_weight=cfg.get("pseudo_weight", 1.0),
    )
    module.set_derived_points(datamodule.derived.weights)  # faces of other schemes (pfld.data.mixed)
    module.set_conventions(  # the train sources' annotation conventions (pfld.training.conventions)
        datamodule.num_conventions, datamodule.scheme.flip_permutation, cfg.get("convention_linear", True)
    )
    if cfg.ckpt_path is None:
        module.initialize_from_data(
            datamodule.mean_shape(),
            datamodule.class_fractions(),
            len(datamodule._require(datamodule.train_faces)),
        )
        warn_about_empty_classes(module.loss, datamodule)
    if cfg.get("init_from"):
        warm_start(module.model, cfg.init_from)

    callbacks: list[Callback] = [
        *_instantiate_all(cfg.get("callbacks")),
        *plan_threads_and_workers(cfg, datamodule),
        *([EMA(cfg.ema)] if cfg.get("ema") is not None else []),
        ResumeState(),  # where in its epoch a checkpoint was taken, and the random states: exact resumes
    ]
    loggers: list[Logger] = _instantiate_all(cfg.get("logger"))
    if not loggers and any(isinstance(c, LearningRateMonitor) for c in callbacks):
        print("no logger configured: the learning-rate monitor is left out")
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))  # type: ignore[arg-type]
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
    except SIGTERMException:  # a stop signal: PreemptionCheckpoint saved the run and said how to resume
        stop = next((c for c in callbacks if isinstance(c, PreemptionCheckpoint)), None)
        finish_wandb(loggers)
        if stop is None:
            print(
                "stopped by a signal; no preemption callback saved the state (callbacks=none?)",
                file=sys.stderr,
            )
        raise SystemExit(stop.exit_status if stop is not None else exit_status(signal.SIGTERM)) from None

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "train/"))}
    checkpoint = next(
        (c for c in callbacks if isinstance(c, ModelCheckpoint) and c.monitor == "val/nme"), None
    )
    if cfg.get("validate_best") and checkpoint is not None and checkpoint.best_model_path:
        results = trainer.validate(
            module, datamodule=datamodule, ckpt_path=checkpoint.best_model_path, verbose=False
        )
        metrics.update({k: float(v) for k, v in results[0].items()})
        metrics["best_checkpoint"] = checkpoint.best_model_path  # type: ignore[assignment]
        report = write_report(
            TorchLandmarkModel(module.model, module.spec),
            datamodule.val_dataloader(),
            module.normalization,
            cfg.paths.output_dir,
            subsets=datamodule.val_subsets,
        )
        metrics |= {f"val/nme_{group}": row["nme"] for group, row in report["by_group"].items()}
        print(
            f"wrote val_ced.png, val_predictions.png, val_groups.md and val_faces.csv ({int(report['faces'])} faces) "
            f"to {cfg.paths.output_dir}\n{breakdown_tables(report)}"
        )
    metrics["val/nme_mean_shape"] = mean_shape_nme(datamodule)
    if "val/nme" in metrics:
        print(
            f"\nval/nme {metrics['val/nme']:.4f} ({module.normalization_mode}, "
            f"{len(datamodule.val_faces)} faces); "
            f"mean-shape baseline {metrics['val/nme_mean_shape']:.4f}"
        )
    write_metrics(
        metrics, cfg.paths.output_dir
    )  # metrics.json: read by the multirun summary (pfld.training.sweep)
    finish_wandb(loggers)  # else the next run of a multirun in this process logs into this wandb run
    return metrics

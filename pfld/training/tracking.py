"""Experiment tracking helpers: pictures to any logger, the best checkpoint to wandb, a run's metrics file.

Loggers are Lightning's: ``WandbLogger`` (offline by default, `wandb sync` uploads later),
``TensorBoardLogger`` (through tensorboardX) and ``CSVLogger``; each gets what it can take.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from lightning.pytorch.loggers import Logger, WandbLogger

from pfld.io.images import write_image

METRICS_FILE = "metrics.json"


def log_images(
    loggers: Iterable[Logger], images: Mapping[str, np.ndarray], step: int, epoch: int
) -> list[str]:
    """Send (H, W, 3) uint8 RGB ``images`` (key -> picture) to every logger: ``log_image`` where it has
    one (wandb), ``experiment.add_image`` (tensorboard), else PNGs ``<log_dir>/images/<key>_epoch<E>.png``
    (CSV). Returns where each went, for messages and tests."""
    places = []
    for logger in loggers:
        if hasattr(logger, "log_image"):
            for key, image in images.items():
                logger.log_image(key, [image], step=step, caption=[f"epoch {epoch}"])
            places.append(f"{type(logger).__name__}")
        elif hasattr(logger.experiment, "add_image"):
            for key, image in images.items():
                logger.experiment.add_image(key, image, global_step=step, dataformats="HWC")
            places.append(f"{type(logger).__name__}")
        elif getattr(logger, "log_dir", None):
            for key, image in images.items():
                name = f"{key.replace('/', '_')}_epoch{epoch:03d}.png"
                places.append(str(write_image(Path(logger.log_dir) / "images" / name, image)))
    return places


def log_checkpoint_artifact(run: Any, path: str | Path, metadata: Mapping[str, Any]) -> None:
    """Log a checkpoint to a wandb ``run`` as a ``model`` artifact ``model-<run id>`` with alias ``best``.

    The file is referenced, not copied (``policy="immutable"``): offline, the run records its path and
    `wandb sync` uploads it from there later, so keep the run folder's checkpoints until then.
    """
    import wandb

    artifact = wandb.Artifact(f"model-{run.id}", type="model", metadata=dict(metadata))
    artifact.add_file(str(path), name="model.ckpt", policy="immutable")
    run.log_artifact(artifact, aliases=["best"])


def finish_wandb(loggers: Iterable[Logger]) -> None:
    """Finish the wandb run of a `WandbLogger` among ``loggers``: Lightning leaves it open, and the next
    run of a multirun in this process would otherwise log into it."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()


def write_metrics(metrics: Mapping[str, Any], folder: str | Path) -> Path:
    """Write a run's final metrics to ``<folder>/metrics.json`` (NaN becomes null), for sweep summaries."""
    path = Path(folder) / METRICS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in metrics.items()}
    path.write_text(json.dumps(plain, indent=2, sort_keys=True) + "\n")
    return path

"""Tracking: validation pictures to every logger, the best checkpoint to wandb, metrics.json and the
multirun summary."""

import json
import struct
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import OmegaConf

from pfld.training.callbacks import BestCheckpointArtifact
from pfld.training.loop import train
from pfld.training.sweep import SweepSummary, collect_runs, summary_table
from pfld.training.tracking import write_metrics
from tests.conftest import ROOT, compose_train


class RecordingLogger(Logger):
    """A logger that can take pictures and remembers what it got (class-level: Hydra builds it)."""

    received: ClassVar[list[tuple[str, int, tuple[int, ...]]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    def log_metrics(self, metrics, step=None) -> None:
        pass

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_image(self, key: str, images: list, step: int | None = None, **kwargs) -> None:
        RecordingLogger.received += [(key, step, image.shape) for image in images]


def tensorboard_image_tags(folder: Path) -> list[str]:
    """Tags of the image summaries in the TFRecord event files under ``folder``."""
    from tensorboardX.proto.event_pb2 import Event

    tags = []
    for path in folder.glob("events.out.tfevents.*"):
        data, position = path.read_bytes(), 0
        while position < len(data):
            (length,) = struct.unpack("<Q", data[position : position + 8])
            event = Event.FromString(data[position + 12 : position + 12 + length])
            position += 16 + length
            tags += [value.tag for value in event.summary.value if value.HasField("image")]
    return tags


@pytest.mark.slow
def test_validation_plots_reach_every_logger(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")  # wandb's own calls run, nothing is written
    RecordingLogger.received = []
    overrides = [
        "logger=[csv,tensorboard,wandb]",
        "logger.wandb.offline=false",
        "+logger.recording._target_=tests.pfld.training.test_tracking.RecordingLogger",
        "data.num_workers=0",
        "data.batch_size=32",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=2",
        "validate_best=false",
        "callbacks.validation_plots.every_n_epochs=5",  # so only the last epoch (the second) is drawn
    ]
    metrics = train(compose_train(overrides, tmp_path))
    keys = [(key, step) for key, step, _ in RecordingLogger.received]
    assert keys == [("val/ced", 2), ("val/faces", 2)]  # global step 2 = after the second epoch
    assert all(len(shape) == 3 and shape[2] == 3 for _, _, shape in RecordingLogger.received)
    images = tmp_path / "csv" / "version_0" / "images"
    assert sorted(p.name for p in images.iterdir()) == ["val_ced_epoch001.png", "val_faces_epoch001.png"]
    assert sorted(tensorboard_image_tags(tmp_path / "tensorboard")) == ["val/ced", "val/faces"]
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["val/nme"] == pytest.approx(metrics["val/nme"])


class FakeRun:
    id = "abc123"

    def __init__(self) -> None:
        self.logged: list = []

    def log_artifact(self, artifact, aliases) -> None:
        self.logged.append((artifact, aliases))


def test_best_checkpoint_goes_to_wandb_as_a_model_artifact(tmp_path):
    path = tmp_path / "epoch003-nme0.0700.ckpt"
    path.write_bytes(b"weights")
    best, last = ModelCheckpoint(monitor="val/nme"), ModelCheckpoint(monitor=None)
    best.best_model_path, best.best_model_score = str(path), torch.tensor(0.07)
    last.best_model_path = str(tmp_path / "last.ckpt")
    run = FakeRun()
    trainer = SimpleNamespace(
        loggers=[WandbLogger(experiment=run)],
        checkpoint_callbacks=[last, best],
        is_global_zero=True,
        current_epoch=4,
    )
    BestCheckpointArtifact("val/nme").on_fit_end(trainer, None)
    [(artifact, aliases)] = run.logged
    assert artifact.name == "model-abc123" and artifact.type == "model" and aliases == ["best"]
    assert artifact.metadata["score"] == pytest.approx(0.07)
    assert artifact.metadata["original_filename"] == path.name
    assert artifact.manifest.entries["model.ckpt"].local_path == str(path)  # referenced, not copied


def _fake_run(sweep: Path, number: int, overrides: list[str], metrics: dict | None) -> None:
    folder = sweep / str(number)
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    if metrics is not None:
        write_metrics(metrics, folder)


def test_sweep_summary_ranks_runs_and_shows_failures(tmp_path, capsys):
    common = ["experiment=sweep_width_loss", "debug=fast"]
    _fake_run(
        tmp_path, 0, ["model.backbone.width=0.25", "loss=l1", *common], {"val/nme": 0.08, "val/auc": 0.3}
    )
    _fake_run(tmp_path, 1, ["model.backbone.width=0.25", "loss=wing", *common], None)  # failed
    _fake_run(
        tmp_path, 2, ["model.backbone.width=0.5", "loss=l1", *common], {"val/nme": 0.06, "val/auc": 0.4}
    )
    _fake_run(tmp_path, 10, ["model.backbone.width=0.5", "loss=wing", *common], {"val/nme": float("nan")})
    assert [run["run"] for run in collect_runs(tmp_path)] == ["0", "1", "2", "10"]
    SweepSummary().on_multirun_end(OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}}}))
    summary = (tmp_path / "summary.md").read_text()
    assert "common overrides: experiment=sweep_width_loss debug=fast" in summary
    rows = [line for line in summary.splitlines() if line.startswith("| ") and "overrides" not in line]
    assert rows[0].startswith("| 2 | model.backbone.width=0.5 loss=l1 | 0.0600 | - | 0.4000 |")
    assert rows[1].startswith("| 0 |")
    assert rows[2].startswith("| 1 | model.backbone.width=0.25 loss=wing | failed | - | - |")
    assert rows[3].startswith("| 10 |") and len(rows) == 4  # NaN: ranked last, shown as -
    assert "val/nme" in capsys.readouterr().out
    assert summary_table([], ["val/nme"]) == "no runs found"


def test_metrics_file_is_json_with_nan_as_null(tmp_path):
    path = write_metrics({"val/nme": float("nan"), "best_checkpoint": "a.ckpt", "val/auc": 0.5}, tmp_path)
    assert json.loads(path.read_text()) == {"val/nme": None, "best_checkpoint": "a.ckpt", "val/auc": 0.5}


@pytest.mark.slow
def test_sweep_writes_one_summary(tmp_path):
    command = [sys.executable, str(ROOT / "train.py"), "-m", "experiment=sweep_width_loss", "debug=fast"]
    command.append(f"paths.log_dir={tmp_path}")
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=900, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    [summary] = tmp_path.glob("debug/multiruns/*/summary.md")
    rows = [
        line for line in summary.read_text().splitlines() if line.startswith("| ") and "overrides" not in line
    ]
    assert len(rows) == 4 and all("failed" not in row for row in rows)
    assert "model.backbone.width=0.5 loss=wing" in summary.read_text() and "Sweep summary" in result.stdout


@pytest.fixture
def fresh_wandb(monkeypatch):
    """An offline wandb with no session left over from an earlier test of the same process (wandb keeps
    its settings process-wide and ignores later environment changes)."""
    import wandb

    wandb.teardown()
    monkeypatch.setenv("WANDB_MODE", "offline")
    yield
    wandb.teardown()


@pytest.mark.slow
def test_offline_wandb_run_holds_pictures(tmp_path, fresh_wandb):
    overrides = [
        "logger=wandb",
        "data.num_workers=0",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
    ]
    train(compose_train([*overrides, "trainer.limit_val_batches=1", "validate_best=false"], tmp_path))
    media = list(tmp_path.glob("wandb/offline-run-*/files/media/images/val/*.png"))
    assert len(media) == 2  # val/ced and val/faces of the last (only) epoch

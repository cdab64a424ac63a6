"""Two processes on CPU (``ddp_spawn``, gloo) give the metrics of one; a 2-process fit writes each
checkpoint once and logs once.

Validation split: 40 faces of the embedded sample, 20 per process. Lightning gives each process a
``DistributedSampler`` (``use_distributed_sampler`` left True); it pads a split that does not divide by
the number of processes by repeating faces, which would count them twice, so the face count is a
multiple of 2 (the batch size need not divide the share: the last batch of each process is short).

The fit runs with the default loss (L1 plus the pose term, ``pose_weight`` 1) and with ``pose_weight`` 0,
whose untrained pose net the module freezes: otherwise DDP stops on parameters that get no gradient.
Each run takes about 7 s on 2 CPU cores.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO
from omegaconf import open_dict

from pfld.data.datamodule import LandmarkDataModule
from pfld.data.readers import read_landmark_csv
from pfld.data.records import FaceRecord
from pfld.data.schemes import load_scheme
from pfld.training.loop import model_spec, train
from pfld.training.module import PFLDModule
from tests.conftest import EMBEDDED, compose_train

pytestmark = pytest.mark.slow  # two processes each (ddp_spawn); the fit trains

FACES = 40  # divisible by the 2 processes: no padded, repeated faces
BATCH = 8  # 20 faces per process: batches of 8, 8 and 4
METRICS = ("val/nme", "val/failure_rate", "val/auc", "val/yaw_mae", "val/pitch_mae", "val/roll_mae")


def first_faces(csv_path: str, count: int) -> list[FaceRecord]:
    """The first ``count`` faces of a landmark CSV (module level, so that ddp_spawn can pickle it)."""
    return read_landmark_csv(csv_path, num_points=68)[:count]


class RecordingCheckpointIO(TorchCheckpointIO):
    """Saves as usual and appends ``<rank> <path>`` to ``record`` for every checkpoint written."""

    def __init__(self, record: str) -> None:
        super().__init__()
        self.record = record

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:  # type: ignore[override]
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        with open(self.record, "a") as handle:
            handle.write(f"{rank} {path}\n")
        super().save_checkpoint(checkpoint, path, storage_options)


class CountingModule(PFLDModule):
    """A `PFLDModule` that also logs how many faces its metrics hold once synchronised (``count/*``): a
    ratio such as the NME or a pose MAE hides a face counted twice or a state shared between processes."""

    def on_validation_epoch_end(self) -> None:
        with self.val_metric.sync_context():
            faces = self.val_metric.per_face().numel()
        self._log_synced("count/faces", torch.tensor(float(faces)))
        if self.val_pose_metric is not None:
            self._log_synced("count/pose_faces", self.val_pose_metric.compute()["faces"].float())
        super().on_validation_epoch_end()


def _datamodule() -> LandmarkDataModule:
    source = functools.partial(first_faces, str(EMBEDDED / "val.csv"), FACES)
    datamodule = LandmarkDataModule(
        train=[source],
        val=[source],
        scheme=load_scheme("ibug68"),
        batch_size=BATCH,
        num_workers=0,
        persistent_workers=False,
    )
    datamodule.setup("fit")
    return datamodule


def _validate(module: PFLDModule, datamodule: LandmarkDataModule, devices: int) -> dict[str, float]:
    trainer = L.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp_spawn" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return trainer.validate(module, datamodule=datamodule, verbose=False)[0]


def test_two_processes_give_the_metrics_of_one(tmp_path, capfd):
    cfg = compose_train([], tmp_path)
    datamodule = _datamodule()
    torch.manual_seed(0)
    module = CountingModule(
        cfg.model, cfg.loss, cfg.optimizer, model_spec(datamodule).to_hparams(), cfg.scheduler
    )
    module.initialize_from_data(datamodule.mean_shape(), datamodule.class_fractions())  # a spread of NMEs

    one = _validate(module, datamodule, devices=1)
    two = _validate(module, datamodule, devices=2)
    assert 0.0 < one["val/failure_rate"] < 1.0 and 0.0 < one["val/auc"] < 1.0  # not a trivial case
    assert "val/unscored" not in one and "val/unscored" not in two
    assert one["count/faces"] == two["count/faces"] == FACES  # each face once, none padded in
    assert one["count/pose_faces"] == two["count/pose_faces"] == FACES  # every face has angles
    classes = sorted(k for k in one if k.startswith("val/nme_"))  # each face class's NME (frontal ...)
    assert "val/nme_frontal" in classes and sorted(k for k in two if k.startswith("val/nme_")) == classes
    for name in (*METRICS, *classes, "val/pose_mae", "val/loss"):
        assert two[name] == pytest.approx(one[name], rel=1e-6, abs=1e-6), name
    # Every epoch-level value is synchronised, so Lightning has nothing to warn about.
    err = capfd.readouterr().err
    assert "GLOBAL_RANK: 1" in err  # the second process's output is captured here too
    assert "sync_dist=True" not in err


@pytest.mark.parametrize("pose_weight", [1.0, 0.0])
def test_two_process_fit_writes_each_checkpoint_once_and_logs_once(tmp_path, pose_weight):
    record = tmp_path / "saves.txt"
    overrides = [
        f"loss.pose_weight={pose_weight}",
        "logger=csv",
        "validate_best=false",
        "data.num_workers=0",
        f"data.batch_size={BATCH}",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "trainer.log_every_n_steps=1",
        "trainer.devices=2",
        "+trainer.strategy=ddp_spawn",
    ]
    cfg = compose_train(overrides, tmp_path / "run")
    with open_dict(cfg):
        source = {"_target_": "tests.workflows.test_ddp.first_faces", "_partial_": True, "count": FACES}
        cfg.data.train = [source | {"csv_path": str(EMBEDDED / "train.csv")}]
        cfg.data.val = [source | {"csv_path": str(EMBEDDED / "val.csv")}]
        cfg.trainer.plugins = [
            {"_target_": "tests.workflows.test_ddp.RecordingCheckpointIO", "record": str(record)}
        ]
    metrics = train(cfg)
    assert metrics["val/nme"] == pytest.approx(metrics["val/nme_mean_shape"], rel=0.3)  # two steps
    assert "val/pose_mae" in metrics

    saves = [line.split(" ", 1) for line in record.read_text().splitlines()]
    assert saves and {rank for rank, _ in saves} == {"0"}  # only the first process writes
    # Lightning's ddp_spawn also saves a .temp.ckpt elsewhere, to hand the weights back to this process.
    folder = tmp_path / "run" / "checkpoints"
    paths = [path for _, path in saves if Path(path).parent == folder]
    assert paths and len(paths) == len(set(paths))  # each checkpoint once
    assert {str(p) for p in folder.glob("*.ckpt")} == set(paths)

    tables = list((tmp_path / "run").rglob("metrics.csv"))
    assert len(tables) == 1, tables  # one logger version, not one per process
    with tables[0].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    steps = [row["step"] for row in rows if row.get("train/loss_step")]
    assert sorted(steps, key=int) == ["0", "1"]  # each of the 2 optimizer steps logged once
    assert sum(1 for row in rows if row.get("val/nme")) == 1  # one validation, logged once

"""PFLDModule: the NME normalisation it builds from its data description, the auxiliary pose term's
gradients, and the validation metrics it logs (a fast_dev_run on the embedded sample)."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from hydra.utils import instantiate

from pfld.data.attributes import FACE_CLASSES
from pfld.metrics import PoseErrorMetric, nme
from pfld.training.loop import model_spec
from pfld.training.module import PFLDModule
from tests.conftest import OLD_DATA_DESCRIPTION, compose_train

OLD_DATA = OLD_DATA_DESCRIPTION


def _module(tmp_path, overrides: list[str] | None = None, data: dict | None = None) -> PFLDModule:
    cfg = compose_train(overrides or [], tmp_path)
    return PFLDModule(cfg.model, cfg.loss, cfg.optimizer, data or OLD_DATA, cfg.scheduler)


def test_a_checkpoint_from_before_the_training_package_keeps_its_schedule(tmp_path):
    """Checkpoints written when the schedules lived in ``pfld.schedules`` name that module in their
    hyper-parameters; loaded now, the schedule is found where it moved and builds."""
    module = _module(tmp_path)
    assert module.hparams.scheduler["_target_"] == "pfld.training.schedules.warmup_cosine"
    hparams = dict(module.hparams)
    hparams["scheduler"] = dict(hparams["scheduler"], _target_="pfld.schedules.warmup_cosine")
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": L.__version__}, path)  # fmt: skip
    restored = PFLDModule.load_from_checkpoint(path, map_location="cpu")
    assert restored.hparams.scheduler["_target_"] == "pfld.training.schedules.warmup_cosine"
    optimizer = torch.optim.SGD(restored.parameters(), lr=0.1)
    schedule = instantiate(restored.hparams.scheduler)(optimizer, total_steps=10)
    assert isinstance(schedule, torch.optim.lr_scheduler.LRScheduler)


def test_old_checkpoints_load_with_inter_ocular_normalization(tmp_path):
    module = _module(tmp_path)
    assert module.normalization_mode == "inter_ocular" and module.normalization == (36, 45)
    assert module.val_metric.normalization == (36, 45)
    path = tmp_path / "old.ckpt"
    torch.save(
        {
            "state_dict": module.state_dict(),
            "hyper_parameters": dict(module.hparams),
            "pytorch-lightning_version": L.__version__,
        },
        path,
    )
    restored = PFLDModule.load_from_checkpoint(path, map_location="cpu")
    assert restored.normalization == (36, 45) and "normalization_mode" not in restored.hparams.data


@pytest.mark.parametrize(
    ("mode", "pair", "expected"),
    [("inter_ocular", [36, 45], (36, 45)), ("inter_pupil", [1, 2], (1, 2)), ("box", [36, 45], "box")],
)
def test_metric_follows_normalization_mode(tmp_path, mode, pair, expected):
    module = _module(tmp_path, data=OLD_DATA | {"normalization": pair, "normalization_mode": mode})
    assert module.normalization_mode == mode
    assert module.normalization == expected == module.val_metric.normalization


def test_unknown_normalization_mode_is_refused(tmp_path):
    with pytest.raises(ValueError, match="normalization mode"):
        _module(tmp_path, data=OLD_DATA | {"normalization_mode": "inter_eye"})


def test_model_spec_records_the_mode(tmp_path):
    for mode in ("inter_ocular", "box"):
        cfg = compose_train(["debug=fast", f"data.normalization={mode}"], tmp_path)
        description = model_spec(instantiate(cfg.data)).to_hparams()  # no setup needed
        assert description["normalization"] == [36, 45]  # ibug68's eye corners, also for box
        assert description["normalization_mode"] == mode


def _batch(b: int = 4, k: int = 68) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    classes = torch.zeros(b, len(FACE_CLASSES), dtype=torch.bool)
    classes[:, 1] = True
    return {
        "image": torch.randn(b, 3, 112, 112, generator=g),
        "landmarks": torch.rand(b, k, 2, generator=g),
        "visible": torch.ones(b, k, dtype=torch.bool),
        "angles": (torch.rand(b, 3, generator=g) - 0.5),
        "pose_valid": torch.tensor([True, False, True, True][:b]),
        "classes": classes,
    }


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
@pytest.mark.parametrize("pose_weight", [0.0, 0.5])
def test_pose_weight_trains_the_auxiliary_net(tmp_path, pose_weight):
    module = _module(tmp_path, [f"loss.pose_weight={pose_weight}", "scheduler=none"])
    assert module.loss.pose_weight == pose_weight
    module.training_step(_batch(), 0).backward()
    auxiliary = list(module.model.auxiliary.parameters())
    head = list(module.model.head.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in head)
    trained = [p.grad is not None and p.grad.abs().sum() > 0 for p in auxiliary]
    assert all(trained) if pose_weight > 0 else not any(trained)
    # Untrained, it is frozen: out of the optimiser, and no unused parameters to stop DDP.
    assert all(p.requires_grad == (pose_weight > 0) for p in auxiliary)
    optimised = {
        id(p) for group in module.configure_optimizers()["optimizer"].param_groups for p in group["params"]
    }
    assert all((id(p) in optimised) == (pose_weight > 0) for p in auxiliary)


def _validate_one_batch(tmp_path, batch_size: int, from_data: bool = False):
    """A module validated on the first validation batch of the embedded faces (``debug=fast``):
    (module, that batch as the module sees it, the logged metrics)."""
    cfg = compose_train(["debug=fast", f"data.batch_size={batch_size}"], tmp_path)
    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    module = PFLDModule(
        cfg.model, cfg.loss, cfg.optimizer, model_spec(datamodule).to_hparams(), cfg.scheduler
    )
    if from_data:  # the mean shape and class weights: a spread of NMEs
        module.initialize_from_data(datamodule.mean_shape(), datamodule.class_fractions())
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        fast_dev_run=True,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    logged = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    batch = module.on_after_batch_transfer(next(iter(datamodule.val_dataloader())), 0)
    module.eval()
    return module, batch, logged


def test_validation_logs_pose_errors_in_degrees(tmp_path):
    module, batch, logged = _validate_one_batch(tmp_path, batch_size=16)
    names = ("yaw_mae", "pitch_mae", "roll_mae")
    assert {"val/nme", "val/pose_mae", *(f"val/{n}" for n in names)} <= set(logged)
    # The same batch, by hand: the auxiliary net's angles against the targets, in degrees.
    with torch.no_grad():
        _, angles = module.model.forward_with_pose(batch["image"])
    assert batch["pose_valid"].any()
    expected = PoseErrorMetric()
    expected.update(angles, batch["angles"], batch["pose_valid"])
    want = expected.compute()
    for name in (*names, "pose_mae"):
        assert logged[f"val/{name}"] == pytest.approx(want[name].item(), rel=1e-5, abs=1e-4)
        assert 0.0 <= logged[f"val/{name}"] <= 180.0
    assert math.isclose(logged["val/pose_mae"], sum(logged[f"val/{n}"] for n in names) / 3, rel_tol=1e-5)


def test_validation_logs_the_nme_of_each_face_class(tmp_path):
    module, batch, logged = _validate_one_batch(tmp_path, batch_size=64, from_data=True)
    # The same batch, by hand: each class's faces' mean NME; a class without a face is not logged.
    with torch.no_grad():
        predictions = module.model(batch["image"])
    errors = nme(predictions, batch["landmarks"], module.normalization, batch["visible"])
    present = []
    for i, name in enumerate(FACE_CLASSES):
        member = batch["classes"][:, i] > 0
        if member.any():
            present.append(name)
            assert logged[f"val/nme_{name}"] == pytest.approx(errors[member].mean().item(), rel=1e-5)
        else:
            assert f"val/nme_{name}" not in logged
    assert "frontal" in present and len(present) >= 2  # the batch has several classes: the test compares some


def test_the_pfld_loss_trains_the_auxiliary_net(tmp_path):
    module = _module(tmp_path, ["loss=pfld"])
    assert all(p.requires_grad for p in module.model.auxiliary.parameters())


def test_no_pose_metric_without_the_auxiliary_net(tmp_path):
    module = _module(tmp_path, ["model.auxiliary=false"])
    assert module.val_pose_metric is None

"""Training runs on the embedded sample: a fast_dev_run, real epochs, resume and a multirun (slow: they
train); config refusals fast."""

import subprocess
import sys

import pytest
import torch

from pfld.inference import load_checkpoint
from pfld.training.loop import train
from tests.conftest import ROOT, compose_train

SMALL = ["logger=csv", "data.num_workers=0", "data.batch_size=32", "trainer.limit_train_batches=3"]


@pytest.mark.slow
def test_fast_dev_run(tmp_path):
    metrics = train(compose_train(["debug=fast"], tmp_path))
    # One step from the mean shape: its NME, within 30 % (not started there: 5 to 7 times more).
    assert metrics["val/nme"] == pytest.approx(metrics["val/nme_mean_shape"], rel=0.3)


@pytest.mark.slow
def test_train_resume_and_inference_model(tmp_path):
    first = tmp_path / "first"
    metrics = train(compose_train([*SMALL, "trainer.max_epochs=2"], first))
    last = first / "checkpoints" / "last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=False)
    assert saved["epoch"] == 1 and saved["global_step"] == 6  # written every epoch, improved or not
    assert last.is_file() and metrics["best_checkpoint"]
    assert (first / "val_ced.png").is_file() and (first / "val_predictions.png").is_file()

    resumed = tmp_path / "resumed"
    metrics = train(compose_train([*SMALL, "trainer.max_epochs=3", f"ckpt_path={last}"], resumed))
    state = torch.load(resumed / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert state["epoch"] == 2 and state["global_step"] == 9  # continued, not restarted

    model, spec = load_checkpoint(metrics["best_checkpoint"])
    assert model.auxiliary is None and not model.training
    assert spec.input_size == 112 and spec.normalization == (36, 45) and spec.num_points == 68
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 112, 112)).shape == (2, 68, 2)


@pytest.mark.slow
def test_train_py_multirun(tmp_path):
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "loss=l2,wing",
        "debug=fast",
        f"paths.log_dir={tmp_path}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("val/nme") >= 2


@pytest.mark.slow
def test_bf16_mixed_on_a_cpu_trains(tmp_path):
    """`trainer=cpu_bf16`: one step and one validation batch under bf16 autocast, finite metrics."""
    metrics = train(compose_train(["debug=fast", "trainer=cpu_bf16", "data.batch_size=8"], tmp_path))
    assert metrics["val/nme"] == pytest.approx(metrics["val/nme_mean_shape"], rel=0.3)  # one step


def test_gpu_trainer_config_composes_and_passes_the_checks(tmp_path):
    from pfld.training.config_checks import check_train_config

    cfg = compose_train(["trainer=gpu"], tmp_path)
    assert (cfg.trainer.accelerator, cfg.trainer.precision) == ("gpu", "bf16-mixed")
    check_train_config(cfg)


@pytest.mark.slow
def test_rle_and_binned_pose_train_and_leave_inference_without_their_heads(tmp_path):
    """The loss family's extra parts: RLE's scale head and flow, Hopenet's binned pose net. Trained, resumed
    from the checkpoint's own hyper-parameters, and left out of the inference model (pose kept on demand)."""
    overrides = [
        *SMALL,
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=2",
        "loss=pose_balance",
        "loss.base=rle",
        "loss.pose_loss=binned",
        "loss.balance=effective",
        "loss.pose_factor=truth",
    ]
    metrics = train(compose_train(overrides, tmp_path))
    assert metrics["val/nme"] == pytest.approx(metrics["val/nme_mean_shape"], rel=0.3)  # two steps
    assert metrics["val/pose_mae"] > 0
    checkpoint = torch.load(metrics["best_checkpoint"], map_location="cpu", weights_only=False)
    model_config = checkpoint["hyper_parameters"]["model"]
    assert model_config["uncertainty"] is True and model_config["pose_bins"] == 66
    assert any(k.startswith("loss.flow.") for k in checkpoint["state_dict"])
    model, _ = load_checkpoint(metrics["best_checkpoint"])
    assert model.auxiliary is None and model.uncertainty is None
    posed, _ = load_checkpoint(metrics["best_checkpoint"], with_pose=True)
    with torch.no_grad():
        landmarks, angles = posed.forward_with_pose(torch.zeros(1, 3, 112, 112))
    assert posed.auxiliary.bins == 66 and landmarks.shape == (1, 68, 2) and angles.shape == (1, 3)


def test_a_loss_that_needs_other_model_settings_says_which(tmp_path):
    cfg = compose_train(
        ["debug=fast", "loss=pose_balance", "loss.pose_loss=binned", "+model.pose_bins=30"], tmp_path
    )
    with pytest.raises(ValueError, match="model.pose_bins"):
        train(cfg)


@pytest.mark.slow
def test_a_class_without_training_faces_is_named_when_the_loss_balances_classes(tmp_path, capsys):
    train(
        compose_train(["debug=fast", "loss=pose_balance", "loss.balance=reciprocal"], tmp_path / "balanced")
    )
    out = capsys.readouterr().out
    assert "no training face is in class" in out and "occlusion" in out
    train(compose_train(["debug=fast"], tmp_path / "plain"))
    assert "no training face is in class" not in capsys.readouterr().out

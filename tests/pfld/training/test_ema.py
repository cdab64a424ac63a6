"""The moving average of the weights (`pfld.training.ema`): its arithmetic, what a checkpoint holds, a
resume, and validation after the fit scoring the checkpoint it loads (the slow one trains)."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from lightning.pytorch.trainer.states import TrainerFn

from pfld.training.ema import EMA, _Lerp, raw_state, warmed_decay
from pfld.training.loop import train
from tests.conftest import compose_train


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(4, 3)
        self.norm = torch.nn.BatchNorm1d(3)


SMALL = ["logger=csv", "data.num_workers=0", "data.batch_size=32", "trainer.limit_train_batches=3"]


def test_the_decay_warms_up_to_its_value():
    assert warmed_decay(0.999, 0) == pytest.approx(0.1)
    assert warmed_decay(0.999, 90) == pytest.approx(0.91)
    assert warmed_decay(0.999, 8_989) < 0.999 == warmed_decay(0.999, 8_991)
    assert warmed_decay(0.5, 1_000) == 0.5


def test_an_update_moves_the_average_towards_the_weights_by_one_minus_the_decay():
    average, weights = [torch.zeros(3), torch.ones(2)], [torch.full((3,), 10.0), torch.full((2,), 3.0)]
    _Lerp(0.999)(average, weights, torch.tensor(90))  # decay 0.91
    assert torch.allclose(average[0], torch.full((3,), 0.9)) and torch.allclose(
        average[1], torch.full((2,), 1.18)
    )
    counts = [torch.tensor(4)]
    _Lerp(0.999)(counts, [torch.tensor(7)], torch.tensor(90))
    assert counts[0].item() == 7  # an integer buffer (BatchNorm's batch count) follows the model


def test_a_decay_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="ema decay must be in"):
        EMA(1.0)


class _Trainer:
    """What the callback reads of a Trainer: its step count and what it is doing."""

    def __init__(self, fn=TrainerFn.FITTING):
        self.global_step, self.state = 0, SimpleNamespace(fn=fn)


def _step(ema, trainer, module, seed):
    with torch.no_grad():
        module.layer.weight.add_(
            torch.randn(module.layer.weight.shape, generator=torch.Generator().manual_seed(seed))
        )
    trainer.global_step += 1
    ema.on_train_batch_end(trainer, module, None, None, 0)


def test_a_checkpoint_holds_the_average_and_a_resume_continues_both():
    trainer, module, ema = _Trainer(), _Tiny(), EMA(0.999)
    ema.setup(trainer, module, "fit")
    for seed in range(5):
        _step(ema, trainer, module, seed)
    checkpoint = {"state_dict": {k: v.clone() for k, v in module.state_dict().items()}}
    ema.on_save_checkpoint(trainer, module, checkpoint)
    checkpoint["callbacks"] = ema.state_dict()
    assert torch.equal(raw_state(checkpoint)["layer.weight"], module.layer.weight)
    average = checkpoint["state_dict"]["layer.weight"]
    assert (average - module.layer.weight).abs().max() > 0.1  # the checkpoint serves the average

    resumed_trainer, resumed, resumed_ema = _Trainer(), _Tiny(), EMA(0.999)
    resumed_trainer.global_step = trainer.global_step
    resumed_ema.setup(resumed_trainer, resumed, "fit")
    resumed_ema.load_state_dict(checkpoint["callbacks"])
    resumed_ema.on_load_checkpoint(resumed_trainer, resumed, checkpoint)
    assert torch.equal(resumed.layer.weight, module.layer.weight)  # training goes on from the weights
    _step(ema, trainer, module, 99)
    _step(resumed_ema, resumed_trainer, resumed, 99)
    one, two = ema._average_model.module.layer.weight, resumed_ema._average_model.module.layer.weight
    assert torch.allclose(one, two) and not torch.allclose(one, module.layer.weight)


def test_outside_the_fit_a_loaded_checkpoint_is_left_as_it_is():
    trainer, module, ema = _Trainer(), _Tiny(), EMA(0.999)
    ema.setup(trainer, module, "fit")
    for seed in range(3):
        _step(ema, trainer, module, seed)
    loaded = module.layer.weight.clone()
    validating = _Trainer(TrainerFn.VALIDATING)
    ema.on_load_checkpoint(
        validating, module, {"state_dict": {}, "current_model_state": {}, "averaging_state": {}}
    )
    ema.on_validation_epoch_start(validating, module)
    assert torch.equal(module.layer.weight, loaded)
    ema.on_validation_epoch_start(trainer, module)  # during the fit, validation sees the average
    assert not torch.equal(module.layer.weight, loaded)
    ema.on_validation_epoch_end(trainer, module)
    assert torch.equal(module.layer.weight, loaded)


@pytest.mark.slow
def test_validation_after_the_fit_scores_the_checkpoint_it_loads(tmp_path):
    # Three epochs from the mean shape with a fast average: the best epoch is not the last (asserted), so
    # scoring (or reporting by face group) other weights than the loaded checkpoint's average shows.
    run = tmp_path / "run"
    metrics = train(compose_train([*SMALL, "ema=0.5", "trainer.max_epochs=3"], run))
    with open(next(run.rglob("metrics.csv"))) as handle:
        logged = [float(row["val/nme"]) for row in csv.DictReader(handle) if row.get("val/nme")]
    epochs = logged[:3]  # then the re-validation of the best checkpoint
    assert min(epochs) != epochs[-1], "the test needs a best epoch before the last"
    assert metrics["val/nme"] == pytest.approx(min(epochs), abs=1e-6)
    assert metrics["val/nme_all"] == pytest.approx(min(epochs), abs=1e-5)  # the report's faces too

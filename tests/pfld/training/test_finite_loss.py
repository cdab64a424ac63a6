"""A NaN or infinite training loss stops the run and names the batch and its faces."""

from __future__ import annotations

import math

import pytest
import torch

from pfld.training.finite_loss import NonFiniteLossError, non_finite_inputs, non_finite_loss_message
from pfld.training.loop import train
from tests.conftest import TINY_TRAINING, compose_train


@pytest.mark.slow
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_training_stops_at_the_batch_whose_loss_is_not_finite(bad, tmp_path, monkeypatch):
    from pfld.losses import L1Loss  # the default loss (conf/loss/l1.yaml)

    real_forward, calls = L1Loss.forward, []

    def spoiled(self, *args, **kwargs):
        loss = real_forward(self, *args, **kwargs)
        calls.append(1)
        return loss * bad if len(calls) == 2 else loss  # the second training batch

    monkeypatch.setattr(L1Loss, "forward", spoiled)
    cfg = compose_train([*TINY_TRAINING, "trainer.limit_train_batches=3"], tmp_path)
    with pytest.raises(NonFiniteLossError) as error:
        train(cfg)
    message = str(error.value)
    assert f"the training loss is {bad} at epoch 0, batch 1 (global step 1)" in message
    assert "Its 32 faces: " in message and "train.csv:" in message, "the faces are named"
    assert "lower optimizer.lr" in message
    assert len(calls) == 2, "nothing ran after the bad batch"
    assert not (tmp_path / "checkpoints").exists(), "no checkpoint of the spoiled weights"


def test_faces_with_non_finite_inputs_are_named():
    batch = {"image": torch.zeros(3, 3, 4, 4), "landmarks": torch.zeros(3, 5, 2)}
    batch["image"][1, 0, 2, 2] = math.nan
    batch["landmarks"][2, 4, 0] = math.inf
    assert non_finite_inputs(batch) == [1, 2]
    message = non_finite_loss_message(math.nan, 3, 7, 40, ["a.pts", "b.pts", "c.pts"], [1, 2])
    assert "nan at epoch 3, batch 7 (global step 40)" in message
    assert "Faces with NaN or infinite inputs: b.pts, c.pts: fix or drop them." in message

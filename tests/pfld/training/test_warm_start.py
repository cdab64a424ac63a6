"""``init_from``: a 98-point (WFLW) checkpoint starts a 68-point run, its output layer re-initialised."""

from __future__ import annotations

import pytest
import torch

from pfld.training.loop import train
from pfld.training.module import PFLDModule
from pfld.training.warm_start import warm_start
from tests.conftest import (
    OLD_DATA_DESCRIPTION,
    TINY_TRAINING,
    compose_train,
    save_module_checkpoint,
    wflw_module,
)

HEAD_FC = ("head.fc.weight", "head.fc.bias")


def _wflw_checkpoint(tmp_path):
    """A 98-point checkpoint whose weights differ from any fresh initialisation."""
    module = wflw_module(tmp_path)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    return save_module_checkpoint(module, tmp_path / "wflw.ckpt"), module


def test_matching_weights_are_loaded_and_the_output_layer_reinitialised(tmp_path, capsys):
    path, source = _wflw_checkpoint(tmp_path)
    cfg = compose_train([], tmp_path)
    target = PFLDModule(cfg.model, cfg.loss, cfg.optimizer, OLD_DATA_DESCRIPTION, cfg.scheduler).model
    before = {name: tensor.clone() for name, tensor in target.state_dict().items()}
    result = warm_start(target, path)
    assert sorted(result.reinitialised) == sorted(HEAD_FC) and not result.missing and not result.unused
    assert result.reinitialised["head.fc.weight"] == ((196, 176), (136, 176))
    loaded = source.model.state_dict()
    for name, tensor in target.state_dict().items():
        expected = before[name] if name in HEAD_FC else loaded[name]
        torch.testing.assert_close(tensor, expected, rtol=0, atol=0, msg=name)
    printed = capsys.readouterr().out
    assert f"init_from={path}: loaded {len(before) - 2} tensors" in printed
    assert (
        "re-initialised (shape differs): head.fc.weight (196x176 in the checkpoint, 136x176 here)" in printed
    )


@pytest.mark.slow
def test_training_from_another_point_count_starts_a_fresh_run(tmp_path, capsys):
    path, _ = _wflw_checkpoint(tmp_path)
    train(compose_train([*TINY_TRAINING, f"init_from={path}"], tmp_path / "run"))
    assert "re-initialised (shape differs): head.fc.weight" in capsys.readouterr().out
    last = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert last["epoch"] == 0 and last["global_step"] == 2, "epoch 0, two steps: a new run"
    steps = {float(state["step"]) for state in last["optimizer_states"][0]["state"].values()}
    assert steps == {2.0}, "a new optimiser: its step counts start at 0"
    assert last["hyper_parameters"]["data"]["num_points"] == 68

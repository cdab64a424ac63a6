"""Bad training configs fail with their key named before any work starts (`pfld.training.config_checks`)."""

from __future__ import annotations

import pytest
from hydra.errors import ConfigCompositionException

from pfld.training.config_checks import ConfigError, check_train_config
from pfld.training.loop import train
from tests.conftest import TINY_TRAINING, compose_train, save_module_checkpoint, wflw_module


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if training builds anything (data module, model, Trainer) before refusing."""

    def refuse(*args, **kwargs):
        raise AssertionError("work started before the config was checked")

    monkeypatch.setattr("pfld.training.loop.instantiate", refuse)


#: (override, what the message must say), by the key's name in the test id
BAD_CONFIGS = {
    "typo in model": (
        "+model.backbone.widht=0.5",
        r"model\.backbone\.widht: unknown key for pfld\.models\.PFLDBackbone; did you mean 'width'\?",
    ),
    "typo in optimizer": (
        "+optimizer.betas1=[0.9,0.99]",
        r"optimizer\.betas1: unknown key for torch\.optim\.AdamW.*'betas'",
    ),
    "typo in a nested target": (
        "+data.scheme.nme=ibug68",
        r"data\.scheme\.nme: unknown key for pfld\.data\.schemes\.load_scheme; it takes name_or_path",
    ),
    "typo in trainer": (
        "+trainer.max_epoch=3",
        r"trainer\.max_epoch: unknown key .*Trainer; did you mean 'max_epochs'",
    ),
    "unknown target": (
        "model.backbone._target_=pfld.models.PFLDBackbon",
        r"model\.backbone\._target_: cannot import",
    ),
    "zero width": ("model.backbone.width=0", r"model\.backbone\.width must be a finite number > 0 .*got 0"),
    "negative width": ("model.backbone.width=-0.5", r"model\.backbone\.width must be .* got -0\.5"),
    "size not /16": (
        "data.input_size=100",
        r"data\.input_size must be an int, a multiple of 16 and >= 64 .*got 100",
    ),
    "size too small": ("data.input_size=48", r"data\.input_size must be .* got 48"),
    "model vs data points": ("model.num_points=98", r"model\.num_points is 98 but data\.num_points is 68"),
    "typo in cpu": ("+cpu.thread=2", r"cpu\.thread: unknown key; did you mean 'threads'\?"),
    "zero threads": ("cpu.threads=0", r"cpu\.threads must be 'auto' or an integer >= 1, got 0"),
    "bad adapt interval": ("cpu.adapt_every_s=-5", r"cpu\.adapt_every_s must be a positive number"),
    "workers not a number": ("data.num_workers=some", r"data\.num_workers must be 'auto' or an integer >= 0"),
    "ema of 1": ("ema=1.0", r"ema: 1\.0 is not a decay; give one in \(0, 1\)"),
    "ema not a number": ("ema=true", r"ema: True is not a decay"),
    "missing checkpoint": (
        "ckpt_path=/nowhere/last.ckpt",
        r"ckpt_path=/nowhere/last\.ckpt: checkpoint not found",
    ),
}


@pytest.mark.parametrize(("override", "message"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_config_is_refused_before_any_work(override, message, tmp_path, no_work):
    cfg = compose_train([*TINY_TRAINING, override], tmp_path)
    with pytest.raises(ConfigError, match=message):
        train(cfg)


def test_every_problem_is_listed_at_once(tmp_path):
    cfg = compose_train(["model.backbone.width=0", "+optimizer.lr_=1"], tmp_path)
    with pytest.raises(ConfigError, match=r"2 problem\(s\); nothing was started:\n  - .*\n  - "):
        check_train_config(cfg)


def test_unknown_top_level_key_is_refused_by_hydra(tmp_path):
    with pytest.raises(ConfigCompositionException, match="foo"):
        compose_train(["foo=1"], tmp_path)


def test_resuming_a_run_that_kept_a_moving_average_needs_ema(tmp_path, no_work):
    import torch

    saved = torch.load(save_module_checkpoint(wflw_module(tmp_path), tmp_path / "w.ckpt"), weights_only=False)
    torch.save(saved | {"current_model_state": saved["state_dict"]}, tmp_path / "ema.ckpt")  # as EMA writes
    overrides = [*TINY_TRAINING, "data=wflw", f"ckpt_path={tmp_path / 'ema.ckpt'}"]
    with pytest.raises(ConfigError, match=r"ema\.ckpt was written with ema .*resume with the run's ema"):
        train(compose_train(overrides, tmp_path / "run"))
    check_train_config(compose_train([*overrides, "ema=0.999"], tmp_path / "run"))  # with it: fine


def test_resuming_a_checkpoint_of_another_point_count_suggests_init_from(tmp_path, no_work):
    checkpoint = save_module_checkpoint(wflw_module(tmp_path), tmp_path / "wflw.ckpt")
    cfg = compose_train([*TINY_TRAINING, f"ckpt_path={checkpoint}"], tmp_path / "run")
    with pytest.raises(
        ConfigError, match=rf"has 98 points \(wflw98\) but the config has 68.*init_from={checkpoint}"
    ):
        train(cfg)
    both = compose_train([f"ckpt_path={checkpoint}", f"init_from={checkpoint}"], tmp_path / "run")
    with pytest.raises(ConfigError, match="set only one"):
        train(both)
    foreign = tmp_path / "foreign.ckpt"
    foreign.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=rf"init_from={foreign}: cannot read the checkpoint"):
        train(compose_train([f"init_from={foreign}"], tmp_path / "run"))

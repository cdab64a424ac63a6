"""The real Hydra configs compose and build."""

from pathlib import Path

import pytest
from hydra.utils import instantiate

from tests.conftest import ROOT, compose_train

GROUPS = {
    group.name: sorted(p.stem for p in group.glob("*.yaml"))
    for group in (ROOT / "conf").iterdir()
    if group.is_dir() and group.name not in ("hydra", "paths")
}


@pytest.mark.parametrize(
    "override", [f"{group}={option}" for group, options in GROUPS.items() for option in options]
)
def test_every_config_option_composes(override, tmp_path):
    from pfld.training.config_checks import check_train_config

    cfg = compose_train([override], tmp_path)
    size = 96 if "kaggle" in override else 112  # Kaggle's faces are 96 px
    assert cfg.data.input_size == size and cfg.model.num_points == cfg.data.num_points
    check_train_config(cfg)  # every shipped option passes the checks train() starts with


def test_default_config_builds_its_parts(tmp_path):
    from pfld.models.auxiliary import AuxiliaryPoseNet

    cfg = compose_train([], tmp_path)
    model = instantiate(cfg.model)
    assert model.num_points == 68 and type(model.auxiliary) is AuxiliaryPoseNet  # the separate pose net
    assert type(instantiate(cfg.loss)).__name__ == "L1Loss"  # chosen on validation NME, see README
    assert type(instantiate(compose_train(["loss=pfld"], tmp_path).loss)).__name__ == "PFLDLoss"
    datamodule = instantiate(cfg.data)
    assert datamodule.scheme.name == "ibug68" and len(datamodule.train_sources) == 1
    assert Path(cfg.data.train[0].csv_path).is_file()
    assert cfg.logger.wandb.offline is True


@pytest.mark.parametrize("loss", ["pfld", "l2", "l1", "wing"])
def test_losses_share_one_call(loss, tmp_path):
    import torch

    criterion = instantiate(compose_train([f"loss={loss}"], tmp_path).loss)
    pred, target = torch.rand(4, 68, 2), torch.rand(4, 68, 2)
    classes = torch.zeros(4, 6)
    classes[:, 1] = 1
    value = criterion(pred, target, torch.zeros(4, 3), torch.full((4, 3), 0.3), classes)
    assert value.ndim == 0 and value > 0


def test_width_and_size_overrides_reach_the_model(tmp_path):
    cfg = compose_train(["model.backbone.width=1.0", "data.input_size=96"], tmp_path)
    model = instantiate(cfg.model)
    assert model.input_size == 96 and model.backbone.width == 1.0


def test_pseudo_labelled_splits_live_under_paths_teacher_dir(tmp_path):
    """Splits labelled by different teachers sit side by side: data=shared_pseudo / shared_taught read
    paths.teacher_dir (default data/teacher)."""
    cfg = compose_train(["data=shared_taught_pseudo"], tmp_path)
    default = [str(split.folder) for split in cfg.data.train]
    assert default[-1] == f"{cfg.paths.data_dir}/teacher/mtfl5"
    moved = compose_train(["data=shared_taught_pseudo", f"paths.teacher_dir={tmp_path}/b"], tmp_path)
    assert [str(split.folder) for split in moved.data.train] == [
        f.replace(f"{cfg.paths.data_dir}/teacher", f"{tmp_path}/b") for f in default
    ]


def test_the_pose_nets_widths_are_a_setting(tmp_path):
    """model.pose_channels sizes the training-only auxiliary net (the paper's by default)."""
    import torch

    default = instantiate(compose_train([], tmp_path).model)
    narrow = instantiate(compose_train(["model.pose_channels=[32,16,32,16]"], tmp_path).model)
    widths = [m.out_channels for m in narrow.auxiliary.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [32, 32, 16, 32]
    assert [m.out_channels for m in default.auxiliary.modules() if isinstance(m, torch.nn.Conv2d)] == [
        128,
        128,
        32,
        128,
    ]
    assert (
        sum(p.numel() for p in narrow.auxiliary.parameters())
        < sum(p.numel() for p in default.auxiliary.parameters()) / 4
    )
    narrow.train()
    points, angles = narrow(torch.rand(2, 3, 112, 112))
    assert points.shape == (2, 68, 2) and angles.shape == (2, 3)
    assert sum(p.numel() for p in narrow.backbone.parameters()) == sum(
        p.numel() for p in default.backbone.parameters()
    )


def test_the_default_augmentation_is_the_transforms_default_and_heavy_is_the_old_one(tmp_path):
    """conf/data/augmentation/light.yaml (the default) and `FaceAugmentation`'s keyword defaults say the
    same; `data/augmentation=heavy` changes only the rotation and occlusion back, and a data config's
    own augmentation settings (Kaggle's grey faces) still apply on top of either."""
    import inspect

    from pfld.data.transforms import FaceAugmentation

    defaults = {
        name: p.default
        for name, p in inspect.signature(FaceAugmentation).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    light = dict(compose_train([], tmp_path).data.augmentation)
    assert {k: tuple(v) if k == "scale" else v for k, v in light.items()} == defaults
    heavy = dict(compose_train(["data/augmentation=heavy"], tmp_path).data.augmentation)
    assert {k for k in light if light[k] != heavy[k]} == {"rotate_deg", "occlusion"}
    assert (heavy["rotate_deg"], heavy["occlusion"]) == (30.0, 0.3)
    for choice in ("light", "heavy"):
        kaggle = compose_train(["data=kaggle", f"data/augmentation={choice}"], tmp_path).data.augmentation
        assert kaggle.grayscale == 0.0 and kaggle.rotate_deg == {"light": 15.0, "heavy": 30.0}[choice]


@pytest.mark.parametrize(
    ("experiment", "command"),
    [
        (  # the command the zoo's runs before their fits were trained with (their cards quote it)
            "zoo",
            [
                "experiment=mixed_schemes",
                "data=shared",
                "data.train_repeats=[4,1,1]",
                "data.train_conventions=[0,1,1]",
            ],
        ),
        (  # and their final fits
            "zoo_final_fit",
            ["experiment=final_fit", "data.train_repeats=[4,4,1,1]", "data.train_conventions=[0,0,1,1]"],
        ),
    ],
)
def test_the_zoo_experiments_are_the_commands_the_zoo_was_trained_with(experiment, command, tmp_path):
    from omegaconf import OmegaConf

    short = OmegaConf.to_container(compose_train([f"experiment={experiment}"], tmp_path))
    long = OmegaConf.to_container(compose_train([*command, "trainer.max_epochs=79"], tmp_path))
    assert short.pop("tags") != long.pop("tags")  # only the run's tags tell them apart
    assert short == long

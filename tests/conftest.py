"""Shared fixtures: the repository, the embedded sample, the shared data (skipped when absent), configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

#: The tests folder, the repository above it, and the committed fixtures (tests/data, see its README).
TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
FIXTURES = TESTS / "data"
os.environ.setdefault("PFLD_ROOT", str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

SHARED = Path(os.environ.get("PFLD_SHARED_DATA", ROOT.parent / "shared" / "data"))
EMBEDDED = ROOT / "data" / "embedded"

#: A checkpoint's data description as written before ``normalization_mode`` existed (68 points, 112 px).
OLD_DATA_DESCRIPTION = {
    "input_size": 112,
    "crop_scale": 1.2,
    "mean": [0.485, 0.456, 0.406],
    "std": [0.229, 0.224, 0.225],
    "scheme": "ibug68",
    "num_points": 68,
    "normalization": [36, 45],
    "coordinates": "x, y in [0, 1] of the square crop",
}


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"shared data not found at {SHARED}")
    return SHARED


@pytest.fixture(scope="session")
def embedded_dir() -> Path:
    return EMBEDDED


#: Overrides that train the default model for two steps on the embedded sample (a real checkpoint, fast).
TINY_TRAINING = [
    "logger=none",
    "data.num_workers=0",
    "data.batch_size=32",
    "trainer.max_epochs=1",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "validate_best=false",
]


def readme_python(marker: str) -> dict:
    """The python block after ``<!-- marker -->`` in README.md or a docs/*.md page, executed: the names
    it defines. The marker must be in exactly one page and directly before its block."""
    tag = f"<!-- {marker} -->"
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = [page for page in pages if tag in page.read_text()]
    assert len(found) == 1, f"{tag} in {len(found)} of README.md and docs/*.md: {found}"
    after = found[0].read_text().split(tag, 1)[1]
    assert after.lstrip().startswith("```python"), f"{tag} in {found[0]} is not followed by a python block"
    code = after.split("```python", 1)[1].split("```", 1)[0]
    namespace: dict = {}
    exec(compile(code, str(found[0].relative_to(ROOT)), "exec"), namespace)  # noqa: S102 (our own docs)
    return namespace


def compose_config(name: str, overrides: list[str], output_dir: Path):
    """The real `conf/<name>.yaml`, composed as its command would, with outputs under ``output_dir``."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg.hydra
    return cfg


def compose_train(overrides: list[str], output_dir: Path):
    """The real `conf/train.yaml`, composed as `train.py` would, with outputs under ``output_dir``."""
    return compose_config("train", overrides, output_dir)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The best checkpoint of the default model (with its pose net) trained for two steps."""
    from pfld.training.loop import train

    folder = tmp_path_factory.mktemp("tiny_run")
    train(compose_train(TINY_TRAINING, folder))
    return next((folder / "checkpoints").glob("epoch*.ckpt"))


def save_module_checkpoint(module, path: Path) -> Path:
    """A checkpoint of ``module`` (a `PFLDModule`) as training writes one, weights and hyper-parameters
    only: enough for `load_checkpoint`, ``init_from`` and the checks of ``ckpt_path``."""
    import torch

    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams)}, path)
    return path


def wflw_module(tmp_path: Path):
    """An untrained 98-point `PFLDModule` (the WFLW scheme) with the default model, loss and optimiser."""
    from pfld.training.module import PFLDModule

    cfg = compose_train(["data=wflw"], tmp_path)
    data = OLD_DATA_DESCRIPTION | {"scheme": "wflw98", "num_points": 98, "normalization": [60, 72]}
    return PFLDModule(cfg.model, cfg.loss, cfg.optimizer, data, cfg.scheduler)

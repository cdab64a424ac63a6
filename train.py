"""Train PFLD: `python train.py [group=option ...] [key=value ...]` (configs in conf/)."""

import os
from pathlib import Path

os.environ.setdefault("PFLD_ROOT", str(Path(__file__).resolve().parent))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float | None:
    from pfld.training.loop import train

    metrics = train(cfg)
    return metrics.get("val/nme")  # for Hydra sweepers that minimise it


if __name__ == "__main__":
    main()

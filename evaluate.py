"""Evaluate a checkpoint: `python evaluate.py ckpt=<checkpoint> [data=<name>] [out=<folder>]`."""

import os
from pathlib import Path

os.environ.setdefault("PFLD_ROOT", str(Path(__file__).resolve().parent))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    from pfld.evaluation.checkpoint import evaluate

    return evaluate(cfg)["nme"]


if __name__ == "__main__":
    main()

"""Write a picture of augmented training samples with their points (right side red, left side blue).

python scripts/preview_augmentations.py [data=shared] [+out=augmentations.png] [+faces=6]
"""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PFLD_ROOT", str(ROOT))
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> None:
    from pfld.data.preview import augmentation_grid
    from pfld.io.images import write_image

    datamodule = instantiate(cfg.data)
    datamodule.setup("fit")
    grid = augmentation_grid(datamodule.train_dataloader().dataset, count=cfg.get("faces", 6))
    path = write_image(cfg.get("out", "augmentations.png"), grid)
    print(f"wrote {path.resolve()}")


if __name__ == "__main__":
    main()

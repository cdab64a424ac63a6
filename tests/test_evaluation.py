import torch
from torch import nn

from pfld.data.datamodule import LandmarkDataModule
from pfld.data.readers import read_landmark_csv
from pfld.data.schemes import ibug_68
from pfld.evaluation import predict, write_report
from pfld.training import mean_shape_nme


class MeanShape(nn.Module):
    """Predicts the same landmarks for every face."""

    def __init__(self, mean: torch.Tensor) -> None:
        super().__init__()
        self.mean = nn.Parameter(mean)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.mean.expand(len(images), -1, -1)


def test_report_of_the_mean_shape_matches_the_baseline(tmp_path, embedded_dir):
    datamodule = LandmarkDataModule(
        train=[lambda: read_landmark_csv(embedded_dir / "train.csv")[:64]],
        val=[lambda: read_landmark_csv(embedded_dir / "val.csv")[:40]],
        scheme=ibug_68(),
        batch_size=16,
        num_workers=0,
    )
    datamodule.setup("fit")
    model = MeanShape(torch.from_numpy(datamodule.mean_shape()))
    out = predict(model, datamodule.val_dataloader())
    assert out["predictions"].shape == out["landmarks"].shape == (40, 68, 2)
    assert out["visible"].shape == (40, 68) and out["classes"].shape == (40, 6)
    report = write_report(model, datamodule.val_dataloader(), (36, 45), tmp_path)
    assert abs(report["nme"] - mean_shape_nme(datamodule)) < 1e-6
    assert (tmp_path / "val_ced.png").stat().st_size > 1000
    assert (tmp_path / "val_predictions.png").stat().st_size > 1000
    # every face is profile or frontal, so those two groups' face-weighted NMEs average to the total
    groups = report["by_group"]
    assert groups["frontal"]["faces"] + groups.get("profile", {"faces": 0})["faces"] == 40
    weighted = sum(groups[g]["nme"] * groups[g]["faces"] for g in ("frontal", "profile") if g in groups)
    assert abs(weighted / 40 - report["nme"]) < 1e-6
    assert "| frontal |" in (tmp_path / "val_groups.md").read_text()


def test_denormalize_gives_back_the_crop(embedded_dir):
    import numpy as np

    from pfld.data.cache import build_face_cache
    from pfld.data.dataset import LandmarkDataset
    from pfld.data.preview import denormalize
    from pfld.data.transforms import build_eval_transform

    faces = build_face_cache(read_landmark_csv(embedded_dir / "val.csv")[:2], 112)
    dataset = LandmarkDataset(
        faces, build_eval_transform(112), ibug_68(), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)
    )
    border = faces.border
    crop = faces.images[0][border : border + 112, border : border + 112]
    restored = denormalize(dataset[0]["image"], dataset.mean, dataset.std)
    assert np.abs(restored.astype(int) - crop.astype(int)).max() <= 1

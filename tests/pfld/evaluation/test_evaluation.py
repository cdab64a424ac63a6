"""Evaluation: prediction with any predictor, subsets of the validation set, scores, tables, pictures."""

from functools import partial

import numpy as np
import pytest
import torch
from torch import nn

from pfld.data.datamodule import LandmarkDataModule
from pfld.data.readers import read_landmark_csv
from pfld.data.schemes import ibug_68
from pfld.data.sources import source_names, subset_masks
from pfld.data.store import load_faces
from pfld.evaluation import (
    face_grid,
    metrics_table,
    nme_by_part,
    pose_mae,
    predict,
    worst_and_median,
    write_report,
)
from pfld.inference import ModelSpec, TorchLandmarkModel
from pfld.training.loop import mean_shape_nme
from tests.conftest import OLD_DATA_DESCRIPTION


class MeanShape(nn.Module):
    """Predicts the same landmarks for every face."""

    def __init__(self, mean: torch.Tensor) -> None:
        super().__init__()
        self.mean = nn.Parameter(mean)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.mean.expand(len(images), -1, -1)


def mean_shape_model(datamodule: LandmarkDataModule) -> TorchLandmarkModel:
    return TorchLandmarkModel(
        MeanShape(torch.from_numpy(datamodule.mean_shape())), ModelSpec.from_hparams(OLD_DATA_DESCRIPTION)
    )


@pytest.fixture(scope="module")
def datamodule(embedded_dir) -> LandmarkDataModule:
    """64 training faces; 40 validation faces from two sources of 20 (like 300W's common, challenging)."""
    val = read_landmark_csv(embedded_dir / "val.csv")
    module = LandmarkDataModule(
        train=[lambda: read_landmark_csv(embedded_dir / "train.csv")[:64]],
        val=[lambda: val[:20], lambda: val[20:40]],
        val_names=["common", "challenging"],
        scheme=ibug_68(),
        batch_size=16,
        num_workers=0,
    )
    module.setup("fit")
    return module


def test_report_of_the_mean_shape_matches_the_baseline(tmp_path, datamodule):
    model = mean_shape_model(datamodule)
    out = predict(model, datamodule.val_dataloader())
    assert out["predictions"].shape == out["landmarks"].shape == (40, 68, 2)
    assert out["visible"].shape == (40, 68) and out["classes"].shape == (40, 6)
    assert out["angles"].shape == (40, 3) and out["pose_valid"].shape == (40,) and "pose" not in out
    report = write_report(model, datamodule.val_dataloader(), (36, 45), tmp_path)
    assert abs(report["nme"] - mean_shape_nme(datamodule)) < 1e-6
    assert (tmp_path / "val_ced.png").stat().st_size > 1000
    assert (tmp_path / "val_predictions.png").stat().st_size > 1000
    # every face is profile or frontal, so those two groups' face-weighted NMEs average to the total
    groups = report["by_group"]
    assert groups["all"]["faces"] == 40 and groups["all"]["nme"] == pytest.approx(report["nme"])
    assert groups["frontal"]["faces"] + groups.get("profile", {"faces": 0})["faces"] == 40
    weighted = sum(groups[g]["nme"] * groups[g]["faces"] for g in ("frontal", "profile") if g in groups)
    assert abs(weighted / 40 - report["nme"]) < 1e-6
    assert "| frontal |" in (tmp_path / "val_groups.md").read_text()
    # by part of the face: ibug68's groups cover each point once, so the point-weighted mean is the NME
    parts = report["by_part"]
    assert list(parts) == ["jaw", "right_brow", "left_brow", "nose", "right_eye", "left_eye", "mouth"]
    assert sum(row["points"] for row in parts.values()) == 68
    weighted = sum(row["nme"] * row["points"] for row in parts.values()) / 68
    assert weighted == pytest.approx(report["nme"], abs=1e-6)
    assert all(0 <= row["offset"] <= row["nme"] for row in parts.values())
    assert "| jaw | 17 |" in (tmp_path / "val_groups.md").read_text()


def test_report_breaks_down_by_validation_source(tmp_path, datamodule):
    subsets = datamodule.val_subsets
    assert list(subsets) == ["common", "challenging"]
    assert (
        subsets["common"][:20].all()
        and not subsets["common"][20:].any()
        and subsets["challenging"].sum() == 20
    )
    model = mean_shape_model(datamodule)
    report = write_report(model, datamodule.val_dataloader(), (36, 45), tmp_path, subsets=subsets)
    common, challenging = report["by_group"]["subset:common"], report["by_group"]["subset:challenging"]
    assert common["faces"] == challenging["faces"] == 20
    assert (common["nme"] + challenging["nme"]) / 2 == pytest.approx(report["nme"])
    assert "| subset:challenging | 20 |" in (tmp_path / "val_groups.md").read_text()


def test_report_writes_each_faces_nme_and_groups_and_paired_nme_compares_two(tmp_path, datamodule, capsys):
    """val_faces.csv holds what the report's means are made of; scripts/paired_nme.py pairs two reports."""
    import sys

    from pfld.evaluation import read_face_table
    from tests.conftest import ROOT

    sys.path.insert(0, str(ROOT / "scripts"))
    from paired_nme import main as paired_nme

    model = mean_shape_model(datamodule)
    loader = datamodule.val_dataloader()
    report = write_report(model, loader, (36, 45), tmp_path / "a", subsets=datamodule.val_subsets)
    table = read_face_table(tmp_path / "a")  # the folder, or its val_faces.csv
    assert table.sources == tuple(loader.dataset.faces.sources) and len(table.nme) == 40
    assert table.nme.mean() == pytest.approx(report["nme"], abs=1e-6)
    for name, row in report["by_group"].items():
        assert table.groups[name].sum() == row["faces"]
        assert table.nme[table.groups[name]].mean() == pytest.approx(row["nme"], abs=1e-6)

    # a second model: the mean shape moved by 2 % of the crop, worse overall
    shifted = mean_shape_model(datamodule)
    with torch.no_grad():
        shifted.model.mean += 0.02
    write_report(shifted, loader, (36, 45), tmp_path / "b", subsets=datamodule.val_subsets)
    b = read_face_table(tmp_path / "b" / "val_faces.csv")
    result = paired_nme([f"mean={tmp_path / 'a'}", f"shifted={tmp_path / 'b'}", "--groups", "subset:common"])
    common = datamodule.val_subsets["common"]
    d = b.nme[common] - table.nme[common]
    (pair,) = [p for p in result["pairs"] if p["group"] == "subset:common"]
    assert pair["faces"] == 20 and pair["mean"] == pytest.approx(d.mean(), abs=1e-9)
    assert pair["se"] == pytest.approx(d.std(ddof=1) / np.sqrt(20), rel=1e-6)
    assert pair["b_better"] == pytest.approx(np.mean(d < 0))
    assert result["means"]["shifted"]["all"] > result["means"]["mean"]["all"]
    assert "| shifted - mean | all | 40 |" in capsys.readouterr().out

    # reports of other faces are refused, naming the file
    (tmp_path / "c").mkdir()
    lines = (tmp_path / "b" / "val_faces.csv").read_text().splitlines()
    (tmp_path / "c" / "val_faces.csv").write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(ValueError, match=r"c/val_faces.csv and .* do not score the same faces \(39 and 40"):
        paired_nme([str(tmp_path / "a"), str(tmp_path / "c")])
    (tmp_path / "c" / "val_faces.csv").write_text("nme,face\n0.1,0\n")
    with pytest.raises(ValueError, match="c/val_faces.csv: not a face table"):
        read_face_table(tmp_path / "c")


def test_parts_split_a_shared_shift_from_the_per_face_error():
    # 4 faces, 3 points: point 0 is off by +0.1 in x on every face (a shared shift), point 1 by +0.1 and
    # -0.1 on alternate faces (no shared shift), point 2 exact but unlabelled on two faces
    residuals = torch.zeros(4, 3, 2)
    residuals[:, 0, 0] = 0.1
    residuals[:, 1, 0] = torch.tensor([0.1, -0.1, 0.1, -0.1])
    residuals[:2, 2] = float("nan")
    parts = nme_by_part(residuals, {"a": [0], "b": [1], "ab": [0, 1], "c": [2], "none": []})
    assert parts["a"] == pytest.approx({"nme": 0.1, "offset": 0.1, "points": 1})
    assert parts["b"] == pytest.approx({"nme": 0.1, "offset": 0.0, "points": 1})
    assert parts["ab"] == pytest.approx({"nme": 0.1, "offset": 0.05, "points": 2})
    assert parts["c"] == pytest.approx({"nme": 0.0, "offset": 0.0, "points": 1})
    assert "none" not in parts
    residuals[:, 2] = float("nan")
    assert "c" not in nme_by_part(residuals, {"c": [2]})  # no labelled point


def test_sources_are_named_by_their_split_folder_or_file():
    sources = [
        partial(load_faces, folder="data/300w/common"),
        partial(load_faces, folder="data/300w/challenging"),
        partial(read_landmark_csv, csv_path="data/embedded/val.csv"),
        partial(read_landmark_csv, csv_path="other/val.csv"),
        list,
    ]
    assert source_names(sources) == ["common", "challenging", "val", "val_2", "val4"]
    masks = subset_masks(["a", "b"], [2, 3])
    assert masks["a"].tolist() == [True, True, False, False, False] and masks["b"].sum() == 3


def test_val_names_must_match_the_sources(embedded_dir):
    with pytest.raises(ValueError, match="2 names for 1 val sources"):
        LandmarkDataModule(train=[list], val=[list], val_names=["a", "b"], scheme=ibug_68())


def test_any_backend_predicts_like_the_module(datamodule):
    """A runtime called like a `LandmarkModel` (numpy in, (landmarks, None) out, as export's phone
    runtimes are) gives the same predictions as the PyTorch backend."""
    model = mean_shape_model(datamodule)
    loader = datamodule.val_dataloader()
    expected = predict(model, loader)["predictions"]
    net = model.model
    got = predict(lambda images: (net(torch.as_tensor(images)).detach().numpy(), None), loader)["predictions"]
    assert torch.equal(got, expected) and not torch.equal(expected, torch.zeros_like(expected))


def test_pose_errors_in_degrees_over_faces_with_a_pose():
    out = {
        "pose": torch.deg2rad(torch.tensor([[10.0, 0.0, -5.0], [0.0, 0.0, 0.0], [179.0, 0.0, 0.0]])),
        "angles": torch.deg2rad(torch.tensor([[0.0, 4.0, 5.0], [90.0, 90.0, 90.0], [-179.0, 2.0, 0.0]])),
        "pose_valid": torch.tensor([True, False, True]),
    }
    mae = pose_mae(out)
    assert mae["faces"] == 2
    assert mae["yaw"] == pytest.approx(6.0) and mae["pitch"] == pytest.approx(3.0)  # 179 vs -179: 2 deg
    assert mae["roll"] == pytest.approx(5.0)
    assert pose_mae({k: v for k, v in out.items() if k != "pose"}) is None


def test_metrics_table_has_the_headline_metrics_and_groups():
    summary = {
        "nme": 0.05,
        "failure_rate": 0.03,
        "auc": 0.5,
        "threshold": 0.1,
        "faces": 10,
        "unscored": 1,
        "by_group": {"all": {"nme": 0.05, "faces": 9.0}},
        "by_part": {"jaw": {"nme": 0.08, "offset": 0.02, "points": 17.0}},
        "pose_mae_deg": {"yaw": 3.0, "pitch": 2.0, "roll": 1.0, "faces": 9.0},
    }
    table = metrics_table(summary)
    for row in (
        "| NME | 0.0500 |",
        "| FR@0.1 | 3.00% |",
        "| AUC@0.1 | 0.5000 |",
        "| all | 9 | 0.0500 |",
        "| jaw | 17 | 0.0800 | 0.0200 |",
    ):
        assert row in table
    assert "| yaw MAE (deg, 9 faces) | 3.00 |" in table


def test_worst_and_median_faces_skip_unscored_ones(datamodule):
    errors = torch.tensor([0.5, float("nan"), 0.1, 0.3, 0.2, 0.9, 0.4])
    picks = worst_and_median(errors, 2)
    assert picks["worst"] == [5, 0] and 1 not in picks["median"] and len(picks["median"]) == 2
    dataset = datamodule.val_dataloader().dataset
    predictions = torch.from_numpy(np.repeat(datamodule.mean_shape()[None], 7, axis=0))
    grid = face_grid(dataset, predictions, errors, count=2)
    side = 2 * datamodule.input_size
    assert grid.dtype == np.uint8 and grid.shape[1] == 2 * side and grid.shape[0] > 2 * side


def test_crops_are_the_policy_crop_and_normalise_back(embedded_dir):
    from pfld.data.cache import build_face_cache
    from pfld.data.dataset import LandmarkDataset
    from pfld.data.normalize import model_input
    from pfld.data.transforms import build_eval_transform

    faces = build_face_cache(read_landmark_csv(embedded_dir / "val.csv")[:2], 112)
    dataset = LandmarkDataset(
        faces, build_eval_transform(112), ibug_68(), mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)
    )
    border = faces.border
    crop = faces.images[0][border : border + 112, border : border + 112]
    np.testing.assert_array_equal(dataset[0]["image"].numpy(), crop)
    inputs = model_input(dataset[0]["image"], dataset.mean, dataset.std)[0]  # (3, S, S)
    restored = (inputs.permute(1, 2, 0).numpy() * [0.2, 0.25, 0.3] + [0.5, 0.4, 0.3]) * 255
    assert np.abs(restored - crop).max() < 1e-3

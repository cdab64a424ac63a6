"""The Kaggle workflow for users: conf/data/kaggle.yaml and experiment=kaggle15, the test.csv -> points
function (`pfld.predict.kaggle`), ``predict.py test.csv --kaggle-lookup IdLookupTable.csv`` and its
errors; slow: prepare -> train -> evaluate -> export -> submission, for both Kaggle layouts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from pfld.cli import predict as predict_cli
from pfld.data.readers.kaggle import kaggle_columns, read_kaggle_test
from pfld.inference import ModelSpec
from pfld.inference.crops import normalise
from pfld.predict.kaggle import by_image_id, is_kaggle_test, predict_kaggle_points
from tests.conftest import (
    FIXTURES,
    TINY_TRAINING,
    compose_config,
    compose_train,
    save_module_checkpoint,
    wflw_module,
)

KAGGLE = FIXTURES / "kaggle"
TRAINING, TEST, LOOKUP = KAGGLE / "training.csv", KAGGLE / "test.csv", KAGGLE / "IdLookupTable.csv"
NPZ = KAGGLE / "face_images.npz"
GREY_MEAN, GREY_STD = (0.459,), (0.226,)


def kaggle_spec(size: int = 96, channels: int = 1, num_points: int = 15) -> ModelSpec:
    mean, std = (GREY_MEAN, GREY_STD) if channels == 1 else ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    return ModelSpec("kaggle15", num_points, size, 1.0, mean, std, (1, 0), "inter_pupil", channels=channels)


class BrightestPixel:
    """A `LandmarkModel` stub: every point at the centroid of the input's brightness above its darkest
    pixel (the centre of a bright dot), in [0, 1] units; keeps the inputs it was called with."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec, self.inputs = spec, []

    @property
    def has_pose(self) -> bool:
        return False

    def __call__(self, images: np.ndarray) -> tuple[np.ndarray, None]:
        self.inputs.append(images)
        side = images.shape[2]
        weight = images.sum(axis=1)  # (N, S, S)
        weight = weight - weight.min(axis=(1, 2), keepdims=True)
        centres = (np.arange(side) + 0.5) / side  # pixel centres in [0, 1] units
        total = weight.sum(axis=(1, 2))
        x, y = (
            (weight * centres).sum(axis=(1, 2)) / total,
            (weight * centres[:, None]).sum(axis=(1, 2)) / total,
        )
        units = np.stack([x, y], axis=1)  # (N, 2)
        return np.repeat(units[:, None], self.spec.num_points, axis=1), None


def dots(positions: list[tuple[int, int]]) -> np.ndarray:
    """(N, 96, 96) uint8 black faces with one 4 x 4 white dot whose centre is at (x, y) + 1.5 px."""
    images = np.zeros((len(positions), 96, 96), np.uint8)
    for image, (x, y) in zip(images, positions, strict=True):
        image[y : y + 4, x : x + 4] = 255
    return images


# -- the configs -------------------------------------------------------------------------------------------
def test_experiment_kaggle15_is_grey_96_with_15_points_and_a_hold_out(tmp_path: Path) -> None:
    from hydra.utils import instantiate

    cfg = compose_train(["experiment=kaggle15"], tmp_path)
    assert cfg.data.scheme.name_or_path == "kaggle15" and cfg.data.num_points == 15
    assert (cfg.data.input_size, cfg.data.channels, cfg.data.crop_scale) == (96, 1, 1.0)
    assert cfg.model.backbone.width == 0.25 and cfg.model.backbone.in_channels == 1
    assert cfg.data.train[0].folder.endswith("kaggle/train") and not cfg.data.val
    assert 0 < cfg.data.val_fraction < 1 and cfg.data.normalization == "inter_pupil"
    scheme = instantiate(cfg.data.scheme)
    assert scheme.has_pose and cfg.loss.pose_weight > 0  # the pose term has reference points to fit
    assert tuple(scheme.pupils) == (1, 0)  # the eye centres, labelled on almost every Kaggle face


# -- test.csv -> points ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "channels"), [(96, 1), (128, 1), (64, 3)])
def test_points_come_back_in_pixels_of_the_96_px_image(size: int, channels: int) -> None:
    model = BrightestPixel(kaggle_spec(size, channels))
    images = dots([(10, 20), (60, 40), (0, 88)])
    points = predict_kaggle_points(model, images, batch_size=2)
    assert points.shape == (3, 15, 2) and points.dtype == np.float32
    expected = np.array([[11.5, 21.5], [61.5, 41.5], [1.5, 89.5]])
    tolerance = 1e-4 if size == 96 else 0.1  # resizing moves a dot's centroid a little
    np.testing.assert_allclose(points[:, 0], expected, atol=tolerance)
    assert [x.shape for x in model.inputs] == [(2, channels, size, size), (1, channels, size, size)]


def test_grey_input_is_normalised_with_the_models_mean_and_std() -> None:
    model = BrightestPixel(kaggle_spec(96, 1))
    faces = read_kaggle_test(TEST)
    predict_kaggle_points(model, faces.images)
    expected = normalise(np.repeat(faces.images[..., None], 3, axis=3), GREY_MEAN, GREY_STD)
    np.testing.assert_allclose(model.inputs[0], expected, atol=1e-5)
    np.testing.assert_allclose(model.inputs[0][:, 0], (faces.images / 255 - 0.459) / 0.226, atol=1e-4)


def test_points_need_96_px_grey_faces_and_15_points() -> None:
    with pytest.raises(ValueError, match=r"expected \(N, 96, 96\) uint8"):
        predict_kaggle_points(BrightestPixel(kaggle_spec()), np.zeros((2, 96, 96, 3), np.uint8))
    with pytest.raises(ValueError, match="predicts 68 points, not Kaggle's 15"):
        predict_kaggle_points(BrightestPixel(kaggle_spec(num_points=68)), dots([(1, 1)]))


def test_points_are_placed_by_image_id() -> None:
    points = np.arange(2 * 15 * 2, dtype=np.float32).reshape(2, 15, 2)
    ordered = by_image_id(points, np.array([3, 1]), "test.csv")
    assert ordered.shape == (3, 15, 2) and np.isnan(ordered[1]).all()
    np.testing.assert_array_equal(ordered[[2, 0]], points)
    with pytest.raises(ValueError, match="test.csv: ImageId 1 appears more than once"):
        by_image_id(points, np.array([1, 1]), "test.csv")


def test_a_kaggle_test_file_is_known_by_its_header(tmp_path: Path) -> None:
    assert is_kaggle_test(TEST)
    assert not is_kaggle_test(TRAINING) and not is_kaggle_test(LOOKUP) and not is_kaggle_test(NPZ)
    assert not is_kaggle_test(tmp_path / "missing.csv")


# -- predict.py --------------------------------------------------------------------------------------------
def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = predict_cli.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_predict_writes_a_submission_for_the_lookup_table(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(predict_cli, "load_landmark_model", lambda *_: BrightestPixel(kaggle_spec()))
    monkeypatch.setattr(predict_cli, "create_detector", pytest.fail)  # test.csv needs no detector
    out = tmp_path / "out"
    argv = [str(TEST), "--model", "stub.onnx", "--kaggle-lookup", str(LOOKUP), "--out", str(out)]
    status, printed, _ = _run(argv, capsys)
    assert status == 0 and "2 faces; 38 rows" in printed and "submission.csv" in printed
    written, lookup = _rows(out / "submission.csv"), _rows(LOOKUP)
    assert written[0] == ["RowId", "Location"] and [r[0] for r in written[1:]] == [r[0] for r in lookup[1:]]
    assert all(0 <= float(r[1]) <= 96 for r in written[1:])


def test_predict_without_lookup_writes_the_points_of_each_face(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(predict_cli, "load_landmark_model", lambda *_: BrightestPixel(kaggle_spec()))
    status, _, _ = _run([str(TEST), "--model", "stub.onnx", "--out", str(tmp_path)], capsys)
    rows = _rows(tmp_path / "test.csv")
    assert (
        status == 0 and rows[0] == ["ImageId", *kaggle_columns()] and [r[0] for r in rows[1:]] == ["1", "2"]
    )
    assert all(len(row) == 31 and 0 <= float(row[5]) <= 96 for row in rows[1:])


def test_predict_refuses_a_csv_that_is_not_a_kaggle_test_file(tmp_path, capsys) -> None:
    status, _, error = _run([str(TRAINING), "--model", "m.onnx", "--out", str(tmp_path)], capsys)
    assert status == 2 and f"{TRAINING}: not a Kaggle test.csv" in error


def test_predict_refuses_a_model_without_the_15_kaggle_points(tmp_path, capsys) -> None:
    checkpoint = save_module_checkpoint(wflw_module(tmp_path), tmp_path / "wflw.ckpt")
    argv = [str(TEST), "--model", str(checkpoint), "--kaggle-lookup", str(LOOKUP), "--out", str(tmp_path)]
    status, _, error = _run(argv, capsys)
    assert status == 2 and f"{checkpoint} predicts 98 points (wflw98)" in error
    assert not (tmp_path / "submission.csv").exists()


def test_predict_refuses_a_lookup_without_one_test_file(tmp_path, capsys) -> None:
    photo = FIXTURES / "photos" / "1204062305.jpg"
    argv = [str(photo), "--model", "m.onnx", "--kaggle-lookup", str(LOOKUP), "--out", str(tmp_path)]
    status, _, error = _run(argv, capsys)
    assert status == 2 and "answers one test.csv, but 0 were given" in error
    argv = [str(TEST), "--model", "m.onnx", "--kaggle-lookup", str(tmp_path / "none.csv")]
    status, _, error = _run(argv, capsys)
    assert status == 2 and "none.csv: Kaggle IdLookupTable not found" in error


# -- end to end (slow) -------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("layout", [TRAINING, NPZ], ids=["training_csv", "face_images_npz"])
def test_kaggle_prepares_trains_evaluates_exports_and_submits(tmp_path, capsys, layout: Path) -> None:
    pytest.importorskip("onnxruntime")
    from export.command import FP32_NAME, run_export
    from pfld.cli.data import main as data_main
    from pfld.evaluation.checkpoint import evaluate
    from pfld.inference import load_landmark_model
    from pfld.training.loop import train

    data_main(["kaggle", "--train", str(layout), "--test", str(TEST), "--out", str(tmp_path / "kaggle")])
    kaggle = ["data=kaggle", f"paths.data_dir={tmp_path}", "data.num_workers=0"]
    tiny = [*TINY_TRAINING, "data.batch_size=2"]  # 5 training faces, 1 held out: 2 steps
    metrics = train(compose_train(["experiment=kaggle15", *tiny, *kaggle[1:]], tmp_path / "train"))
    assert np.isfinite(metrics["val/nme"]) and np.isfinite(metrics["train/pose_loss"])
    checkpoint = next((tmp_path / "train" / "checkpoints").glob("epoch*.ckpt"))
    spec = load_landmark_model(checkpoint).spec
    assert (spec.scheme, spec.num_points, spec.input_size, spec.channels) == ("kaggle15", 15, 96, 1)
    summary = evaluate(compose_config("evaluate", [f"ckpt={checkpoint}", *kaggle], tmp_path / "eval"))
    assert summary["faces"] == 1 and summary["nme"] == pytest.approx(metrics["val/nme"], rel=1e-4)
    fast = ["latency.runs=2", "latency.warmup=1", "latency.sessions=1", "quantize.calibration_images=4"]
    out = tmp_path / "export"
    run_export(compose_config("export", [f"ckpt={checkpoint}", f"out={out}", *kaggle, *fast], out))
    argv = [str(TEST), "--model", str(out / FP32_NAME), "--kaggle-lookup", str(LOOKUP)]
    assert predict_cli.main([*argv, "--out", str(tmp_path / "predictions")]) == 0
    assert "2 faces; 38 rows" in capsys.readouterr().out
    written, lookup = _rows(tmp_path / "predictions" / "submission.csv"), _rows(LOOKUP)
    assert [r[0] for r in written[1:]] == [r[0] for r in lookup[1:]]
    assert all(0 <= float(r[1]) <= 96 for r in written[1:])
